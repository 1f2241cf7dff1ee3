"""afip-probe: record, measure and correct VLM attention to study object hallucination.

The public API is these top-level names (the `afip-probe` commands wrap the same functions):

- models: `load` (a hub id, a local folder or ``"organism"``) returns a `LoadedModel` (``.generate``);
  `organism_scenes` draws the bundled organism's scenes (a COCO-format dataset);
- tracing: `trace` (a recorder, with or without ``with``), `trace_images` (many images into a trace store),
  `open_store`, `correct` and `intercept` (correctors such as `AFIP`), `compare` (correctors off and on),
  `stream` (a caption with live risks);
- analysis: `token_table`, `chair`, `figures` (the Findings 1–2), `heatmap`, `explore` (the explorer);
- detectors: `train_detector`, `evaluate_detectors` (every published per-token signal side by side).

Everything is imported lazily: ``import afip_probe`` loads no torch, and the analysis functions and
``afip_probe.store``, ``afip_probe.metrics`` and ``afip_probe.plots`` work where torch is not installed.

Example:
    >>> import afip_probe as ap
    >>> m = ap.load("organism", progress=False)
    >>> with ap.trace(m) as rec:
    ...     caption = m.generate(ap.organism_scenes(1, progress=False).images[0], max_new_tokens=4)
    >>> rec.traces[0].head["var"].shape              # [T, L, H]: 4 tokens, 4 layers, 4 heads
    (4, 4, 4)
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .errors import AfipError, AfipWarning

#: public name -> (module, attribute); resolved on first use
_LAZY = {
    "load": ("afip_probe.api", "load"),
    "organism_scenes": ("afip_probe.api", "organism_scenes"),
    "trace": ("afip_probe.hooks", "trace"),
    "trace_images": ("afip_probe.api", "trace_images"),
    "open_store": ("afip_probe.api", "open_store"),
    "correct": ("afip_probe.correctors", "correct"),
    "intercept": ("afip_probe.hooks", "intercept"),
    "compare": ("afip_probe.api", "compare"),
    "stream": ("afip_probe.pipelines.streaming", "stream"),
    "token_table": ("afip_probe.api", "token_table"),
    "chair": ("afip_probe.api", "chair"),
    "figures": ("afip_probe.api", "figures"),
    "heatmap": ("afip_probe.api", "heatmap"),
    "explore": ("afip_probe.api", "explore"),
    "train_detector": ("afip_probe.api", "train_detector"),
    "evaluate_detectors": ("afip_probe.api", "evaluate_detectors"),
    "AFIP": ("afip_probe.correctors", "AFIP"),
    "PAI": ("afip_probe.correctors", "PAI"),
    "HGAI": ("afip_probe.correctors", "HGAI"),
    "LoadedModel": ("afip_probe.models", "LoadedModel"),
    "Recorder": ("afip_probe.hooks", "Recorder"),
    "SampleTrace": ("afip_probe.records", "SampleTrace"),
    "TraceStore": ("afip_probe.store", "TraceStore"),
    "RecordConfig": ("afip_probe.records", "RecordConfig"),
    "GenerationSettings": ("afip_probe.pipelines.settings", "GenerationSettings"),
}
_SUBPACKAGES = ("records", "store", "metrics", "plots", "models", "hooks", "correctors", "organism", "pipelines")

__all__ = ["AfipError", "AfipWarning", "__version__", *_LAZY, *_SUBPACKAGES]


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
