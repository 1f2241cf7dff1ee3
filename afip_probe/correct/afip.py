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
    >>> from afip_probe.correct import AFIP
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

NEG_INF = float("-inf")


def _layer_set(layers: Iterable[int] | None) -> frozenset[int] | None:
    return None if layers is None else frozenset(int(x) for x in layers)


@dataclass
class AFIP:
    """AFIP corrector settings (α, γ, k, τ, W, layers, switches); pass it to `afip_probe.correct`.

    ``layers=None`` means ``range(5, L)`` (the paper's l_e = 5) on models deeper than 5 layers and
    the upper half ``range(L // 2, L)`` on shallower ones (such as the organism).
    """

    alpha: float = 0.1
    gamma: float = 0.1
    k: int = 6
    tau: float = 0.5
    window: int = 8
    layers: Iterable[int] | None = None
    head_correction: bool = True
    history: bool = True
    gate: bool = True
    avg_divisor: str = "H"  # "H" as printed in the paper, or "k"
    _layers: frozenset[int] | None = field(init=False, repr=False, default=None)
    _hist: dict[int, list[torch.Tensor]] = field(init=False, repr=False, default_factory=dict)
    _run: tuple[int, int] = field(init=False, repr=False, default=(-1, -1))

    name = "afip"

    def __post_init__(self) -> None:
        if self.avg_divisor not in ("H", "k"):
            raise AfipError(f"avg_divisor must be 'H' or 'k', not {self.avg_divisor!r}")
        if self.k < 1 or self.window < 1:
            raise AfipError(f"AFIP needs k >= 1 and window >= 1 (got k={self.k}, window={self.window})")
        self._layers = _layer_set(self.layers)

    def layer_set(self, num_layers: int) -> frozenset[int]:
        if self._layers is not None:
            return self._layers
        start = 5 if num_layers > 5 else num_layers // 2
        return frozenset(range(start, num_layers))

    # ------------------------------------------------------------------ the modifier protocol
    def modify(self, layer: int, scores: torch.Tensor, context: Any) -> torch.Tensor | None:
        run = (context.run, id(context.image_index))
        if run != self._run:  # a new generate() call: forget the previous history
            self._hist, self._run = {}, run
        if layer not in self.layer_set(context.num_layers):
            return None
        index = context.image_index  # gather index of the image keys, [B, n]
        img = scores.gather(-1, index.index[:, None, :].expand(-1, scores.shape[1], -1))  # [B, H, n]
        hist = self._hist.setdefault(layer, [])
        past = hist[-self.window:]  # rows of steps t-len(past) .. t-1, oldest first
        hist.append(img)
        if len(hist) > self.window:
            del hist[0]
        if not (self.head_correction or self.history):
            return None
        delta = correction(scores, img, index.valid, past, context.is_image, context.allowed, self)
        if delta is None:
            return None
        return scores.scatter_add(-1, index.index[:, None, :].expand_as(delta), delta)


def correction(scores: torch.Tensor, img: torch.Tensor, valid: torch.Tensor, past: list[torch.Tensor],
               is_image: torch.Tensor, allowed: torch.Tensor, cfg: AFIP) -> torch.Tensor | None:
    """G·(Δ1 + Δ2) on the image keys, [B, H, n] (zero on padded image slots), or None if all gates are shut."""
    b, h, kv = scores.shape
    gate = torch.ones(b, h, dtype=torch.bool, device=scores.device)  # [B, H]
    if cfg.gate:
        text_ok = allowed & ~is_image  # [B, kv], a new tensor
        text_ok[:, -1] = False  # the query's own key
        t_max = scores.masked_fill(~text_ok[:, None, :], NEG_INF).amax(-1)  # [B, H]
        v_max = img.masked_fill(~valid[:, None, :], NEG_INF).amax(-1)  # [B, H]
        gate = (t_max - v_max) < cfg.tau
        if not bool(gate.any()):
            return None
    delta = torch.zeros_like(img)  # [B, H, n]
    if cfg.head_correction:
        mag = img.abs().masked_fill(~valid[:, None, :], 0.0)  # [B, H, n]
        k = min(cfg.k, h)
        top = mag.amax(-1).topk(k, dim=-1).indices  # [B, k]
        chosen = torch.zeros(b, h, 1, dtype=mag.dtype, device=mag.device).scatter_(1, top[:, :, None], 1.0)
        div = h if cfg.avg_divisor == "H" else k
        avg = (mag * chosen).sum(1) / div  # [B, n]
        var = (((mag - avg[:, None, :]) ** 2) * chosen).sum(1) / div  # [B, n]
        delta = delta + (avg - cfg.alpha * var)[:, None, :]
    if cfg.history and past:
        m = len(past)
        prev_keys = scores[:, :, kv - 1 - m: kv - 1].flip(-1)  # [B, H, m], j = 0 is key q-1 (step t-1)
        r = prev_keys.argmax(-1)  # [B, H]
        stack = torch.stack(past[::-1], dim=2)  # [B, H, m, n], j = 0 is step t-1
        chosen_rows = stack.gather(2, r[:, :, None, None].expand(-1, -1, 1, stack.shape[-1])).squeeze(2)
        delta = delta + cfg.gamma * chosen_rows
    delta = delta * gate[:, :, None] * valid[:, None, :]
    return delta
