"""`afip-probe figures` and `afip-probe heatmap` on a store the organism recorded at `full`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import afip_probe.store as st
from afip_probe.cli import main


@pytest.fixture(scope="module")
def full_store(tmp_path_factory):
    from afip_probe.organism.scenes import heldout_dirs

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
