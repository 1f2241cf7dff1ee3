"""The AFIP attention corrector (docs/design.md §7, Eqs. 5–12) as a score modifier for the interceptor.

At every generation step, for layers l in `layers` and the image keys I of the last query row:

1. B = pre-softmax scores of all heads (Eq. 5).
2. Top-k heads by ``max_{i∈I} |B^(h)_i|``.
3. ``Avg_i = (1/D) Σ_{h∈top-k} |B^(h)_i|``, ``Var_i = (1/D) Σ_{h∈top-k} (|B^(h)_i| − Avg_i)²`` with
   D = H as printed (``avg_divisor="H"``) or D = k; ``Δ1_i = Avg_i − α Var_i`` (the same for every head).
4. History: the unmodified image rows C_s of the previous W steps s = t−1−j (j < W, s ≥ 0), per
   (l, h); ``r = argmax_j B_{q−1−j}`` over the keys of those steps' tokens; ``Δ2^(h)_i = γ C^(h)_{t−1−r, i}``.
5. Gate per (l, h): ``G = [T − V < τ]`` with V the image maximum and T the non-image maximum (self
   excluded) of the unmodified B.
6. ``B̃^(h)_i = B^(h)_i + G (Δ1_i + Δ2^(h)_i)``; softmax over all keys; the output comes from B̃.

Switches (the paper's ablation): ``gate`` (S1, off: G = 1), ``history`` (S2, off: Δ2 = 0),
``head_correction`` (S3, off: Δ1 = 0). With all three off the row is unchanged.

Example:
    >>> import afip_probe
    >>> from afip_probe.correctors import AFIP
    >>> from afip_probe.models import tiny, adapter_for
    >>> model, processor = tiny.tiny_llava(layers=2)
    >>> inputs = adapter_for(model, processor).build_inputs(tiny.random_images(1), "describe")
    >>> with afip_probe.correct(model, AFIP(alpha=0.1, gamma=0.2, k=2, layers=range(1, 2))):
    ...     out = model.generate(**inputs, max_new_tokens=4)
    >>> out.shape[0]
    1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from ..errors import AfipError
from ..records import Layers
from ..hooks.rowstats import text_keys

NEG_INF = float("-inf")


@dataclass
class AFIP:
    """AFIP corrector settings (α, γ, k, τ, W, layers, switches); pass it to `afip_probe.correct`.

    ``layers=None`` means ``range(5, L)`` (the paper's l_e = 5) on models deeper than 5 layers and
    the upper half ``range(L // 2, L)`` on shallower ones (such as the organism); else `layers` is
    text such as ``"5-31"`` (inclusive) or ``"5-"``, or ints (`afip_probe.records.Layers`).
    """

    alpha: float = 0.1
    gamma: float = 0.1
    k: int = 6
    tau: float = 0.5
    window: int = 8
    layers: Layers | str | Iterable[int] | None = None
    head_correction: bool = True
    history: bool = True
    gate: bool = True
    avg_divisor: str = "H"  # "H" as printed in the paper, or "k"
    _layers: Layers | None = field(init=False, repr=False, default=None)
    # per layer: the unmodified image rows of the last W steps, [B, H, W, n] (a ring), and rows written
    _hist: dict[int, tuple[torch.Tensor, int]] = field(init=False, repr=False, default_factory=dict)
    _run: int = field(init=False, repr=False, default=-1)
    _acting: frozenset[int] = field(init=False, repr=False, default=frozenset())  # layer_set, once per run

    name = "afip"

    def __post_init__(self) -> None:
        if self.avg_divisor not in ("H", "k"):
            raise AfipError(f"avg_divisor must be 'H' or 'k', not {self.avg_divisor!r}")
        if self.k < 1 or self.window < 1:
            raise AfipError(f"AFIP needs k >= 1 and window >= 1 (got k={self.k}, window={self.window})")
        self._layers = None if self.layers is None else Layers(self.layers)

    def layer_set(self, num_layers: int) -> frozenset[int]:
        """The layers corrected in a model of `num_layers` layers (one it does not have raises)."""
        if self._layers is not None:
            return self._layers.resolve(num_layers)
        start = 5 if num_layers > 5 else num_layers // 2
        return frozenset(range(start, num_layers))

    # ------------------------------------------------------------------ the modifier protocol
    def modify(self, layer: int, scores: torch.Tensor, context: Any) -> torch.Tensor | None:
        run = context.run
        if run != self._run:  # a new generate() call: forget the previous history
            self._hist, self._run = {}, run
            self._acting = self.layer_set(context.num_layers)
        if layer not in self._acting:
            return None
        index = context.image_index
        img = index.gather(scores)  # [B, H, n] C_t, unmodified (a view when the image keys form a block)
        ring, written = self._hist.get(layer, (None, 0))
        if ring is None or ring.shape != (*img.shape[:2], self.window, img.shape[-1]):
            ring, written = img.new_empty(*img.shape[:2], self.window, img.shape[-1]), 0
        parts = correction(scores, img, ring, min(written, self.window), written, context, self)
        ring[:, :, written % self.window].copy_(img)  # after reading: this slot may hold the oldest row
        self._hist[layer] = (ring, written + 1)
        if parts is None:
            return None
        delta, gate = parts
        out = scores.clone()
        if index.block is not None:  # in place on the slice (no write-back copy); the gate multiplies as it adds
            target = out[..., index.block[0]: index.block[1]]
            target.add_(delta) if gate is None else target.addcmul_(delta, gate)
            return out
        full = delta.expand(*img.shape) if gate is None else delta * gate  # [B, H, n]
        if index.ragged:
            full = full * index.valid[:, None, :]  # nothing lands on a padded slot's key 0
        return out.scatter_add_(-1, index.index[:, None, :].expand_as(full), full)


# The corrector runs once per corrected layer and generated token on rows of a few thousand floats, so its
# cost is the number of tensor operations (a few microseconds each on a CPU, whatever their size). The
# helpers below keep that number low (21 per call with every switch on and one image block) and never read
# a tensor value on the host.

_SLOTS: dict[tuple[int, int, int, int, torch.device], torch.Tensor] = {}


def _ring_rows(bh: int, w: int, last: int, m: int, device: torch.device) -> torch.Tensor:
    """[m, bh] row numbers in a ring viewed as [bh·w, n]: entry [j, r] is row r's slot of the step j steps
    before the newest one, whose slot is `last` (cached: one small table per ring position)."""
    key = (bh, w, last, m, device)
    table = _SLOTS.get(key)
    if table is None:
        if len(_SLOTS) > 4096:
            _SLOTS.clear()
        slot = (last - torch.arange(m, device=device)) % w  # [m]
        table = _SLOTS[key] = slot[:, None] + torch.arange(bh, device=device)[None, :] * w
    return table


def text_max(scores: torch.Tensor, context: Any) -> torch.Tensor:
    """T: the maximum over allowed non-image keys, the query's own key excluded, [B, H] (-inf if none).

    `scores` [B, H, kv] are masked (-inf where the mask hides a key).
    """
    kv, index = scores.shape[-1], context.image_index
    if index.block is not None and index.block[1] < kv:
        start, stop = index.block
        parts = [p for p in (scores[..., :start], scores[..., stop: kv - 1]) if p.shape[-1]]
        if not parts:
            return scores.new_full(scores.shape[:-1], NEG_INF)
        top = parts[0].amax(-1)
        return top if len(parts) == 1 else torch.maximum(top, parts[1].amax(-1))
    text = context.text if context.text is not None else text_keys(context.allowed, context.is_image)  # [B, kv]
    return scores.masked_fill(~text[:, None, :], NEG_INF).amax(-1)


def open_gates(scores: torch.Tensor, img: torch.Tensor, context: Any, tau: float) -> torch.Tensor:
    """G = [T − V < τ] per (sample, head) as 1.0 / 0.0, [B, H] float; V the image maximum, T `text_max`.

    With one image block and τ > 0 this reads the maximum M over every key but the query's own instead of
    T: M = max(T, V), and [M − V < τ] = [T − V < τ] (both true when V ≥ T).
    """
    index = context.image_index
    v_max = (img.masked_fill(~index.valid[:, None, :], NEG_INF) if index.ragged else img).amax(-1)  # [B, H]
    kv = scores.shape[-1]
    if tau > 0 and index.block is not None and index.block[1] < kv:
        top = scores[..., : kv - 1].amax(-1)
    else:
        top = text_max(scores, context)
    return torch.sub(top, v_max).lt_(tau)  # a float tensor compared in place holds 1.0 / 0.0


def head_delta(img: torch.Tensor, context: Any, cfg: AFIP) -> torch.Tensor:
    """Δ1 = Avg − α Var over the top-k heads by max |B| (Eqs. 6–8), [B, n], the same for every head."""
    b, h, n = img.shape
    mag = img.abs()  # [B, H, n]
    if context.image_index.ragged:
        mag = mag.masked_fill(~context.image_index.valid[:, None, :], 0.0)
    k = min(cfg.k, h)
    top = mag.amax(-1).topk(k, dim=-1).indices  # [B, k]
    chosen = mag.gather(1, top[:, :, None].expand(b, k, n))  # [B, k, n], a new tensor
    div = h if cfg.avg_divisor == "H" else k
    avg = chosen.sum(1).div_(div)  # [B, n]
    spread = chosen.sub_(avg[:, None, :]).square_().sum(1)  # D · Var
    return torch.add(avg, spread, alpha=-cfg.alpha / div)


def history_rows(scores: torch.Tensor, ring: torch.Tensor, m: int, written: int) -> torch.Tensor:
    """C_{t−1−r} per (sample, head), [B, H, n]: r = argmax_j B_{q−1−j} over the last m steps' keys (Eqs. 9–10).

    Ties go to the most recent step (the flip makes j = 0 come first, and argmax takes the first).
    """
    b, h, w, n = ring.shape
    kv = scores.shape[-1]
    j = scores[:, :, kv - 1 - m: kv - 1].flip(-1).argmax(-1)  # [B, H]; j = 0 is key q-1 (step t-1)
    rows = _ring_rows(b * h, w, (written - 1) % w, m, j.device).gather(0, j.view(1, b * h))  # [1, B·H]
    return ring.view(b * h * w, n).index_select(0, rows.view(-1)).view(b, h, n)


def correction(scores: torch.Tensor, img: torch.Tensor, ring: torch.Tensor, m: int, written: int,
               context: Any, cfg: AFIP) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(Δ1 + Δ2, G) on the image keys: Δ [B, 1|H, n] (one row for every head when only Δ1 is on) and the
    gate G [B, H, 1] as 1.0 / 0.0 (None when `gate` is off); None when the switches leave nothing to add.
    The correction is G·Δ (Eq. 12).

    img [B, H, n] this step's image scores; ring [B, H, W, n] the previous rows (`written` so far, the
    last `m` of them usable).
    """
    d1 = head_delta(img, context, cfg)[:, None, :] if cfg.head_correction else None  # [B, 1, n]
    past = history_rows(scores, ring, m, written) if cfg.history and m else None  # [B, H, n]
    if past is not None:
        delta = past.mul_(cfg.gamma) if d1 is None else torch.add(d1, past, alpha=cfg.gamma)
    elif d1 is not None:
        delta = d1
    else:
        return None
    # no early exit when every gate is shut: testing that would wait for the device (a sync per layer)
    gate = open_gates(scores, img, context, cfg.tau)[:, :, None] if cfg.gate else None  # [B, H, 1]
    return delta, gate
