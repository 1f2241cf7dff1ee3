"""Tiny random-weight models of the image-text-to-text families afip-probe supports, with their real processors.

Each builder returns ``(model, processor)``: the model is the family's own transformers class built from its
own config classes (small sizes, random weights); the processor is the family's own processor class with its
image processor (the PIL backend: no torchvision here) and a tokenizer trained on the spot that has the
family's special tokens, so the prompt's image tokens are laid out by the processor's own code. Where a
processor needs torchvision (Mistral 3's Pixtral processor, LFM2-VL's, Llama 4's), `ManualProcessor` lays the
inputs out as that processor does (its arithmetic is copied in the builder, with the source named); the
tests marked `vision` check those families' geometry against the real processors (`make test-vision`).
Mllama is built to be refused.

Window, chunk and softcap settings are those of the issue's "must show" list: Gemma 3 and Mistral 3 get a
sliding window shorter than the sequence, Llama 4 an attention chunk shorter than it, PaliGemma 2 softcapping,
LFM2-VL mixed convolution / attention layers.
"""

from __future__ import annotations

import string
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
import transformers as T
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from afip_probe.models.tiny import DEFAULT_CORPUS, LLAVA_TEMPLATE, image_only

HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 64, 3, 4, 2, 16
#: PaliGemma 2's attention logit cap, and the factor its query and key weights are scaled by so that its
#: uncapped scores reach ~10: capped at 2, the attention differs from uncapped by far more than the tolerances
SOFTCAP, SOFTCAP_WEIGHT_SCALE = 2.0, 10.0

#: special tokens of every family, and the tokenizer attributes processors read
SPECIALS = [
    "<unk>", "<s>", "</s>", "<pad>", "<image>", "<video>",
    "<start_of_image>", "<end_of_image>", "<image_soft_token>",  # Gemma 3
    "<fake_token_around_image>", "<global-img>", "<end_of_utterance>",  # Idefics3 / SmolVLM
    "<img>", "</img>", "<IMG_CONTEXT>",  # InternVL
    "[IMG]", "[IMG_BREAK]", "[IMG_END]",  # Pixtral / Mistral 3
    "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>", "<|IMG_LINE_BREAK|>", "<|TILE|>", "<|TILE_GLOBAL|>",  # Aya
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",  # Qwen3-VL
    "<|begin_of_image|>", "<|end_of_image|>", "<|image|>", "<|video|>",  # GLM-4V, Llama 4
    "<|image_start|>", "<|image_end|>", "<|patch|>", "<|tile_x_separator|>", "<|tile_y_separator|>",  # Llama 4
    "<|img_thumbnail|>",  # LFM2-VL
] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)] + [
    f"<|img_row_{r}_col_{c}|>" for r in range(1, 11) for c in range(1, 11)]  # LFM2-VL's tiles


def tokenizer(image_token: str = "<image>", **attributes: str) -> Any:
    """A BPE tokenizer with every family's special tokens; `attributes` become tokenizer attributes
    (``image_token``, ``boi_token``, ...) as the checkpoints' tokenizers define them."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    alphabet = list(string.ascii_letters + string.digits + string.punctuation + "\n▁")
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIALS, initial_alphabet=alphabet)
    tok.train_from_iterator(list(DEFAULT_CORPUS), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", padding_side="left",
                                   extra_special_tokens={"image_token": image_token, **attributes})


def template(image: str) -> str:
    """LLaVA's chat template with the family's image placeholder text."""
    return LLAVA_TEMPLATE.replace("<image>", image)


def text_config(cls: Any, tok: Any, **extra: Any) -> Any:
    sizes = dict(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS,
                 num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM, vocab_size=len(tok),
                 max_position_embeddings=4096, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                 pad_token_id=tok.pad_token_id)
    sizes.update(extra)
    return cls(**sizes)


def finish(model: Any, tok: Any) -> Any:
    model.eval()
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = tok.pad_token_id, tok.eos_token_id, tok.bos_token_id
    gen.do_sample = False
    return model


def _siglip(image_size: int = 32, patch: int = 8) -> Any:
    return T.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=image_size, patch_size=patch)


def _clip(image_size: int = 32, patch: int = 8) -> Any:
    return T.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=image_size, patch_size=patch)


# ---------------------------------------------------------------------- LLaVA-NeXT and OneVision
def llava_next() -> tuple[Any, Any]:
    """LLaVA-NeXT: anyres tiles (best fit among pinpoints), unpadded, one newline embedding per row."""
    tok = tokenizer()
    pinpoints = [[32, 64], [64, 32], [64, 64]]
    ip = T.LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                   image_grid_pinpoints=pinpoints)
    proc = T.LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                                chat_template=template("<image>"), num_additional_image_tokens=1)
    cfg = T.LlavaNextConfig(vision_config=_clip(), text_config=text_config(T.LlamaConfig, tok),
                            image_token_index=tok.image_token_id, image_grid_pinpoints=pinpoints,
                            vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    return finish(T.LlavaNextForConditionalGeneration(cfg), tok), proc


def llava_onevision() -> tuple[Any, Any]:
    """LLaVA-OneVision: anyres-max tiles, unpadded (and pooled when large), one newline per row + one at the end."""
    tok = tokenizer(video_token="<video>")
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    ip = T.LlavaOnevisionImageProcessor(size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints)
    proc = image_only(T.LlavaOnevisionProcessor)(image_processor=ip, tokenizer=tok, video_processor=None, num_image_tokens=16,
                                     vision_feature_select_strategy="full", chat_template=template("<image>"))
    cfg = T.LlavaOnevisionConfig(vision_config=_siglip(), text_config=text_config(T.Qwen2Config, tok),
                                 image_token_index=tok.image_token_id, video_token_index=tok.convert_tokens_to_ids("<video>"),
                                 image_grid_pinpoints=pinpoints, vision_feature_select_strategy="full",
                                 vision_feature_layer=-1)
    torch.manual_seed(0)
    return finish(T.LlavaOnevisionForConditionalGeneration(cfg), tok), proc


# ---------------------------------------------------------------------- Gemma 3, PaliGemma
def gemma3_tokenizer() -> Any:
    return tokenizer("<image_soft_token>", boi_token="<start_of_image>", eoi_token="<end_of_image>")


def gemma3_processor(tok: Any, size: int, pan_and_scan: bool, min_crop: int, seq: int) -> Any:
    """Gemma 3's processor: `size` px images of `seq` tokens; with `pan_and_scan`, crops of at least `min_crop`
    px (at most 4, ratio 1.2), as a user's call with do_pan_and_scan=True (the processor's default is off)."""
    proc_cls = T.Gemma3Processor
    if pan_and_scan:
        proc_cls = type("Gemma3Processor", (T.Gemma3Processor,), {"images_kwargs": {
            **T.Gemma3Processor.images_kwargs, "do_pan_and_scan": True, "pan_and_scan_min_crop_size": min_crop}})
    return proc_cls(image_processor=T.Gemma3ImageProcessor(size={"height": size, "width": size}), tokenizer=tok,
                    chat_template=template("<start_of_image>"), image_seq_length=seq)


def gemma3(sliding_window: int = 20, pan_and_scan: bool = False) -> tuple[Any, Any]:
    """Gemma 3: 16 soft tokens (4x4 pooled) between <start_of_image> and <end_of_image>; every other layer
    slides over `sliding_window` keys."""
    tok = gemma3_tokenizer()
    proc = gemma3_processor(tok, size=32, pan_and_scan=pan_and_scan, min_crop=16, seq=16)
    text = text_config(T.Gemma3TextConfig, tok, sliding_window=sliding_window,
                       layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    cfg = T.Gemma3Config(text_config=text, vision_config=_siglip(), mm_tokens_per_image=16,
                         image_token_index=tok.image_token_id, boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
                         eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"))
    torch.manual_seed(0)
    return finish(T.Gemma3ForConditionalGeneration(cfg), tok), proc


def paligemma(version: int = 2) -> tuple[Any, Any]:
    """PaliGemma (1: Gemma decoder; 2: Gemma 2 decoder with attention logit softcapping)."""
    tok = tokenizer()
    ip = T.SiglipImageProcessor(size={"height": 32, "width": 32})
    proc = T.PaliGemmaProcessor(image_processor=ip, tokenizer=tok, chat_template=template("<image>"))
    if version == 2:
        text = text_config(T.Gemma2Config, tok, attn_logit_softcapping=SOFTCAP, final_logit_softcapping=30.0,
                           sliding_window=4096, query_pre_attn_scalar=HEAD_DIM)
    else:
        text = text_config(T.GemmaConfig, tok)
    vision = _siglip()
    cfg = T.PaliGemmaConfig(vision_config=vision, text_config=text, image_token_index=tok.image_token_id,
                            projection_dim=HIDDEN, hidden_size=HIDDEN)
    cfg.text_config.num_image_tokens = (32 // 8) ** 2
    proc.image_seq_length = (32 // 8) ** 2
    torch.manual_seed(0)
    model = T.PaliGemmaForConditionalGeneration(cfg)
    if version == 2:  # scores of order 10 against a cap of 2: capping changes the attention, not only its rounding
        with torch.no_grad():
            for layer in model.model.language_model.layers:
                layer.self_attn.q_proj.weight.mul_(SOFTCAP_WEIGHT_SCALE)
                layer.self_attn.k_proj.weight.mul_(SOFTCAP_WEIGHT_SCALE)
    return finish(model, tok), proc


# ---------------------------------------------------------------------- Qwen3-VL, GLM-4V
def qwen3_vl(moe: bool = False) -> tuple[Any, Any]:
    """Qwen3-VL (and its MoE): the grid from `image_grid_thw`, merged 2x2."""
    tok = tokenizer("<|image_pad|>", video_token="<|video_pad|>", vision_start_token="<|vision_start|>",
                    vision_end_token="<|vision_end|>")
    ip = T.Qwen2VLImageProcessor(min_pixels=16 * 16 * 4, max_pixels=16 * 16 * 16, patch_size=16, merge_size=2,
                                 temporal_patch_size=2)
    proc = image_only(T.Qwen3VLProcessor)(image_processor=ip, tokenizer=tok, video_processor=None,
                                              chat_template=template("<|vision_start|><|image_pad|><|vision_end|>"))
    half = HEAD_DIM // 2
    rope = {"rope_type": "default", "mrope_section": [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8],
            "mrope_interleaved": True, "rope_theta": 10000.0}
    text_cls = T.Qwen3VLMoeTextConfig if moe else T.Qwen3VLTextConfig
    extra = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1) if moe else {}
    text = text_config(text_cls, tok, rope_parameters=rope, **extra)
    vision_cls = T.Qwen3VLMoeVisionConfig if moe else T.Qwen3VLVisionConfig
    vision = vision_cls(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN,
                        patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16,
                        deepstack_visual_indexes=[0])
    cfg_cls = T.Qwen3VLMoeConfig if moe else T.Qwen3VLConfig
    cfg = cfg_cls(text_config=text, vision_config=vision, image_token_id=tok.image_token_id,
                  video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
                  vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
                  vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"))
    torch.manual_seed(0)
    cls = T.Qwen3VLMoeForConditionalGeneration if moe else T.Qwen3VLForConditionalGeneration
    return finish(cls(cfg), tok), proc


def glm4v() -> tuple[Any, Any]:
    """GLM-4V: the grid from `image_grid_thw`, merged 2x2, between <|begin_of_image|> and <|end_of_image|>."""
    tok = tokenizer("<|image|>", video_token="<|video|>")
    ip = T.Glm4vImageProcessor(size={"shortest_edge": 16 * 16 * 4, "longest_edge": 16 * 16 * 16}, patch_size=16,
                               merge_size=2, temporal_patch_size=2)
    proc = image_only(T.Glm4vProcessor)(image_processor=ip, tokenizer=tok, video_processor=None,
                                            chat_template=template("<|begin_of_image|><|image|><|end_of_image|>"))
    # rotary over half of the 16 head dims: 4 frequency pairs, split (temporal, height, width)
    rope = {"rope_type": "default", "mrope_section": [2, 1, 1], "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
    text = text_config(T.Glm4vTextConfig, tok, rope_parameters=rope)
    vision = T.Glm4vVisionConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN,
                                 patch_size=16, spatial_merge_size=2, temporal_patch_size=2, image_size=64)
    cfg = T.Glm4vConfig(text_config=text, vision_config=vision, image_token_id=tok.image_token_id,
                        video_token_id=tok.convert_tokens_to_ids("<|video|>"),
                        image_start_token_id=tok.convert_tokens_to_ids("<|begin_of_image|>"),
                        image_end_token_id=tok.convert_tokens_to_ids("<|end_of_image|>"))
    torch.manual_seed(0)
    return finish(T.Glm4vForConditionalGeneration(cfg), tok), proc


# ---------------------------------------------------------------------- Idefics3, SmolVLM
def idefics3_tokenizer() -> Any:
    return tokenizer(fake_image_token="<fake_token_around_image>", global_image_token="<global-img>",
                     end_of_utterance_token="<end_of_utterance>")


def idefics3_processor(tok: Any, smol: bool, longest: int, tile: int, seq: int) -> Any:
    """Idefics3's (or SmolVLM's) processor: images resized to `longest` px, cut into `tile` px tiles of `seq`
    tokens."""
    ip_cls = T.SmolVLMImageProcessor if smol else T.Idefics3ImageProcessor
    ip = ip_cls(size={"longest_edge": longest}, max_image_size={"longest_edge": tile})
    proc_cls = image_only(T.SmolVLMProcessor) if smol else T.Idefics3Processor
    kw = dict(video_processor=None) if smol else {}
    proc = proc_cls(image_processor=ip, tokenizer=tok, image_seq_len=seq, chat_template=template("<image>"), **kw)
    if smol:  # its chat template reads the video processor's frame settings, even for images
        proc.video_processor = SimpleNamespace(num_frames=1, fps=1)
    return proc


def idefics3(smol: bool = False) -> tuple[Any, Any]:
    """Idefics3 / SmolVLM: the image split into tiles of `max_image_size` plus a global image, each tile
    `image_seq_len` tokens between <fake_token_around_image> and a <row_r_col_c> (global: <global-img>) text token."""
    tok = idefics3_tokenizer()
    proc = idefics3_processor(tok, smol, longest=96, tile=32, seq=4)
    vision_cls = T.SmolVLMVisionConfig if smol else T.Idefics3VisionConfig
    vision = vision_cls(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                        image_size=32, patch_size=8)
    cfg_cls = T.SmolVLMConfig if smol else T.Idefics3Config
    cfg = cfg_cls(vision_config=vision, text_config=text_config(T.LlamaConfig, tok), image_token_id=tok.image_token_id,
                  scale_factor=2)
    torch.manual_seed(0)
    cls = T.SmolVLMForConditionalGeneration if smol else T.Idefics3ForConditionalGeneration
    return finish(cls(cfg), tok), proc


# ---------------------------------------------------------------------- InternVL, Aya Vision
def internvl_tokenizer() -> Any:
    return tokenizer("<IMG_CONTEXT>", start_image_token="<img>", end_image_token="</img>",
                     context_image_token="<IMG_CONTEXT>", video_token="<video>")


def got_ocr2_processor(tok: Any, aya: bool, crop: int, max_crops: int, seq: int) -> Any:
    """InternVL's (or Aya Vision's) processor: `crop` px GOT-OCR2 crops, 1 to `max_crops`, plus a thumbnail,
    `seq` (a square) tokens each (Aya: from its patch size and 2x2 downsampling)."""
    ip = T.GotOcr2ImageProcessor(size={"height": crop, "width": crop}, crop_to_patches=True, min_patches=1,
                                 max_patches=max_crops)
    if aya:
        return T.AyaVisionProcessor(image_processor=ip, tokenizer=tok, patch_size=crop // (2 * int(seq**0.5)),
                                    img_size=crop, downsample_factor=2, chat_template=template("<image>"))
    return image_only(T.InternVLProcessor)(image_processor=ip, tokenizer=tok, video_processor=None,
                                           image_seq_length=seq, chat_template=template("<IMG_CONTEXT>"))


def internvl() -> tuple[Any, Any]:
    """InternVL: crops of 32 px (as many as the aspect ratio wants, up to 4) plus a thumbnail, each 4 tokens."""
    tok = internvl_tokenizer()
    proc = got_ocr2_processor(tok, aya=False, crop=32, max_crops=4, seq=4)
    vision = T.InternVLVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                    image_size=[32, 32], patch_size=[8, 8])
    cfg = T.InternVLConfig(vision_config=vision, text_config=text_config(T.Qwen2Config, tok),
                           image_token_id=tok.image_token_id, image_seq_length=4, downsample_ratio=0.5)
    torch.manual_seed(0)
    return finish(T.InternVLForConditionalGeneration(cfg), tok), proc


def aya_vision() -> tuple[Any, Any]:
    """Aya Vision: GOT-OCR2 crops plus a thumbnail, each tile <|TILE|> + patches (global: <|TILE_GLOBAL|>)."""
    tok = tokenizer("<image>")
    proc = got_ocr2_processor(tok, aya=True, crop=32, max_crops=4, seq=4)
    vision = _siglip()
    cfg = T.AyaVisionConfig(vision_config=vision, text_config=text_config(T.Cohere2Config, tok, sliding_window=4096,
                                                                          layer_types=["full_attention"] * LAYERS),
                            image_token_index=tok.convert_tokens_to_ids("<|IMG_PATCH|>"), downsample_factor=2,
                            vision_feature_select_strategy="full", vision_feature_layer=-1)
    torch.manual_seed(0)
    return finish(T.AyaVisionForConditionalGeneration(cfg), tok), proc


# ---------------------------------------------------------------------- Mistral 3 (Pixtral vision)
class ManualProcessor:
    """For processors that need torchvision here: the image processor (or `pixels`) gives the model's image
    inputs, and `expand(image_inputs, i)` the text that replaces image i's placeholder, copied from the
    family's processor (named in each builder). Called like a processor."""

    def __init__(self, tokenizer: Any, placeholder: str, chat_template: str,
                 pixels: Callable[[list[Any]], dict[str, Any]], expand: Callable[[dict[str, Any], int], str]):
        self.tokenizer, self.placeholder, self.chat_template = tokenizer, placeholder, chat_template
        self.pixels, self.expand = pixels, expand

    def apply_chat_template(self, messages: Any, add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def __call__(self, images: Any, text: list[str], return_tensors: str = "pt", padding: bool = True) -> Any:
        flat = [im for sample in images for im in (sample if isinstance(sample, list) else [sample])]
        image_inputs = self.pixels(flat)
        i, texts = 0, []
        for t in text:
            parts = t.split(self.placeholder)
            out = parts[0]
            for part in parts[1:]:
                out += self.expand(image_inputs, i) + part
                i += 1
            texts.append(out)
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {**dict(enc), **image_inputs}


def mistral3(sliding_window: int | None = 20) -> tuple[Any, Any]:
    """Mistral 3: Pixtral patches merged 2x2, each row ended by [IMG_BREAK], the last by [IMG_END]
    (`PixtralProcessor.replace_image_token`; the processor needs torchvision, its image processor does not)."""
    tok = tokenizer("[IMG]", image_break_token="[IMG_BREAK]", image_end_token="[IMG_END]")
    ip = T.PixtralImageProcessor(size={"longest_edge": 64}, patch_size=8)
    step = 8 * 2  # patch size x spatial merge

    def expand(inputs: dict[str, Any], i: int) -> str:
        height, width = (int(v) for v in inputs["image_sizes"][i])
        tokens = (["[IMG]"] * (width // step) + ["[IMG_BREAK]"]) * (height // step)
        tokens[-1] = "[IMG_END]"
        return "".join(tokens)

    proc = ManualProcessor(tok, "[IMG]", template("[IMG]"), lambda ims: dict(ip(ims, return_tensors="pt")), expand)
    vision = T.PixtralVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                   image_size=64, patch_size=8, head_dim=16)
    text = text_config(T.MistralConfig, tok, sliding_window=sliding_window)
    cfg = T.Mistral3Config(vision_config=vision, text_config=text, image_token_index=tok.image_token_id,
                           spatial_merge_size=2, vision_feature_layer=-1)
    torch.manual_seed(0)
    return finish(T.Mistral3ForConditionalGeneration(cfg), tok), proc


def llama4_canvas(height: int, width: int, tile: int, max_tiles: int) -> tuple[int, int]:
    """(rows, cols) of tiles of the canvas `Llama4ImageProcessor` picks (`find_supported_resolutions` and
    `get_best_fit` of transformers.models.llama4.image_processing_llama4, copied: that module needs
    torchvision). The vision-venv tests check the real processor."""
    shapes = [(f, n // f) for n in range(max_tiles, 0, -1) for f in range(1, n + 1) if n % f == 0]
    scales = [min(r * tile / height, c * tile / width) for r, c in shapes]
    up = [x for x in scales if x >= 1]
    chosen = min(up) if up else max(scales)
    return min((rc for rc, x in zip(shapes, scales) if x == chosen), key=lambda rc: rc[0] * rc[1])


def llama4(chunk: int = 16) -> tuple[Any, Any]:
    """Llama 4 (`Llama4ForConditionalGeneration`): chunked attention over `chunk` keys in every layer but the
    no-rope ones, MoE every other layer; 32 px tiles of 2x2 tokens (8 px patches, pixel shuffle 0.5), up to 4
    tiles plus a global tile, written into the prompt with tile separators (`Llama4Processor`, whose image
    processor needs torchvision: `ManualProcessor` lays the prompt out as `_prompt_split_image` does, the
    pixels as the image processor's arithmetic does)."""
    from PIL import Image

    tok = tokenizer("<|patch|>")
    tile, max_tiles = 32, 4

    def pixels(images: list[Any]) -> dict[str, Any]:
        tiles, ratios = [], []
        for im in images:
            rows, cols = llama4_canvas(im.height, im.width, tile, max_tiles)
            th, tw = min(max(im.height, tile), rows * tile), min(max(im.width, tile), cols * tile)
            sw, sh = tw / im.width, th / im.height
            new = (tw, min(int(im.height * sw), th)) if sw < sh else (min(int(im.width * sh), tw), th)
            canvas = np.zeros((rows * tile, cols * tile, 3), np.float32)
            canvas[: new[1], : new[0]] = np.asarray(im.convert("RGB").resize(new, Image.BILINEAR), np.float32)
            parts = [canvas[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] for r in range(rows) for c in range(cols)]
            if rows * cols > 1:
                parts.append(np.asarray(im.convert("RGB").resize((tile, tile), Image.BILINEAR), np.float32))
            tiles += [torch.from_numpy(a / 127.5 - 1).permute(2, 0, 1) for a in parts]
            ratios.append((rows, cols))
        return {"pixel_values": torch.stack(tiles), "aspect_ratios": ratios}

    def expand(inputs: dict[str, Any], i: int) -> str:
        rows, cols = inputs["aspect_ratios"][i]
        per = (tile // 8) ** 2 // 4
        out = "<|image_start|>"
        if rows * cols > 1:
            for _ in range(rows):
                out += "<|tile_x_separator|>".join(["<|patch|>" * per] * cols) + "<|tile_y_separator|>"
        return out + "<|image|>" + "<|patch|>" * per + "<|image_end|>"

    class Llama4Manual(ManualProcessor):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            out = super().__call__(*args, **kwargs)
            out.pop("aspect_ratios")
            return out

    proc = Llama4Manual(tok, "<|image|>", template("<|image|>"), pixels, expand)
    text = text_config(T.Llama4TextConfig, tok, intermediate_size_mlp=2 * HIDDEN, num_local_experts=2,
                       attention_chunk_size=chunk, no_rope_layers=[1, 1, 0], interleave_moe_layer_step=2,
                       use_qk_norm=False)
    vision = T.Llama4VisionConfig(hidden_size=32, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                                  image_size=tile, patch_size=8, vision_output_dim=32, projector_input_dim=32,
                                  projector_output_dim=32, pixel_shuffle_ratio=0.5)
    cfg = T.Llama4Config(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<|patch|>"),
                         boi_token_index=tok.convert_tokens_to_ids("<|image_start|>"),
                         eoi_token_index=tok.convert_tokens_to_ids("<|image_end|>"))
    torch.manual_seed(0)
    return finish(T.Llama4ForConditionalGeneration(cfg), tok), proc


def lfm2_vl() -> tuple[Any, Any]:
    """LFM2-VL: a decoder of short-convolution and attention layers; one 32 px tile per image, 2x2 downsampled
    (`Lfm2VlProcessor`: <|image_start|>, the image's tokens, <|image_end|>)."""
    tok = tokenizer("<image>", image_start_token="<|image_start|>", image_end_token="<|image_end|>")
    patch = 8

    def pixels(images: list[Any]) -> dict[str, Any]:
        out = []
        for im in images:
            a = torch.from_numpy(np.asarray(im.convert("RGB").resize((32, 32)), dtype=np.float32) / 127.5 - 1)
            a = a.reshape(4, patch, 4, patch, 3).permute(0, 2, 1, 3, 4).reshape(16, patch * patch * 3)
            out.append(a)
        n = len(images)
        return {"pixel_values": torch.stack(out), "pixel_attention_mask": torch.ones(n, 16, dtype=torch.long),
                "spatial_shapes": torch.tensor([[4, 4]] * n)}

    proc = ManualProcessor(tok, "<image>", template("<image>"), pixels,
                           lambda inputs, i: "<|image_start|>" + "<image>" * 4 + "<|image_end|>")
    vision = T.Siglip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                   patch_size=patch, num_patches=16)
    text = text_config(T.Lfm2Config, tok, layer_types=["conv", "full_attention", "conv", "full_attention"],
                       num_hidden_layers=4, full_attn_idxs=None)
    cfg = T.Lfm2VlConfig(vision_config=vision, text_config=text, image_token_id=tok.image_token_id,
                         downsample_factor=2, projector_hidden_size=32)
    torch.manual_seed(0)
    return finish(T.Lfm2VlForConditionalGeneration(cfg), tok), proc


def mllama() -> tuple[Any, Any]:
    """Mllama (Llama 3.2 Vision): the image enters through cross-attention layers, not as prompt tokens."""
    tok = tokenizer("<|image|>")
    vision = T.MllamaVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1,
                                  num_attention_heads=2, image_size=32, patch_size=8, max_num_tiles=4,
                                  intermediate_layers_indices=[0], vision_output_dim=64)
    text = T.MllamaTextConfig(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=3,
                              num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, vocab_size=len(tok),
                              cross_attention_layers=[1], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id)
    cfg = T.MllamaConfig(vision_config=vision, text_config=text, image_token_index=tok.image_token_id)
    torch.manual_seed(0)
    return finish(T.MllamaForConditionalGeneration(cfg), tok), None


BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "llava_next": llava_next,
    "llava_onevision": llava_onevision,
    "gemma3": gemma3,
    "gemma3_pan_and_scan": lambda: gemma3(pan_and_scan=True),
    "paligemma": lambda: paligemma(1),
    "paligemma2": lambda: paligemma(2),
    "qwen3_vl": qwen3_vl,
    "qwen3_vl_moe": lambda: qwen3_vl(moe=True),
    "glm4v": glm4v,
    "idefics3": idefics3,
    "smolvlm": lambda: idefics3(smol=True),
    "internvl": internvl,
    "aya_vision": aya_vision,
    "mistral3": mistral3,
    "llama4": llama4,
    "lfm2_vl": lfm2_vl,
}
