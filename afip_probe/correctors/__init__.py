"""Attention correctors (DESIGN §7): AFIP and the PAI/HGAI baselines, as interceptor score modifiers.

`afip_probe.correct(model, *correctors)` is a context manager: inside it, ``model.generate()`` runs
with the correctors on; nested in (or around) `afip_probe.trace`, the trace records both the
unmodified and the corrected rows.

Example:
    >>> import afip_probe
    >>> from afip_probe.correct import AFIP, parse_spec
    >>> parse_spec("afip:alpha=0.2,gamma=0.05,layers=2-4")
    AFIP(alpha=0.2, gamma=0.05, k=6, tau=0.5, window=8, layers=range(2, 4), head_correction=True, history=True, gate=True, avg_divisor='H')
    >>> from afip_probe.models import tiny, adapter_for
    >>> model, processor = tiny.tiny_llava()
    >>> inputs = adapter_for(model, processor).build_inputs(tiny.random_images(1), "describe")
    >>> with afip_probe.correct(model, AFIP(layers=[1])):
    ...     out = model.generate(**inputs, max_new_tokens=3)
"""

from __future__ import annotations

import contextlib
import sys
import types
from typing import Any, Iterator

from .afip import AFIP
from .baselines import HGAI, PAI
from .spec import CORRECTORS, parse_spec

__all__ = ["AFIP", "PAI", "HGAI", "CORRECTORS", "parse_spec", "correct"]


@contextlib.contextmanager
def correct(model: Any, *correctors: Any, processor: Any = None) -> Iterator[None]:
    """Run ``model.generate()`` with the given correctors (score modifiers) on."""
    from ..hooks import intercept

    with intercept(model, list(correctors), processor=processor):
        yield


class _CallableModule(types.ModuleType):
    """Lets ``afip_probe.correct(model, AFIP())`` work while ``afip_probe.correct.AFIP`` stays importable."""

    def __call__(self, model: Any, *correctors: Any, processor: Any = None) -> Any:
        return correct(model, *correctors, processor=processor)


sys.modules[__name__].__class__ = _CallableModule
