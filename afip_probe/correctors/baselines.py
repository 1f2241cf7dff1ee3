"""Baseline correctors on the same interface as AFIP, so comparisons are not against AFIP alone.

- `PAI` (Liu et al. 2024, "Paying More Attention to Image"): ``B_i + α|B_i|`` on the image keys of the
  last row, per head, in the chosen layers.
- `HGAI`-style: ``B^(h)_i + α · mean_h |B^(h)_i|``, the head-averaged magnitude added to every head.

Example:
    >>> import torch
    >>> from afip_probe.correctors import PAI
    >>> from afip_probe.hooks.rowstats import image_index
    >>> from afip_probe.hooks.interceptor import RowContext
    >>> is_image = torch.tensor([[False, True, True, False]])
    >>> ctx = RowContext(step=1, is_image=is_image, allowed=torch.ones(1, 4, dtype=torch.bool),
    ...                  image_index=image_index(is_image), num_layers=2, run=1)
    >>> PAI(alpha=0.5, layers=[0]).modify(0, torch.tensor([[[1.0, -2.0, 2.0, 3.0]]]), ctx)
    tensor([[[ 1., -1.,  3.,  3.]]])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from ..records import Layers


@dataclass
class _ImageBoost:
    alpha: float = 0.5
    layers: Layers | str | Iterable[int] | None = None  # None: range(2, L), as PAI's LLaVA setting
    _layers: Layers | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._layers = None if self.layers is None else Layers(self.layers)

    def layer_set(self, num_layers: int) -> frozenset[int]:
        if self._layers is not None:
            return self._layers.resolve(num_layers)
        return frozenset(range(min(2, num_layers - 1), num_layers))

    def boost(self, img: torch.Tensor) -> torch.Tensor:  # [B, H, n] -> [B, H, n]
        raise NotImplementedError

    def modify(self, layer: int, scores: torch.Tensor, context: Any) -> torch.Tensor | None:
        if layer not in self.layer_set(context.num_layers) or self.alpha == 0:
            return None
        index = context.image_index
        gather = index.index[:, None, :].expand(-1, scores.shape[1], -1)  # [B, H, n]
        img = scores.gather(-1, gather)
        delta = self.boost(img) * index.valid[:, None, :]
        return scores.scatter_add(-1, gather, delta)


@dataclass
class PAI(_ImageBoost):
    """PAI-style image attention excitation: ``B_i + α|B_i|`` on image keys."""

    name = "pai"

    def boost(self, img: torch.Tensor) -> torch.Tensor:
        return self.alpha * img.abs()


@dataclass
class HGAI(_ImageBoost):
    """HGAI-style head-averaged boost: ``B^(h)_i + α · mean_h |B^(h)_i|`` on image keys."""

    name = "hgai"

    def boost(self, img: torch.Tensor) -> torch.Tensor:
        return self.alpha * img.abs().mean(1, keepdim=True).expand_as(img)
