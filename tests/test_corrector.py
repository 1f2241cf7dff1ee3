"""The AFIP corrector against a slow reference written straight from docs/design.md §7 (Eqs. 5–12).

The reference below loops over samples, heads, image keys and history steps with Python floats. It is
checked on random rows (a simulated generation with growing key length, left padding, ragged image
counts) and inside real generation on tiny LLaVA (GQA) and Qwen2-VL models with batched, left-padded
inputs, including the first steps where fewer than W history steps exist.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import afip_probe
from afip_probe.correctors import AFIP, HGAI, PAI, parse_spec
from afip_probe.errors import AfipError
from afip_probe.hooks.interceptor import RowContext
from afip_probe.hooks.rowstats import image_index
from afip_probe.models import adapter_for, tiny

from .conftest import IMAGE_SIZES, PROMPTS


# ---------------------------------------------------------------- the slow reference ----


class SlowAFIP:
    """Eqs. 5–12 with loops. Feed it every (layer, step, run, B, is_image, allowed) call in order."""

    def __init__(self, cfg: AFIP, num_layers: int):
        self.cfg = cfg
        self.layers = cfg.layer_set(num_layers)
        self.hist: dict[tuple, list[list[float]]] = {}

    def __call__(self, layer, step, run, B, is_image, allowed):
        cfg = self.cfg
        nb, H, kv = B.shape
        out = B.clone().double()
        for b in range(nb):
            I = [i for i in range(kv) if is_image[b, i]]
            rows = [[float(B[b, h, i]) for i in I] for h in range(H)]  # C_t (unmodified), per head
            self.hist[(run, b, layer, step)] = rows
            if layer not in self.layers:
                continue
            # Eqs. 6-8: top-k heads by max |B| over image keys, Avg/Var over them divided by H (or k)
            peak = [max(abs(v) for v in rows[h]) for h in range(H)]
            top = sorted(range(H), key=lambda h: -peak[h])[: min(cfg.k, H)]
            div = H if cfg.avg_divisor == "H" else len(top)
            delta1 = []
            for n in range(len(I)):
                avg = sum(abs(rows[h][n]) for h in top) / div
                var = sum((abs(rows[h][n]) - avg) ** 2 for h in top) / div
                delta1.append(avg - cfg.alpha * var if cfg.head_correction else 0.0)
            for h in range(H):
                # Eqs. 9-10: history over the previous W steps that exist
                delta2 = [0.0] * len(I)
                if cfg.history:
                    cands = [j for j in range(cfg.window) if step - 1 - j >= 0]
                    if cands:
                        r = max(cands, key=lambda j: (float(B[b, h, kv - 2 - j]), -j))
                        past = self.hist[(run, b, layer, step - 1 - r)][h]
                        delta2 = [cfg.gamma * v for v in past]
                # Eq. 11: gate on the peak gap of the unmodified row
                text = [float(B[b, h, j]) for j in range(kv - 1) if allowed[b, j] and not is_image[b, j]]
                T = max(text) if text else -math.inf
                V = max(rows[h])
                G = 1.0 if (not cfg.gate or T - V < cfg.tau) else 0.0
                for n, i in enumerate(I):  # Eq. 12
                    out[b, h, i] = B[b, h, i] + G * (delta1[n] + delta2[n])
        return out


class Spy:
    """Wraps a modifier and keeps every call's inputs and result."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []
        self.blocks = set()  # the image-key blocks seen (None: gathered keys)

    def modify(self, layer, scores, ctx):
        self.blocks.add(ctx.image_index.block)
        new = self.inner.modify(layer, scores, ctx)
        self.calls.append((layer, ctx.step, ctx.run, scores.clone(), ctx.is_image.clone(), ctx.allowed.clone(),
                           (scores if new is None else new).clone()))
        return new


def _replay(spy: Spy, cfg: AFIP, num_layers: int) -> float:
    ref = SlowAFIP(cfg, num_layers)
    worst = 0.0
    for layer, step, run, B, is_image, allowed, fast in spy.calls:
        slow = ref(layer, step, run, B, is_image, allowed)
        finite = torch.isfinite(B)
        assert torch.equal(finite, torch.isfinite(fast))
        worst = max(worst, float((slow[finite] - fast.double()[finite]).abs().max()))
    return worst


CONFIGS = [
    AFIP(alpha=0.3, gamma=0.2, k=3, tau=0.5, window=3, layers=[1, 2]),
    AFIP(alpha=0.1, gamma=0.5, k=2, tau=10.0, window=8, layers=[0, 2], avg_divisor="k"),
    AFIP(alpha=0.2, gamma=0.1, k=6, tau=0.0, window=2, layers=[2], gate=False),
    AFIP(alpha=0.2, gamma=0.3, k=2, tau=0.3, window=4, layers=[1], head_correction=False),
    AFIP(alpha=0.2, gamma=0.3, k=2, tau=0.3, window=4, layers=[1], history=False),
    # gates at τ ≤ 0 (the one-block shortcut through the maximum over all keys needs τ > 0)
    AFIP(alpha=0.2, gamma=0.3, k=3, tau=0.0, window=4, layers=[0, 2]),
    AFIP(alpha=0.2, gamma=0.3, k=3, tau=-0.5, window=3, layers=[1, 2]),
]


# ---------------------------------------------------------------- random rows ----


def _simulate(modifier, steps=12, nb=3, H=4, prompt=14, seed=0, runs=2, layout="ragged", tied=False):
    """Drive a modifier like a generation: growing kv, 3 layers, and either left padding with ragged
    image spans (gathered image keys) or one shared image block (sliced image keys). `tied`: every
    generated token's key scores the same, so the history's argmax ties in every row."""
    g = torch.Generator().manual_seed(seed)
    is_image_p = torch.zeros(nb, prompt, dtype=torch.bool)
    pad = [0, 2, 4] if layout == "ragged" else [0] * nb
    spans = [(3, 9), (4, 8), (6, 12)] if layout == "ragged" else [(3, 9)] * nb
    for b in range(nb):
        is_image_p[b, spans[b][0]: spans[b][1]] = True
    index = image_index(is_image_p)
    assert (index.block is None) == (layout == "ragged")
    for run in range(1, runs + 1):
        for step in range(steps):
            kv = prompt + step
            is_image = torch.nn.functional.pad(is_image_p, (0, kv - prompt))
            allowed = torch.ones(nb, kv, dtype=torch.bool)
            for b in range(nb):
                allowed[b, : pad[b]] = False
            ctx = RowContext(step=step, is_image=is_image, allowed=allowed, image_index=index, num_layers=3, run=run)
            for layer in range(3):
                B = torch.randn(nb, H, kv, generator=g) * 2
                B = B.masked_fill(~allowed[:, None, :], float("-inf"))
                if tied:
                    B[:, :, prompt - 1: kv - 1] = 1.5  # the keys of steps 0 .. t-1
                modifier.modify(layer, B, ctx)


def _config_id(c: AFIP) -> str:
    return f"k{c.k}-W{c.window}-t{c.tau:g}-g{int(c.gate)}h{int(c.history)}c{int(c.head_correction)}"


@pytest.mark.parametrize("layout", ["ragged", "block"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=_config_id)
def test_fast_equals_slow_reference_on_random_rows(cfg, layout):
    cfg = dataclasses.replace(cfg)  # a fresh corrector, no state from other tests
    spy = Spy(cfg)
    _simulate(spy, layout=layout)
    assert len(spy.calls) == 2 * 12 * 3
    changed = sum(not torch.equal(c[3], c[6]) for c in spy.calls)
    assert changed > 0  # the corrector did act
    assert _replay(spy, cfg, num_layers=3) < 1e-5


@pytest.mark.parametrize("layout", ["ragged", "block"])
def test_history_ties_go_to_the_most_recent_step(layout):
    """Eq. 9's argmax over tied keys takes the smallest j: every row adds γ · the previous step's image row."""
    cfg = AFIP(alpha=0.0, gamma=1.0, k=2, window=4, layers=[0, 1, 2], head_correction=False, gate=False)
    spy = Spy(cfg)
    _simulate(spy, layout=layout, tied=True)
    assert _replay(spy, cfg, num_layers=3) < 1e-5
    previous = {}
    checked = 0
    for layer, step, run, B, is_image, _allowed, fast in spy.calls:
        image = is_image[:, None, :].expand_as(B)
        if step > 0:
            added = (fast - B)[image]
            assert float((added - previous[(run, layer)]).abs().max()) < 1e-5, (layer, step)
            checked += 1
        previous[(run, layer)] = B[image]
    assert checked == 2 * 11 * 3


# ---------------------------------------------------------------- inside real generation ----


@pytest.fixture(scope="module", params=["llava", "qwen2_vl"])
def gen_model(request):
    if request.param == "llava":
        model, processor = tiny.tiny_llava(layers=3, heads=4, kv_heads=2, seed=3)
    else:
        model, processor = tiny.tiny_qwen2_vl("qwen2_vl", layers=3, heads=4, kv_heads=2, seed=3)
    adapter = adapter_for(model, processor)
    images = tiny.random_images(3, seed=5, sizes=IMAGE_SIZES)
    inputs = adapter.build_inputs(images, PROMPTS)  # different prompt lengths: left padding
    model.single_inputs = adapter.build_inputs(images[:1], PROMPTS[:1])  # one sample: no padding
    return request.param, model, inputs


@pytest.mark.parametrize("cfg", CONFIGS[:3], ids=["gated", "divisor-k", "ungated"])
def test_fast_equals_slow_reference_in_generation(gen_model, cfg):
    _name, model, inputs = gen_model
    assert (inputs["attention_mask"] == 0).any()  # the batch really is left padded
    spy = Spy(cfg)
    with afip_probe.correct(model, spy):
        model.generate(**inputs, max_new_tokens=10, do_sample=False)
    assert len(spy.calls) == 3 * 10
    assert spy.blocks == {None}  # left padding moves the image: gathered keys
    assert any(not torch.equal(c[3], c[6]) for c in spy.calls)
    assert _replay(spy, cfg, num_layers=3) < 1e-5


def test_fast_equals_slow_reference_single_sample(gen_model):
    """One sample: the image keys are one block (sliced, not gathered) and nothing is padded."""
    _name, model, inputs = gen_model
    single = model.single_inputs
    spy = Spy(dataclasses.replace(CONFIGS[0]))
    with afip_probe.correct(model, spy):
        model.generate(**single, max_new_tokens=10, do_sample=False)
    assert len(spy.calls) == 3 * 10
    assert None not in spy.blocks
    assert any(not torch.equal(c[3], c[6]) for c in spy.calls)
    assert _replay(spy, CONFIGS[0], num_layers=3) < 1e-5


def _plain(model, inputs, n=8):
    return model.generate(**inputs, max_new_tokens=n, do_sample=False)


@pytest.mark.parametrize(
    "cfg",
    [AFIP(head_correction=False, history=False, gate=False, layers=[0, 1, 2]),
     PAI(alpha=0.0), HGAI(alpha=0.0)],
    ids=["all-switches-off", "pai-alpha0", "hgai-alpha0"],
)
def test_no_op_settings_are_token_identical(gen_model, cfg):
    _name, model, inputs = gen_model
    plain = _plain(model, inputs)
    with afip_probe.correct(model, cfg):
        corrected = _plain(model, inputs)
    assert torch.equal(plain, corrected)


def test_shut_gates_add_exactly_nothing(gen_model):
    """With τ below every gap no gate opens: the corrected rows equal the raw ones exactly. (The corrector
    does not test for that case, which would be a host sync per layer on a GPU, so the outputs come from
    the row, softmax(B)·V, equal to SDPA's up to float rounding: the first step's logits to 1e-4.)"""
    _name, model, inputs = gen_model
    kwargs = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False, output_logits=True, return_dict_in_generate=True)
    plain = model.generate(**inputs, **kwargs)
    cfg = AFIP(alpha=0.5, gamma=0.5, tau=-1e9, layers=[0, 1, 2])
    with afip_probe.trace(model, level="maps", array_dtype="float32") as rec, afip_probe.correct(model, cfg):
        shut = model.generate(**inputs, **kwargs)
    torch.testing.assert_close(shut.logits[0], plain.logits[0], atol=1e-4, rtol=0)
    for tr in rec.traces:
        for field in ("var", "img_max_score", "txt_max_score", "lse"):
            np.testing.assert_array_equal(tr.corrected.head[field], tr.head[field])
        np.testing.assert_array_equal(tr.corrected.maps, tr.maps)


def test_strong_correction_changes_generation(gen_model):
    _name, model, inputs = gen_model
    plain = _plain(model, inputs, 12)
    with afip_probe.correct(model, AFIP(alpha=0.0, gamma=3.0, tau=1e9, k=4, layers=[0, 1, 2])):
        corrected = _plain(model, inputs, 12)
    assert not torch.equal(plain, corrected)


def test_baselines_equal_their_formulas():
    is_image = torch.tensor([[False, True, True, True, False], [True, True, False, False, False]])
    ctx = RowContext(step=2, is_image=is_image, allowed=torch.ones(2, 5, dtype=torch.bool),
                     image_index=image_index(is_image), num_layers=4, run=1)
    B = torch.randn(2, 3, 5)
    pai = PAI(alpha=0.4, layers=[1]).modify(1, B, ctx)
    hgai = HGAI(alpha=0.4, layers=[1]).modify(1, B, ctx)
    assert PAI(alpha=0.4, layers=[1]).modify(0, B, ctx) is None
    for b in range(2):
        for h in range(3):
            for i in range(5):
                if is_image[b, i]:
                    assert pai[b, h, i] == pytest.approx(float(B[b, h, i] + 0.4 * abs(B[b, h, i])), abs=1e-6)
                    mean_abs = sum(abs(float(B[b, g, i])) for g in range(3)) / 3
                    assert hgai[b, h, i] == pytest.approx(float(B[b, h, i]) + 0.4 * mean_abs, abs=1e-6)
                else:
                    assert pai[b, h, i] == B[b, h, i] and hgai[b, h, i] == B[b, h, i]


def test_trace_records_corrected_and_raw_rows():
    model, processor = tiny.tiny_llava(layers=3, heads=4, kv_heads=2, seed=3)
    inputs = adapter_for(model, processor).build_inputs(tiny.random_images(2, seed=1), "describe")
    cfg = AFIP(alpha=0.0, gamma=1.0, tau=1e9, k=4, layers=[2])
    with afip_probe.trace(model, processor, level="maps") as rec:
        with afip_probe.correct(model, cfg):  # nested: joins the trace's session
            model.generate(**inputs, max_new_tokens=6, do_sample=False)
    tr = rec.traces[0]
    raw, corr = tr.head["var"], tr.arrays()["corrected/head/var"]  # [T, L, H]
    assert raw.shape == corr.shape and tr.arrays()["corrected/maps"].shape == tr.maps.shape
    assert abs(raw[:, :2] - corr[:, :2]).max() == 0  # layers 0-1 untouched
    assert abs(raw[1:, 2] - corr[1:, 2]).max() > 1e-4  # history boost raises VAR on layer 2 after step 0
    assert "corrected/head/var" not in _trace_without_corrector(model, processor, inputs).arrays()


def _trace_without_corrector(model, processor, inputs):
    with afip_probe.trace(model, processor) as rec:
        model.generate(**inputs, max_new_tokens=2, do_sample=False)
    return rec.traces[0]


def test_specs_parse_and_errors():
    a = parse_spec("afip:alpha=0.2,gamma=0.05,k=4,tau=1.5,window=4,layers=2-,history=off,avg_divisor=k")
    assert (a.alpha, a.gamma, a.k, a.tau, a.window, a.history, a.avg_divisor) == (0.2, 0.05, 4, 1.5, 4, False, "k")
    assert 2 in a.layer_set(4) and 1 not in a.layer_set(4)
    assert AFIP().layer_set(32) == frozenset(range(5, 32)) and AFIP().layer_set(4) == frozenset({2, 3})
    for bad in ["nope", "afip:alpha", "afip:beta=1", "afip:alpha=x", "afip:gate=maybe", "pai:layers=a-b",
                "afip:layers=3-1"]:
        with pytest.raises(AfipError):
            parse_spec(bad)


def test_one_inclusive_layer_convention_and_missing_layers_refused():
    """``layers=a-b`` in a spec means what ``--layers a-b`` means everywhere: a to b inclusive."""
    from afip_probe.metrics.table import parse_layers

    for text in ("1-2", "2-", "3", "-1"):  # (a spec separates its keys with commas: lists are for --layers)
        assert parse_spec(f"afip:layers={text}").layer_set(4) == frozenset(parse_layers(text, 4))
        assert parse_spec(f"pai:layers={text}").layer_set(4) == frozenset(parse_layers(text, 4))
    assert parse_spec("afip:layers=1-2").layer_set(4) == frozenset({1, 2})
    assert AFIP(layers=range(1, 3)).layer_set(4) == frozenset({1, 2})
    model, processor = tiny.tiny_llava(layers=2)
    inputs = adapter_for(model, processor).build_inputs(tiny.random_images(1), "describe")
    for cfg in (parse_spec("afip:layers=1-5"), AFIP(layers=[7]), HGAI(layers="3-")):
        with pytest.raises(AfipError, match="the model has layers 0..1"):
            with afip_probe.correct(model, cfg):
                model.generate(**inputs, max_new_tokens=2)
    assert model.config.text_config._attn_implementation == "sdpa"


# ---------------------------------------------------------------- recording under a corrector ----


class ReferenceAttention:
    """A test-only attention function, independent of afip-probe's interceptor: eager attention whose last
    query row in each decoding forward is first changed by `SlowAFIP` (Eqs. 5–12), returning its weights."""

    NAME = "afip_reference_test"

    def __init__(self, cfg: AFIP, num_layers: int):
        self.slow = SlowAFIP(cfg, num_layers)
        self.step = -1
        self.is_image: torch.Tensor | None = None  # [B, prompt] of the current generate() call

    def start(self, input_ids, image_token_id):
        self.is_image, self.step = input_ids == image_token_id, -1

    def __call__(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        layer = getattr(module, "layer_idx", None)
        groups = query.shape[1] // key.shape[1]
        k = key.repeat_interleave(groups, dim=1)
        v = value.repeat_interleave(groups, dim=1)
        scores = (query.float() @ k.float().transpose(2, 3)) * scaling  # [B, H, q, kv]
        if attention_mask is not None:
            scores = scores + attention_mask.float()
        if layer is not None and self.is_image is not None:
            if layer == 0:
                self.step += 1
            kv = scores.shape[-1]
            allowed = attention_mask[:, 0, -1, :] > torch.finfo(attention_mask.dtype).min / 2  # [B, kv]
            is_image = torch.zeros(scores.shape[0], kv, dtype=torch.bool)
            is_image[:, : self.is_image.shape[1]] = self.is_image[:, :kv]
            last = scores[:, :, -1, :].masked_fill(~allowed[:, None, :], float("-inf"))
            scores = scores.clone()
            scores[:, :, -1, :] = self.slow(layer, self.step, 0, last, is_image, allowed).float()
        weights = torch.softmax(scores, dim=-1)
        out = (weights @ v.float()).to(query.dtype).transpose(1, 2).contiguous()
        return out, weights


def test_recorded_corrected_rows_equal_an_independent_eager_reference():
    """The rows afip-probe records while AFIP is on equal the weights of an eager attention function that
    applies the slow reference of Eqs. 5–12 itself; both generate the same tokens."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    model, processor = tiny.tiny_llava(layers=3, heads=4, kv_heads=2, seed=3)
    inputs = adapter_for(model, processor).build_inputs(tiny.random_images(2, seed=4, sizes=IMAGE_SIZES[:2]),
                                                        PROMPTS[:2])
    cfg = AFIP(alpha=0.3, gamma=0.4, k=3, tau=2.0, window=3, layers=[1, 2])
    image_token_id = adapter_for(model, processor).image_token_id
    new = 6

    with afip_probe.trace(model, processor, level="maps", array_dtype="float32") as rec:
        with afip_probe.correct(model, cfg):
            traced = model.generate(**inputs, max_new_tokens=new, min_new_tokens=new, do_sample=False)

    ref = ReferenceAttention(cfg, 3)
    AttentionInterface.register(ReferenceAttention.NAME, ref)
    AttentionMaskInterface.register(ReferenceAttention.NAME, eager_mask)
    model.set_attn_implementation({"text_config": ReferenceAttention.NAME})
    ref.start(inputs["input_ids"], image_token_id)
    out = model.generate(**inputs, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                         output_attentions=True, return_dict_in_generate=True)
    assert torch.equal(traced, out.sequences)
    changed = 0
    for b, tr in enumerate(rec.traces):
        img = inputs["input_ids"][b] == image_token_id
        for t in range(tr.num_tokens):
            w = torch.stack([a[b, :, -1, :] for a in out.attentions[t]])[..., : img.shape[0]][..., img]  # [L, H, n]
            torch.testing.assert_close(torch.from_numpy(tr.corrected.head["var"][t]), w.sum(-1), atol=1e-5, rtol=0)
            torch.testing.assert_close(torch.from_numpy(tr.corrected.maps[t]), w.mean(1), atol=1e-5, rtol=0)
            changed += int(not torch.allclose(torch.from_numpy(tr.head["var"][t]), w.sum(-1), atol=1e-4))
    assert changed > 0  # the corrector did change rows (raw and corrected differ)
