"""The interceptor against independent references: plain SDPA generation and eager output_attentions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transformers import AttentionInterface

import afip_probe
from afip_probe.hooks import is_intercepted, last_row_scores
from afip_probe.records import HEAD_FIELDS
from afip_probe.models import adapter_for, tiny

from .conftest import IMAGE_SIZES, PROMPTS

_GET_INTERFACE = AttentionInterface.get_interface  # transformers' own, restored when every session closes

NEW_TOKENS = 7
TOL = 1e-5


def _inputs(model, processor, n=3):
    adapter = adapter_for(model, processor)
    return adapter.build_inputs(tiny.random_images(n, seed=1, sizes=IMAGE_SIZES), PROMPTS[:n])


def _eager_rows(model, inputs):
    """Last-row post-softmax attention of every step and layer from eager output_attentions."""
    model.set_attn_implementation("eager")
    try:
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                             output_attentions=True, return_dict_in_generate=True)
    finally:
        model.set_attn_implementation("sdpa")
    # steps x layers x [B, H, q, kv] -> per step [L, B, H, kv]
    return out.sequences, [torch.stack([a[:, :, -1, :].float() for a in step]) for step in out.attentions]


def test_generation_identical_and_implementation_restored(family_model):
    _, model, processor = family_model
    inputs = _inputs(model, processor)
    plain = model.generate(**inputs, max_new_tokens=NEW_TOKENS)
    with afip_probe.trace(model, processor, level="full") as rec:
        traced = model.generate(**inputs, max_new_tokens=NEW_TOKENS)
    assert torch.equal(plain, traced)
    assert len(rec.traces) == 3
    for cfg in (model.config, model.config.text_config, model.config.vision_config):
        assert cfg._attn_implementation == "sdpa"
    assert "generate" not in model.__dict__


def test_restored_after_exception(family_model):
    _, model, processor = family_model
    with pytest.raises(RuntimeError, match="boom"):
        with afip_probe.trace(model, processor):
            assert is_intercepted(model) and model.config.text_config._attn_implementation == "sdpa"
            raise RuntimeError("boom")
    assert not is_intercepted(model) and AttentionInterface.get_interface is _GET_INTERFACE
    assert "generate" not in model.__dict__


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "single-read"])
@pytest.mark.parametrize("n", [3, 1], ids=["padded-batch", "single"])  # gathered and sliced image keys
def test_records_equal_eager_output_attentions(family_model, n, exact):
    """Every step, layer and head: image attention, VAR, the maxima and Eqs. 1 and 3 equal eager's, in both
    output modes (`trace(exact=False)` computes decoding steps from the recorded row)."""
    _, model, processor = family_model
    inputs = _inputs(model, processor, n)
    sequences, eager = _eager_rows(model, inputs)
    with afip_probe.trace(model, processor, level="full", array_dtype="float32", exact=exact) as rec:
        traced = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    assert torch.equal(sequences, traced)
    assert len(rec.traces) == n
    ids = inputs["input_ids"]
    pad = (inputs["attention_mask"] == 0).sum(-1)
    image_id = adapter_for(model, processor).image_token_id
    for b, tr in enumerate(rec.traces):
        img_pos = (ids[b] == image_id).nonzero().flatten()
        assert tr.layout.positions == (img_pos - pad[b]).tolist()
        for t in range(NEW_TOKENS):
            a = eager[t][:, b]  # [L, H, kv]
            kv = a.shape[-1]
            is_img = torch.zeros(kv, dtype=torch.bool)
            is_img[img_pos] = True
            text = ~is_img
            text[: pad[b]] = False
            text[-1] = False
            post = torch.exp(torch.from_numpy(tr.scores[t]) - torch.from_numpy(tr.head["lse"][t])[..., None])
            np.testing.assert_allclose(post.numpy(), a[:, :, img_pos].numpy(), atol=TOL, rtol=0)
            np.testing.assert_allclose(tr.maps[t], a[:, :, img_pos].mean(1).numpy(), atol=TOL, rtol=0)
            np.testing.assert_allclose(tr.head["var"][t], a[:, :, img_pos].sum(-1).numpy(), atol=TOL, rtol=0)
            lse = tr.head["lse"][t]
            np.testing.assert_allclose(np.exp(tr.head["img_max_score"][t] - lse),
                                       a[:, :, img_pos].amax(-1).numpy(), atol=TOL, rtol=0)
            np.testing.assert_allclose(np.exp(tr.head["txt_max_score"][t] - lse),
                                       a[:, :, text].amax(-1).numpy(), atol=TOL, rtol=0)
            np.testing.assert_allclose(tr.head["txt_mean_prob"][t], a[:, :, text].mean(-1).numpy(), atol=TOL, rtol=0)
            a_img = a[:, :, img_pos].double()  # [L, H, n]
            a_bar = a_img.mean(1)
            np.testing.assert_allclose(tr.layer["attn_entropy"][t], -(a_bar * torch.log(a_bar + 1e-8)).sum(-1).numpy(),
                                       atol=1e-4, rtol=0)
            p = a_img / a_img.sum(-1, keepdim=True)
            kl = (p * (torch.log(p) - torch.log(p.mean(1, keepdim=True)))).sum(-1)  # [L, H]
            np.testing.assert_allclose(tr.head["kl_to_mean"][t], kl.numpy(), atol=1e-4, rtol=0)


def test_batch_equals_single_runs(family_model):
    """A left-padded batch of 3 records the same as three single-sample runs."""
    _, model, processor = family_model
    adapter = adapter_for(model, processor)
    images = tiny.random_images(3, seed=2, sizes=IMAGE_SIZES)
    with afip_probe.trace(model, processor, level="maps", array_dtype="float32") as rec:
        model.generate(**adapter.build_inputs(images, PROMPTS), max_new_tokens=NEW_TOKENS)
        for i in range(3):
            model.generate(**adapter.build_inputs(images[i:i + 1], PROMPTS[i:i + 1]), max_new_tokens=NEW_TOKENS)
    batch, singles = rec.traces[:3], rec.traces[3:]
    for got, ref in zip(batch, singles):
        assert got.generated_ids == ref.generated_ids
        assert got.prompt_ids == ref.prompt_ids
        assert got.layout == ref.layout
        for f in HEAD_FIELDS:
            np.testing.assert_allclose(got.head[f], ref.head[f], atol=5e-5, rtol=1e-5, err_msg=f)
        np.testing.assert_allclose(got.maps, ref.maps, atol=TOL)
        np.testing.assert_allclose(got.token_entropy, ref.token_entropy, atol=5e-5)
        np.testing.assert_allclose(got.logprob, ref.logprob, atol=5e-5)


def test_token_entropy_and_logprob_from_raw_logits():
    """Eq. 4 reads the raw logits, not the processed scores: with a logits processor on (a repetition
    penalty), the two differ, and the recorded values equal the raw ones only."""
    model, processor = tiny.tiny_llava()
    inputs = _inputs(model, processor, n=2)
    kw = dict(max_new_tokens=5, repetition_penalty=3.0, do_sample=False)
    out = model.generate(**inputs, output_logits=True, output_scores=True, return_dict_in_generate=True, **kw)
    with afip_probe.trace(model, processor) as rec:
        traced = model.generate(**inputs, **kw)
    assert torch.equal(traced, out.sequences)
    gen = out.sequences[:, inputs["input_ids"].shape[1]:]
    differs = 0
    for b, tr in enumerate(rec.traces):
        logp = torch.log_softmax(torch.stack([lg[b] for lg in out.logits]).float(), -1)[: tr.num_tokens]
        ent = -(logp.exp() * logp).sum(-1)
        np.testing.assert_allclose(tr.token_entropy, ent.numpy(), atol=1e-5)
        chosen = logp.gather(-1, gen[b, : tr.num_tokens, None]).squeeze(-1)
        np.testing.assert_allclose(tr.logprob, chosen.numpy(), atol=1e-5)
        processed = torch.log_softmax(torch.stack([s[b] for s in out.scores]).float(), -1)[: tr.num_tokens]
        differs += int(not np.allclose(tr.token_entropy, -(processed.exp() * processed).sum(-1).numpy(), atol=1e-3))
    assert differs == len(rec.traces)  # the processed scores would have given other values


def test_last_row_scores_masks():
    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 3, 8), torch.randn(2, 2, 5, 8)
    scores, allowed = last_row_scores(q, k, None, 0.5)
    ref = torch.einsum("bhd,bhkd->bhk", q[:, :, -1], k.repeat_interleave(2, dim=1)) * 0.5
    torch.testing.assert_close(scores, ref)
    assert allowed.all()
    mask = torch.ones(2, 1, 3, 5, dtype=torch.bool)
    mask[0, :, :, :2] = False
    scores_b, allowed_b = last_row_scores(q, k, mask, 0.5)
    assert torch.isinf(scores_b[0, :, :2]).all() and not allowed_b[0, :2].any()
    additive = torch.zeros(2, 1, 3, 5).masked_fill(~mask, torch.finfo(torch.float32).min)
    scores_f, allowed_f = last_row_scores(q, k, additive, 0.5)
    torch.testing.assert_close(allowed_f, allowed_b)
    torch.testing.assert_close(scores_f, scores_b)


def test_text_only_model_rejected():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, vocab_size=50))
    with pytest.raises(afip_probe.AfipError, match="not a vision-language model"):
        with afip_probe.trace(model):
            pass


class _CloneScores:
    """A modifier that hands back an equal copy: forces the last row's output to be recomputed."""

    def __init__(self):
        self.calls = 0

    def modify(self, layer, scores, context):
        self.calls += 1
        assert context.is_image.shape == scores.shape[::2]
        return scores.clone()


def test_modifier_row_recomputation_matches_sdpa(family_model):
    """Output recomputed from (unchanged) scores equals SDPA's, so generation stays token-identical."""
    _, model, processor = family_model
    inputs = _inputs(model, processor)
    plain = model.generate(**inputs, max_new_tokens=NEW_TOKENS)
    modifier = _CloneScores()
    with afip_probe.intercept(model, [modifier], processor):
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS)
    assert torch.equal(plain, out)
    assert modifier.calls == NEW_TOKENS * adapter_for(model, processor).num_layers


class _OnlyLayer(_CloneScores):
    """A modifier that declares the one layer it acts on."""

    def __init__(self, layer):
        super().__init__()
        self.layers_seen = set()
        self.layer = layer

    def layer_set(self, num_layers):
        return {self.layer}

    def modify(self, layer, scores, context):
        self.layers_seen.add(layer)
        return super().modify(layer, scores, context)


def test_modifier_layer_set_limits_the_layers_it_sees(family_model):
    _, model, processor = family_model
    inputs = _inputs(model, processor, 1)
    modifier = _OnlyLayer(1)
    with afip_probe.intercept(model, [modifier], processor):
        model.generate(**inputs, max_new_tokens=3, min_new_tokens=3)
    assert modifier.layers_seen == {1} and modifier.calls == 3


def test_trace_and_correct_work_without_with():
    """For notebooks: trace() and correct() act from the call until close(), exactly as their with-blocks."""
    from afip_probe.correctors import AFIP

    model, processor = tiny.tiny_llava(layers=3, heads=4, kv_heads=2)
    inputs = adapter_for(model, processor).build_inputs(tiny.random_images(2, sizes=IMAGE_SIZES[:2]), PROMPTS[:2])
    impl = model.config.text_config._attn_implementation
    with afip_probe.trace(model, processor) as rec_with:
        with afip_probe.correct(model, AFIP(layers=[1, 2], tau=100.0, gamma=2.0)):
            out_with = model.generate(**inputs, max_new_tokens=5, do_sample=False)

    rec = afip_probe.trace(model, processor)
    fix = afip_probe.correct(model, AFIP(layers=[1, 2], tau=100.0, gamma=2.0))
    assert is_intercepted(model) and model.config.text_config._attn_implementation == impl and fix.is_open
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    fix.close()
    fix.close()  # idempotent
    plain_inside_trace = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    rec.close()
    rec.close()
    assert not is_intercepted(model) and "generate" not in model.__dict__
    assert AttentionInterface.get_interface is _GET_INTERFACE
    assert torch.equal(out, out_with)
    assert len(rec.traces) == 4  # two generate() calls of two samples each
    for a, b in zip(rec.traces[:2], rec_with.traces):
        np.testing.assert_array_equal(a.head["var"], b.head["var"])
        np.testing.assert_array_equal(a.corrected.head["var"], b.corrected.head["var"])
    assert rec.traces[2].corrected is None  # the corrector was closed before the third call
    assert torch.equal(plain_inside_trace, model.generate(**inputs, max_new_tokens=5, do_sample=False))


def test_batched_summaries_equal_per_step_ones(family_model, monkeypatch):
    """Small rows are staged and summarised many steps at once (`recorder._Block`); the records equal those
    summarised step by step."""
    from afip_probe.hooks import recorder

    _, model, processor = family_model
    inputs = _inputs(model, processor)
    runs, staged = {}, []
    stage = recorder._Block.stage
    monkeypatch.setattr(recorder._Block, "stage", lambda self, *a: (staged.append(self.start), stage(self, *a)))
    monkeypatch.setattr(recorder._Block, "MAX_STEPS", 4)  # several blocks in 7 steps
    for name, min_steps in (("batched", 2), ("per-step", 10**9)):
        monkeypatch.setattr(recorder._Block, "MIN_STEPS", min_steps)
        with afip_probe.trace(model, processor, level="full", array_dtype="float32") as rec:
            model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        runs[name] = rec.traces
        if name == "batched":
            assert sorted(set(staged)) == [0, 4], staged  # two blocks: steps 0-3 and 4-6
    for a, b in zip(runs["batched"], runs["per-step"]):
        for f in HEAD_FIELDS:
            np.testing.assert_allclose(a.head[f], b.head[f], atol=1e-6, rtol=1e-6, err_msg=f)
        for f in a.layer:
            np.testing.assert_allclose(a.layer[f], b.layer[f], atol=1e-6, rtol=1e-6, err_msg=f)
        np.testing.assert_allclose(a.maps, b.maps, atol=1e-7)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def test_attention_resolved_elsewhere_is_refused_not_missed():
    """A model that resolves its attention function without `AttentionInterface.get_interface` would run unseen:
    its first forward pass raises, naming the layers, instead of recording nothing."""
    from afip_probe.hooks import interceptor

    model, processor = tiny.tiny_llava(layers=2, heads=4, kv_heads=2)
    inputs = _inputs(model, processor, n=1)
    with afip_probe.trace(model, processor):
        AttentionInterface.get_interface = _GET_INTERFACE  # as such a model would resolve it
        try:
            with pytest.raises(afip_probe.AfipError, match=r"decoder layers \[0, 1\] .* did not go through"):
                model.generate(**inputs, max_new_tokens=2)
        finally:
            AttentionInterface.get_interface = interceptor._intercepting_get_interface
