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
from ..records.layout import ImageLayout, Tile, grid_region, on_image, processor_region, single_tile

SUPPORTED_FAMILIES = (
    "LLaVA-1.5, LLaVA-NeXT, LLaVA-OneVision",
    "Qwen2-VL, Qwen2.5-VL, Qwen3-VL (and MoE), GLM-4V",
    "Gemma 3, PaliGemma 1 and 2",
    "Idefics3, SmolVLM, InternVL, Aya Vision, Mistral 3",
    "Llama 4, LFM2-VL",
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
            "image tokens in the prompt (the model families table: docs/families.md)"
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
    def image_grids(self, inputs: dict[str, Any]) -> list[list[tuple[int, int]]]:
        """Per sample, the patch grid (rows, cols) of each of its images, in prompt order.

        The generic adapter takes each contiguous run of image tokens for one image and guesses a square of
        its token count (else one row), and warns once, naming the model type."""
        out = [[_guess(stop - start) for start, stop in runs_of(row == self.image_token_id)]
               for row in inputs["input_ids"]]
        if type(self).image_grids is ModelAdapter.image_grids:
            _warn_once(f"afip-probe has no adapter for model type {self.model_type!r}: it guesses the patch grid "
                       "(each run of image tokens one image, a square of its token count, else one row), so "
                       "heatmaps and spatial maps may be wrong (tiles, crops or row breaks are not known); the "
                       "recorded statistics do not depend on the grid")
        return out

    def tiles(self, layout: ImageLayout, prompt_ids: Sequence[int], width: int, height: int) -> list[Tile]:
        """Where each patch grid of ONE image lies on the original `width` x `height` image (`layout` is that
        image's own layout, `ImageLayout.image`; cells count from its first slot).

        Base: one grid (the layout's) over `image_region`. Tiled families return their crops and overview
        tiles (see `afip_probe.records.layout.Tile`)."""
        return single_tile(len(layout.positions), layout.grid, self.image_region(width, height))

    def sample_tiles(self, layout: ImageLayout, prompt_ids: Sequence[int],
                     sizes: Sequence[tuple[int, int]]) -> list[Tile]:
        """The tiles of every image of a sample: `sizes` (width, height) of its images in prompt order; each
        tile names its image and its cells are slots of the whole sample.

        >>> from afip_probe.models import adapter_for, tiny
        >>> model, processor = tiny.tiny_llava()
        >>> adapter = adapter_for(model, processor)
        >>> inputs = adapter.build_inputs([tiny.random_images(2)], "compare")   # two images, one prompt
        >>> layout = adapter.layouts(inputs)[0]
        >>> [(t.image, t.cells[0]) for t in adapter.sample_tiles(layout, [], [(48, 40), (48, 40)])]
        [(0, 0), (1, 16)]
        """
        if len(sizes) != layout.num_images:
            raise AfipError(f"{len(sizes)} image sizes for a prompt of {layout.num_images} images")
        out: list[Tile] = []
        for i, ((start, _), (width, height)) in enumerate(zip(layout.image_slots, sizes)):
            out += on_image(self.tiles(layout.image(i), prompt_ids, int(width), int(height)), i, start)
        return out

    def guessed_tiles(self, layout: ImageLayout, width: int, height: int, why: str) -> list[Tile]:
        """The fallback when a family's geometry does not account for an image's tokens: one row over the
        whole image, with a warning saying why."""
        _warn_once(f"{self.family}: {why}; the heatmap shows the image tokens as one row")
        n = len(layout.positions)
        return single_tile(n, (1, n), (0.0, 0.0, float(width), float(height)))

    def layouts(self, inputs: dict[str, Any]) -> list[ImageLayout]:
        """Image positions (in each unpadded prompt) and the grid of each image of every sample in a batch."""
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        grids = self.image_grids(inputs)
        tiles_of_images = self.tile_grids(inputs)
        out = []
        for b, row in enumerate(ids):
            offset = int((mask[b] == 0).sum()) if mask is not None else 0
            pos = (row == self.image_token_id).nonzero().flatten().tolist()
            if not pos:
                raise AfipError(
                    "the prompt has no image token after the chat template was applied (sample "
                    f"{b}); give an image with every prompt, or check the processor's chat template"
                )
            n_expected = sum(r * c for r, c in grids[b])
            if n_expected != len(pos):
                raise AfipError(
                    f"sample {b} has {len(pos)} image tokens but the patch grids {grids[b]} of its images have "
                    f"{n_expected} cells: the inputs were not built by the model's processor (build them with "
                    "adapter.build_inputs)"
                )
            positions = [p - offset for p in pos]
            tile_grids = tuple(tiles_of_images[b]) if tiles_of_images is not None else ()
            if len(grids[b]) == 1:
                out.append(ImageLayout(positions=positions, grid=grids[b][0], tile_grids=tile_grids))
            else:
                out.append(ImageLayout(positions=positions, grid=(1, len(pos)), image_grids=tuple(grids[b]),
                                       tile_grids=tile_grids))
        return out

    def tile_grids(self, inputs: dict[str, Any]) -> list[list[tuple[tuple[int, int], ...]]] | None:
        """Per sample, per image, the patch grids of its tiles when the model's inputs state them (None: they
        do not; the family's `tiles` then has its processor's arithmetic)."""
        return None

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
    def build_prompt(self, prompt: str, num_images: int = 1) -> str:
        """The prompt as the model's chat template writes it for one user turn: `num_images` images, then the
        text (the order of the chat templates' own examples)."""
        content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        template_owner = self.processor
        if getattr(template_owner, "chat_template", None) is None:
            raise AfipError(
                "the processor has no chat template; pass a processor saved with one (llava-hf and Qwen "
                "checkpoints ship it)"
            )
        return template_owner.apply_chat_template(messages, add_generation_prompt=True)

    def build_inputs(self, images: Sequence[Any], prompts: Sequence[str] | str, device: Any = None) -> dict[str, Any]:
        """Batch inputs (left-padded) for `model.generate` from PIL images and user prompts.

        `images` has one entry per prompt: a PIL image, or a list of PIL images for a prompt that shows
        several (placed before the text, in order, as the chat template places them)."""
        if self.processor is None:
            raise AfipError("building inputs needs the model's processor; load it with afip_probe.models.load")
        per_prompt = [list(item) if isinstance(item, (list, tuple)) else [item] for item in images]
        if any(not sample for sample in per_prompt):
            raise AfipError("every prompt needs at least one image")
        if isinstance(prompts, str):
            prompts = [prompts] * len(per_prompt)
        if len(prompts) != len(per_prompt):
            raise AfipError(f"{len(per_prompt)} image entries for {len(prompts)} prompts: give one per prompt")
        texts = [self.build_prompt(p, len(sample)) for p, sample in zip(prompts, per_prompt)]
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"
        # the images of each prompt nested per sample: the form every processor reads the same way
        inputs = self.processor(images=per_prompt, text=texts, return_tensors="pt", padding=True)
        inputs = {k: v for k, v in dict(inputs).items() if k != "labels"}  # PaliGemma adds labels; generate needs none
        dtype = next(self.model.parameters()).dtype  # pixels in the model's dtype (Llama 4's come as bfloat16)
        for k, v in inputs.items():
            if isinstance(v, torch.Tensor):
                inputs[k] = v.to(device=device if device is not None else v.device,
                                 dtype=dtype if v.is_floating_point() else v.dtype)
        return inputs


def runs_of(mask: torch.Tensor) -> list[tuple[int, int]]:
    """[start, stop) runs of True in a 1-d bool tensor."""
    pos = mask.nonzero().flatten().tolist()
    runs: list[tuple[int, int]] = []
    for p in pos:
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


def _guess(n: int) -> tuple[int, int]:
    side = int(round(n**0.5))
    return (side, side) if side * side == n else (1, n)


def per_sample(inputs: dict[str, Any], image_token_id: int, counts: Sequence[int], what: str) -> list[list[int]]:
    """The images of a batch (their token `counts`, batch order) assigned to its samples, in order: each
    sample takes images until their counts add up to its number of image tokens.

    >>> ids = torch.tensor([[9, 9, 9, 0, 9], [0, 0, 9, 9, 9]])
    >>> per_sample({"input_ids": ids}, 9, [3, 1, 3], "grids")
    [[0, 1], [2]]
    """
    out, k = [], 0
    for row in inputs["input_ids"]:
        n, mine = int((row == image_token_id).sum()), []
        while n > 0 and k < len(counts):
            mine.append(k)
            n -= int(counts[k])
            k += 1
        if n != 0:
            raise AfipError(f"the {what} of the inputs do not add up to each sample's image tokens: build the "
                            "inputs with the model's processor (adapter.build_inputs)")
        out.append(mine)
    if k != len(counts):
        raise AfipError(f"{len(counts)} images in the {what} for the samples' image tokens: give every image "
                        "its prompt (adapter.build_inputs)")
    return out


def marker_counts(inputs: dict[str, Any], image_token_id: int, marker: int | None) -> list[list[int]]:
    """Per sample, the image tokens of each image when every image starts with the text token `marker`
    (InternVL's ``<img>``, Llama 4's and LFM2-VL's ``<|image_start|>``); each run of image tokens is an image
    when there is no marker.

    >>> marker_counts({"input_ids": torch.tensor([[5, 9, 9, 0, 9, 5, 9]])}, 9, 5)
    [[3, 1]]
    """
    out = []
    for row in inputs["input_ids"]:
        is_image = row == image_token_id
        starts = (row == marker).nonzero().flatten().tolist() if marker is not None else []
        if not starts:
            out.append([stop - start for start, stop in runs_of(is_image)])
            continue
        bounds = starts + [len(row)]
        counts = [int(is_image[a:b].sum()) for a, b in zip(bounds, bounds[1:])]
        first = int(is_image[: starts[0]].sum())
        out.append(([first] if first else []) + [c for c in counts if c])
    return out


def token_id(processor: Any, *names: str) -> int | None:
    """The id of the first of `names` (a processor attribute holding a token, or the token itself) that the
    processor's tokenizer knows as one token; None when none is."""
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        return None
    unk = getattr(tokenizer, "unk_token_id", None)
    for name in names:
        token = getattr(processor, name, None) if not name.startswith("<") else name
        if not isinstance(token, str):
            continue
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != unk and tid >= 0:
            return tid
    return None


class TiledAdapter(ModelAdapter):
    """An adapter whose geometry is all in `tiles` (crops, overviews, newline slots): each image's grid is
    one row of its tokens; `image_token_counts` says how many tokens each image of a sample has."""

    def image_token_counts(self, inputs: dict[str, Any]) -> list[list[int]]:
        """Per sample, the number of image tokens of each of its images (default: each run of image tokens
        is one image)."""
        return marker_counts(inputs, self.image_token_id, None)

    def image_grids(self, inputs: dict[str, Any]) -> list[list[tuple[int, int]]]:
        return [[(1, n) for n in counts] for counts in self.image_token_counts(inputs)]
