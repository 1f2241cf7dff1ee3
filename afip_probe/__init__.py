"""afip-probe: record, measure and correct VLM attention to study object hallucination.

Everything is imported lazily: ``import afip_probe`` loads no torch, and ``afip_probe.store``,
``afip_probe.metrics`` and ``afip_probe.plots`` work where torch and transformers are not installed.

Example:
    >>> import afip_probe
    >>> from afip_probe.models import tiny, adapter_for
    >>> model, processor = tiny.tiny_llava()
    >>> inputs = adapter_for(model, processor).build_inputs(tiny.random_images(1), "describe")
    >>> with afip_probe.trace(model, processor) as rec:
    ...     _ = model.generate(**inputs, max_new_tokens=2)
    >>> rec.traces[0].head["var"].shape
    (2, 2, 4)
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .errors import AfipError

#: public name -> (module, attribute); resolved on first use
_LAZY = {
    "trace": ("afip_probe.hooks", "trace"),
    "intercept": ("afip_probe.hooks", "intercept"),
    "correct": ("afip_probe.correctors", "correct"),
    "RecordConfig": ("afip_probe.records", "RecordConfig"),
    "SampleTrace": ("afip_probe.records", "SampleTrace"),
    "GenerationSettings": ("afip_probe.pipelines.settings", "GenerationSettings"),
    "explore": ("afip_probe.plots.explorer", "explore"),
    "stream": ("afip_probe.pipelines.streaming", "stream"),
}
_SUBPACKAGES = ("records", "store", "metrics", "plots", "models", "hooks", "correctors", "organism", "pipelines")

__all__ = ["AfipError", "__version__", *_LAZY, *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"afip_probe.{name}")
    raise AttributeError(f"module 'afip_probe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
