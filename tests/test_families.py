"""Every image-text-to-text family: tracing is exact against eager `output_attentions`, windowed, chunked,
softcapped and hybrid decoders included; a cross-attention model is refused with one clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import afip_probe
from afip_probe.correctors import parse_spec
from afip_probe.errors import AfipError
from afip_probe.models import adapter_for, tiny

from . import families

NEW_TOKENS = 6
TOL = 1e-5
# non-square and different sizes: a left-padded batch whose samples have different image token counts
SIZES = [(64, 48), (30, 50), (40, 40)]
PROMPTS = ["describe", "please describe this image in detail .", "is there a dog in the image ?"]


@pytest.fixture(scope="module", params=sorted(families.BUILDERS))
def built(request):
    model, processor = families.BUILDERS[request.param]()
    return request.param, model, processor


def _inputs(model, processor):
    adapter = adapter_for(model, processor)
    return adapter, adapter.build_inputs(tiny.random_images(3, seed=1, sizes=SIZES), PROMPTS)


def _eager(model, inputs):
    """Sequences and, per step, each attention layer's last-row eager attention [B, H, kv]."""
    before = model.config.text_config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, output_attentions=True,
                             return_dict_in_generate=True)
    finally:
        model.set_attn_implementation(before)
    return out.sequences, [[a[:, :, -1, :].float() for a in step if a is not None] for step in out.attentions]


def _at_positions(row: torch.Tensor, seq: int) -> torch.Tensor:
    """A key row [B, H, kv] placed at sequence positions [B, H, seq]: a windowed or chunked cache hands over
    the last kv positions; a key that left the cache gets no attention."""
    kv = row.shape[-1]
    if kv >= seq:
        return row[..., :seq]
    full = row.new_zeros(*row.shape[:-1], seq)
    full[..., seq - kv:] = row
    return full


def test_generation_with_tracing_is_token_identical_to_plain(built):
    name, model, processor = built
    _, inputs = _inputs(model, processor)
    plain = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    impl = model.config.text_config._attn_implementation
    with afip_probe.trace(model, processor, level="maps") as rec:
        traced = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    assert torch.equal(plain, traced), name
    assert len(rec.traces) == 3
    assert model.config.text_config._attn_implementation == impl


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "single-read"])
def test_records_equal_eager_at_every_step_and_layer(built, exact):
    """Per-head VAR, maps and the image / text maxima equal eager attention at 1e-5 (fp32), for a padded batch
    of three image sizes; keys that left a sliding window or chunk count as no attention. Both modes: SDPA's
    outputs (exact) and decoding steps computed from the recorded row (`exact=False`)."""
    name, model, processor = built
    adapter, inputs = _inputs(model, processor)
    sequences, eager = _eager(model, inputs)
    with afip_probe.trace(model, processor, level="full", array_dtype="float32", exact=exact) as rec:
        traced = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    assert torch.equal(sequences, traced), name
    prompt = inputs["input_ids"].shape[1]
    is_image = inputs["input_ids"] == adapter.image_token_id
    pad = (inputs["attention_mask"] == 0).sum(-1)
    if name in ("llava_next", "qwen3_vl", "idefics3"):  # samples with different image token counts
        assert len(set(is_image.sum(-1).tolist())) > 1 and len(set(pad.tolist())) > 1
    assert all(len(step) == adapter.num_layers for step in eager)
    for b, tr in enumerate(rec.traces):
        img = is_image[b].nonzero().flatten()
        assert tr.layout.positions == (img - pad[b]).tolist()
        text = ~is_image[b]
        text[: pad[b]] = False
        for t in range(NEW_TOKENS):
            seq = prompt + t
            txt = torch.cat([text, torch.ones(t, dtype=torch.bool)])  # generated keys are text
            txt[-1] = False  # the query's own key
            for layer, row in enumerate(eager[t]):
                a = _at_positions(row[b], seq)  # [H, seq]
                a_img = a[:, img]
                lse = tr.head["lse"][t, layer]
                np.testing.assert_allclose(tr.head["var"][t, layer], a_img.sum(-1).numpy(), atol=TOL, rtol=0,
                                           err_msg=f"{name} step {t} layer {layer}")
                np.testing.assert_allclose(tr.maps[t, layer], a_img.mean(0).numpy(), atol=TOL, rtol=0)
                np.testing.assert_allclose(np.exp(tr.head["img_max_score"][t, layer] - lse), a_img.amax(-1).numpy(),
                                           atol=TOL, rtol=0)
                a_txt = a[:, txt]
                np.testing.assert_allclose(np.exp(tr.head["txt_max_score"][t, layer] - lse), a_txt.amax(-1).numpy(),
                                           atol=TOL, rtol=0)


def test_windowed_and_chunked_layers_lose_the_image_as_it_leaves():
    """The test models' windows are short enough that the image leaves some layers' keys during generation:
    recorded VAR goes to exactly 0 there and stays positive in the full-attention layers."""
    for name, windowed, full in (("gemma3", 0, 1), ("mistral3", 0, None), ("llama4", 0, 2)):
        model, processor = families.BUILDERS[name]()
        _, inputs = _inputs(model, processor)
        with afip_probe.trace(model, processor) as rec:
            model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        var = rec.traces[0].head["var"]  # [T, L, H]
        assert (var[-1, windowed] == 0).all(), name
        if name != "llama4":  # Llama 4's chunk already excludes the image at prefill
            assert (var[0, windowed] > 0).all(), name
        if full is not None:
            assert (var[:, full] > 0).all(), name


@pytest.mark.parametrize("name", ["gemma3", "llava_next"])
def test_a_static_cache_records_what_a_dynamic_one_does(name):
    """A static cache (Gemma 3 checkpoints ask for one) hands over its whole preallocated length; its empty
    slots are not keys of the sequence: the records equal those of the default dynamic cache."""
    model, processor = families.BUILDERS[name]()
    _, inputs = _inputs(model, processor)
    with afip_probe.trace(model, processor, array_dtype="float32") as dynamic:
        plain = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    with afip_probe.trace(model, processor, array_dtype="float32") as static:
        fixed = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                               cache_implementation="static")
    assert torch.equal(plain, fixed)
    for a, b in zip(dynamic.traces, static.traces):
        for field in ("var", "txt_max_score", "txt_mean_prob", "img_max_score", "lse"):
            np.testing.assert_allclose(a.head[field], b.head[field], atol=TOL, err_msg=field)


def test_hybrid_decoder_traces_its_attention_layers_only():
    model, processor = families.BUILDERS["lfm2_vl"]()
    adapter, inputs = _inputs(model, processor)
    assert adapter.decoder_layers == [1, 3] and adapter.num_layers == 2
    with afip_probe.trace(model, processor) as rec:
        model.generate(**inputs, max_new_tokens=3, min_new_tokens=3)
    assert rec.traces[0].head["var"].shape[1] == 2


def test_softcapped_attention_is_capped_where_capping_matters():
    """PaliGemma 2 caps its attention logits (cap 2, uncapped scores of order 10 in the test model): the records
    equal eager above; here, capping really changes the attention: the recorded (capped) scores come within
    1 % of the cap, and the same model with its cap removed generates other attention."""
    model, processor = families.BUILDERS["paligemma2"]()
    cap = model.config.text_config.attn_logit_softcapping
    assert cap == families.SOFTCAP
    _, inputs = _inputs(model, processor)
    with afip_probe.trace(model, processor, level="full", array_dtype="float32") as rec:
        model.generate(**inputs, max_new_tokens=3, min_new_tokens=3)
    scores = np.concatenate([tr.scores.ravel() for tr in rec.traces])  # [T, L, H, n] pre-softmax, capped
    assert np.abs(scores).max() < cap and np.abs(scores).max() > 0.99 * cap
    uncapped = np.arctanh(np.clip(scores / cap, -1 + 1e-7, 1 - 1e-7)) * cap
    assert np.abs(uncapped).max() > 3 * cap  # scores the cap bends far from where they were


CORRECTOR_RUNS = [(name, "afip:layers=2-,alpha=0.5") for name in sorted(families.BUILDERS)] + [
    (name, spec) for name in ("gemma3", "paligemma2", "lfm2_vl", "llava_next", "idefics3")
    for spec in ("pai:alpha=0.5", "hgai:alpha=0.5")]


@pytest.mark.parametrize("name,corrector", CORRECTOR_RUNS)
def test_correctors_run_and_are_recorded_on_every_family(name, corrector):
    """A corrector on a windowed, softcapped or hybrid decoder: generation runs, the corrected rows are
    recorded, and at prefill the raw rows up to the first corrected layer (decoder layer 2: the spec's and the
    baselines' default) equal those of a plain trace (the correction changes only what follows)."""
    model, processor = families.BUILDERS[name]()
    adapter, inputs = _inputs(model, processor)
    upto = [i for i, number in enumerate(adapter.decoder_layers) if number <= 2]
    with afip_probe.trace(model, processor, array_dtype="float32") as plain:
        model.generate(**inputs, max_new_tokens=1, min_new_tokens=1)
    with afip_probe.trace(model, processor, array_dtype="float32") as rec, \
            afip_probe.correct(model, parse_spec(corrector), processor=processor):
        model.generate(**inputs, max_new_tokens=4, min_new_tokens=4)
    tr = rec.traces[0]
    assert tr.corrected is not None and tr.corrected.head["var"].shape == tr.head["var"].shape
    np.testing.assert_allclose(tr.head["var"][0, upto], plain.traces[0].head["var"][0, upto], atol=TOL)
    assert not np.allclose(tr.corrected.head["var"], tr.head["var"])


def test_cross_attention_model_is_refused_with_one_line():
    model, _ = families.mllama()
    with pytest.raises(AfipError, match="cross-attention") as err:
        afip_probe.trace(model)
    assert "\n" not in str(err.value)


def test_cross_attention_checkpoint_is_refused_by_the_cli_with_exit_2(tmp_path, capsys):
    """`afip-probe trace --model DIR` on a saved Mllama config: one line on stderr, exit 2, before any weights
    are read (the folder holds the config only)."""
    from afip_probe.cli import main

    model, _ = families.mllama()
    model.config.save_pretrained(tmp_path / "mllama")
    images = tmp_path / "images"
    images.mkdir()
    tiny.random_images(1)[0].save(images / "a.png")
    rc = main(["trace", "--model", str(tmp_path / "mllama"), "--images", str(images), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "cross-attention" in err and "\n" not in err


def test_the_generic_adapter_warns_once_naming_the_model_type():
    from afip_probe.models import base

    model, processor = families.BUILDERS["lfm2_vl"]()
    _, inputs = _inputs(model, processor)
    adapter = base.ModelAdapter(model, processor)  # the generic adapter, as for a model type it does not know
    base._WARNED.clear()
    with pytest.warns(UserWarning, match="no adapter for model type 'lfm2_vl'") as caught:
        adapter.layouts(inputs)
        adapter.layouts(inputs)
    assert len([w for w in caught if "no adapter" in str(w.message)]) == 1


def test_hybrid_store_records_decoder_layers_and_heatmap_layers_name_them(tmp_path, capsys):
    """An LFM2-VL store's manifest lists the traced decoder layers; `afip-probe heatmap --layers` names decoder
    layers (3 is the second traced layer) and says which exist when it names none."""
    from afip_probe import store as st
    from afip_probe.cli import main
    from afip_probe.metrics.table import store_layers
    from afip_probe.models import LoadedModel
    from afip_probe.pipelines.settings import GenerationSettings
    from afip_probe.pipelines.tracing import trace_images
    from afip_probe.plots.store_maps import image_attention

    model, processor = families.BUILDERS["lfm2_vl"]()
    images = tmp_path / "images"
    images.mkdir()
    tiny.random_images(1)[0].save(images / "a.png")
    loaded = LoadedModel(model, processor, adapter_for(model, processor), "lfm2_vl")
    trace_images(GenerationSettings(model="lfm2_vl", level="maps", max_new_tokens=3), sorted(images.iterdir()),
                 tmp_path / "store", loaded=loaded, progress=False)
    store = st.open(tmp_path / "store")
    assert store.settings["decoder_layers"] == [1, 3] and store.settings["num_layers"] == 2
    assert store_layers("3", store.settings) == [1] and store_layers("0-1", store.settings) == [0]
    sid = store.samples("ok").sample_id.iloc[0]
    assert main(["heatmap", str(store.root), sid, "--layers", "3", "--out", str(tmp_path / "h.png")]) == 0
    assert image_attention(store, sid, 0, [1]).shape == image_attention(store, sid, 0).shape
    assert main(["heatmap", str(store.root), sid, "--layers", "2", "--out", str(tmp_path / "g.png")]) == 2
    assert "traced decoder layers are [1, 3]" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()
    import matplotlib.pyplot as plt

    plt.close("all")
