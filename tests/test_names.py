"""Names in every output: the organism is "organism", a local model its folder's name; several stores are
labelled by their store names; no install path reaches any file a command writes or anything it prints."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib
import pytest

import afip_probe
import afip_probe.store as st
from afip_probe.cli import main
from afip_probe.records import model_name

PACKAGE = str(Path(afip_probe.__file__).resolve().parent)  # where afip-probe is installed
FORBIDDEN = (PACKAGE, "site-packages", "organism/checkpoint")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Two stores of the organism (the second a copy under another name): scenes-a, scenes-b."""
    from afip_probe.organism.dataset import heldout_dirs

    root = tmp_path_factory.mktemp("names")
    images, _ = heldout_dirs(progress=False)
    assert main(["trace", "--model", "organism", "--images", str(images), "--out", str(root / "scenes-a"),
                 "--record", "maps", "--max-new-tokens", "40", "--max-images", "8", "--device", "cpu",
                 "--no-progress"]) == 0
    shutil.copytree(root / "scenes-a", root / "scenes-b")
    return root


def _text_files(folder: Path) -> dict[Path, str]:
    """Every file under `folder` that is text (UTF-8), with its text."""
    out = {}
    for p in folder.rglob("*"):
        if p.is_file():
            try:
                out[p] = p.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # PNG, Parquet, safetensors
    return out


def _no_install_path(texts: dict[Path, str]) -> None:
    for path, text in texts.items():
        for bad in FORBIDDEN:
            assert bad not in text, f"{path} holds {bad!r}"


def test_the_organism_is_named_organism_in_the_store(stores):
    store = st.open(stores / "scenes-a")
    assert store.settings["model"] == "organism"
    assert set(store.samples().model) == {"organism"}
    _no_install_path(_text_files(stores / "scenes-a"))


def test_figures_explorer_and_heatmap_name_the_model_and_the_stores(stores, tmp_path, capsys):
    """Figures of two stores are labelled scenes-a / scenes-b and titled with the model; the SVGs are written
    with their text as text so that it can be read back; no output holds an install path."""
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        assert main(["figures", str(stores / "scenes-a"), str(stores / "scenes-b"), "--out", str(tmp_path / "figs"),
                     "--resamples", "50", "--no-progress"]) == 0
        assert main(["figures", str(stores / "scenes-a"), "--out", str(tmp_path / "one"), "--resamples", "50",
                     "--no-progress"]) == 0
    sid = st.open(stores / "scenes-a").samples("ok").sample_id.iloc[0]
    assert main(["heatmap", str(stores / "scenes-a"), sid, "--out", str(tmp_path / "h.png")]) == 0
    assert main(["explore", str(stores / "scenes-a"), "--out", str(tmp_path / "ex"), "--no-progress"]) == 0
    printed = capsys.readouterr()
    texts = _text_files(tmp_path)
    _no_install_path(texts)
    for bad in FORBIDDEN:
        assert bad not in printed.out + printed.err
    import json

    assert list(json.loads(texts[tmp_path / "figs" / "findings.json"])) == ["scenes-a", "scenes-b"]
    assert list(json.loads(texts[tmp_path / "one" / "findings.json"])) == ["organism"]
    for stem in ("fig2b_entropy", "fig3_left_var_position", "fig3_right_var_caption", "fig4_left_kl_entropy",
                 "fig5_gap_roc"):
        svg = texts[tmp_path / "figs" / f"{stem}.svg"]
        assert "model: organism · stores: scenes-a, scenes-b" in svg, stem
        assert svg.count("scenes-b") >= 2, stem  # in the title and on the panel, curve or legend drawing it
        assert "model: organism · store: scenes-a" in texts[tmp_path / "one" / f"{stem}.svg"], stem
    assert ">organism<" in texts[tmp_path / "one" / "fig3_left_var_position.svg"]  # the legend names the model
    assert "model: organism · store: scenes-a" in texts[tmp_path / "ex" / "index.html"]  # the page title


def test_the_demo_report_names_the_organism_and_where_the_scenes_are(tmp_path, capsys):
    from afip_probe.organism.dataset import cache_root

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "12", "--max-new-tokens", "40", "--no-progress"]) == 0
    printed = capsys.readouterr()
    texts = _text_files(out)
    _no_install_path(texts)
    for bad in FORBIDDEN:
        assert bad not in printed.out + printed.err
    report = texts[out / "report.md"]
    assert "Model: `organism`" in report
    assert f"cached in `{cache_root()}" in report
    assert "## What the organism shows, and what it does not" in report
    assert "| figure | the paper's claim |" in report


def test_a_local_model_is_named_by_its_folder(tmp_path):
    from afip_probe.models import load, tiny

    model, processor = tiny.tiny_llava(layers=1, heads=2)
    folder = tmp_path / "weights" / "my-tiny-llava"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert load(str(folder), device="cpu").name == "my-tiny-llava"
    assert load(str(folder) + "/", device="cpu").name == "my-tiny-llava"


@pytest.mark.parametrize("given,name", [
    ("organism", "organism"),
    ("llava-hf/llava-1.5-7b-hf", "llava-hf/llava-1.5-7b-hf"),
    ("/opt/venv/lib/python3.12/site-packages/afip_probe/organism/checkpoint", "organism"),
    ("C:\\envs\\x\\Lib\\site-packages\\afip_probe\\organism\\checkpoint", "organism"),
    ("/data/models/my-llava/", "my-llava"),
])
def test_model_name(given, name):
    assert model_name(given) == name


def test_a_store_written_with_the_install_path_is_named_organism(stores, tmp_path):
    """Stores written before names were shortened hold the checkpoint's path: read back as "organism"."""
    from afip_probe.metrics.table import token_table

    old = tmp_path / "old"
    shutil.copytree(stores / "scenes-a", old)
    manifest = old / "manifest.json"
    text = manifest.read_text().replace('"model": "organism"', f'"model": "{PACKAGE}/organism/checkpoint"')
    assert PACKAGE in text
    manifest.write_text(text)
    assert set(token_table(st.open(old)).model) == {"organism"}
