"""Hallucination detectors: grouped validation without leaks (by image, across conditions and stores), JSON
round trips, planted signals and shuffled controls, choices made on training scenes only, and the risk
recorded live (while tracing, while streaming) equal to the risk computed afterwards from the stored
statistics, for every kind of signal (attention statistics, maps, hidden states)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import afip_probe.store as st
from afip_probe.cli import main
from afip_probe.hooks import is_intercepted
from afip_probe.errors import AfipError
from afip_probe.metrics import detect
from afip_probe.metrics.detect import suite
from afip_probe.store.verify import verify


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


def test_grouped_folds_never_split_a_group():
    groups = np.repeat(np.arange(37), np.random.default_rng(1).integers(1, 9, 37))
    folds = detect.grouped_folds(groups, 5)
    assert len(folds) == 5
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    assert sorted(np.concatenate([t for _, t in folds]).tolist()) == list(range(len(groups)))
    with pytest.raises(AfipError, match="at least 2 images"):
        detect.grouped_folds([1, 1, 1])


@pytest.mark.parametrize("kind", detect.KINDS)
def test_a_planted_signal_is_found_and_a_shuffled_control_is_not(kind):
    df = _synthetic(planted=3.0)
    features = detect.feature_names(df)
    assert features == [f"var_layer{j}" for j in range(8)] + ["token_entropy", "logprob", "relative_position"]
    found = detect.cross_validate(df, features, kind, folds=5, n_resamples=200)
    assert found.auroc > 0.95 and found.auroc_ci[0] > 0.9
    control = df.copy()
    control["label"] = np.random.default_rng(5).permutation(control.label.to_numpy())
    chance = detect.cross_validate(control, features, kind, folds=5, n_resamples=200)
    assert abs(chance.auroc - 0.5) < 0.1 and chance.auroc_ci[0] < 0.5 < chance.auroc_ci[1]
    planted = detect.oriented_signal(df, ["var_layer0"], n_resamples=50)
    assert planted.auroc > 0.9 and planted.note == "var_layer0, high (5 of 5 fits)"
    other = detect.oriented_signal(df, ["var_layer1"], n_resamples=50)
    assert abs(other.auroc - 0.5) < 0.1  # (the caption nuisance stays in)


def _prior_table(ids: int, seed: int, informative: bool) -> pd.DataFrame:
    """Object tokens whose token ids are drawn from `ids` values (most seen a handful of times); labels at rate
    0.2, or (informative) 0.4 for the lower half of the ids and 0.05 for the others."""
    rng = np.random.default_rng(seed)
    df = _synthetic(planted=0.0, seed=seed, captions=200)
    df["token_id"] = rng.integers(0, ids, len(df))
    rate = np.where(df.token_id < ids // 2, 0.4, 0.05) if informative else np.full(len(df), 0.2)
    df["label"] = np.where(rng.random(len(df)) < rate, "hallucinated", "real")
    return df


def test_the_token_prior_is_learned_from_training_images_only():
    """Token ids seen a few times each and labels independent of them: a prior fitted on every row (the test
    fold's included) would carry the test rows' own labels (AUROC ~0.75 here); fitted on the training folds,
    it knows nothing (AUROC ~0.5). A planted prior (half the ids hallucinated 40 % of the time, the rest 5 %)
    is found."""
    features = ["token_entropy", detect.TOKEN_PRIOR]
    uninformative = _prior_table(ids=400, seed=2, informative=False)
    chance = detect.cross_validate(uninformative, features, "logistic", folds=5, n_resamples=200)
    assert abs(chance.auroc - 0.5) < 0.06 and chance.auroc_ci[0] < 0.5 < chance.auroc_ci[1], chance
    planted = _prior_table(ids=100, seed=3, informative=True)
    found = detect.cross_validate(planted, features, "logistic", folds=5, n_resamples=200)
    assert found.auroc > 0.68 and found.auroc_ci[0] > 0.6
    det = detect.train(uninformative.assign(token_id=np.arange(len(uninformative))), features)
    assert abs(det.weights[0][0][-1][0]) < 0.2, "the prior column was fitted on the rows it scores"
    assert set(det.prior(np.array([-1, 10**9]))) == {np.log(det.prior.base)}  # unseen ids: the base rate
    with pytest.raises(AfipError, match="learned"):
        detect.feature_matrix(planted, [detect.TOKEN_PRIOR])


def test_a_saved_detector_scores_identically(tmp_path):
    df = _synthetic(planted=1.0)
    df["token_id"] = np.arange(len(df)) % 7
    for kind in detect.KINDS:
        det = detect.train(df, detect.feature_names(df, prior=True), kind)
        loaded = detect.Detector.load(det.save(tmp_path / f"{kind}.json"))
        np.testing.assert_array_equal(loaded.predict(df).to_numpy(), det.predict(df).to_numpy())
    signal = detect.load_detector("logprob")  # a training-free signal, no file: lower logprob is riskier
    np.testing.assert_array_equal(signal.predict(df).to_numpy(), -df.logprob.to_numpy())
    (tmp_path / "other.json").write_text('{"weights": []}')
    with pytest.raises(AfipError, match="not an afip-probe detector"):
        detect.Detector.load(tmp_path / "other.json")
    with pytest.raises(AfipError, match="neither a detector file nor a signal"):
        detect.load_detector("no_such_signal")


def _arrays(rng, steps, layers, heads, slots, hidden, width):
    from afip_probe.records import HEAD_FIELDS, LAYER_FIELDS, array_name

    arrays = {array_name("head", f): rng.normal(size=(steps, layers, heads)) for f in HEAD_FIELDS}
    for f in ("var", "prompt_mass", "generated_mass"):
        arrays[array_name("head", f)] = rng.random((steps, layers, heads)) / 3
    arrays |= {array_name("layer", f): rng.random((steps, layers)) for f in LAYER_FIELDS}
    arrays[array_name("maps")] = rng.random((steps, layers, slots)).astype(np.float16)
    arrays[array_name("hidden")] = rng.normal(size=(steps, hidden, width)).astype(np.float16)
    arrays[array_name("image_hidden")] = rng.normal(size=(hidden, slots, width)).astype(np.float16)
    arrays[array_name("lens")] = -rng.random((steps, hidden)) * 5
    arrays[array_name("image_lens")] = -rng.random((steps, hidden)) * 5
    arrays[array_name("token_entropy")], arrays[array_name("logprob")] = rng.random(steps), -rng.random(steps)
    return arrays


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_the_live_scorer_equals_the_detector_on_the_token_table(kind):
    """The streaming scorer (numpy on [S, L, ...] arrays, in bursts) and `predict` on `trace_features`' table
    agree for every live signal (statistics, lookback, PAS, ADS, CGC, IC, hidden states), also where a feature
    is infinite or NaN (a layer that sees no image key: peak gap +inf)."""
    from afip_probe.metrics.signals import SampleContext
    from afip_probe.records import Tile, array_name

    rng = np.random.default_rng(3)
    steps, layers, heads, slots = 30, 4, 3, 6
    arrays = _arrays(rng, steps, layers, heads, slots, hidden=2, width=5)
    arrays[array_name("head", "img_max_score")][5, 2] = -np.inf
    arrays[array_name("layer", "kl")][7, 1] = np.nan
    ctx = SampleContext(prompt_tokens=20, image_tokens=slots, tiles=(Tile("crop", (1, 2), (0, 1), (0, 0, 1, 1)),
                        Tile("overview", (2, 2), (2, 3, 4, 5), (0, 0, 1, 1))), num_layers=layers, hidden_layers=(1, 3))
    tokens = pd.DataFrame({"sample_id": [f"s{i // 6}" for i in range(steps)], "step": np.arange(steps),
                           "token_entropy": arrays["token_entropy"],
                           "logprob": arrays["logprob"], "token_id": rng.integers(0, 9, steps)})
    probe = [f"hidden_row_h3_{i}" for i in range(5)]
    features = [f"{m}_{r}" for m in detect.METRICS for r in ("all", "late", "layer1", "layer2")]
    features += ["token_entropy", "logprob", "lookback_l2_h1", "lookback_image_l0_h0", "lookback_late", "pas_layer0",
                 "svar_all", "ads_layer1", "ads_early", "cgc_row_h1", "cgc_row_h3", "ic", "image_ic", *probe,
                 detect.TOKEN_PRIOR]
    full = detect.trace_features(arrays, tokens, features, ctx)
    assert np.isinf(full.peak_gap_layer2[5]) and np.isnan(full.kl_layer1[7])
    det = detect.train(full.assign(label=np.where(rng.random(steps) < 0.3, "hallucinated", "real")), features,
                       kind=kind)
    scorer = detect.LiveScorer(det, layers, ctx)
    live = np.concatenate([scorer({k: v[a:b] if k != array_name("image_hidden") else v for k, v in arrays.items()},
                                  arrays["token_entropy"][a:b], arrays["logprob"][a:b], tokens.token_id[a:b],
                                  first_step=a) for a, b in ((0, 1), (1, 13), (13, 30))])  # three bursts
    np.testing.assert_allclose(live, det.predict(full).to_numpy(), atol=1e-6, rtol=0)
    for late in ("relative_position", "cgc_own_h1", "hidden_own_h3_0"):
        with pytest.raises(AfipError, match="features='live'"):
            detect.LiveScorer(detect.Detector.signal(late), layers, ctx)


LIVE = "live,lookback-split,probe=4"  # every live signal, per-head lookback parts and the last hidden state


@pytest.fixture(scope="module")
def organism(tmp_path_factory):
    """An organism store with maps and hidden states, and a detector trained on it with every live signal."""
    from afip_probe.organism.dataset import heldout_dirs

    root = tmp_path_factory.mktemp("detect")
    images, _ = heldout_dirs(progress=False)
    picked = root / "images"
    picked.mkdir()
    for p in sorted(images.iterdir())[:24]:
        (picked / p.name).symlink_to(p)
    record = ["--record", "maps", "--hidden", "all"]
    assert main(["trace", "--model", "organism", "--images", str(picked), "--out", str(root / "train"),
                 "--max-new-tokens", "60", "--device", "cpu", "--no-progress", *record]) == 0
    assert main(["detect", "train", str(root / "train"), "-o", str(root / "live.json"), "--features", LIVE,
                 "--resamples", "50", "--folds", "3"]) == 0
    assert main(["trace", "--model", "organism", "--images", str(picked), "--out", str(root / "risky"),
                 "--max-new-tokens", "60", "--max-images", "6", "--device", "cpu", "--no-progress", *record,
                 "--detector", str(root / "live.json")]) == 0
    return root


def test_risk_recorded_while_tracing_equals_risk_from_the_stored_statistics(organism, capsys):
    det = detect.Detector.load(organism / "live.json")
    assert "relative_position" not in det.features and det.trained_on["hallucinated"] > 0
    assert {"ads_late", "cgc_row_h4", "ic", "pas_layer0", "lookback_image_l0_h0", "hidden_row_h4_0"} <= set(det.features)
    store = st.open(organism / "risky")  # traced with --detector in the fixture
    recorded = store.tokens().set_index(["sample_id", "step"]).risk
    table = detect.detection_table(store)
    afterwards = pd.Series(det.predict(table).to_numpy(), index=pd.MultiIndex.from_frame(table[["sample_id", "step"]]))
    assert len(afterwards) == len(recorded) == store.samples().num_tokens.sum()
    np.testing.assert_allclose(recorded.loc[afterwards.index].to_numpy(), afterwards.to_numpy(), atol=1e-6, rtol=0)
    assert store.settings["detector"]["kind"] == "logistic"
    assert verify(organism / "risky").ok  # image_hidden [K, n, d] is no per-step array
    # a trace that cannot give the detector's signals is refused before it writes a sample
    assert main(["trace", "--model", "organism", "--images", str(organism / "images"), "--out", str(organism / "x"),
                 "--max-images", "1", "--device", "cpu", "--detector", str(organism / "live.json")]) == 2
    assert "--record maps" in capsys.readouterr().err and not (organism / "x" / "samples").exists()


@pytest.mark.parametrize("latency", [0.0, 1e6], ids=["every-token", "one-burst"])
def test_streaming_yields_each_piece_with_the_risk_of_the_stored_statistics(organism, latency):
    """Pieces handed over one by one, or all at the end in one burst, have the stored statistics' risk, the
    maps' and hidden states' signals included."""
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
    assert [p.token_id for p in pieces] == store.tokens([sid]).token_id.tolist()
    assert "".join(p.text for p in pieces).strip() == store.samples().set_index("sample_id").output_text[sid].strip()
    np.testing.assert_allclose([p.risk for p in pieces], det.predict(table).to_numpy(), atol=1e-5, rtol=0)
    with pytest.raises(AfipError, match="features='live'"):
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
    """`afip-probe stream`: the traced caption, every object word marked at threshold 0 and none at 1; a
    training-free signal (PAS) needs no detector file."""
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
    args[3] = "pas_layer0"
    assert main([*args, "--threshold", "0"]) == 0  # PAS >= 0 everywhere: every object word
    marked = capsys.readouterr().out.strip().splitlines()
    assert re.sub(r"\[(\w+)!\d\.\d\d\]", r"\1", marked[0]).strip() == caption
    assert int(marked[-1].split(" tokens, ")[1].split()[0]) == flagged


def test_detect_eval_compares_every_group_in_domain_and_on_new_scenes(organism, tmp_path, capsys):
    """The report's rows are what they say: PAS thresholded at layer 0 is the AUROC of the stored PAS (sklearn
    on the table), the single-signal rows pick their variant on training images, every group has a ROC figure,
    and the chosen combination is saved, trained on all training scenes."""
    out = tmp_path / "eval"
    assert main(["detect", "eval", str(organism / "train"), "--transfer", str(organism / "risky"), "--out", str(out),
                 "--resamples", "50", "--folds", "3"]) == 0
    table = pd.read_csv(out / "detectors.csv")
    assert set(table.group) == set(suite.GROUPS)
    assert set(table.setting) == {"in-domain (3-fold by image)", "transfer (trained on all training scenes)"}
    for name, store in (("in-domain", "train"), ("transfer", "risky")):
        obj = detect.object_tokens(detect.detection_table(st.open(organism / store)))
        row = table[(table.detector == "PAS, layer 0 (threshold)") & table.setting.str.startswith(name)].iloc[0]
        assert row.AUROC == round(roc_auc_score(obj.label == "hallucinated", obj.pas_layer0), 3)
        assert row.tokens == len(obj) and row.images == obj.sample_id.nunique()
    for figure in detect_figures():
        assert (out / figure).stat().st_size > 10_000
    best = detect.Detector.load(out / "best-detector.json")
    assert best.trained_on["tokens"] == len(detect.object_tokens(detect.detection_table(st.open(organism / "train"))))
    assert main(["detect", "eval", str(organism / "train"), "--detector", str(organism / "live.json"), "--out",
                 str(tmp_path / "saved"), "--resamples", "50"]) == 0
    assert "live.json" in pd.read_csv(tmp_path / "saved" / "detectors.csv").detector.iloc[0]
    assert main(["detect", "train", str(organism / "train"), "-o", str(organism / "live.json")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def detect_figures() -> list[str]:
    """The figure names: one per group of the comparison (named without importing the suite, so that `--help`
    stays light), and the command's --features help names every feature set."""
    from afip_probe.api import DETECTOR_FIGURES
    from afip_probe.commands.detect import SETS_HELP

    assert tuple(DETECTOR_FIGURES) == suite.GROUPS and all(name in SETS_HELP for name in detect.FEATURE_SETS)
    return [f"{name}.png" for name in DETECTOR_FIGURES.values()]


def test_choices_are_made_on_training_scenes_only():
    """Permuting the new scenes' labels changes their scores, never what was chosen: orientations, layers, the
    probe's layer and the combination come from the training scenes."""
    def table(seed, shift):
        r = np.random.default_rng(seed)
        y = r.random(800) < 0.2
        df = pd.DataFrame({"sample_id": np.repeat(np.arange(200), 4), "label": np.where(y, "hallucinated", "real"),
                           "token_entropy": r.normal(size=800) + shift * y, "logprob": r.normal(size=800),
                           "pas_layer0": r.normal(size=800) - shift * y, "pas_layer1": r.normal(size=800),
                           "token_id": r.integers(0, 30, 800)})
        for k in (1, 2):
            for i in range(3):
                df[f"hidden_row_h{k}_{i}"] = r.normal(size=800) + (shift * y if k == 2 else 0)
        return df

    config = suite.SuiteConfig(resamples=20, folds=3)
    train = table(0, 1.0)
    a = suite.compare(train, table(1, 1.0), config)
    shuffled = table(1, 1.0)
    shuffled["label"] = np.random.default_rng(9).permutation(shuffled.label.to_numpy())
    b = suite.compare(train, shuffled, config)
    assert (a.choice, a.probe_layer) == (b.choice, b.probe_layer) and a.probe_layer == 2
    assert [e.note for e in a.evaluations] == [e.note for e in b.evaluations]
    transfer = {e.name: e.auroc for e in a.evaluations if e.setting.startswith("transfer")}
    noise = {e.name: e.auroc for e in b.evaluations if e.setting.startswith("transfer")}
    assert transfer["prelim attention score, PAS [pas]"] > 0.65 and abs(noise["prelim attention score, PAS [pas]"] - 0.5) < 0.1


def test_folds_and_intervals_group_by_image_across_conditions_and_stores(tmp_path):
    """A two-condition store's captions of one image are one group (folds never split them); two stores whose
    images share file names but not content are different groups; the table counts images."""
    from afip_probe.organism.dataset import ensure_split, heldout_dirs

    images, _ = heldout_dirs(progress=False)
    picked = tmp_path / "images"
    picked.mkdir()
    for p in sorted(images.iterdir())[:5]:
        (picked / p.name).symlink_to(p)
    from afip_probe.pipelines.comparison import conditions_for
    from afip_probe.pipelines.settings import GenerationSettings
    from afip_probe.pipelines.tracing import trace_images

    settings = GenerationSettings("organism", max_new_tokens=40, device="cpu")
    trace_images(settings, [picked], tmp_path / "cmp", conditions=conditions_for(["pai"], history_ablation=False),
                 progress=False)
    with pytest.warns(UserWarning, match="no ads, cgc, ic, image_ic, hidden_row, hidden_own"):  # stats level only
        table = detect.detection_table(st.open(tmp_path / "cmp"))
    assert table.condition.nunique() == 2 and table.sample_id.str.contains("/").all()
    per_image = table.groupby(table.sample_id.str.split("/").str[1]).group.nunique()
    assert (per_image == 1).all() and table.group.nunique() == 5
    groups = detect.groups_of(table)
    for train, test in detect.grouped_folds(groups, 3):
        assert not set(table.sample_id.str.split("/").str[1].to_numpy()[train]) & set(
            table.sample_id.str.split("/").str[1].to_numpy()[test])
    other = ensure_split("val", n=5, seed=5, root=tmp_path / "seed5", progress=False) / "images" / "val"
    assert sorted(p.name for p in other.iterdir()) == sorted(p.name for p in picked.iterdir())  # the same stems
    assert main(["trace", "--model", "organism", "--images", str(other), "--out", str(tmp_path / "s5"),
                 "--max-new-tokens", "40", "--device", "cpu", "--no-progress"]) == 0
    base = table[table.condition == table.condition.iloc[0]]
    with pytest.warns(UserWarning, match="no ads"):
        both = pd.concat([base, detect.detection_table(st.open(tmp_path / "s5"))])
    assert both.group.nunique() == 10
    ev = detect.evaluate_scores("x", both.token_entropy.to_numpy(), both.label.eq("hallucinated").to_numpy()
                                | (both.step == 0).to_numpy(), detect.groups_of(both), 20)
    assert detect.table([ev]).images.iloc[0] == 10


def test_the_explorer_shades_tokens_by_recorded_risk(organism, tmp_path):
    from afip_probe.plots.explorer import _collect

    meta, samples = _collect([st.open(organism / "risky")], None, False)
    assert meta["metrics"]["risk"] == "hallucination risk"
    tokens = st.open(organism / "risky").tokens([samples[0].index["id"]])
    np.testing.assert_allclose(samples[0].payload["metrics"]["risk"], tokens.risk.to_numpy(), rtol=1e-4)
    meta, _ = _collect([st.open(organism / "train")], 2, False)
    assert "risk" not in meta["metrics"]


def test_figures_draw_the_recorded_risk(organism, tmp_path):
    """Every drawn caption's line is that caption's recorded risk, token by token (hallucinated captions
    first)."""
    import matplotlib

    matplotlib.use("Agg")
    from afip_probe.metrics.table import token_table
    from afip_probe.plots.findings import all_figures

    df = token_table(st.open(organism / "risky"))
    assert "risk" in df
    fig = all_figures(df, n_resamples=50)["risk_caption"]
    assert fig.get_supylabel() == "hallucination risk (detector)"
    hall = set(df.loc[df.label == "hallucinated", "sample_id"])
    panels = [a for a in fig.axes if a.get_lines()]
    sids = [a.get_title().splitlines()[0] for a in panels]
    assert len(panels) == 6 and [s in hall for s in sids] == [True] * min(len(hall), 6) + [False] * (6 - min(len(hall), 6))
    for a, sid in zip(panels, sids):
        np.testing.assert_array_equal(np.asarray(a.get_lines()[0].get_ydata()),
                                      df[df.sample_id == sid].sort_values("step").risk.to_numpy())
    assert "risk_caption" not in all_figures(token_table(st.open(organism / "train")), n_resamples=50)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "tied-scores"])
def test_the_caption_bootstrap_equals_sklearn_on_the_resampled_tokens(ties):
    """Slow reference: each resample's captions concatenated (a caption drawn twice, its tokens twice) and
    scored by sklearn, resample by resample, with the same draws."""
    from sklearn.metrics import average_precision_score

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


def test_detect_commands_equal_train_detector_and_evaluate_detectors(organism, tmp_path, capsys):
    """`detect train` / `detect eval` are `train_detector` / `evaluate_detectors`: the same detector JSON, the same
    table and the same chosen combination, from the command line and from Python."""
    import afip_probe as ap

    train, risky = organism / "train", organism / "risky"
    args = ["--features", "afip,lookback-split", "--strength", "0.5", "--folds", "3", "--resamples", "30"]
    assert main(["detect", "train", str(train), "-o", str(tmp_path / "cli.json"), *args]) == 0
    det = ap.train_detector(train, tmp_path / "py.json", features="afip,lookback-split", strength=0.5, folds=3,
                            resamples=30)
    assert json.loads((tmp_path / "cli.json").read_text()) == json.loads((tmp_path / "py.json").read_text())
    assert det.trained_on["cv_auroc"] == round(det.cv.auroc, 4) and det.cv.n_captions == len(detect.object_tokens(
        detect.detection_table(st.open(train))).sample_id.unique())
    assert f"{det.cv.auroc:.3f}" in capsys.readouterr().out

    common = ["--folds", "3", "--resamples", "30"]
    assert main(["detect", "eval", str(train), "--transfer", str(risky), "--out", str(tmp_path / "cli"), *common]) == 0
    report = ap.evaluate_detectors(train, transfer=risky, out=tmp_path / "py", folds=3, resamples=30)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cli" / "detectors.csv"),
                                  pd.read_csv(tmp_path / "py" / "detectors.csv"))
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(p.name for p in report.out.iterdir())
    saved = json.loads((tmp_path / "py" / "best-detector.json").read_text())
    assert json.loads((tmp_path / "cli" / "best-detector.json").read_text()) == saved
    assert saved["features"] == report.best.features and len(report.table) == len(report.evaluations)
    inline = ap.evaluate_detectors(train, transfer=risky, folds=3, resamples=30)  # no out: nothing written
    assert inline.out is None and inline.table.equals(report.table)
