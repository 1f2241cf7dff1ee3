"""Metrics (docs/design.md §5) against slow loop-by-loop versions written here from the paper's equations:
on random rows, and on a store the organism recorded, against eager `output_attentions`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from afip_probe.metrics import attention as am
from afip_probe.metrics import stats as ms
from afip_probe.metrics.findings import findings
from afip_probe.metrics.table import default_layer_ranges, parse_layers, token_table

EPS = 1e-8


# ----------------------------------------------------------------------------- slow references
def slow_entropy(rows, renorm=False):
    """Eq. 1 for one token and layer: rows is a list over heads of lists over image keys."""
    H, n = len(rows), len(rows[0])
    mean = [sum(rows[h][i] for h in range(H)) / H for i in range(n)]
    if renorm:
        total = sum(mean)
        mean = [m / total for m in mean]
    return -sum(m * math.log(m + EPS) for m in mean)


def slow_kl(rows):
    """Eq. 3 for one layer."""
    H, n = len(rows), len(rows[0])
    P = [[rows[h][i] / sum(rows[h]) for i in range(n)] for h in range(H)]
    Pbar = [sum(P[h][i] for h in range(H)) / H for i in range(n)]
    total = 0.0
    for h in range(H):
        for i in range(n):
            if P[h][i] > 0:
                total += P[h][i] * (math.log(P[h][i]) - math.log(Pbar[i]))
    return total / H


def slow_token_entropy(logits):
    m = max(logits)
    z = sum(math.exp(v - m) for v in logits)
    ps = [math.exp(v - m) / z for v in logits]
    return -sum(p * math.log(p) for p in ps if p > 0)


def softmax_row(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def test_equations_on_random_rows():
    rng = np.random.default_rng(0)
    T, L, H, kv = 3, 2, 4, 11
    scores = rng.normal(scale=3.0, size=(T, L, H, kv))
    is_img = np.zeros(kv, bool)
    is_img[[1, 2, 3, 5, 6]] = True
    is_txt = ~is_img
    is_txt[-1] = False  # the query's own key
    A = np.exp(scores - scores.max(-1, keepdims=True))
    A /= A.sum(-1, keepdims=True)
    A_img = A[..., is_img]
    ent, ent_r, kl = am.attention_entropy(A_img), am.attention_entropy(A_img, renormalise=True), am.cross_head_kl(A_img)
    var = am.visual_attention_ratio(A_img)
    gaps = am.gating_signals(scores, is_img, is_txt)
    img_idx, txt_idx = np.nonzero(is_img)[0], np.nonzero(is_txt)[0]
    for t in range(T):
        for l in range(L):
            rows = [[float(A[t, l, h, i]) for i in img_idx] for h in range(H)]
            assert ent[t, l] == pytest.approx(slow_entropy(rows), abs=1e-10)
            assert ent_r[t, l] == pytest.approx(slow_entropy(rows, renorm=True), abs=1e-10)
            assert kl[t, l] == pytest.approx(slow_kl(rows), abs=1e-10)
            for h in range(H):
                b = [float(v) for v in scores[t, l, h]]
                a = softmax_row(b)
                assert var[t, l, h] == pytest.approx(sum(a[i] for i in img_idx), abs=1e-12)
                assert gaps["peak_gap"][t, l, h] == pytest.approx(max(b[i] for i in txt_idx) - max(b[i] for i in img_idx))
                assert gaps["mean_gap"][t, l, h] == pytest.approx(
                    sum(b[i] for i in txt_idx) / len(txt_idx) - sum(b[i] for i in img_idx) / len(img_idx))
                assert gaps["mean_gap_prob"][t, l, h] == pytest.approx(
                    sum(a[i] for i in txt_idx) / len(txt_idx) - sum(a[i] for i in img_idx) / len(img_idx), abs=1e-12)
    logits = rng.normal(scale=4.0, size=(5, 37))
    for row, got in zip(logits, am.token_entropy(logits)):
        assert got == pytest.approx(slow_token_entropy(list(row)), abs=1e-10)


def test_statistics_match_scipy_and_sklearn():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 40), rng.normal(0.5, 2, 25)
    g = ms.compare_groups(np.r_[a, np.nan], b)
    assert (g.n_a, g.n_b) == (40, 25)
    assert g.welch_p == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    assert g.mannwhitney_p == pytest.approx(sps.mannwhitneyu(a, b).pvalue)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    c = ms.correlate(x, y)
    assert c.spearman_r == pytest.approx(sps.spearmanr(x, y).statistic)
    assert c.pearson_p == pytest.approx(sps.pearsonr(x, y).pvalue)
    # quantile groups: equal-sized, ordered by value
    groups = ms.quantile_groups(x, 5)
    assert np.bincount(groups).tolist() == [10] * 5
    order = np.argsort(x, kind="stable")
    assert groups[order].tolist() == sorted(groups.tolist())
    # bootstrap CI brackets the mean and shrinks with more data
    est, lo, hi = ms.bootstrap_ci(x)
    assert lo < est < hi and est == pytest.approx(x.mean())
    _, lo2, hi2 = ms.bootstrap_ci(np.tile(x, 16))
    assert hi2 - lo2 < (hi - lo) / 2
    labels = rng.random(60) < 0.3
    scores = labels + rng.normal(size=60)
    assert ms.roc(scores, labels).auc == pytest.approx(roc_auc_score(labels, scores))
    low = ms.low_value_rate(scores, labels, 0.3)
    cut = np.quantile(scores, 0.3)
    assert low.low_rate == pytest.approx(labels[scores <= cut].mean())
    assert low.rest_rate == pytest.approx(labels[scores > cut].mean())


def test_layer_ranges_and_parsing():
    assert default_layer_ranges(32)["late"] == list(range(22, 32))
    assert parse_layers("16-", 32) == list(range(16, 32))
    assert parse_layers("0,3-4", 8) == [0, 3, 4]
    from afip_probe.errors import AfipError

    for bad in ("40", "a-b", ""):
        with pytest.raises(AfipError):
            parse_layers(bad, 32)


# ----------------------------------------------------------------------------- on a recorded store
N_SCENES, NEW_TOKENS = 6, 40


@pytest.fixture(scope="module")
def organism_store(tmp_path_factory):
    from afip_probe.models import load
    from afip_probe.organism.dataset import heldout_dirs
    from afip_probe.images import collect_images
    from afip_probe.pipelines.settings import GenerationSettings
    from afip_probe.pipelines.tracing import trace_images

    images, _ = heldout_dirs(progress=False)
    loaded = load("organism", device="cpu")
    items = collect_images([images])[:N_SCENES]
    out = tmp_path_factory.mktemp("metrics") / "store"
    settings = GenerationSettings("organism", level="stats", max_new_tokens=NEW_TOKENS, batch_size=3)
    trace_images(settings, items, out, loaded=loaded, progress=False)
    import afip_probe.store as st

    return loaded, items, st.open(out)


def _eager(loaded, image, prompt):
    """Per step: post-softmax last rows [L, H, kv] and raw logits [V], from eager output_attentions."""
    from afip_probe.images import load_image

    model = loaded.model
    inputs = loaded.adapter.build_inputs([load_image(image)], prompt, device="cpu")
    model.set_attn_implementation("eager")
    try:
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, output_attentions=True,
                             output_logits=True, return_dict_in_generate=True)
    finally:
        model.set_attn_implementation("sdpa")
    rows = [torch.stack([a[0, :, -1, :].double() for a in step]).numpy() for step in out.attentions]
    is_img = (inputs["input_ids"][0] == loaded.adapter.image_token_id).numpy()
    return rows, [lg[0].double().numpy() for lg in out.logits], is_img


def test_token_table_equals_slow_metrics_from_eager_attention(organism_store):
    """Every column of the token table, every layer range, every token: equal to the equations
    applied in loops to eager output_attentions rows of the same generation."""
    loaded, items, store = organism_store
    df = token_table(store)
    ranges = df.attrs["layer_ranges"]
    assert set(ranges) == {"all", "early", "middle", "late"}
    prompt = store.settings["prompt"]
    checked = 0
    for item in items[:3]:
        rows, logits, is_img = _eager(loaded, item.path, prompt)
        tok = df[df.sample_id == item.sample_id].reset_index(drop=True)
        assert len(tok) == len(rows)
        for t, A in enumerate(rows):  # A [L, H, kv]
            L, H, kv = A.shape
            img = np.nonzero(is_img)[0]  # image keys all lie in the prompt
            txt = [j for j in range(kv - 1) if j not in set(img)]  # own key (last) excluded
            per_layer = {m: [] for m in ("attn_entropy", "attn_entropy_renorm", "kl", "var", "peak_gap", "mean_gap",
                                         "mean_gap_prob")}
            for l in range(L):
                r = [[A[l, h, i] for i in img] for h in range(H)]
                per_layer["attn_entropy"].append(slow_entropy(r))
                per_layer["attn_entropy_renorm"].append(slow_entropy(r, renorm=True))
                per_layer["kl"].append(slow_kl(r))
                # pre-softmax scores differ from log A by the row's log-sum-exp, which cancels in the gaps
                pg, mg, mp, va = [], [], [], []
                for h in range(H):
                    a = A[l, h]
                    va.append(sum(a[i] for i in img))
                    pg.append(math.log(max(a[j] for j in txt)) - math.log(max(a[i] for i in img)))
                    mg.append(sum(math.log(a[j]) for j in txt) / len(txt) - sum(math.log(a[i]) for i in img) / len(img))
                    mp.append(sum(a[j] for j in txt) / len(txt) - sum(a[i] for i in img) / len(img))
                per_layer["var"].append(sum(va) / H)
                per_layer["peak_gap"].append(sum(pg) / H)
                per_layer["mean_gap"].append(sum(mg) / H)
                per_layer["mean_gap_prob"].append(sum(mp) / H)
            for rname, layers in ranges.items():
                for m, values in per_layer.items():
                    want = sum(values[l] for l in layers) / len(layers)
                    tol = 2e-3 if m in ("peak_gap", "mean_gap") else 2e-5
                    assert tok.loc[t, f"{m}_{rname}"] == pytest.approx(want, abs=tol), (item.sample_id, t, m, rname)
            assert tok.loc[t, "token_entropy"] == pytest.approx(slow_token_entropy(list(logits[t])), abs=1e-4)
            checked += 1
    assert checked >= 3 * 10


def test_token_table_labels_and_findings(organism_store):
    from afip_probe.metrics.chair import Chair
    from afip_probe.metrics.labels import label_store
    from afip_probe.organism.dataset import heldout_dirs

    _, items, store = organism_store
    df = token_table(store)
    ref = label_store(store, Chair.from_coco(heldout_dirs(progress=False)[1]))
    assert len(df) == len(ref) == store.samples("ok").num_tokens.sum()
    merged = df.merge(ref[["sample_id", "step", "label", "object"]], on=["sample_id", "step"], suffixes=("", "_ref"))
    assert (merged.label.astype(str) == merged.label_ref.astype(str)).all()
    assert (df.groupby("sample_id").step.apply(lambda s: (np.diff(s) == 1).all())).all()
    assert ((df.relative_position > 0) & (df.relative_position < 1)).all()
    # the findings summary is the statistics of the table's columns
    f = findings(df)
    obj = df[df.label.isin(["real", "hallucinated"])]
    real = obj[obj.label == "real"].attn_entropy_all
    hall = obj[obj.label == "hallucinated"].attn_entropy_all
    assert f.n_real == len(real) and f.n_hallucinated == len(hall)
    assert f.entropy.mean_a == pytest.approx(real.mean())
    assert len(hall) >= 2 and len(real) >= 2  # the fixture's scenes (fixed, greedy) give both groups
    assert f.entropy.mannwhitney_p == pytest.approx(sps.mannwhitneyu(real, hall).pvalue)
    y = obj.label == "hallucinated"
    assert f.auc_peak_gap == pytest.approx(roc_auc_score(y, obj.peak_gap_all))
    assert f.kl_token_entropy.spearman_r == pytest.approx(sps.spearmanr(obj.kl_all, obj.token_entropy).statistic)


def test_corrected_source_needs_corrected_rows(organism_store):
    from afip_probe.errors import AfipError

    with pytest.raises(AfipError, match="corrected rows"):
        token_table(organism_store[2], source="corrected")


def test_token_table_rejects_empty_store(tmp_path):
    from afip_probe.errors import AfipError
    from afip_probe.store.writer import StoreWriter
    import afip_probe.store as st

    StoreWriter(tmp_path / "s", {"model": "x", "record_level": "stats"})
    with pytest.raises(AfipError, match="no finished samples"):
        token_table(st.open(tmp_path / "s"))


def test_claims_read_the_papers_findings_off_the_numbers():
    """Planted signals (hallucinations late, at low VAR, with high attention entropy and gap): every claim is
    shown. The same tokens with their labels shuffled: the label-dependent claims are not, and the AUCs are
    read as chance. Each verdict is checked against scipy / sklearn on the same tokens."""
    from .test_plots import synthetic_table

    planted = synthetic_table(n_captions=60)
    f = findings(planted)
    assert [c.figure for c in f.claims()] == ["Fig. 2b", "Fig. 4 left", "Fig. 3 left", "Fig. 3 right", "Fig. 5"]
    assert all(c.verdict.startswith("shown") for c in f.claims()), f.claims_markdown()
    obj = planted[planted.label != "none"]
    real, hall = obj[obj.label == "real"], obj[obj.label == "hallucinated"]
    p = sps.mannwhitneyu(real.attn_entropy_all, hall.attn_entropy_all).pvalue
    assert f"Mann–Whitney p = {p:.2g}" in f.claims()[0].measured
    r = sps.spearmanr(planted.step, planted.var_all).statistic
    assert f"= {r:.3f}" in f.claims()[2].measured and r < 0
    assert "weakly" in f.claims()[2].verdict if abs(r) < 0.3 else "weakly" not in f.claims()[2].verdict
    opposite = findings(planted.assign(attn_entropy_all=-planted.attn_entropy_all))  # hallucinated lower
    assert opposite.claims()[0].verdict.startswith("not shown: the opposite direction")
    noisy = planted.assign(var_all=planted.var_all + np.random.default_rng(2).normal(0, 0.5, len(planted)))
    weak = findings(noisy)
    r, p = sps.spearmanr(noisy.step, noisy.var_all)
    assert -0.3 < r < 0 and p < 0.05 and weak.claims()[2].verdict.startswith("shown, weakly")

    shuffled = planted.copy()
    rows = shuffled.label != "none"
    shuffled.loc[rows, "label"] = np.random.default_rng(1).permutation(shuffled.loc[rows, "label"].to_numpy())
    g = findings(shuffled)
    verdicts = {c.figure: c.verdict for c in g.claims()}
    obj = shuffled[rows]
    y = obj.label == "hallucinated"
    p = sps.mannwhitneyu(obj[~y].attn_entropy_all, obj[y].attn_entropy_all).pvalue
    assert p >= 0.05 and verdicts["Fig. 2b"].startswith("not shown: no significant difference")
    aucs = [roc_auc_score(y, obj[c]) for c in ("peak_gap_all", "mean_gap_all")]
    assert all(abs(a - 0.5) <= 0.05 for a in aucs) and verdicts["Fig. 5"].startswith("not shown: every AUC is near 0.5")
    assert verdicts["Fig. 4 left"].startswith("shown")  # KL and token entropy do not depend on the labels
    assert "do not hold for Fig. 2b" in g.claims_summary() and "hold for Fig. 4 left" in g.claims_summary()
    for table in (f.claims_markdown(), g.claims_markdown(), weak.claims_markdown()):
        assert [line.count("|") for line in table.splitlines()] == [5] * 7  # 4 columns: no stray pipes in a cell
    assert g.claims_markdown().count("\n") == 6
