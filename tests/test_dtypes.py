"""Half precision and sampling: what GPU users run first.

Tracing in bf16 and fp16 (CPU supports both) generates the same tokens as plain SDPA generation in
that dtype, and records VAR and maps within the tolerances below of eager attention in that dtype
(teacher-forced on the traced tokens) and of the fp32 trace of the same weights. The score rows are
computed in fp32 from the half-precision queries and keys, so the recorded values sit between the two.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import afip_probe
from afip_probe.models import adapter_for, tiny

from .conftest import IMAGE_SIZES, PROMPTS

NEW_TOKENS = 8
# max |difference| allowed: (VAR vs eager in the dtype, maps vs eager in the dtype, VAR vs the fp32 trace)
TOLERANCE = {torch.float16: (5e-4, 5e-5, 2e-4), torch.bfloat16: (5e-3, 5e-4, 5e-4)}  # measured: 6e-5, 6e-6, 1e-5; 4e-4, 5e-5, 6e-5


def _setup(dtype):
    model, processor = tiny.tiny_llava(layers=2, heads=4, kv_heads=2)
    images = tiny.random_images(3, seed=1, sizes=IMAGE_SIZES)
    return model.to(dtype), processor, adapter_for(model, processor).build_inputs(images, PROMPTS[:3], device="cpu")


def _teacher_forced_eager(model, inputs, sequences):
    """Eager post-softmax attention of every layer over the traced sequences in one forward: [L, B, H, q, kv]."""
    model.set_attn_implementation("eager")
    try:
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(sequences[:, inputs["input_ids"].shape[1]:])], 1)
        with torch.no_grad():
            out = model(input_ids=sequences, attention_mask=mask, pixel_values=inputs["pixel_values"],
                        output_attentions=True)
    finally:
        model.set_attn_implementation("sdpa")
    return torch.stack([a.float() for a in out.attentions])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_tracing_in_half_precision(dtype):
    tol_var, tol_maps, tol_fp32 = TOLERANCE[dtype]
    model32, processor, inputs32 = _setup(torch.float32)
    with afip_probe.trace(model32, processor, level="maps", array_dtype="float32") as rec32:
        model32.generate(**inputs32, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    model, processor, inputs = _setup(dtype)
    assert inputs["pixel_values"].dtype == dtype
    plain = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    with afip_probe.trace(model, processor, level="maps", array_dtype="float32") as rec:
        traced = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    assert torch.equal(plain, traced)
    eager = _teacher_forced_eager(model, inputs, traced)  # [L, B, H, q, kv]
    prompt = inputs["input_ids"].shape[1]
    image_id = adapter_for(model, processor).image_token_id
    assert traced.shape[1] == prompt + NEW_TOKENS and len(rec.traces) == len(traced)
    for b, tr in enumerate(rec.traces):
        # every generated token is recorded, no more (min_new_tokens: no end of sequence before the last)
        assert tr.generated_ids == traced[b, prompt:].tolist()
        assert tr.head["var"].shape[0] == tr.maps.shape[0] == NEW_TOKENS
        pos = (inputs["input_ids"][b] == image_id).nonzero().flatten()
        a = eager[:, b, :, prompt - 1: prompt - 1 + NEW_TOKENS][..., pos]  # [L, H, T, n]
        np.testing.assert_allclose(tr.head["var"], a.sum(-1).permute(2, 0, 1).numpy(), atol=tol_var, rtol=0)
        np.testing.assert_allclose(tr.maps, a.mean(1).permute(1, 0, 2).numpy(), atol=tol_maps, rtol=0)
        ref = rec32.traces[b]
        same = next((t for t, (x, y) in enumerate(zip(tr.generated_ids, ref.generated_ids)) if x != y),
                    min(tr.num_tokens, ref.num_tokens))
        assert same >= 4  # the fp32 run writes (at least) the same first tokens
        np.testing.assert_allclose(tr.head["var"][:same], ref.head["var"][:same], atol=tol_fp32, rtol=0)


def test_sampling_traced_equals_plain():
    """With a fixed seed, do_sample=True generation with the interceptor on is token-identical to plain."""
    model, processor, inputs = _setup(torch.float32)
    kw = dict(max_new_tokens=10, do_sample=True, temperature=1.3, top_k=20)
    torch.manual_seed(7)
    plain = model.generate(**inputs, **kw)
    torch.manual_seed(7)
    with afip_probe.trace(model, processor) as rec:
        traced = model.generate(**inputs, **kw)
    assert torch.equal(plain, traced)
    torch.manual_seed(8)
    assert not torch.equal(plain, model.generate(**inputs, **kw))  # sampling does change with the seed
    eos = model.generation_config.eos_token_id
    for row, tr in zip(traced, rec.traces):
        ids = row.tolist()[inputs["input_ids"].shape[1]:]
        length = ids.index(eos) + 1 if eos in ids else len(ids)  # up to the end of sequence, padding after it
        assert tr.generated_ids == ids[:length] and tr.head["var"].shape[0] == length
