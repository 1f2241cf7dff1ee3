"""Which adapter serves which model: family-specific ones by `model_type`, else the generic one.

Example:
    >>> from afip_probe.models import tiny
    >>> model, processor = tiny.tiny_llava()
    >>> type(adapter_for(model, processor)).__name__
    'LlavaAdapter'
"""

from __future__ import annotations

from typing import Any

from .base import ModelAdapter
from .llava import LlavaAdapter
from .qwen2_vl import Qwen25VLAdapter, Qwen2VLAdapter

#: model_type of the top-level config -> adapter class
ADAPTERS: dict[str, type[ModelAdapter]] = {
    "llava": LlavaAdapter,
    "qwen2_vl": Qwen2VLAdapter,
    "qwen2_5_vl": Qwen25VLAdapter,
}


def adapter_for(model: Any, processor: Any = None) -> ModelAdapter:
    """The adapter for `model`: a family-specific one when known, else the generic one."""
    cls = ADAPTERS.get(getattr(model.config, "model_type", ""), ModelAdapter)
    return cls(model, processor)
