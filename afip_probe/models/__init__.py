"""Model adapters: find decoder layers, image-token positions and patch grids; load checkpoints.

Example:
    >>> from afip_probe.models import tiny, adapter_for
    >>> model, processor = tiny.tiny_llava()
    >>> adapter_for(model, processor).family
    'llava'
"""

from __future__ import annotations

from .base import SUPPORTED_FAMILIES, ImageLayout, ModelAdapter, read_image_token_id
from .loading import LoadedModel, load
from .registry import ADAPTERS, adapter_for

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
