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
from .grids import Mistral3Adapter, PaliGemmaAdapter
from .lfm2_vl import Lfm2VlAdapter
from .llama4 import Llama4Adapter
from .llava import LlavaAdapter
from .llava_next import LlavaNextAdapter, LlavaOnevisionAdapter
from .qwen2_vl import Glm4vAdapter, Qwen25VLAdapter, Qwen2VLAdapter, Qwen3VLAdapter
from .tiled import AyaVisionAdapter, Gemma3Adapter, GotOcr2CropsAdapter, Idefics3Adapter, SmolVLMAdapter

#: model_type of the top-level config -> adapter class (the families table: docs/families.md)
ADAPTERS: dict[str, type[ModelAdapter]] = {
    "llava": LlavaAdapter,
    "llava_next": LlavaNextAdapter,
    "llava_onevision": LlavaOnevisionAdapter,
    "qwen2_vl": Qwen2VLAdapter,
    "qwen2_5_vl": Qwen25VLAdapter,
    "qwen3_vl": Qwen3VLAdapter,
    "qwen3_vl_moe": Qwen3VLAdapter,
    "glm4v": Glm4vAdapter,
    "glm4v_moe": Glm4vAdapter,
    "gemma3": Gemma3Adapter,
    "paligemma": PaliGemmaAdapter,
    "idefics3": Idefics3Adapter,
    "smolvlm": SmolVLMAdapter,
    "internvl": GotOcr2CropsAdapter,
    "aya_vision": AyaVisionAdapter,
    "mistral3": Mistral3Adapter,
    "llama4": Llama4Adapter,
    "lfm2_vl": Lfm2VlAdapter,
}


def adapter_for(model: Any, processor: Any = None) -> ModelAdapter:
    """The adapter for `model`: a family-specific one when known, else the generic one."""
    cls = ADAPTERS.get(getattr(model.config, "model_type", ""), ModelAdapter)
    return cls(model, processor)
