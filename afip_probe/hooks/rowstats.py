"""Per-row attention statistics: everything the metrics need, from one pre-softmax score row.

Given the last query row of one layer's pre-softmax scores for a batch (all heads; any number of
layers stacked in front), the key positions that are image tokens and the keys the mask allows,
`row_stats` returns the per-head and per-layer scalars of docs/design.md §3/§5 without keeping any a_t x a_t
matrix. It is written for speed (it runs once per generated token): the image keys are a slice
when they form one block, the text keys are reduced part by part, and no probability row over all
keys is ever formed — every statistic comes from a log-sum-exp per part and three reductions of
exp(B_I - max B_I), two of them matrix products.

The statistics, per head and per layer, are those named in `afip_probe.records.fields`.

Example:
    >>> import torch
    >>> from afip_probe.records import HEAD_FIELDS
    >>> scores = torch.zeros(1, 2, 4)                    # [B, H, kv]
    >>> is_image = torch.tensor([[False, True, True, False]])
    >>> out = row_stats(scores, is_image, torch.ones(1, 4, dtype=torch.bool), image_index(is_image))
    >>> round(float(out.head[0, HEAD_FIELDS.index("var"), 0]), 3)
    0.5
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EPS = 1e-8  # ε of Eq. 1


@dataclass
class ImageIndex:
    """Where each sample's image keys are: a gather index padded to the batch's largest image count.

    `block` is set when every sample's image keys are the same contiguous range of key positions
    (one image, equal prompt layouts: the usual case); statistics then slice instead of gathering.
    """

    index: torch.Tensor  # [B, n_max] key positions (0 where padded)
    valid: torch.Tensor  # [B, n_max] bool
    count: torch.Tensor  # [B] float, number of image keys
    block: tuple[int, int] | None = None  # (start, stop): image keys are keys[start:stop] in every sample
    ragged: bool = False  # samples have different image counts (some index slots are padding)
    #: [B, n_max, I] float 0/1: which image of its prompt each slot belongs to, when some prompt shows several
    images: torch.Tensor | None = None

    def gather(self, rows: torch.Tensor, work: "Workspace | None" = None) -> torch.Tensor:
        """Image-key entries of rows [..., B, H, kv] -> [..., B, H, n_max] (padded slots hold key 0's value).

        A slice (a view) when the keys form one block; else gathered, into `work`'s buffer if given.
        """
        if self.block is not None and self.block[1] <= rows.shape[-1]:
            return rows[..., self.block[0]: self.block[1]]
        shape = (*rows.shape[:-1], self.index.shape[-1])
        index = self.index[:, None, :].expand(shape)
        if work is None or rows.dtype != torch.float32:
            return torch.gather(rows, -1, index)
        return torch.gather(rows, -1, index, out=work.take("gather", shape, rows.device))

    def window(self, offset: int) -> "ImageIndex":
        """The same slots for a key row whose key 0 is position `offset`: slots before it become invalid."""
        if offset == 0:
            return self
        valid = self.valid & (self.index >= offset)
        block = self.block if self.block is not None and self.block[0] >= offset else None
        return ImageIndex(index=(self.index - offset).clamp(min=0), valid=valid, count=valid.sum(-1).to(torch.float32),
                          block=None if block is None else (block[0] - offset, block[1] - offset),
                          ragged=not bool(valid.all()), images=self.images)


def image_index(is_image: torch.Tensor, slot_images: list[list[int]] | None = None) -> ImageIndex:
    """Build the image-key index from a boolean [B, kv] image-key mask; `slot_images` (per sample, the image
    number of each of its image keys in order) when a prompt shows several images."""
    counts = is_image.sum(-1)  # [B]
    n_max = int(counts.max()) if counts.numel() else 0
    index = torch.zeros(is_image.shape[0], n_max, dtype=torch.long, device=is_image.device)
    valid = torch.zeros(is_image.shape[0], n_max, dtype=torch.bool, device=is_image.device)
    for b in range(is_image.shape[0]):
        pos = is_image[b].nonzero().flatten()
        index[b, : pos.numel()] = pos
        valid[b, : pos.numel()] = True
    block = None
    if n_max and bool(valid.all()) and bool((index == index[:1]).all()):
        start = int(index[0, 0])
        if int(index[0, -1]) == start + n_max - 1:  # contiguous
            block = (start, start + n_max)
    images = None
    if slot_images is not None:
        num = max((max(numbers) + 1 for numbers in slot_images if numbers), default=1)
        images = torch.zeros(is_image.shape[0], n_max, num, dtype=torch.float32, device=is_image.device)
        for b, numbers in enumerate(slot_images):
            images[b, torch.arange(len(numbers)), torch.tensor(numbers, dtype=torch.long)] = 1.0
    return ImageIndex(index=index, valid=valid, count=counts.to(torch.float32), block=block,
                      ragged=not bool(valid.all()), images=images)


def image_keys(is_image_prompt: torch.Tensor, kv: int) -> torch.Tensor:
    """[B, kv] image-key mask from the prompt's [B, P] mask (generated keys are never image keys)."""
    p = is_image_prompt.shape[1]
    return is_image_prompt[:, :kv] if kv <= p else torch.nn.functional.pad(is_image_prompt, (0, kv - p))


def text_keys(allowed: torch.Tensor, is_image: torch.Tensor) -> torch.Tensor:
    """[B, kv] bool: the keys T and the text means are taken over: allowed, not image, not the query's own."""
    text = allowed & ~is_image
    text[..., -1] = False  # the query's own key (allowed may carry leading layer dims)
    return text


def row_scores(query: torch.Tensor, key: torch.Tensor, scaling: float | None,
               out: torch.Tensor | None = None, softcap: float | None = None) -> torch.Tensor:
    """Unmasked pre-softmax scores of the last query row, [B, H, kv] float32 (GQA keys shared, not copied).

    query [B, H, q, d] (only the last row is used), key [B, H_kv, kv, d]. `out`, a float32 [B, H, kv]
    tensor, receives the scores (no new allocation). One `baddbmm` per call: the row vectors of each KV
    head's query heads times its keys, scaled in the same kernel (as eager attention does, (q·k)·scaling),
    then capped in place when the model caps its logits (`softcap`, see `capped`).
    """
    b, h, _, d = query.shape
    h_kv, kv = key.shape[1], key.shape[2]
    rep = h // h_kv
    scale = scaling if scaling is not None else d**-0.5
    q_last = query[:, :, -1, :].reshape(b * h_kv, rep, d)  # [B H_kv, rep, d]
    k = key.reshape(b * h_kv, kv, d)  # a view of the cache's contiguous keys
    if q_last.dtype != torch.float32:
        q_last, k = q_last.float(), k.float()
    if out is None:
        out = torch.empty(b, h, kv, dtype=torch.float32, device=query.device)
    rows = out.view(b * h_kv, rep, kv)
    # beta=0: the input (out's old contents) is ignored, NaN included
    torch.baddbmm(rows, q_last, k.transpose(1, 2), beta=0, alpha=scale, out=rows)
    if softcap is not None:  # capped(), in place
        out.div_(softcap).tanh_().mul_(softcap)
    return out


def capped(scores: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Attention logit softcapping as the model's eager attention applies it (before the mask):
    softcap · tanh(scores / softcap); the scores unchanged when `softcap` is None."""
    if softcap is None:
        return scores
    return torch.tanh(scores / softcap) * softcap


def allowed_keys(attention_mask: torch.Tensor | None, b: int, kv: int, device: torch.device) -> torch.Tensor:
    """[B, kv] bool: the keys the last query row may see under `attention_mask` (None / bool / additive
    [B, 1|H, q, kv]; an additive entry counts as hidden when it is -inf or the dtype's minimum)."""
    if attention_mask is None:
        return torch.ones(b, kv, dtype=torch.bool, device=device)
    row = attention_mask[:, 0, -1, :kv]  # [B, kv]
    if row.dtype == torch.bool:
        return row
    return torch.isfinite(row) & (row > torch.finfo(row.dtype).min / 2)


def apply_row_mask(scores: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask last-row scores [..., B, H, kv] with the last row of `attention_mask` (None / bool / additive
    [B, 1|H, q, kv]); returns (scores with -inf where masked, allowed [B, kv])."""
    allowed = allowed_keys(attention_mask, scores.shape[-3], scores.shape[-1], scores.device)
    if attention_mask is None:
        return scores, allowed
    if attention_mask.dtype != torch.bool:  # additive: keep its biases
        scores = scores + attention_mask[:, :, -1, : scores.shape[-1]].float()
    return scores.masked_fill(~allowed[:, None, :], float("-inf")), allowed


def mask_rows(scores: torch.Tensor, attention_mask: torch.Tensor | None, is_image: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Like `apply_row_mask`, but leaves the row alone when `row_stats` can use it unmasked.

    `row_stats` masks text keys itself, so a boolean (or absent) mask that allows every image key is
    only returned as `allowed` [B, kv]; an additive mask (which may carry biases) or one that hides
    image keys is applied.
    """
    if attention_mask is None or attention_mask.dtype == torch.bool:
        allowed = allowed_keys(attention_mask, scores.shape[-3], scores.shape[-1], scores.device)
        if attention_mask is None or not bool((is_image & ~allowed).any()):
            return scores, allowed
    return apply_row_mask(scores, attention_mask)


@dataclass
class KeyView:
    """The image keys of one layer's key row: which keys are image keys and where each image slot is.

    `offset` is the absolute position of key 0. It is 0 unless the layer's cache keeps only the last
    keys of the sequence (a sliding window or an attention chunk, as in Gemma 3, Mistral 3 and Llama 4):
    key j is then position ``offset + j``. `index` keeps one slot per image token of the prompt, so
    maps stay aligned with the image; slots whose key left the cache are invalid (they get no
    attention).
    """

    is_image: torch.Tensor  # [B, kv] bool
    index: ImageIndex  # [B, n_max] slots, one per prompt image token
    offset: int
    generated_start: int = 0  # key index of the first generated key (kv or more: none in this row)


class RunMasks:
    """The image-key masks of one generate() call, shared by the recorder and score modifiers.

    Built once from the prompt's [B, P] image-token mask (and, for prompts of several images, the image
    number of each sample's image keys); `view(kv, step)` gives the `KeyView` of a key row of length `kv`
    at decoding step `step` (cached: it changes once per step and cache kind).
    """

    def __init__(self, is_image_prompt: torch.Tensor, slot_images: list[list[int]] | None = None):
        self.prompt = is_image_prompt  # [B, P]
        self.index: ImageIndex = image_index(is_image_prompt, slot_images)
        self._views: dict[tuple[int, int], KeyView] = {}
        self._padded = image_keys(is_image_prompt, 2 * is_image_prompt.shape[1])  # [B, 2P], see _image_keys

    def sequence_length(self, step: int) -> int:
        """Positions in the sequence once step `step`'s tokens are in (step 0: the prompt)."""
        return self.prompt.shape[1] + step

    def view(self, kv: int, step: int) -> KeyView:
        """The image keys of a `kv`-key row at `step` (`kv` no longer than the sequence: see `visible_keys`)."""
        offset = max(self.sequence_length(step) - kv, 0)
        key = (kv, offset)
        view = self._views.get(key)
        if view is None:
            if len(self._views) > 8:  # old steps are not asked again
                self._views.clear()
            view = self._views[key] = KeyView(is_image=self._image_keys(offset, kv), index=self.index.window(offset),
                                              offset=offset, generated_start=max(self.prompt.shape[1] - offset, 0))
        return view

    def _image_keys(self, offset: int, kv: int) -> torch.Tensor:
        """[B, kv] image-key mask of keys offset..offset+kv-1: a view of the prompt's mask padded with
        generated (never image) positions, grown by doubling, so a new key length costs no new tensor."""
        if offset + kv > self._padded.shape[1]:
            self._padded = image_keys(self.prompt, 2 * (offset + kv))
        return self._padded[:, offset: offset + kv]

    def visible_keys(self, kv: int, step: int) -> int:
        """How many of a `kv`-key row are sequence positions: a static cache hands over its whole
        preallocated length, whose slots past the sequence are empty (and masked); they are left out."""
        return min(kv, self.sequence_length(step))


class Workspace:
    """Reused float32 scratch buffers for per-step work.

    A fresh multi-megabyte tensor every generated token is costly on the CPU: the allocator hands
    large blocks back to the system and every page faults in again. Views of these buffers are
    overwritten by the next call that takes the same name.
    """

    def __init__(self) -> None:
        self._flat: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...] | torch.Size, device: torch.device) -> torch.Tensor:
        """A contiguous float32 tensor of `shape` (uninitialised)."""
        size = 1
        for n in shape:
            size *= int(n)
        flat = self._flat.get(name)
        if flat is None or flat.numel() < size or flat.device != device:
            flat = self._flat[name] = torch.empty(int(size * 1.25) + 1, dtype=torch.float32, device=device)
        return flat[:size].view(tuple(shape))


def _scratch(work: Workspace | None, name: str, like: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    if work is None:
        return torch.empty(shape, dtype=torch.float32, device=like.device)
    return work.take(name, shape, like.device)


@dataclass
class RowStats:
    head: torch.Tensor  # [..., B, F_head, H]
    layer: torch.Tensor  # [..., B, F_layer]
    img_mean_probs: torch.Tensor  # [..., B, n_max] head mean of the post-softmax image attention (0 at padding)
    img_scores: torch.Tensor  # [..., B, H, n_max] pre-softmax image scores (may be a view of the input)
    image_var: torch.Tensor | None = None  # [..., B, H, I] VAR of each image (prompts of several images)


NEG_INF = float("-inf")
TINY = torch.finfo(torch.float32).tiny


def _safe_shift(m: torch.Tensor) -> torch.Tensor:
    """A maximum usable as a shift: -inf (a row with nothing kept) becomes the lowest finite float."""
    return m.clamp(min=torch.finfo(m.dtype).min)


def _text_reductions(parts: list[tuple[torch.Tensor, torch.Tensor | None]], like: torch.Tensor,
                     work: Workspace | None = None, tail: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Max, sum and log-sum-exp over the kept keys of score parts [..., B, H, k] (keep masks [..., B, k],
    or None: every key kept), and the log-sum-exp of the last part's keys from index `tail` on (None: none).

    Returns four tensors shaped like `like` ([..., B, H]); -inf, 0, -inf and -inf where nothing is kept.
    """
    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    tail_lse = None
    for i, (part, keep) in enumerate(parts):
        if part.shape[-1] == 0:
            continue
        if keep is None:
            masked, total = part, part.sum(-1)
        else:
            k = keep.unsqueeze(-2)
            masked, total = part.masked_fill(~k, NEG_INF), torch.where(k, part, 0.0).sum(-1)
        m = masked.amax(-1)
        shift = _safe_shift(m)
        shifted = torch.sub(masked, shift[..., None], out=_scratch(work, "text", masked, masked.shape)).exp_()
        lse = shift + torch.log(shifted.sum(-1))
        if tail is not None and i == len(parts) - 1 and tail < part.shape[-1]:  # e.g. the generated keys
            tail_lse = shift + torch.log(shifted[..., tail:].sum(-1))
        out = (m, total, lse) if out is None else (torch.maximum(out[0], m), out[1] + total,
                                                   torch.logaddexp(out[2], lse))
    none = torch.full_like(like, NEG_INF)
    if out is None:
        return none, torch.zeros_like(like), none, none
    return (*out, none if tail_lse is None else tail_lse)


def row_stats(scores: torch.Tensor, is_image: torch.Tensor, allowed: torch.Tensor, img: ImageIndex,
              work: Workspace | None = None, generated_start: int | None = None,
              own_generated: torch.Tensor | None = None) -> RowStats:
    """Statistics of last-row scores of one or more layers.

    scores   [..., B, H, kv] pre-softmax scores B = q·Kᵀ·scaling, masked (-inf) or not: text keys
             outside `allowed` are ignored here, image keys must be allowed
    is_image [B, kv] bool, image keys
    allowed  [B, kv] bool, keys the attention mask lets the query see (or [..., B, kv], per layer)
    work     reused scratch buffers (the returned `img_scores` may be a view of them or of `scores`)
    generated_start  key index of the first generated key (`KeyView.generated_start`; None: no
             generated key): the keys from there on, the query's own key included, are the generated ones
    own_generated  whether the query's own key is a generated one, broadcast over [..., B, H] (rows of
             several steps staged together, whose own key is last whatever their length); by default
             whether the own key's index reaches `generated_start`
    """
    s = scores if scores.dtype == torch.float32 else scores.float()
    kv, h = s.shape[-1], s.shape[-2]
    block = img.block if img.block is not None and img.block[1] < kv else None  # query's own key not in it
    x0 = img.gather(s, work)  # [..., B, H, n]
    x = x0
    if img.ragged:
        pad = ~img.valid[:, None, :]
        x, x0 = x0.masked_fill(pad, NEG_INF), x0.masked_fill(pad, 0.0)
    # generated keys: [gen, kv-1), a tail of the last text part (they follow the prompt, and so its image)
    gen = kv - 1 if generated_start is None else min(max(generated_start, 0), kv - 1)
    if block is not None:  # text keys: before and after the image block, the query's own key excluded
        start, stop = block
        gen = max(gen, stop)
        if bool(allowed.all()):
            parts = [(s[..., :start], None), (s[..., stop: kv - 1], None)]
            n_txt = torch.full(allowed.shape[:-1], kv - 1 - (stop - start), device=s.device)
        else:
            before, after = allowed[..., :start], allowed[..., stop: kv - 1]
            parts = [(s[..., :start], before), (s[..., stop: kv - 1], after)]
            n_txt = before.sum(-1) + after.sum(-1)
        tail = gen - stop
        self_score = s[..., kv - 1]
    else:
        text = text_keys(allowed, is_image)[..., : kv - 1]
        parts = [(s[..., : kv - 1], text)]
        tail = gen
        self_score = s[..., kv - 1].masked_fill(is_image[:, -1:], NEG_INF)  # an image key counts as image
        n_txt = text.sum(-1)
    t_max, t_sum, t_lse, g_lse = _text_reductions(parts, self_score, work, tail)
    n_txt = n_txt.clamp(min=1).to(torch.float32)[..., None]  # [..., B, 1]
    n_img = img.count.clamp(min=1)[:, None]

    m = x.amax(-1)  # [..., B, H] image maximum V
    shift = _safe_shift(m)
    e = torch.sub(x, shift[..., None], out=_scratch(work, "image", x, x.shape)).exp_()  # [..., B, H, n]
    z = e.sum(-1)
    lse_img = shift + torch.log(z)
    lse = torch.logaddexp(torch.logaddexp(lse_img, t_lse), self_score)  # [..., B, H]
    var = torch.exp(lse_img - lse)
    has = z > 0
    zs = z.clamp(min=TINY)
    # VAR of each image of the prompt (Σ over its keys of A), before e is overwritten below
    image_var = None if img.images is None else (e @ img.images) * torch.exp(shift - lse)[..., None]  # [..., B, H, I]
    weights = torch.stack([torch.exp(shift - lse) / h, has / (h * zs)], dim=-2)  # [..., B, 2, H]
    means = weights @ e  # [..., B, 2, n]: Ā (head mean of A_I) and P̄ (head mean of P)
    a_bar, p_bar = means[..., 0, :], means[..., 1, :]
    cross = (e @ torch.log(p_bar.clamp(min=TINY))[..., None]).squeeze(-1) / zs  # Σ P log P̄
    # entropy of P = e / z: log z + max - Σ P B (e is overwritten: the last use)
    img_entropy = torch.where(has, torch.log(zs) + shift - e.mul_(x0).sum(-1) / zs, 0.0)
    kl = torch.where(has, -img_entropy - cross, 0.0)  # [..., B, H]

    ent = -(a_bar * torch.log(a_bar + EPS)).sum(-1)
    a_norm = a_bar / a_bar.sum(-1, keepdim=True).clamp(min=TINY)
    ent_renorm = -(a_norm * torch.log(a_norm + EPS)).sum(-1)

    # lookback parts: text mass split into prompt text and generated keys; the own key (0 when it is an image
    # key) goes to the generated ones once it is one
    txt_mass, gen_mass, own = torch.exp(t_lse - lse), torch.exp(g_lse - lse), torch.exp(self_score - lse)
    if own_generated is None:
        own_gen = own if generated_start is not None and generated_start <= kv - 1 else torch.zeros_like(own)
    else:
        own_gen = own * own_generated
    head = torch.stack([var, m, t_max, x0.sum(-1) / n_img, t_sum / n_txt, var / n_img, txt_mass / n_txt, lse,
                        img_entropy, kl, txt_mass - gen_mass + (own - own_gen), gen_mass + own_gen],
                       dim=-2)  # [..., B, F_head, H]
    layer = torch.stack([ent, ent_renorm, kl.mean(-1)], dim=-1)  # [..., B, F_layer]
    return RowStats(head=head, layer=layer, img_mean_probs=a_bar, img_scores=x0, image_var=image_var)
