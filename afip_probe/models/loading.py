"""Load a vision-language model and its processor from a hub id or a local directory.

Example:
    >>> import afip_probe
    >>> m = afip_probe.load("organism", progress=False)      # the bundled model organism, on the CPU here
    >>> m.name, m.adapter.family
    ('organism', 'llava')
    >>> scene = afip_probe.organism_scenes(1, progress=False).images[0]
    >>> len(m.generate(scene, max_new_tokens=8).split()) > 0
    True
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from ..errors import AfipError, UnsupportedModelError, option
from ..images import load_image
from ..organism import checkpoint_dir
from ..records import DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT, ORGANISM, model_name
from .base import SUPPORTED_FAMILIES, ModelAdapter, read_image_token_id, refuse_cross_attention
from .compat import patch_llama4_output
from .registry import adapter_for

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LoadedModel:
    """A model ready to trace: the module, its processor and its adapter (`load` returns one); `name` is
    how every output names it (`afip_probe.records.model_name`: ``organism``, a local folder's name, a hub id).

    Pass it to `afip_probe.trace`, `afip_probe.trace_images` or `afip_probe.correct` as it is."""

    model: Any
    processor: Any
    adapter: ModelAdapter
    name: str

    def generate(self, images: Any, prompt: str = DEFAULT_PROMPT, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 **generate_kwargs: Any) -> Any:
        """The model's reply to `prompt` about `images`: one image (a PIL image or a path) gives one string;
        a list gives one string per entry (an entry that is itself a list of images is one prompt showing all
        of them). Greedy unless ``do_sample=True``; `generate_kwargs` go to ``model.generate``.

        Inside ``afip_probe.trace(m)`` the generation is recorded."""
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        opened = [[_image(x) for x in item] if isinstance(item, (list, tuple)) else _image(item) for item in batch]
        device = next(self.model.parameters()).device
        inputs = self.adapter.build_inputs(opened, prompt, device=device)
        out = self.model.generate(**inputs, **{"max_new_tokens": max_new_tokens, "do_sample": False,
                                               **generate_kwargs})
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        texts = [t.strip() for t in tokenizer.batch_decode(sequences[:, inputs["input_ids"].shape[1]:],
                                                           skip_special_tokens=True)]
        return texts[0] if single else texts


def _image(item: Any) -> Any:
    """A PIL image as it is; a path opened (`afip_probe.images.load_image`)."""
    return load_image(Path(item)) if isinstance(item, (str, os.PathLike)) else item


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise AfipError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AfipError(f"device {device!r} asked for, but no CUDA GPU is available; use {option('device', 'cpu')}")
    return dev


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype in (None, "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise AfipError(f"unknown dtype {dtype!r}: use one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load(
    name_or_path: str = ORGANISM,
    device: str | None = "auto",
    dtype: str | None = "auto",
    trust_remote_code: bool = False,
    progress: bool = True,
) -> LoadedModel:
    """Load a supported VLM + processor and wrap them with their adapter.

    `name_or_path` is a hub id (e.g. ``llava-hf/llava-1.5-7b-hf``), a local directory written by
    ``save_pretrained``, or ``organism`` for the bundled model organism. `device` ``auto`` takes the GPU
    when there is one; `dtype` ``auto`` is float16 on a GPU, float32 on the CPU. The model keeps the
    attention implementation transformers gives it (tracing never changes it). `progress=False`
    hides the weight-loading bar.
    """
    with _progress_bars(progress):
        return _load(name_or_path, device, dtype, trust_remote_code)


@contextlib.contextmanager
def _progress_bars(on: bool) -> Iterator[None]:
    """transformers' own progress bars (weight loading) on or off while loading."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if on else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def _load(name_or_path: str, device: str | None, dtype: str | None, trust_remote_code: bool) -> LoadedModel:
    given = name_or_path
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
    return LoadedModel(model=model, processor=processor, adapter=adapter_for(model, processor),
                       name=model_name(given))
