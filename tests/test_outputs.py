"""Every command that writes refuses to touch a user's files: a folder that is not its own output, a
file that exists. And an earlier output of its own is replaced only on request, and only its files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from afip_probe.cli import main

from .test_bad_input import make_files, run_case

# (command, argv with {placeholders}; {user_dir} holds a user's file, {user_file} is one)
WRITERS = [
    ("trace", "trace --model {model} --images {images} --out {user_dir}"),
    ("merge", "merge {user_dir} {store}"),
    ("compare", "compare --model {model} --images {images} --out {user_dir} --correct afip"),
    ("compare --overwrite", "compare --model {model} --images {images} --out {user_dir} --correct afip --overwrite"),
    ("figures", "figures {store} --out {user_dir}"),
    ("figures --overwrite", "figures {store} --out {user_dir} --overwrite"),
    ("explore", "explore {store} --out {user_dir}"),
    ("explore --overwrite", "explore {store} --out {user_dir} --overwrite"),
    ("figures --tokens", "figures {store} --out {root}/figs_new --tokens {user_file}"),
    ("heatmap", "heatmap {store} COCO_val2014_000000000001 --out {user_file}"),
    ("chair -o", "chair {good_jsonl} -o {user_file}"),
    ("chair --labels", "chair {store} --labels {user_file}"),
    ("pope-questions", "pope-questions {instances} -o {user_file}"),
    ("chair-eval", "chair-eval --model {model} --images {images} --out {user_file}"),
    ("pope-eval", "pope-eval --model {model} --images {images} --questions {q_jsonl} --out {user_file}"),
    ("sweep", "sweep --out {user_file}"),
    ("organism scenes", "organism scenes --n 2 --out {user_dir}"),
    ("organism eval", "organism eval --n 2 --json {user_file}"),
    ("organism train", "organism train -- --out {user_dir} --steps 1"),
    ("demo", "demo --out {user_dir}"),
    ("demo --overwrite", "demo --out {user_dir} --overwrite"),
]


def _snapshot(*paths: Path) -> dict[str, str]:
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    f = make_files(root)
    (root / "good.jsonl").write_text(json.dumps({"image_id": 499775, "caption": "A bus on the street."}) + "\n")
    (root / "instances.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    return f | {"good_jsonl": str(root / "good.jsonl"), "instances": str(root / "instances.json")}


@pytest.mark.parametrize("what,argv", WRITERS, ids=[w[0] for w in WRITERS])
def test_a_users_files_survive_every_writing_command(files, tmp_path, what, argv):
    user_dir, user_file = tmp_path / "mine", tmp_path / "thesis.tex"
    user_dir.mkdir()
    (user_dir / "notes.txt").write_text("years of work")
    user_file.write_text("\\documentclass{article}")
    before = _snapshot(user_dir, user_file)
    rc, _out, err, _left = run_case(argv, files | {"user_dir": str(user_dir), "user_file": str(user_file)})
    assert rc == 2, (what, err)
    assert "exists" in err or "not an afip-probe" in err, err
    assert _snapshot(user_dir, user_file) == before
    assert sorted(p.name for p in user_dir.iterdir()) == ["notes.txt"]


def test_overwrite_replaces_only_its_own_files(files, tmp_path, capsys):
    out = tmp_path / "ex"
    # the store has no labelled object token (tiny random model): figures refuses it before claiming a folder
    assert main(["figures", files["store"], "--out", str(out), "--no-progress"]) == 2 and not out.exists()
    args = ["explore", files["store"], "--out", str(out), "--no-progress"]
    assert main(args) == 0
    written = sorted(p.name for p in out.iterdir())
    (out / "my_notes.txt").write_text("mine")
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert (out / "my_notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == sorted(written + ["my_notes.txt"])


def test_a_resumable_jsonl_output_is_resumed_only_when_it_is_afip_probes(tmp_path):
    from afip_probe.errors import AfipError
    from afip_probe.outputs import claim_jsonl

    ours = tmp_path / "captions.jsonl"
    ours.write_text(json.dumps({"sample_id": "a", "prompt": "p", "caption": "x"}) + "\n{\"sample_id\": \"b\", \"pro")
    assert claim_jsonl(ours, ("sample_id", "prompt")) == ours  # a line cut by a kill is the last one
    theirs = tmp_path / "data.jsonl"
    theirs.write_text(json.dumps({"id": 1}) + "\n")
    with pytest.raises(AfipError, match="not an afip-probe output"):
        claim_jsonl(theirs, ("sample_id", "prompt"))
