"""Load a vision-language model and its processor from a hub id or a local directory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from ..errors import AfipError, UnsupportedModelError
from ..organism import checkpoint_dir
from ..records import ORGANISM, model_name
from .base import SUPPORTED_FAMILIES, ModelAdapter, read_image_token_id, refuse_cross_attention
from .compat import patch_llama4_output
from .registry import adapter_for

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LoadedModel:
    """A model ready to trace: the module, its processor and its adapter, and its `name` in every output
    (`afip_probe.records.model_name`: ``organism``, a local folder's name, or the hub id)."""

    model: Any
    processor: Any
    adapter: ModelAdapter
    name: str


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise AfipError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AfipError(f"device {device!r} asked for, but no CUDA GPU is available; use --device cpu")
    return dev


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype in (None, "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise AfipError(f"unknown dtype {dtype!r}: use one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load(
    name_or_path: str,
    device: str | None = "auto",
    dtype: str | None = "auto",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a supported VLM + processor and wrap them with their adapter.

    `name_or_path` is a hub id (e.g. ``llava-hf/llava-1.5-7b-hf``), a local directory written by
    ``save_pretrained``, or ``organism`` for the bundled model organism. Outputs name the model
    `model_name(name_or_path)`, never by an install path.
    """
    name = model_name(name_or_path)
    if name_or_path == ORGANISM:  # the bundled checkpoint (docs/design.md §9)
        name_or_path = str(checkpoint_dir())
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise AfipError(
            f"cannot load a model config from {name_or_path!r}: give a local directory written by "
            f"save_pretrained or a hub id that is cached on this machine ({str(e).splitlines()[0]})"
        ) from e
    except ValueError as e:
        raise UnsupportedModelError(f"{name_or_path!r}: {str(e).splitlines()[0]}") from e
    refuse_cross_attention(config, repr(name_or_path))
    if getattr(config, "model_type", "") == "llama4":
        patch_llama4_output()  # transformers 5.24's Llama 4 forward cannot run without it (models/compat.py)
    if read_image_token_id(config) is None or getattr(config, "vision_config", None) is None:
        raise UnsupportedModelError(
            f"{name_or_path!r} ({getattr(config, 'model_type', '?')}) is not a vision-language model with image "
            "tokens. Supported: " + "; ".join(SUPPORTED_FAMILIES)
        )
    try:
        # the default attention: SDPA where the family supports it, eager where it cannot (softcapping);
        # the interceptor replaces the decoder's either way
        model = AutoModelForImageTextToText.from_pretrained(
            name_or_path, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
    except ValueError as e:
        raise UnsupportedModelError(
            f"{name_or_path!r}: no image-text-to-text model class for it ({str(e).splitlines()[0]}). Supported: "
            + "; ".join(SUPPORTED_FAMILIES)
        ) from e
    model.to(dev).eval()
    processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    return LoadedModel(model=model, processor=processor, adapter=adapter_for(model, processor), name=name)
