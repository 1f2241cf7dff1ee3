"""What afip-probe needs to know about a vision-language model, whatever its family.

An adapter answers: which modules are the decoder's attention layers, how many heads and KV heads
they have, which token id marks an image patch, how the image tokens of one sample lie on the patch
grid, and how to build model inputs from (image, prompt) with the model's own chat template.

Example:
    >>> from afip_probe.models import tiny, adapter_for
    >>> model, processor = tiny.tiny_llava()
    >>> adapter = adapter_for(model, processor)
    >>> (adapter.family, adapter.num_layers, adapter.num_heads)
    ('llava', 2, 4)
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch

from ..errors import AfipError, UnsupportedModelError
from ..records.layout import ImageLayout, Tile, grid_region, processor_region, single_tile

SUPPORTED_FAMILIES = (
    "LLaVA-1.5, LLaVA-NeXT, LLaVA-OneVision",
    "Qwen2-VL, Qwen2.5-VL, Qwen3-VL (and MoE), GLM-4V",
    "Gemma 3, PaliGemma 1 and 2",
    "Idefics3, SmolVLM, InternVL, Aya Vision, Mistral 3",
    "Llama 4's decoder, LFM2-VL",
    "any other image-text-to-text model whose config has an image token id (generic adapter)",
)


def read_image_token_id(config: Any) -> int | None:
    """The image placeholder token id: `image_token_id`, falling back to `image_token_index`."""
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    return None


def refuse_cross_attention(config: Any, name: str) -> None:
    """Raise for a model that reads the image through cross-attention layers (Mllama) instead of image tokens."""
    text_config = getattr(config, "text_config", None) or config
    if getattr(text_config, "cross_attention_layers", None):
        raise UnsupportedModelError(
            f"{name} reads the image through cross-attention layers (Mllama / Llama 3.2 Vision), not through "
            "image tokens in the prompt: its self-attention rows have no image keys, so VAR, entropy and the gap "
            "would mean nothing, and afip-probe does not record cross-attention rows. Trace a model that puts "
            "image tokens in the prompt (see the README's model families table)"
        )


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, stacklevel=3)


def _attention_layer_numbers(text_config: Any, depth: int) -> list[int]:
    """The decoder layers that are self-attention layers: every layer, unless the config's `layer_types`
    names other kinds (convolution, linear attention, Mamba) for some of them."""
    types = getattr(text_config, "layer_types", None)
    if not types or len(types) != depth:
        return list(range(depth))
    return [i for i, kind in enumerate(types) if "attention" in str(kind) and "linear" not in str(kind)]


class ModelAdapter:
    """Base adapter. Subclasses set `family` and override `grids` when the grid is not square."""

    family = "generic"
    #: the family's image tokens form one square grid (the generic guess is then right; no warning)
    square_grid = False
    #: the processor resizes the whole image (no crop, no pad): the grid covers all of it
    covers_whole_image = False
    #: key of the decoder's sub-config (used to set the attention implementation per backbone)
    text_config_key: str | None = "text_config"

    def __init__(self, model: torch.nn.Module, processor: Any = None):
        self.model = model
        self.processor = processor
        config = model.config
        self.model_type = str(getattr(config, "model_type", type(model).__name__))
        self.image_token_id = read_image_token_id(config)
        if self.image_token_id is None:
            raise AfipError(
                f"{type(model).__name__} has no image token id in its config (image_token_id / "
                "image_token_index): it is not a vision-language model afip-probe can trace. Supported: "
                + "; ".join(SUPPORTED_FAMILIES)
            )
        text_config = getattr(config, "text_config", None) or config
        self.text_config = text_config
        refuse_cross_attention(config, type(model).__name__)
        self.num_heads = int(text_config.num_attention_heads)
        self.num_kv_heads = int(getattr(text_config, "num_key_value_heads", None) or self.num_heads)
        self.attention_modules = self._find_attention_modules()
        #: decoder layer number of each traced attention layer: all of them, or in a hybrid decoder (LFM2-VL,
        #: linear-attention layers) the attention layers only. Traces index layers 0..num_layers-1 in this order.
        self.decoder_layers = [int(m.layer_idx) for m in self.attention_modules]
        self.num_layers = len(self.attention_modules)
        self.decoder_depth = int(text_config.num_hidden_layers)  # all decoder layers, attention or not
        expected = _attention_layer_numbers(text_config, self.decoder_depth)
        if self.decoder_layers != expected:
            raise AfipError(
                f"found decoder attention modules in layers {self.decoder_layers} of {type(model).__name__}, "
                f"expected {expected} from its config; this architecture is not supported. Supported: "
                + "; ".join(SUPPORTED_FAMILIES)
            )

    # ------------------------------------------------------------------ structure
    @property
    def attn_implementation(self) -> str:
        """The attention implementation the decoder runs (``eager``, ``sdpa``, ``flex_attention``,
        ``flash_attention_2``, or a name registered with transformers' `AttentionInterface`): tracing keeps it."""
        config = getattr(self.attention_modules[0], "config", None) if self.attention_modules else None
        return str(getattr(config or self.text_config, "_attn_implementation", None))

    def decoder(self) -> torch.nn.Module:
        get = getattr(self.model, "get_decoder", None)
        decoder = get() if callable(get) else None
        if decoder is None:
            for name in ("language_model", "model"):
                decoder = getattr(self.model, name, None)
                if decoder is not None:
                    break
        if decoder is None:
            raise AfipError(f"cannot find the language decoder of {type(self.model).__name__}")
        return decoder

    def _find_attention_modules(self) -> list[torch.nn.Module]:
        """Decoder self-attention modules ordered by `layer_idx` (vision towers are left out)."""
        found: dict[int, torch.nn.Module] = {}
        for _, module in self.decoder().named_modules():
            idx = getattr(module, "layer_idx", None)
            if idx is None or not hasattr(module, "scaling") or not type(module).__name__.endswith("Attention"):
                continue
            found.setdefault(int(idx), module)
        return [found[i] for i in sorted(found)]

    # ------------------------------------------------------------------ image layout
    def grids(self, inputs: dict[str, Any]) -> list[tuple[int, int]]:
        """Patch grid (rows, cols) of each sample's image. The generic adapter guesses a square of the image
        token count (else one row) and warns once, naming the model type."""
        ids = inputs["input_ids"]
        grids = []
        for row in ids:
            n = int((row == self.image_token_id).sum())
            side = int(round(n**0.5))
            grids.append((side, side) if side * side == n else (1, n))
        if type(self).grids is ModelAdapter.grids and not self.square_grid:
            _warn_once(f"afip-probe has no adapter for model type {self.model_type!r}: it guesses the patch grid "
                       "(a square of the image token count, else one row), so heatmaps "
                       "and spatial maps may be wrong (tiles, crops or row breaks are not known); the recorded "
                       "statistics do not depend on the grid")
        return grids

    def tiles(self, layout: ImageLayout, prompt_ids: Sequence[int], width: int, height: int) -> list[Tile]:
        """Where each patch grid of a sample's image lies on the original `width` x `height` image.

        Base: one grid (the layout's) over `image_region`. Tiled families return their crops and overview
        tiles (see `afip_probe.records.layout.Tile`)."""
        return single_tile(len(layout.positions), layout.grid, self.image_region(width, height))

    def guessed_tiles(self, layout: ImageLayout, width: int, height: int, why: str) -> list[Tile]:
        """The fallback when a family's geometry does not account for a sample's image tokens: one row over
        the whole image, with a warning saying why."""
        _warn_once(f"{self.family}: {why}; the heatmap shows the image tokens as one row")
        n = len(layout.positions)
        return single_tile(n, (1, n), (0.0, 0.0, float(width), float(height)))

    def layouts(self, inputs: dict[str, Any]) -> list[ImageLayout]:
        """Image positions (in each unpadded prompt) and grid of every sample in a batch."""
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        grids = self.grids(inputs)
        out = []
        for b, row in enumerate(ids):
            offset = int((mask[b] == 0).sum()) if mask is not None else 0
            pos = (row == self.image_token_id).nonzero().flatten().tolist()
            if not pos:
                raise AfipError(
                    "the prompt has no image token after the chat template was applied (sample "
                    f"{b}); give an image with every prompt, or check the processor's chat template"
                )
            n_expected = grids[b][0] * grids[b][1]
            if n_expected != len(pos):
                raise AfipError(
                    f"sample {b} has {len(pos)} image tokens but its patch grid {grids[b]} has {n_expected} "
                    "cells; one image per prompt is supported"
                )
            out.append(ImageLayout(positions=[p - offset for p in pos], grid=grids[b]))
        return out

    def image_region(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the box of an original `width` x `height` image that the patch grid covers,
        from the processor's resize / pad / crop settings (see `afip_probe.records.layout.processor_region`)."""
        if self.covers_whole_image:
            return 0.0, 0.0, float(width), float(height)
        image_processor = getattr(self.processor, "image_processor", None)
        if image_processor is None:
            return grid_region(self.family, width, height)
        return processor_region(image_processor.to_dict(), width, height)

    # ------------------------------------------------------------------ inputs
    def build_prompt(self, prompt: str) -> str:
        """The prompt as the model's chat template writes it for one image and one user turn."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        template_owner = self.processor
        if getattr(template_owner, "chat_template", None) is None:
            raise AfipError(
                "the processor has no chat template; pass a processor saved with one (llava-hf and Qwen "
                "checkpoints ship it)"
            )
        return template_owner.apply_chat_template(messages, add_generation_prompt=True)

    def build_inputs(self, images: Sequence[Any], prompts: Sequence[str] | str, device: Any = None) -> dict[str, Any]:
        """Batch inputs (left-padded) for `model.generate` from PIL images and user prompts."""
        if self.processor is None:
            raise AfipError("building inputs needs the model's processor; load it with afip_probe.models.load")
        if isinstance(prompts, str):
            prompts = [prompts] * len(images)
        texts = [self.build_prompt(p) for p in prompts]
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"
        # one image per prompt, nested per sample: the form every processor reads the same way
        inputs = self.processor(images=[[image] for image in images], text=texts, return_tensors="pt", padding=True)
        inputs = {k: v for k, v in dict(inputs).items() if k != "labels"}  # PaliGemma adds labels; generate needs none
        if device is not None:
            dtype = next(self.model.parameters()).dtype
            for k, v in inputs.items():
                if isinstance(v, torch.Tensor):
                    inputs[k] = v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
        return inputs


class TiledAdapter(ModelAdapter):
    """An adapter whose geometry is all in `tiles` (crops, overviews, newline slots): the layout's grid is
    one row of the image tokens."""

    def grids(self, inputs: dict[str, Any]) -> list[tuple[int, int]]:
        return [(1, int((row == self.image_token_id).sum())) for row in inputs["input_ids"]]
