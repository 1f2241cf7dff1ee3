"""The AFIP attention corrector (DESIGN §7, Eqs. 5–12) as a score modifier for the interceptor.

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
        if layer not in self.layer_set(context.num_layers):
            return None
        index = context.image_index
        img = index.gather(scores)  # [B, H, n] C_t, unmodified (a view when the image keys form a block)
        ring, written = self._hist.get(layer, (None, 0))
        if ring is None or ring.shape != (*img.shape[:2], self.window, img.shape[-1]):
            ring, written = img.new_empty(*img.shape[:2], self.window, img.shape[-1]), 0
        delta = None
        if self.head_correction or self.history:
            delta = correction(scores, img, ring, min(written, self.window), written, context, self)
        ring[:, :, written % self.window].copy_(img)  # after reading: this slot may hold the oldest row
        self._hist[layer] = (ring, written + 1)
        if delta is None:
            return None
        out = scores.clone()
        if index.block is not None:
            out[..., index.block[0]: index.block[1]].add_(delta)  # in place on the slice (no write-back copy)
        else:
            out.scatter_add_(-1, index.index[:, None, :].expand_as(delta), delta)
        return out


_OFFSETS: dict[tuple[int, int, torch.device], torch.Tensor] = {}


def _offsets(b: int, stride: int, device: torch.device) -> torch.Tensor:
    """[B, 1] row offsets 0, stride, 2·stride, ... (cached: built once per shape)."""
    key = (b, stride, device)
    if key not in _OFFSETS:
        _OFFSETS[key] = torch.arange(b, device=device)[:, None] * stride
    return _OFFSETS[key]


def _take_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x[b, rows[b, j]] for x [B, H, n] (contiguous) and rows [B, k] -> [B, k, n] (one index_select)."""
    b, h, n = x.shape
    flat = rows + _offsets(b, h, rows.device)  # [B, k]
    return x.view(b * h, n).index_select(0, flat.view(-1)).view(b, -1, n)


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


def correction(scores: torch.Tensor, img: torch.Tensor, ring: torch.Tensor, m: int, written: int,
               context: Any, cfg: AFIP) -> torch.Tensor | None:
    """G·(Δ1 + Δ2) on the image keys, [B, H, n] (zero on padded image slots and where the gate is shut), or
    None when the switches leave nothing to add.

    img [B, H, n] this step's image scores; ring [B, H, W, n] the previous rows (`written` so far, the
    last `m` of them usable).
    """
    b, h, n = img.shape
    valid = context.image_index.valid  # [B, n]
    ragged = context.image_index.ragged
    gate = None
    if cfg.gate:
        v_max = (img.masked_fill(~valid[:, None, :], NEG_INF) if ragged else img).amax(-1)  # [B, H]
        # no early exit when every gate is shut: testing that would wait for the device (a sync per layer)
        gate = (text_max(scores, context) - v_max) < cfg.tau
    delta = None
    if cfg.head_correction:
        mag = img.abs()  # [B, H, n]
        if ragged:
            mag = mag.masked_fill(~valid[:, None, :], 0.0)
        k = min(cfg.k, h)
        top = mag.amax(-1).topk(k, dim=-1).indices  # [B, k]
        chosen = _take_rows(mag, top)  # [B, k, n]
        div = h if cfg.avg_divisor == "H" else k
        avg = chosen.sum(1) / div  # [B, n]
        var = (chosen - avg[:, None, :]).square().sum(1).div_(div)
        delta = torch.add(avg, var, alpha=-cfg.alpha)[:, None, :]  # [B, 1, n] Δ1, the same for every head
    if cfg.history and m:
        kv = scores.shape[-1]
        j = scores[:, :, kv - 1 - m: kv - 1].flip(-1).argmax(-1)  # [B, H]; j = 0 is key q-1 (step t-1)
        w = ring.shape[2]
        slot = (written - 1 - j) % w  # [B, H] ring slot of step t-1-j
        chosen = _take_rows(ring.view(b, h * w, n), slot + _offsets(h, w, j.device).view(1, h))  # [B, H, n]
        delta = chosen * cfg.gamma if delta is None else torch.add(delta, chosen, alpha=cfg.gamma)
    if delta is None:
        return None
    if gate is not None:
        delta = delta * gate[:, :, None].to(delta.dtype)
    elif delta.shape[1] != h:
        delta = delta.expand(b, h, n)
    if ragged:
        delta = delta * valid[:, None, :]
    return delta
