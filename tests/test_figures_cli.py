"""`afip-probe figures` and `afip-probe heatmap` on a store the organism recorded at `full`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import afip_probe.store as st
from afip_probe.cli import main


@pytest.fixture(scope="module")
def full_store(tmp_path_factory):
    from afip_probe.organism.dataset import heldout_dirs

    images, _ = heldout_dirs(progress=False)
    out = tmp_path_factory.mktemp("figs") / "store"
    rc = main(["trace", "--model", "organism", "--images", str(images), "--out", str(out), "--record", "full",
               "--max-new-tokens", "48", "--max-images", "30", "--device", "cpu", "--no-progress"])
    assert rc == 0
    return st.open(out)


def test_figures_command_writes_every_figure(full_store, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["figures", str(full_store.root), "--out", str(out), "--resamples", "200", "--no-progress",
                 "--tokens", str(tmp_path / "tokens.parquet")]) == 0
    stems = ["fig2b_entropy", "fig3_left_var_position", "fig3_right_var_caption", "fig4_left_kl_entropy", "fig5_gap_roc"]
    for stem in stems:
        assert (out / f"{stem}.png").stat().st_size > 1000
        assert (out / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
    page = (out / "index.html").read_text()
    assert page.count("<svg") == len(stems) and "AUC of the peak gap" in page
    stats = json.loads((out / "findings.json").read_text())
    (name, f), = stats.items()
    assert f["n_real"] > 0 and 0 <= f["auc_peak_gap"] <= 1
    printed = capsys.readouterr().out
    assert f"{f['auc_peak_gap']:.3f}" in printed
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "tokens.parquet")) == full_store.samples("ok").num_tokens.sum()


def test_heatmap_command_and_per_head_rows(full_store, tmp_path):
    from afip_probe.plots.store_maps import find_step, image_attention

    sid = full_store.samples("ok").sample_id.iloc[0]
    tokens = full_store.tokens([sid])
    word = tokens.token_text.str.strip()[tokens.token_text.str.strip().str.len() > 2].iloc[0]
    assert main(["heatmap", str(full_store.root), sid, "--word", word, "--layers", "2-", "--per-head",
                 "--out", str(tmp_path / "h.png")]) == 0
    assert (tmp_path / "h.png").stat().st_size > 1000
    step = find_step(full_store, sid, word=word)
    assert tokens.token_text.iloc[step].strip() == word
    per_head = image_attention(full_store, sid, step, [2, 3], per_head=True)  # from scores and lse
    mean = image_attention(full_store, sid, step, [2, 3])  # from the recorded head-mean maps
    np.testing.assert_allclose(per_head.mean(0), mean, atol=2e-3)
    assert per_head.shape[0] == full_store.settings["num_heads"]


def _labelled_objects(tokens):
    real = set(tokens.loc[tokens.label == "real", "object"])
    hallucinated = set(tokens.loc[tokens.label == "hallucinated", "object"])
    return real, hallucinated


def test_ground_truth_follows_the_images_not_the_model(full_store, data_dir, tmp_path):
    """The organism traced over a real COCO image is labelled with COCO's objects for that image (bus, car,
    person), and over its own scenes with the scenes' annotations: the model never decides."""
    import shutil

    import pandas as pd

    from afip_probe.metrics.chair import Chair
    from afip_probe.organism.dataset import heldout_dirs

    coco = tmp_path / "coco"
    coco.mkdir()
    shutil.copy(data_dir / "images" / "COCO_val2014_000000499775.jpg", coco)
    assert main(["trace", "--model", "organism", "--images", str(coco), "--out", str(tmp_path / "store"),
                 "--max-new-tokens", "80", "--device", "cpu", "--no-progress"]) == 0
    assert main(["figures", str(tmp_path / "store"), "--out", str(tmp_path / "figs"), "--resamples", "100",
                 "--no-progress", "--tokens", str(tmp_path / "coco.parquet")]) == 0
    tokens = pd.read_parquet(tmp_path / "coco.parquet")
    truth = Chair.from_packaged().gt[499775]
    assert truth == {"bus", "car", "person"}
    real, hallucinated = _labelled_objects(tokens)
    assert real | hallucinated, "no object token was labelled"
    assert real <= truth and not (hallucinated & truth)

    # the organism's own scenes: labels from the scenes' COCO-format annotations next to the images
    assert main(["figures", str(full_store.root), "--out", str(tmp_path / "figs2"), "--resamples", "100",
                 "--no-progress", "--tokens", str(tmp_path / "scenes.parquet")]) == 0
    scenes = pd.read_parquet(tmp_path / "scenes.parquet")
    scene_truth = Chair.from_coco(heldout_dirs(progress=False)[1]).gt
    for row in scenes[scenes.label != "none"].itertuples():
        assert (row.object in scene_truth[row.image_id]) == (row.label == "real"), row
