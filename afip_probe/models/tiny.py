"""Small random-weight VLMs built from configs: real transformers classes, no download.

Used by the tests, the benchmarks and as the skeleton of the model organism. Tokenizers are trained
on the spot with the `tokenizers` library: a Llama-style (SentencePiece-like BPE with ``▁``) one for
LLaVA and a Qwen-style (byte-level BPE) one for Qwen2-VL.

Example:
    >>> from afip_probe.models.tiny import tiny_llava
    >>> model, processor = tiny_llava(layers=2, heads=4, kv_heads=2)
    >>> type(model).__name__
    'LlavaForConditionalGeneration'
"""

from __future__ import annotations

import string
from typing import Any, Iterable

import numpy as np
import torch
import transformers
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

DEFAULT_CORPUS = [
    "the image shows a dog and a frisbee on the grass near a bench",
    "two hot dogs on a plate next to a cup and a teddy bear",
    "a person is riding a bicycle down the street past a car and a bus",
    "a cat sits on the couch in front of a tv with a remote",
    "there is a pizza on the dining table with a fork and a knife",
    "please describe this image in detail .",
    "is there a traffic light in the image ? yes no",
]

LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %} {% else %}ASSISTANT: {% for c in message['content'] %}{{ c['text'] }}{% endfor %}</s>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def llama_style_tokenizer(corpus: Iterable[str] = DEFAULT_CORPUS, vocab_size: int = 500) -> Any:
    """A SentencePiece-like BPE tokenizer (``▁`` word marker) with LLaVA's special tokens."""

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    alphabet = list(string.ascii_letters + string.digits + string.punctuation + "\n▁")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", "<pad>", "<image>"], initial_alphabet=alphabet
    )
    tok.train_from_iterator(list(corpus), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="left",
        extra_special_tokens={"image_token": "<image>"},
    )


def qwen_style_tokenizer(corpus: Iterable[str] = DEFAULT_CORPUS, vocab_size: int = 600) -> Any:
    """A byte-level BPE tokenizer with Qwen2-VL's special tokens."""

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=QWEN_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(list(corpus), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )


def _decoder_sizes(
    hidden: int, layers: int, heads: int, kv_heads: int | None, tok: Any, intermediate: int | None = None
) -> dict[str, Any]:
    """Decoder config fields shared by the tiny families."""
    return dict(
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        vocab_size=len(tok),
    )


def tiny_llava(
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = None,
    hidden: int = 64,
    image_size: int = 32,
    patch_size: int = 8,
    vision_layers: int = 2,
    vision_hidden: int = 32,
    tokenizer: Any = None,
    seed: int = 0,
    intermediate: int | None = None,
) -> tuple[Any, Any]:
    """A random-weight `LlavaForConditionalGeneration` and a matching `LlavaProcessor`.

    ``intermediate`` is the decoder's MLP width (default ``2 * hidden``).
    """
    tok = tokenizer or llama_style_tokenizer()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=2 * vision_hidden,
        num_hidden_layers=vision_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )
    text = LlamaConfig(
        **_decoder_sizes(hidden, layers, heads, kv_heads, tok, intermediate),
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    _set_generation_defaults(model, tok)
    return model, processor


def image_only(base: type) -> type:
    """`base`, a processor class that insists on a video processor (which needs torchvision), accepting none:
    for images only (Qwen-VL, GLM-4V, InternVL, SmolVLM, LLaVA-OneVision)."""

    class ImageOnlyProcessor(base):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    ImageOnlyProcessor.__name__ = base.__name__
    return ImageOnlyProcessor


def _qwen_processor_class(family: str) -> type:
    return image_only(transformers.Qwen2VLProcessor if family == "qwen2_vl" else transformers.Qwen2_5_VLProcessor)


def tiny_qwen2_vl(
    family: str = "qwen2_vl",
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = 2,
    hidden: int = 64,
    tokenizer: Any = None,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random-weight Qwen2-VL (or Qwen2.5-VL with ``family="qwen2_5_vl"``) and its processor."""
    tok = tokenizer or qwen_style_tokenizer()
    image_processor = transformers.Qwen2VLImageProcessor(
        min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    processor = _qwen_processor_class(family)(
        image_processor=image_processor, tokenizer=tok, video_processor=None, chat_template=QWEN_TEMPLATE
    )
    head_dim = hidden // heads
    half = head_dim // 2  # mrope sections (temporal, height, width) split the rotary half
    section = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    text = dict(
        **_decoder_sizes(hidden, layers, heads, kv_heads, tok),
        rope_scaling={"type": "mrope", "mrope_section": section},
        bos_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    ids = dict(
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    if family == "qwen2_vl":
        vision = dict(depth=2, embed_dim=32, hidden_size=hidden, num_heads=2, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2)
        config = transformers.Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
        cls = transformers.Qwen2VLForConditionalGeneration
    elif family == "qwen2_5_vl":
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, out_hidden_size=hidden, num_heads=2,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2, fullatt_block_indexes=[1],
                      window_size=56)
        config = transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
        cls = transformers.Qwen2_5_VLForConditionalGeneration
    else:
        raise ValueError(f"unknown Qwen family {family!r}: use qwen2_vl or qwen2_5_vl")
    torch.manual_seed(seed)
    model = cls(config).eval()
    _set_generation_defaults(model, tok)
    return model, processor


def _set_generation_defaults(model: Any, tok: Any) -> None:
    gen = model.generation_config
    gen.pad_token_id = tok.pad_token_id
    gen.eos_token_id = tok.eos_token_id
    gen.do_sample = False


def random_images(n: int, seed: int = 0, sizes: Iterable[tuple[int, int]] | None = None) -> list[Any]:
    """`n` random RGB PIL images (width, height from `sizes`, default 48x40)."""

    rng = np.random.default_rng(seed)
    sizes = list(sizes) if sizes is not None else [(48, 40)] * n
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for (w, h) in sizes[:n]]
