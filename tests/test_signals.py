"""Every published hallucination signal, computed from a trace, equals a slow reference computed straight from
the papers' definitions on eager `output_attentions` / `output_hidden_states` (fp32, 1e-5): on LLaVA, on a
tiled family (Idefics3: crops and a global image, ADS's components never crossing a tile) and on a windowed
one (Gemma 3: keys that left a sliding window count as no attention), for a left-padded batch of three image
sizes. The hidden-state record itself equals eager `output_hidden_states`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import afip_probe
from afip_probe.hooks.hidden import decoder_parts
from afip_probe.metrics.signals import CGC_TOP_K, SampleContext, signal_columns
from afip_probe.models import adapter_for, tiny

from . import families

NEW_TOKENS = 6
TOL = 1e-5
SIZES = [(64, 48), (30, 50), (40, 40)]
PROMPTS = ["describe", "please describe this image in detail .", "is there a dog in the image ?"]


@pytest.fixture(scope="module", params=["llava", "idefics3", "gemma3"])
def run(request):
    """(adapter, inputs, eager generate() output, traced SampleTraces, tiles) of one family."""
    model, processor = tiny.tiny_llava() if request.param == "llava" else families.BUILDERS[request.param]()
    adapter = adapter_for(model, processor)
    images = tiny.random_images(3, seed=1, sizes=SIZES)
    inputs = adapter.build_inputs(images, PROMPTS)
    before = model.config.text_config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        eager = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, output_attentions=True,
                               output_hidden_states=True, return_dict_in_generate=True)
    finally:
        model.set_attn_implementation(before)
    with afip_probe.trace(model, processor, level="maps", array_dtype="float32", hidden="all") as rec:
        traced = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    assert torch.equal(traced, eager.sequences)
    tiles = [adapter.tiles(tr.layout, tr.prompt_ids, im.width, im.height) for tr, im in zip(rec.traces, images)]
    if request.param == "idefics3":
        assert all(len(t) > 1 for t in tiles)  # crops and the global image
    return request.param, model, adapter, inputs, eager, rec.traces, tiles


def _attention(eager, t: int, layer: int, b: int, seq: int) -> np.ndarray:
    """Eager last-row attention of step t, layer, sample b at sequence positions [H, seq] (a windowed layer's
    keys that left the window: 0)."""
    row = eager.attentions[t][layer][b, :, -1, :].double().numpy()  # [H, kv]
    out = np.zeros((row.shape[0], seq))
    out[:, seq - row.shape[1]:] = row[:, -seq:]
    return out


def _parts(run_, b: int):
    """Sequence positions of sample b: prompt (unpadded), image, prompt text."""
    _, _, adapter, inputs, _, _, _ = run_
    ids = inputs["input_ids"][b]
    pad = int((inputs["attention_mask"][b] == 0).sum())
    prompt = list(range(pad, ids.shape[0]))
    image = [p for p in prompt if int(ids[p]) == adapter.image_token_id]
    text = [p for p in prompt if p not in image]
    return prompt, image, text


def _context(run_, b: int) -> SampleContext:
    _, _, adapter, _, _, traces, tiles = run_
    return SampleContext.from_trace(traces[b], tiles[b], adapter.num_layers, tuple(range(adapter.decoder_depth + 1)))


def test_the_hidden_state_record_equals_eager(run):
    """`hidden` [T, K, d] (every index 0..L, the row that chose each token) and `image_hidden` [K, n, d] (the image
    tokens at prefill) equal `output_hidden_states`."""
    name, _, adapter, _, eager, traces, _ = run
    for b, tr in enumerate(traces):
        _, image, _ = _parts(run, b)
        assert tr.hidden.shape == (NEW_TOKENS, adapter.decoder_depth + 1, eager.hidden_states[0][0].shape[-1])
        for t in range(NEW_TOKENS):
            ref = np.stack([h[b, -1].numpy() for h in eager.hidden_states[t]])
            np.testing.assert_allclose(tr.hidden[t], ref, atol=TOL, rtol=0, err_msg=f"{name} step {t}")
        ref = np.stack([h[b, image].numpy() for h in eager.hidden_states[0]])
        np.testing.assert_allclose(tr.image_hidden, ref, atol=TOL, rtol=0)


def test_lookback_ratio_parts_pas_and_svar_equal_the_definitions(run):
    """Per head: the lookback ratio (mean attention per prompt key over that plus the mean per generated key),
    the image / prompt-text / generated shares of the per-key means; PAS (the attention on previously generated
    tokens, mean over a layer's heads) at every layer; SVAR (image attention summed over heads and layers)."""
    name, _, adapter, inputs, eager, traces, _ = run
    seq0 = inputs["input_ids"].shape[1]
    for b, tr in enumerate(traces):
        prompt, image, text = _parts(run, b)
        cols = signal_columns(tr.arrays(), _context(run, b), ["lookback_heads", "lookback_split_heads", "pas", "svar"])
        for t in range(NEW_TOKENS):
            generated = list(range(seq0, seq0 + t))  # the keys generated before step t
            svar = 0.0
            for layer in range(adapter.num_layers):
                a = _attention(eager, t, layer, b, seq0 + t)
                for h in range(a.shape[0]):
                    ctx = sum(a[h, p] for p in prompt) / len(prompt)
                    gen = sum(a[h, p] for p in generated) / t if t else 0.0
                    np.testing.assert_allclose(cols[f"lookback_l{layer}_h{h}"][t], ctx / (ctx + gen), atol=TOL,
                                               err_msg=f"{name} step {t} layer {layer} head {h}")
                    means = [sum(a[h, p] for p in image) / len(image), sum(a[h, p] for p in text) / len(text), gen]
                    np.testing.assert_allclose(cols[f"lookback_image_l{layer}_h{h}"][t], means[0] / sum(means),
                                               atol=TOL)
                    np.testing.assert_allclose(cols[f"lookback_text_l{layer}_h{h}"][t], means[1] / sum(means),
                                               atol=TOL)
                pas = np.mean([sum(a[h, p] for p in generated) for h in range(a.shape[0])])
                np.testing.assert_allclose(cols[f"pas_layer{layer}"][t], pas, atol=TOL, err_msg=f"{name} PAS {t}")
                svar += sum(a[h, p] for h in range(a.shape[0]) for p in image)
            np.testing.assert_allclose(cols["svar_all"][t], svar, atol=TOL * adapter.num_layers)


def _dispersion(p: list[float], tiles, top: float = 0.1, min_blob: int = 2) -> float:
    """ADS straight from its definition (docs/signals.md): loops and a breadth-first flood fill per tile."""
    slots = sorted({c for tile in tiles for c in tile.cells})
    total = sum(p[s] for s in slots)
    if total == 0:  # no attention on the image (it left a sliding window)
        return math.nan
    q = {s: p[s] / total for s in slots}
    k = math.ceil(top * len(slots))
    fg = set(sorted(slots, key=lambda s: (-q[s], s))[:k])
    where = {c: (i, r, col) for i, tile in enumerate(tiles) for r in range(tile.grid[0]) for col in range(tile.grid[1])
             for c in [tile.cells[r * tile.grid[1] + col]]}
    cell = {v: c for c, v in where.items()}
    seen, sinks, blobs = set(), set(), set()
    for start in fg:
        if start in seen:
            continue
        comp, todo = {start}, [start]
        while todo:
            i, r, col = where[todo.pop()]
            for nb in ((i, r + 1, col), (i, r - 1, col), (i, r, col + 1), (i, r, col - 1)):
                c = cell.get(nb)
                if c is not None and c in fg and c not in comp:
                    comp.add(c)
                    todo.append(c)
        seen |= comp
        (sinks if len(comp) < min_blob else blobs).update(comp)
    kept = sum(q[s] for s in slots if s not in sinks)
    if kept == 0:  # all of it on sinks
        return math.nan
    mass = sum(q[s] for s in blobs) / kept
    bg = [q[s] / kept for s in slots if s not in fg]
    z = sum(bg)
    entropy = -sum(x / z * math.log(x / z) for x in bg if x > 0)
    return (1 - mass) * entropy / math.log(len(bg))


def test_attention_dispersion_equals_its_definition_on_the_tiles(run):
    """ADS of every step and layer from the token's head-mean map over the image at sequence positions (eager),
    on the sample's tiles."""
    name, _, adapter, inputs, eager, traces, tiles = run
    seq0 = inputs["input_ids"].shape[1]
    for b, tr in enumerate(traces):
        _, image, _ = _parts(run, b)
        cols = signal_columns(tr.arrays(), _context(run, b), ["ads"])
        for t in range(NEW_TOKENS):
            for layer in range(adapter.num_layers):
                a = _attention(eager, t, layer, b, seq0 + t)[:, image].mean(0)
                np.testing.assert_allclose(cols[f"ads_layer{layer}"][t], _dispersion(list(a), tiles[b]), atol=TOL,
                                           err_msg=f"{name} step {t} layer {layer}")


def _logprob(model, adapter, state: torch.Tensor, index: int, token: int) -> float:
    """log p(token) under the logit lens of a hidden state at `index` (the final norm unless it is the last)."""
    _, norm = decoder_parts(adapter)
    z = state if index == adapter.decoder_depth else norm(state)
    logits = model.get_output_embeddings()(z).double()
    cap = getattr(adapter.text_config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return float(torch.log_softmax(logits, -1)[token])


def test_grounding_consistency_and_internal_confidence_equal_their_definitions(run):
    """CGC (mean of the top-k cosines between the token's state, its choosing row's or its own position's, and
    the image tokens' states) at every hidden index; IC (the best logit-lens probability of the token over the
    indices) from the choosing row and, Jiang et al.'s form, from the image tokens."""
    name, model, adapter, inputs, eager, traces, _ = run
    depth = adapter.decoder_depth
    for b, tr in enumerate(traces):
        _, image, _ = _parts(run, b)
        cols = signal_columns(tr.arrays(), _context(run, b), ["cgc", "ic", "image_ic"])
        ids = tr.generated_ids
        for t in range(NEW_TOKENS):
            for k in range(depth + 1):
                patches = eager.hidden_states[0][k][b, image].double()
                for position, step in (("row", t), ("own", t + 1)):
                    if step >= NEW_TOKENS:
                        assert np.isnan(cols[f"cgc_{position}_h{k}"][t])  # the last token has no own state yet
                        continue
                    z = eager.hidden_states[step][k][b, -1].double()
                    cos = sorted((float(z @ v / (z.norm() * v.norm())) for v in patches if v.norm() > 0), reverse=True)
                    want = np.mean(cos[:CGC_TOP_K]) if cos and z.norm() > 0 else np.nan  # zero states: no direction
                    np.testing.assert_allclose(cols[f"cgc_{position}_h{k}"][t], want, atol=TOL,
                                               err_msg=f"{name} {position} step {t} index {k}")
            with torch.no_grad():
                row = [_logprob(model, adapter, eager.hidden_states[t][k][b, -1], k, ids[t]) for k in range(depth + 1)]
                img = [_logprob(model, adapter, eager.hidden_states[0][k][b, p], k, ids[t])
                       for k in range(depth + 1) for p in image]
            np.testing.assert_allclose(cols["ic"][t], math.exp(max(row)), atol=TOL, err_msg=f"{name} IC {t}")
            np.testing.assert_allclose(cols["image_ic"][t], math.exp(max(img)), atol=TOL)
            np.testing.assert_allclose(tr.lens[t, depth], tr.logprob[t], atol=TOL)  # the last lens: the model's own
