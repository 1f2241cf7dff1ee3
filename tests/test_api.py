"""The front door: the README's hello-world runs exactly as written, every command gives what its Python
function gives, the command line starts without the heavy libraries and says nothing on stderr, every flag
has help, and errors name settings the way the user gave them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import afip_probe as ap
from afip_probe.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
SCENES = 4
TOKENS = 12


def readme_hello_world() -> str:
    """The Python block under the README's "Hello world" heading, verbatim."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Hello world"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_hello_world_runs_as_written_from_an_empty_folder(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text(readme_hello_world())
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run([sys.executable, str(script)], cwd=work, capture_output=True, text=True, timeout=1200,
                         env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert lines[0].split() and "[" in lines[1]  # the caption, then the VAR of its tokens
    assert (work / "heatmap.png").stat().st_size > 10_000
    assert (work / "figures" / "index.html").exists() and (work / "figures" / "findings.json").exists()
    assert (work / "explorer" / "index.html").exists()
    assert len(ap.open_store(work / "store").sample_ids) == 20
    assert "warning" not in run.stderr.lower()


def readme_detectors_block() -> str:
    """The README's second Python block (the signals and detectors), which goes on from the hello world's `m`."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Hello world"):text.index("## The command line")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    return blocks[1]


def test_the_readme_detectors_example_runs_as_written(tmp_path):
    """The README's detectors block after the hello world's first lines (`ap`, `m`), from an empty folder: the
    comparison's table is printed, its folder written, and every streamed token has a risk."""
    script = tmp_path / "detectors.py"
    script.write_text('import afip_probe as ap\nm = ap.load("organism")\n' + readme_detectors_block())
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run([sys.executable, str(script)], cwd=work, capture_output=True, text=True, timeout=1200,
                         env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "best combination" in run.stdout and (work / "detect" / "best-detector.json").exists()
    lines = run.stdout.rstrip().splitlines()
    table_end = max(i for i, line in enumerate(lines) if "–" in line)  # the table's last row: its CI
    streamed = lines[table_end + 1:]  # then one line per streamed token: its text and risk
    assert streamed and all(re.fullmatch(r".* -?\d+\.\d+", line) for line in streamed), streamed[:3]
    assert "Traceback" not in run.stderr


@pytest.fixture(scope="module")
def scenes():
    return ap.organism_scenes(SCENES, progress=False)


@pytest.fixture(scope="module")
def stores(tmp_path_factory, scenes):
    """The same scenes traced once from the command line and once from Python."""
    root = tmp_path_factory.mktemp("api")
    images = root / "images"
    images.mkdir()
    for p in scenes.images:
        os.symlink(p, images / p.name)
    assert main(["trace", "--model", "organism", "--images", str(images), "--out", str(root / "cli"), "--record",
                 "maps", "--max-new-tokens", str(TOKENS), "--no-progress", "--annotations",
                 str(scenes.annotations)]) == 0
    ap.trace_images("organism", [images], root / "py", level="maps", max_new_tokens=TOKENS, progress=False,
                    annotations=scenes.annotations)
    return root


def _same_store(a, b):
    a, b = ap.open_store(a), ap.open_store(b)
    assert a.sample_ids == b.sample_ids and len(a.sample_ids) == SCENES
    drop = ["created"]
    pd.testing.assert_frame_equal(a.samples().drop(columns=[c for c in drop if c in a.samples()]),
                                  b.samples().drop(columns=[c for c in drop if c in b.samples()]))
    pd.testing.assert_frame_equal(a.tokens(), b.tokens())
    for sid in a.sample_ids:
        for name in a.arrays(sid):
            np.testing.assert_array_equal(a.arrays(sid)[name], b.arrays(sid)[name])
    assert a.settings == b.settings


def test_trace_command_equals_trace_images(stores):
    _same_store(stores / "cli", stores / "py")
    assert ap.open_store(stores / "cli").settings["annotations"] == str(ap.organism_scenes(1).annotations)


def test_figures_command_equals_figures(stores, tmp_path):
    assert main(["figures", str(stores / "cli"), "--out", str(tmp_path / "cli"), "--resamples", "50",
                 "--no-progress"]) == 0
    report = ap.figures(stores / "cli", tmp_path / "py", resamples=50, progress=False)
    assert json.loads((tmp_path / "cli" / "findings.json").read_text()) == \
        json.loads((report.out / "findings.json").read_text())
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(p.name for p in report.out.iterdir())


def test_heatmap_command_equals_heatmap(stores, tmp_path):
    sid = ap.open_store(stores / "cli").sample_ids[1]
    assert main(["heatmap", str(stores / "cli"), sid, "--step", "3", "--out", str(tmp_path / "cli.png")]) == 0
    ap.heatmap(stores / "cli", sid, step=3, out=tmp_path / "py.png")
    from PIL import Image

    a, b = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("cli", "py"))
    np.testing.assert_array_equal(a, b)


def test_explore_command_equals_explore(stores, tmp_path):
    assert main(["explore", str(stores / "cli"), "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    ap.explore(stores / "cli", out=tmp_path / "py")
    for f in sorted((tmp_path / "cli" / "data").iterdir()):
        assert f.read_text() == (tmp_path / "py" / "data" / f.name).read_text(), f.name
    inline = ap.explore(stores / "cli", max_samples=2)  # no out: shown inline in Jupyter
    assert inline._repr_html_().startswith("<iframe srcdoc=")


def test_chair_command_equals_chair(stores, tmp_path, capsys):
    assert main(["chair", str(stores / "cli"), "-o", str(tmp_path / "cli.json")]) == 0
    result = ap.chair(stores / "cli", output=tmp_path / "py.json")
    assert json.loads((tmp_path / "cli.json").read_text()) == json.loads((tmp_path / "py.json").read_text())
    assert capsys.readouterr().out.strip().endswith(result.table().strip())


def test_compare_command_equals_compare(stores, scenes, tmp_path):
    images = [str(p) for p in scenes.images[:2]]
    common = ["--max-new-tokens", "8", "--no-history-ablation", "--no-progress"]
    assert main(["compare", "--model", "organism", "--images", *images, "--out", str(tmp_path / "cli"),
                 "--correct", "afip:layers=2-,tau=100", *common]) == 0
    ap.compare("organism", images, tmp_path / "py", ["afip:layers=2-,tau=100"], max_new_tokens=8,
               history_ablation=False, progress=False)
    for name in ("chair.csv", "paired.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cli" / name), pd.read_csv(tmp_path / "py" / name))
    _same_store(tmp_path / "cli" / "store", tmp_path / "py" / "store")


def test_no_ground_truth_is_said_in_one_line_and_annotations_bring_the_labels(stores, scenes, tmp_path):
    """Images copied out of their dataset into subfolders: found, traced, their missing ground truth warned about
    in one line (Python: an AfipWarning), and given with --annotations."""
    plain = tmp_path / "photos"
    for i, p in enumerate(scenes.images[:2]):
        (plain / f"part{i}").mkdir(parents=True)
        (plain / f"part{i}" / p.name).write_bytes(p.read_bytes())
    store = ap.trace_images("organism", [plain], tmp_path / "s", max_new_tokens=TOKENS, progress=False)
    assert sorted(store.sample_ids) == sorted(f"part{i}/{p.stem}" for i, p in enumerate(scenes.images[:2]))
    with pytest.warns(ap.AfipWarning, match="none of the 2 traced samples' images has ground truth.*annotations"):
        table = ap.token_table(store)
    assert set(table.label.astype(str)) == {"none"}
    err = subprocess.run([sys.executable, "-m", "afip_probe", "explore", str(tmp_path / "s"), "--out",
                          str(tmp_path / "ex"), "--no-progress"], capture_output=True, text=True).stderr
    assert err.strip().splitlines() == [err.strip()] and "warning:" in err and "--annotations" in err
    labelled = ap.token_table(store, annotations=scenes.annotations)
    assert {"real"} <= set(labelled.label.astype(str))
    assert main(["explore", str(tmp_path / "s"), "--out", str(tmp_path / "ex2"), "--annotations",
                 str(scenes.annotations), "--no-progress"]) == 0
    index = (tmp_path / "ex2" / "data" / "index.js").read_text()
    assert sum(s["real"] + s["hall"] for s in json.loads(index[index.index("=") + 1:].rstrip(";\n"))["samples"]) > 0


def test_errors_name_python_arguments_in_python_and_flags_on_the_command_line(stores, capsys):
    with pytest.raises(ap.AfipError, match=r"pass resume=True to finish it"):
        ap.trace_images("organism", ap.organism_scenes(1).images, stores / "py", max_new_tokens=2, progress=False)
    assert main(["trace", "--model", "organism", "--images", str(ap.organism_scenes(1).images[0]), "--out",
                 str(stores / "py"), "--max-new-tokens", "2"]) == 2
    assert "pass --resume to finish it" in capsys.readouterr().err
    with pytest.raises(ap.AfipError, match=r"^max_new_tokens must be at least 1"):
        ap.trace_images("organism", ap.organism_scenes(1).images, stores / "never", max_new_tokens=0)


HEAVY = ("torch", "transformers", "pandas", "matplotlib", "sklearn", "scipy")


def _commands(parser) -> list[list[str]]:
    """Every command and subcommand as argv prefixes."""
    out = []
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            out.append([name])
            if sub._subparsers is not None:
                out += [[name, *rest] for rest in _commands(sub)]
    return out


def test_help_and_version_load_no_heavy_library_and_print_nothing_on_stderr():
    """`afip-probe --help`, `--version` and every `COMMAND --help` import none of torch, transformers, pandas,
    matplotlib, sklearn, scipy (they are what made start-up take 4-6 s) and write nothing to stderr."""
    argvs = [["--help"], ["--version"]] + [[*c, "--help"] for c in _commands(build_parser())]
    code = ("import sys, json, contextlib, io\nfrom afip_probe.cli import main\nfor argv in json.loads(sys.argv[1]):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n        try:\n            main(argv)\n"
            "        except SystemExit:\n            pass\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    run = subprocess.run([sys.executable, "-c", code, json.dumps(argvs)], capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert json.loads(run.stdout) == []
    assert len(argvs) > 20


def test_every_flag_has_help():
    import argparse

    missing = []

    def walk(parser, prefix):
        for action in parser._actions:
            if not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}")

    walk(build_parser(), "afip-probe")
    assert missing == []
