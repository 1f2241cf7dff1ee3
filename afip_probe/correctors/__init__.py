"""Attention correctors (docs/design.md §7): AFIP and the PAI/HGAI baselines, as interceptor score modifiers.

`correct(model, *correctors)` (also ``afip_probe.correct``) switches the correctors on until the
returned `Intervention` is closed or its ``with`` block ends; nested in (or around)
`afip_probe.trace`, the trace records both the unmodified and the corrected rows.

Example:
    >>> import afip_probe
    >>> from afip_probe.correctors import AFIP, parse_spec
    >>> parse_spec("afip:alpha=0.2,gamma=0.05,layers=2-4")
    AFIP(alpha=0.2, gamma=0.05, k=6, tau=0.5, window=8, layers=Layers('2-4'), head_correction=True, history=True, gate=True, avg_divisor='H')
    >>> from afip_probe.models import tiny, adapter_for
    >>> model, processor = tiny.tiny_llava()
    >>> inputs = adapter_for(model, processor).build_inputs(tiny.random_images(1), "describe")
    >>> with afip_probe.correct(model, AFIP(layers=[1])):
    ...     out = model.generate(**inputs, max_new_tokens=3)
    >>> fix = afip_probe.correct(model, AFIP(layers=[1]))   # without `with`, e.g. in a notebook
    >>> out = model.generate(**inputs, max_new_tokens=3); fix.close()
"""

from __future__ import annotations

from typing import Any

from ..hooks import Intervention, intercept
from .afip import AFIP
from .baselines import HGAI, PAI
from .spec import CORRECTORS, parse_spec

__all__ = ["AFIP", "PAI", "HGAI", "CORRECTORS", "Intervention", "parse_spec", "correct"]


def correct(model: Any, *correctors: Any, processor: Any = None) -> Intervention:
    """Run ``model.generate()`` with the given correctors (score modifiers) on until closed."""
    return intercept(model, list(correctors), processor=processor)
