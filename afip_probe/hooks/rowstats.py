"""Per-row attention statistics: everything the metrics need, from one pre-softmax score row.

Given the last query row of one layer's pre-softmax scores for a batch (all heads), the key
positions that are image tokens and the keys the mask allows, `row_stats` returns the per-head and
per-layer scalars of DESIGN §3/§5 without keeping any a_t x a_t matrix.

Per head (stacked along `HEAD_FIELDS`):
    var              Σ_{i∈I} A_i                           (Eq. 2, VAR)
    img_max_score    V = max_{i∈I} B_i                     (gating signal)
    txt_max_score    T = max over allowed non-image keys, the query's own key excluded
    img_mean_score   mean_{i∈I} B_i
    txt_mean_score   mean over the same text keys as T
    img_mean_prob    mean_{i∈I} A_i
    txt_mean_prob    mean of A over the text keys
    lse              log Σ_j exp B_j (so A_j = exp(B_j - lse))
    img_entropy      entropy of P = A_I / Σ A_I (renormalised over image keys)
    kl_to_mean       Σ_i P_i (log P_i - log P̄_i), P̄ the head mean of P (Eq. 3 before the head mean)
Per layer (`LAYER_FIELDS`):
    attn_entropy         -Σ_i Ā_i log(Ā_i + ε), Ā = head mean of A_I, not renormalised (Eq. 1)
    attn_entropy_renorm  the same with Ā renormalised to sum 1
    kl                   mean over heads of kl_to_mean (D_kl^l of Eq. 3)

Example:
    >>> import torch
    >>> scores = torch.zeros(1, 2, 4)                    # [B, H, kv]
    >>> is_image = torch.tensor([[False, True, True, False]])
    >>> out = row_stats(scores, is_image, torch.ones(1, 4, dtype=torch.bool), image_index(is_image))
    >>> round(float(out.head[0, HEAD_FIELDS.index("var"), 0]), 3)
    0.5
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

HEAD_FIELDS = (
    "var",
    "img_max_score",
    "txt_max_score",
    "img_mean_score",
    "txt_mean_score",
    "img_mean_prob",
    "txt_mean_prob",
    "lse",
    "img_entropy",
    "kl_to_mean",
)
LAYER_FIELDS = ("attn_entropy", "attn_entropy_renorm", "kl")
EPS = 1e-8  # ε of Eq. 1


@dataclass
class ImageIndex:
    """Gather index of each sample's image keys, padded to the batch's largest image count."""

    index: torch.Tensor  # [B, n_max] key positions (0 where padded)
    valid: torch.Tensor  # [B, n_max] bool
    count: torch.Tensor  # [B] float, number of image keys

    def repeat(self, n: int) -> "ImageIndex":
        """The index of a batch stacked n times (layer-major), for statistics of n layers at once."""
        return ImageIndex(self.index.repeat(n, 1), self.valid.repeat(n, 1), self.count.repeat(n))


def image_keys(is_image_prompt: torch.Tensor, kv: int) -> torch.Tensor:
    """[B, kv] image-key mask from the prompt's [B, P] mask (generated keys are never image keys)."""
    p = is_image_prompt.shape[1]
    return is_image_prompt[:, :kv] if kv <= p else torch.nn.functional.pad(is_image_prompt, (0, kv - p))


def row_scores(query: torch.Tensor, key: torch.Tensor, scaling: float | None) -> torch.Tensor:
    """Unmasked pre-softmax scores of the last query row, [B, H, kv] float32 (GQA keys shared, not copied)."""
    b, h, _, d = query.shape
    h_kv, kv = key.shape[1], key.shape[2]
    scale = scaling if scaling is not None else d**-0.5
    q_last = (query[:, :, -1, :].float() * scale).reshape(b, h_kv, h // h_kv, d)  # [B, H_kv, rep, d]
    return torch.matmul(q_last, key.float().transpose(-1, -2)).reshape(b, h, kv)  # [B, H, kv]


def apply_row_mask(scores: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask last-row scores [..., B, H, kv] with the last row of `attention_mask` (None / bool / additive
    [B, 1|H, q, kv]); returns (scores with -inf where masked, allowed [B, kv])."""
    b, kv = scores.shape[-3], scores.shape[-1]
    if attention_mask is None:
        return scores, torch.ones(b, kv, dtype=torch.bool, device=scores.device)
    row = attention_mask[:, :, -1, :kv]  # [B, 1|H, kv]
    if row.dtype == torch.bool:
        return scores.masked_fill(~row, float("-inf")), row[:, 0, :]
    allowed = torch.isfinite(row[:, 0, :]) & (row[:, 0, :] > torch.finfo(row.dtype).min / 2)
    return (scores + row.float()).masked_fill(~allowed[:, None, :], float("-inf")), allowed


class RunMasks:
    """The image-key masks of one generate() call, shared by the recorder and score modifiers.

    Built once from the prompt's [B, P] image-token mask; `keys(kv)` gives the [B, kv] mask for the
    current key length (cached, it changes once per step) and `index` the image-key gather index.
    """

    def __init__(self, is_image_prompt: torch.Tensor):
        self.prompt = is_image_prompt  # [B, P]
        self.index: ImageIndex = image_index(is_image_prompt)
        self._cache: tuple[int, torch.Tensor] | None = None
        self._stacked: dict[int, ImageIndex] = {}

    def keys(self, kv: int) -> torch.Tensor:
        if self._cache is None or self._cache[0] != kv:
            self._cache = (kv, image_keys(self.prompt, kv))
        return self._cache[1]

    def stacked_index(self, n: int) -> ImageIndex:
        """`index` for n layers stacked layer-major (cached)."""
        if n not in self._stacked:
            self._stacked[n] = self.index.repeat(n)
        return self._stacked[n]


def image_index(is_image: torch.Tensor) -> ImageIndex:
    """Build the gather index from a boolean [B, kv] image-key mask."""
    counts = is_image.sum(-1)  # [B]
    n_max = int(counts.max()) if counts.numel() else 0
    index = torch.zeros(is_image.shape[0], n_max, dtype=torch.long, device=is_image.device)
    valid = torch.zeros(is_image.shape[0], n_max, dtype=torch.bool, device=is_image.device)
    for b in range(is_image.shape[0]):
        pos = is_image[b].nonzero().flatten()
        index[b, : pos.numel()] = pos
        valid[b, : pos.numel()] = True
    return ImageIndex(index=index, valid=valid, count=counts.to(torch.float32))


@dataclass
class RowStats:
    head: torch.Tensor  # [B, F_head, H]
    layer: torch.Tensor  # [B, F_layer]
    img_probs: torch.Tensor  # [B, H, n_max] post-softmax image attention (0 at padding)
    img_scores: torch.Tensor  # [B, H, n_max] pre-softmax image scores


def row_stats(scores: torch.Tensor, is_image: torch.Tensor, allowed: torch.Tensor, img: ImageIndex) -> RowStats:
    """Statistics of one layer's last-row scores.

    scores   [B, H, kv] pre-softmax scores B = q·Kᵀ·scaling + mask, -inf where masked (any float dtype)
    is_image [B, kv] bool, image keys
    allowed  [B, kv] bool, keys the attention mask lets the query see
    """
    s = scores.float()  # [B, H, kv], -inf where masked
    neg_inf = torch.tensor(float("-inf"), device=s.device)
    lse = torch.logsumexp(s, dim=-1)  # [B, H]

    text = allowed & ~is_image
    text[:, -1] = False  # the query's own key
    txt_m = text[:, None, :]
    n_txt = text.sum(-1).clamp(min=1).to(torch.float32)[:, None]  # [B, 1]
    n_img = img.count.clamp(min=1)[:, None]

    gather = img.index[:, None, :].expand(-1, s.shape[1], -1)  # [B, H, n]
    valid = img.valid[:, None, :]
    img_scores = torch.where(valid, torch.gather(s, -1, gather), 0.0)  # [B, H, n]
    img_probs = torch.where(valid, torch.exp(img_scores - lse[..., None]), 0.0)  # [B, H, n]

    var = img_probs.sum(-1)  # [B, H]
    v_max = torch.where(valid, img_scores, neg_inf).amax(-1)
    s_txt = s.masked_fill(~txt_m, float("-inf"))  # [B, H, kv], text keys only
    t_max = s_txt.amax(-1)
    img_mean = img_scores.sum(-1) / n_img
    txt_mean = torch.where(txt_m, s, 0.0).sum(-1) / n_txt
    # mean text attention: everything that is neither image nor the query's own key (masked keys are 0)
    p_self = torch.exp(s[..., -1] - lse)
    txt_prob = (1.0 - var - p_self).clamp(min=0.0) / n_txt

    tiny = torch.finfo(torch.float32).tiny
    p = img_probs / var.clamp(min=tiny)[..., None]  # [B, H, n]
    # log P_i = B_i - lse - log VAR, with no log of the [B, H, n] probabilities (0 at padded slots)
    log_p = img_scores - (lse + torch.log(var.clamp(min=tiny)))[..., None]
    xlogx = p * log_p
    img_entropy = -xlogx.sum(-1)
    p_bar = p.mean(1, keepdim=True)  # [B, 1, n]
    kl = (xlogx - p * torch.log(p_bar.clamp(min=tiny))).sum(-1)  # [B, H]

    a_bar = img_probs.mean(1)  # [B, n]
    ent = -(a_bar * torch.log(a_bar + EPS)).sum(-1)
    a_norm = a_bar / a_bar.sum(-1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
    ent_renorm = -(a_norm * torch.log(a_norm + EPS)).sum(-1)

    head = torch.stack(
        [var, v_max, t_max, img_mean, txt_mean, var / n_img, txt_prob, lse, img_entropy, kl], dim=1
    )  # [B, F_head, H]
    layer = torch.stack([ent, ent_renorm, kl.mean(-1)], dim=1)  # [B, F_layer]
    return RowStats(head=head, layer=layer, img_probs=img_probs, img_scores=img_scores)
