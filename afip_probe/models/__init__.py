"""Model adapters: find decoder layers, image-token positions and patch grids; load checkpoints.

Example:
    >>> from afip_probe.models import tiny, adapter_for
    >>> model, processor = tiny.tiny_llava()
    >>> adapter_for(model, processor).family
    'llava'
"""

from __future__ import annotations

from typing import Any

from .base import SUPPORTED_FAMILIES, ImageLayout, ModelAdapter, read_image_token_id
from .llava import LlavaAdapter
from .loading import LoadedModel, load
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


__all__ = [
    "ADAPTERS",
    "SUPPORTED_FAMILIES",
    "ImageLayout",
    "LoadedModel",
    "ModelAdapter",
    "adapter_for",
    "load",
    "read_image_token_id",
]
