"""Tracing keeps the model's own attention kernel: the tokens and logits of traced generation are those of plain
generation, bit for bit, whatever attention implementation and dtype the model was loaded with.

For eager, sdpa and flex_attention in fp32, fp16 and bf16, on the tiny LLaVA and three other families (a
windowed one: Mistral 3's sliding window is shorter than the sequence; a softcapped one: PaliGemma 2, scores of
order 10 against a cap of 2; a tiled one: Idefics3's crops + global image), with a left-padded batch of images
of different sizes:

- traced generation writes the same tokens and bit-identical logits as plain generation, and the model keeps
  its implementation while traced;
- the recorded per-head VAR and maps equal the attention of eager generation in the same dtype, forced to the
  traced tokens (`output_attentions`), within each dtype's tolerance.

A stand-in kernel registered with `AttentionInterface` the way a flash kernel is (its mask is the 2D padding
mask or none, and it applies ``sliding_window`` itself) computes every decoder layer's output while tracing.

flex_attention runs uncompiled here (`_uncompiled_flex`): torch 2.13's inductor fails to compile CPU flex
kernels for some of these shapes (CppCompileError) and compiling costs ~20 s per shape; the uncompiled
function takes the same BlockMask and is what transformers calls, so plain and traced runs are compared
on equal terms. PaliGemma 2 with sdpa does not exist: transformers refuses it (SDPA cannot softcap).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AttentionInterface, LogitsProcessor, LogitsProcessorList
from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

import afip_probe
from afip_probe.models import adapter_for, tiny

from . import families
from .test_families import PROMPTS, SIZES, _at_positions

NEW_TOKENS = 5
IMPLEMENTATIONS = ["eager", "sdpa", "flex_attention"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: max |recorded - eager| of (VAR, maps) per dtype, those of tests/test_families.py and tests/test_dtypes.py: the
#: score rows are computed in fp32 from the dtype's q and K, eager in the dtype itself. Measured worst cases over
#: the three implementations: fp32 3e-7 / 2e-8; fp16 4e-5 / 9e-6; bf16 4e-4 / 8e-5 (PaliGemma 2 aside)
TOLERANCE = {"fp32": (1e-5, 1e-5), "fp16": (5e-4, 5e-5), "bf16": (5e-3, 5e-4)}
#: PaliGemma 2's scores are ~100x the others' (order 10, to make its cap of 2 matter), and half-precision q·K
#: rounding grows with them: measured fp16 8e-4 / 1.4e-4, bf16 7.4e-3 / 2.1e-3; its half-precision tolerances x6
TOLERANCE_SCALE = {"paligemma2": 6.0}
MODELS = {
    "llava": lambda: tiny.tiny_llava(layers=2, heads=4, kv_heads=2),
    "mistral3": families.mistral3,  # windowed
    "paligemma2": families.BUILDERS["paligemma2"],  # softcapped
    "idefics3": families.idefics3,  # tiled
}


@pytest.fixture
def _uncompiled_flex(monkeypatch):
    """transformers' flex_attention path with torch's flex_attention and create_block_mask uncompiled."""
    import transformers.integrations.flex_attention as integration
    import transformers.masking_utils as masking
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    monkeypatch.setattr(integration.WrappedFlexAttention, "__call__", lambda self: flex_attention)
    monkeypatch.setattr(masking, "create_block_mask",
                        lambda *args, **kwargs: create_block_mask(*args, **{**kwargs, "_compile": False}))


class _Forced(LogitsProcessor):
    """Chooses the given sequences' tokens, step by step (so a reference run generates the traced tokens)."""

    def __init__(self, sequences: torch.Tensor, prompt: int):
        self.sequences, self.prompt = sequences, prompt

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        chosen = self.sequences[:, input_ids.shape[1]]
        return torch.full_like(scores, float("-inf")).scatter_(1, chosen[:, None], 0.0)


def _setup(name: str, impl: str, dtype: torch.dtype):
    model, processor = MODELS[name]()
    model.to(dtype)
    model.set_attn_implementation({"text_config": impl})
    adapter = adapter_for(model, processor)
    inputs = adapter.build_inputs(tiny.random_images(3, seed=1, sizes=SIZES), PROMPTS)
    inputs = {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in inputs.items()}
    return model, processor, adapter, inputs


def _generate(model, inputs, **kwargs):
    return model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                          output_logits=True, return_dict_in_generate=True, **kwargs)


def _assert_identical(plain, traced):
    assert torch.equal(plain.sequences, traced.sequences)
    assert len(plain.logits) == len(traced.logits) == NEW_TOKENS
    for a, b in zip(plain.logits, traced.logits):
        assert torch.equal(a, b), float((a.float() - b.float()).abs().max())


def _assert_records_equal_eager(model, adapter, inputs, traced, rec, tolerance):
    """Recorded VAR and maps against eager attention in the model's dtype, forced to the traced tokens."""
    impl = model.config.text_config._attn_implementation
    prompt = inputs["input_ids"].shape[1]
    model.set_attn_implementation({"text_config": "eager"})
    try:
        eager = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                               output_attentions=True, return_dict_in_generate=True,
                               logits_processor=LogitsProcessorList([_Forced(traced.sequences, prompt)]))
    finally:
        model.set_attn_implementation({"text_config": impl})
    assert torch.equal(eager.sequences, traced.sequences)
    is_image = inputs["input_ids"] == adapter.image_token_id
    tol_var, tol_maps = tolerance
    assert len(rec.traces) == len(inputs["input_ids"])
    for b, tr in enumerate(rec.traces):
        assert tr.num_tokens == NEW_TOKENS
        img = is_image[b].nonzero().flatten()
        for t, step in enumerate(eager.attentions):
            rows = [a[b, :, -1, :].float() for a in step if a is not None]
            assert len(rows) == adapter.num_layers
            for layer, row in enumerate(rows):
                a_img = _at_positions(row, prompt + t)[:, img]  # [H, n]
                np.testing.assert_allclose(tr.head["var"][t, layer], a_img.sum(-1).numpy(), atol=tol_var, rtol=0,
                                           err_msg=f"step {t} layer {layer}")
                np.testing.assert_allclose(tr.maps[t, layer], a_img.mean(0).numpy(), atol=tol_maps, rtol=0,
                                           err_msg=f"step {t} layer {layer}")


@pytest.mark.usefixtures("_uncompiled_flex")
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", list(MODELS))
def test_traced_generation_keeps_the_models_own_kernel(name, impl, dtype):
    if name == "paligemma2" and impl == "sdpa":
        with pytest.raises(ValueError, match="does not support an attention implementation through torch"):
            _setup(name, impl, DTYPES[dtype])
        return
    model, processor, adapter, inputs = _setup(name, impl, DTYPES[dtype])
    plain = _generate(model, inputs)
    with afip_probe.trace(model, processor, level="maps", array_dtype="float32") as rec:
        traced = _generate(model, inputs)
        assert model.config.text_config._attn_implementation == impl  # never switched away
    _assert_identical(plain, traced)
    scale = TOLERANCE_SCALE.get(name, 1.0) if dtype != "fp32" else 1.0
    _assert_records_equal_eager(model, adapter, inputs, traced, rec, tuple(t * scale for t in TOLERANCE[dtype]))


def stand_in_kernel(calls: list[int]):
    """An attention function as a flash kernel is plugged in: it gets the 2D padding mask (or none) and applies
    causality and ``sliding_window`` itself (here with SDPA on a boolean mask it builds). Counts its calls."""

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, sliding_window=None,
                  **kwargs):
        calls[0] += 1
        b, h, q, d = query.shape
        kv = key.shape[2]
        pos_q, pos_k = torch.arange(kv - q, kv)[:, None], torch.arange(kv)[None, :]
        allowed = pos_k <= pos_q
        if sliding_window is not None:
            allowed = allowed & (pos_k > pos_q - sliding_window)
        allowed = allowed[None, None].expand(b, 1, q, kv)
        if attention_mask is not None:  # the 2D padding mask
            allowed = allowed & attention_mask[:, None, None, -kv:].bool()
        allowed = allowed | (pos_k == pos_q)  # a padding row sees itself (no all-masked row)
        rep = h // key.shape[1]
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1), attn_mask=allowed, scale=scaling)
        return out.transpose(1, 2).contiguous(), None

    return attention


@pytest.mark.parametrize("name", ["llava", "mistral3"])
def test_a_registered_kernel_computes_every_output_while_tracing(name):
    """A kernel registered in `AttentionInterface` (as flash_attention_2 is) is the one that computes the outputs
    while tracing: it is called for every decoder layer of every forward pass, the logits are bit-identical to
    plain generation with it, and the records equal eager attention (its mask: the 2D padding mask; Mistral 3's
    sliding window applied by the kernel, and by the recorder to the last row)."""
    calls = [0]
    AttentionInterface.register("afip_stand_in", stand_in_kernel(calls))
    AttentionMaskInterface.register("afip_stand_in", flash_attention_mask)
    model, processor, adapter, inputs = _setup(name, "afip_stand_in", torch.float32)
    assert len(set((inputs["attention_mask"] == 0).sum(-1).tolist())) > 1  # left padding: a 2D mask reaches it
    plain = _generate(model, inputs)
    calls[0] = 0
    with afip_probe.trace(model, processor, level="maps", array_dtype="float32") as rec:
        traced = _generate(model, inputs)
    assert calls[0] == NEW_TOKENS * adapter.num_layers  # one call per layer and forward pass
    _assert_identical(plain, traced)
    _assert_records_equal_eager(model, adapter, inputs, traced, rec, TOLERANCE["fp32"])
