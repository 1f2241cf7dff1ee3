"""Hallucination detectors: grouped validation without leaks, JSON round trips, planted signals and
shuffled controls, and the risk recorded live (while tracing, while streaming) equal to the risk
computed afterwards from the stored statistics."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import afip_probe.store as st
from afip_probe.cli import main
from afip_probe.hooks import is_intercepted
from afip_probe.errors import AfipError
from afip_probe.metrics import detect


def _synthetic(planted: float, seed: int = 0, captions: int = 120) -> pd.DataFrame:
    """A token table of object tokens: 8 features, the first one shifted by `planted` for hallucinated
    tokens, and a caption-level nuisance shared by the tokens of one caption."""
    rng = np.random.default_rng(seed)
    n = captions * 6
    df = pd.DataFrame({"sample_id": np.repeat([f"c{i}" for i in range(captions)], 6)})
    y = rng.random(n) < 0.2
    nuisance = np.repeat(rng.normal(size=captions), 6)
    for j in range(8):
        df[f"var_layer{j}"] = rng.normal(size=n) + nuisance + (planted * y if j == 0 else 0.0)
    df["token_entropy"], df["logprob"], df["relative_position"] = rng.random(n), -rng.random(n), rng.random(n)
    df["label"] = np.where(y, "hallucinated", "real")
    return df


def test_a_signal_is_listed_once_when_two_names_are_one_array():
    """On a 4-layer model the range late is layer 3 and middle is layer 2: each array is one feature, named by
    its range; no two features hold the same values and every metric column's values are among them."""
    rng = np.random.default_rng(0)
    per_layer = {f"layer{i}": rng.normal(size=50) for i in range(4)}
    arrays = dict(per_layer, all=np.mean(list(per_layer.values()), axis=0),
                  early=(per_layer["layer0"] + per_layer["layer1"]) / 2, middle=per_layer["layer2"],
                  late=per_layer["layer3"])
    order = ["all", "early", "middle", "late", "layer0", "layer1", "layer2", "layer3"]  # as token_table writes them
    df = pd.DataFrame({f"{m}_{r}": arrays[r] + k for k, m in enumerate(("var", "kl")) for r in order})
    df["token_entropy"], df["logprob"], df["relative_position"] = 0.0, 0.0, 0.0
    names = detect.feature_names(df)
    assert [n for n in names if n.startswith("var_")] == ["var_all", "var_early", "var_middle", "var_late",
                                                          "var_layer0", "var_layer1"]
    metric = [n for n in names if n.startswith(("var_", "kl_"))]
    for i, a in enumerate(metric):
        assert not any(np.array_equal(df[a], df[b]) for b in metric[i + 1:]), a
    for col in df.columns[:16]:
        assert any(np.array_equal(df[col], df[n]) for n in metric), col
    assert detect.feature_names(df.drop(columns=["var_layer3"]))[:4] == names[:4]


def test_grouped_folds_never_split_a_caption():
    groups = np.repeat(np.arange(37), np.random.default_rng(1).integers(1, 9, 37))
    folds = detect.grouped_folds(groups, 5)
    assert len(folds) == 5
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    assert sorted(np.concatenate([t for _, t in folds]).tolist()) == list(range(len(groups)))
    with pytest.raises(AfipError, match="at least 2 captions"):
        detect.grouped_folds([1, 1, 1])


@pytest.mark.parametrize("kind", detect.KINDS)
def test_a_planted_signal_is_found_and_a_shuffled_control_is_not(kind):
    df = _synthetic(planted=3.0)
    features = detect.feature_names(df)
    assert features[0] == "var_layer0" and "relative_position" in features
    found = detect.cross_validate(df, features, kind, folds=5, n_resamples=200)
    assert found.auroc > 0.95 and found.auroc_ci[0] > 0.9
    control = df.copy()
    control["label"] = np.random.default_rng(5).permutation(control.label.to_numpy())
    chance = detect.cross_validate(control, features, kind, folds=5, n_resamples=200)
    assert abs(chance.auroc - 0.5) < 0.1 and chance.auroc_ci[0] < 0.5 < chance.auroc_ci[1]
    singles = {e.name: e.auroc for e in detect.single_signals(df, features, n_resamples=50)}
    assert singles["var_layer0"] > 0.9 and abs(singles["var_layer1"] - 0.5) < 0.1  # (the caption nuisance stays in)


def test_the_token_prior_is_learned_from_training_captions_only():
    """Object tokens with id 5 are hallucinated 60 % of the time, the rest 10 %: the prior finds it in
    cross-validation, a shuffled control does not, and the model learns from priors fitted without the row's
    own caption (fitted with it, a token seen once would carry its own label)."""
    rng = np.random.default_rng(2)
    df = _synthetic(planted=0.0, seed=2, captions=200)
    df["token_id"] = rng.choice([5, 6, 7, 8], size=len(df))
    df["label"] = np.where(rng.random(len(df)) < np.where(df.token_id == 5, 0.6, 0.1), "hallucinated", "real")
    features = detect.feature_names(df, prior=True)
    assert features[-1] == detect.TOKEN_PRIOR
    found = detect.cross_validate(df, features, "logistic", folds=5, n_resamples=200)
    assert found.auroc > 0.7 and found.auroc_ci[0] > 0.6
    control = df.assign(label=rng.permutation(df.label.to_numpy()))
    chance = detect.cross_validate(control, features, "logistic", folds=5, n_resamples=200)
    assert chance.auroc_ci[0] < 0.5 < chance.auroc_ci[1]
    unique = df.assign(token_id=np.arange(len(df)))  # every token id seen once: the prior can know nothing
    det = detect.train(unique, features)
    assert abs(det.weights[0][0][-1][0]) < 0.2, "the prior column was fitted on the rows it scores"
    assert set(det.prior(np.array([-1, 10**9]))) == {np.log(det.prior.base)}  # unseen ids: the base rate
    assert detect.TOKEN_PRIOR not in {e.name for e in detect.single_signals(df, features, n_resamples=20)}
    with pytest.raises(AfipError, match="learned"):
        detect._xy(df, [detect.TOKEN_PRIOR])


def test_a_saved_detector_scores_identically(tmp_path):
    df = _synthetic(planted=1.0)
    df["token_id"] = np.arange(len(df)) % 7
    for kind in detect.KINDS:
        det = detect.train(df, detect.feature_names(df, prior=True), kind)
        loaded = detect.Detector.load(det.save(tmp_path / f"{kind}.json"))
        np.testing.assert_array_equal(loaded.predict(df).to_numpy(), det.predict(df).to_numpy())
    (tmp_path / "other.json").write_text('{"weights": []}')
    with pytest.raises(AfipError, match="not an afip-probe detector"):
        detect.Detector.load(tmp_path / "other.json")


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_the_live_scorer_equals_the_detector_on_the_token_table(kind):
    """The streaming scorer (numpy on [S, L, ...] arrays) and `predict` on `trace_features`' table agree,
    also where a feature is infinite or NaN (a layer that sees no image key: peak gap +inf)."""
    from afip_probe.records import HEAD_FIELDS, LAYER_FIELDS, array_name

    rng = np.random.default_rng(3)
    steps, layers, heads = 30, 4, 3
    arrays = {array_name("head", f): rng.normal(size=(steps, layers, heads)) for f in HEAD_FIELDS}
    arrays |= {array_name("layer", f): rng.random((steps, layers)) for f in LAYER_FIELDS}
    arrays[array_name("head", "img_max_score")][5, 2] = -np.inf
    arrays[array_name("layer", "kl")][7, 1] = np.nan
    tokens = pd.DataFrame({"sample_id": "s", "step": np.arange(steps), "token_entropy": rng.random(steps),
                           "logprob": -rng.random(steps)})
    features = [f"{m}_{r}" for m in detect.METRICS for r in ("all", "late", "layer1", "layer2")]
    features += ["token_entropy", "logprob"]
    full = detect.trace_features(arrays, tokens, features, layers)
    assert np.isinf(full.peak_gap_layer2[5]) and np.isnan(full.kl_layer1[7])
    det = detect.train(full.assign(label=np.where(rng.random(steps) < 0.3, "hallucinated", "real")), features,
                       kind=kind)
    live = detect.LiveScorer(det, layers)(arrays, tokens.token_entropy.to_numpy(), tokens.logprob.to_numpy())
    np.testing.assert_allclose(live, det.predict(full).to_numpy(), atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def organism(tmp_path_factory):
    """An organism store and a detector trained on it (features known while generating)."""
    from afip_probe.organism.dataset import heldout_dirs

    root = tmp_path_factory.mktemp("detect")
    images, _ = heldout_dirs(progress=False)
    picked = root / "images"
    picked.mkdir()
    for p in sorted(images.iterdir())[:24]:
        (picked / p.name).symlink_to(p)
    assert main(["trace", "--model", "organism", "--images", str(picked), "--out", str(root / "train"),
                 "--max-new-tokens", "60", "--device", "cpu", "--no-progress"]) == 0
    assert main(["detect", "train", str(root / "train"), "-o", str(root / "live.json"), "--features", "live",
                 "--resamples", "50", "--folds", "3"]) == 0
    assert main(["trace", "--model", "organism", "--images", str(picked), "--out", str(root / "risky"),
                 "--max-new-tokens", "60", "--max-images", "6", "--device", "cpu", "--no-progress",
                 "--detector", str(root / "live.json")]) == 0
    return root


def test_risk_recorded_while_tracing_equals_risk_from_the_stored_statistics(organism):
    det = detect.Detector.load(organism / "live.json")
    assert "relative_position" not in det.features and det.trained_on["hallucinated"] > 0
    store = st.open(organism / "risky")  # traced with --detector in the fixture
    recorded = store.tokens().set_index(["sample_id", "step"]).risk
    table = detect.detection_table(store)
    afterwards = pd.Series(det.predict(table).to_numpy(), index=pd.MultiIndex.from_frame(table[["sample_id", "step"]]))
    np.testing.assert_allclose(recorded.loc[afterwards.index].to_numpy(), afterwards.to_numpy(), atol=1e-6, rtol=0)
    assert store.settings["detector"]["kind"] == "logistic"


@pytest.mark.parametrize("latency", [0.0, 1e6], ids=["every-token", "one-burst"])
def test_streaming_yields_each_piece_with_the_risk_of_the_stored_statistics(organism, latency):
    """Pieces handed over one by one, or all at the end in one burst, have the stored statistics' risk."""
    from afip_probe.images import load_image
    from afip_probe.models import load
    from afip_probe.pipelines.streaming import stream

    det = detect.Detector.load(organism / "live.json")
    loaded = load("organism", device="cpu")
    image = sorted((organism / "images").iterdir())[0]
    pieces = list(stream(loaded.model, loaded.processor, load_image(image), detector=det, max_new_tokens=60,
                         adapter=loaded.adapter, latency=latency))
    store = st.open(organism / "train")
    sid = image.stem
    table = detect.detection_table(store)
    table = table[table.sample_id == sid].sort_values("step")
    tokens = store.tokens([sid])
    assert [p.token_id for p in pieces][: len(tokens)] == tokens.token_id.tolist()
    assert "".join(p.text for p in pieces).strip() == store.samples().set_index("sample_id").output_text[sid].strip()
    np.testing.assert_allclose([p.risk for p in pieces][: len(table)], det.predict(table).to_numpy(),
                               atol=1e-5, rtol=0)
    with pytest.raises(AfipError, match="--features live"):
        next(stream(loaded.model, loaded.processor, load_image(image),
                    detector=detect.train(table.assign(label=["real", "hallucinated"] * (len(table) // 2)
                                                       + ["real"] * (len(table) % 2)),
                                          ["token_entropy", "relative_position"])))


def test_streaming_runs_in_the_callers_thread_and_stops_cleanly(organism):
    """generate() runs in the caller's thread (a worker thread made it 1.2-1.4x slower); the caller keeps its
    grad mode while holding a piece; leaving the loop early unwinds generate() and takes the hooks off; an
    error inside generate() reaches the caller."""
    import threading

    import torch

    from afip_probe.images import load_image
    from afip_probe.models import load
    from afip_probe.pipelines import streaming

    loaded = load("organism", device="cpu")
    image = load_image(sorted((organism / "images").iterdir())[0])
    threads, modes = [], []
    original_put = streaming._Streamer.put

    def put(self, value):
        threads.append(threading.get_ident())
        modes.append(torch.is_grad_enabled())
        return original_put(self, value)

    streaming._Streamer.put = put
    try:
        with torch.enable_grad():
            it = streaming.stream(loaded.model, loaded.processor, image, max_new_tokens=20, adapter=loaded.adapter)
            first = [next(it) for _ in range(3)]
            assert torch.is_grad_enabled()  # the caller's mode, not generate()'s no_grad
            assert is_intercepted(loaded.model)  # suspended inside generate()
            it.close()
        assert not is_intercepted(loaded.model)
    finally:
        streaming._Streamer.put = original_put
    assert set(threads) == {threading.get_ident()} and not any(modes)
    assert [p.step for p in first] == [0, 1, 2]
    full = list(streaming.stream(loaded.model, loaded.processor, image, max_new_tokens=20, adapter=loaded.adapter))
    assert [p.token_id for p in full[:3]] == [p.token_id for p in first] and len(full) <= 20
    with pytest.raises(AfipError, match="num_beams=1"):  # raised inside generate()
        list(streaming.stream(loaded.model, loaded.processor, image, max_new_tokens=5, adapter=loaded.adapter,
                              num_beams=2))
    assert not is_intercepted(loaded.model)


def test_a_token_prior_on_another_models_tokens_is_warned_about(organism, capsys):
    det = detect.Detector.load(organism / "live.json")
    model = det.trained_on["model"]
    assert det.token_prior is not None and model == st.open(organism / "train").settings["model"]
    assert det.model_mismatch(model) is None
    assert "--no-token-prior" in det.model_mismatch("llava-hf/llava-1.5-7b-hf")
    det.token_prior = None
    assert det.model_mismatch("llava-hf/llava-1.5-7b-hf") is None  # no token ids used: nothing to warn about


def test_stream_cli_prints_the_caption_with_risky_object_words_marked(organism, capsys):
    """`afip-probe stream`: the traced caption, every object word marked at threshold 0 and none at 1."""
    image = sorted((organism / "images").iterdir())[0]
    caption = st.open(organism / "train").samples().set_index("sample_id").output_text[image.stem].strip()
    args = ["stream", str(image), "--detector", str(organism / "live.json"), "--max-new-tokens", "60",
            "--device", "cpu"]
    assert main([*args, "--threshold", "1.0"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].strip() == caption and out[-1].endswith("0 object words flagged at risk >= 1.0")
    assert main([*args, "--threshold", "0", "--latency", "0"]) == 0
    marked = capsys.readouterr().out.strip().splitlines()
    flagged = int(marked[-1].split(" tokens, ")[1].split()[0])
    assert flagged > 0 and marked[0].count("[") == flagged and marked[0].count("!") == flagged
    assert re.sub(r"\[(\w+)!\d\.\d\d\]", r"\1", marked[0]).strip() == caption


def test_detect_eval_writes_its_table_and_figures(organism, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["detect", "eval", str(organism / "train"), "--out", str(out), "--resamples", "50",
                 "--folds", "3"]) == 0
    table = pd.read_csv(out / "detectors.csv")
    assert table.detector.iloc[0].startswith("logistic") and table.detector.iloc[1].startswith("mlp")
    # the organism has 4 layers: late is layer 3 and middle layer 2, one array each, listed once
    singles = set(table.detector.iloc[2:])
    assert {"var_late", "var_middle", "var_layer0"} <= singles and not {"var_layer3", "var_layer2"} & singles
    assert ((table.AUROC >= 0) & (table.AUROC <= 1)).all() and (out / "detectors.png").stat().st_size > 1000
    assert main(["detect", "eval", str(organism / "train"), "--detector", str(organism / "live.json"), "--out",
                 str(tmp_path / "transfer"), "--resamples", "50"]) == 0
    assert "live.json" in pd.read_csv(tmp_path / "transfer" / "detectors.csv").detector.iloc[0]
    assert main(["detect", "train", str(organism / "train"), "-o", str(organism / "live.json")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_the_explorer_shades_tokens_by_recorded_risk(organism, tmp_path):
    from afip_probe.plots.explorer import _collect

    meta, samples = _collect([st.open(organism / "risky")], None, False)
    assert meta["metrics"]["risk"] == "hallucination risk"
    tokens = st.open(organism / "risky").tokens([samples[0].index["id"]])
    np.testing.assert_allclose(samples[0].payload["metrics"]["risk"], tokens.risk.to_numpy(), rtol=1e-4)
    meta, _ = _collect([st.open(organism / "train")], 2, False)
    assert "risk" not in meta["metrics"]


def test_figures_draw_the_recorded_risk(organism, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from afip_probe.metrics.table import token_table
    from afip_probe.plots.findings import all_figures

    df = token_table(st.open(organism / "risky"))
    assert "risk" in df
    fig = all_figures(df, n_resamples=50)["risk_caption"]
    ax = fig.axes[0]
    assert fig.get_supylabel() == "hallucination risk (detector)"
    drawn = np.concatenate([line.get_ydata() for line in ax.get_lines()])
    assert np.isin(np.round(df.risk.to_numpy(), 5), np.round(drawn, 5)).any()
    assert "risk_caption" not in all_figures(token_table(st.open(organism / "train")), n_resamples=50)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "tied-scores"])
def test_the_caption_bootstrap_equals_sklearn_on_the_resampled_tokens(ties):
    """Slow reference: each resample's captions concatenated (a caption drawn twice, its tokens twice) and
    scored by sklearn, resample by resample, with the same draws."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(4)
    caption = np.repeat(np.arange(25), rng.integers(1, 6, 25))
    y = rng.random(len(caption)) < 0.25
    s = rng.normal(size=len(caption)) + y
    if ties:
        s = np.round(s, 0)
    fast = detect.caption_bootstrap(s, y, caption, 60, np.random.default_rng(9), chunk=7)
    draws = np.random.default_rng(9)
    members = [np.flatnonzero(caption == c) for c in range(25)]
    for r in range(60):
        idx = np.concatenate([members[c] for c in draws.integers(0, 25, 25)])
        if y[idx].all() or not y[idx].any():
            assert np.isnan(fast[r]).all()
            continue
        np.testing.assert_allclose(fast[r], [roc_auc_score(y[idx], s[idx]), average_precision_score(y[idx], s[idx])],
                                   rtol=0, atol=1e-12)
