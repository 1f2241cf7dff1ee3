"""Bad input across every CLI command: one line naming the problem, exit code 2, no traceback.

`python tests/test_bad_input.py` prints the table of docs/bad_inputs.md from the same cases.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

if __name__ == "__main__":  # the table script: same environment as the tests
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from afip_probe.cli import main  # noqa: E402
from afip_probe.models import tiny  # noqa: E402


def make_files(root: Path) -> dict[str, str]:
    """A saved tiny LLaVA, a text-only model, images and broken files under `root`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model, processor = tiny.tiny_llava(layers=2, heads=2, hidden=32, seed=0)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 vocab_size=64)).save_pretrained(root / "textonly")
    (root / "images").mkdir()
    tiny.random_images(1, seed=0)[0].save(root / "images" / "COCO_val2014_000000000001.png")
    (root / "empty").mkdir()
    (root / "notes.csv").write_text("a,b\n")
    (root / "bad.json").write_text("{not json")
    (root / "bad.jsonl").write_text("garbage\n{also bad\n")
    (root / "unknown.jsonl").write_text(json.dumps({"image_id": 999999999, "caption": "a dog"}) + "\n")
    (root / "q.jsonl").write_text(json.dumps({"question_id": 1, "image": "x.png", "text": "Is there a dog?",
                                              "label": "yes"}) + "\n")
    (root / "notastore").mkdir()
    (root / "notastore" / "file.txt").write_text("x")
    from afip_probe.pipelines.settings import GenerationSettings
    from afip_probe.pipelines.tracing import trace_images

    trace_images(GenerationSettings(str(root / "model"), prompt="describe", max_new_tokens=3, device="cpu"),
                 [root / "images"], root / "store", progress=False)
    names = ("model", "textonly", "images", "empty", "notes.csv", "bad.json", "bad.jsonl", "unknown.jsonl", "q.jsonl",
             "notastore", "store")
    return {k.replace(".", "_"): str(root / k) for k in names} | {"root": str(root)}


# (what is wrong, argv with {placeholders}, words the message must contain)
CASES = [
    ("trace: --images path does not exist", "trace --model {model} --images {root}/nope --out {root}/o1", "no such file"),
    ("trace: --images folder has no images", "trace --model {model} --images {empty} --out {root}/o2", "no image files"),
    ("trace: --images names a non-image file", "trace --model {model} --images {notes_csv} --out {root}/o3", "not an image file"),
    ("trace: model path does not exist", "trace --model {root}/nomodel --images {images} --out {root}/o4", "cannot load a model"),
    ("trace: model without image tokens", "trace --model {textonly} --images {images} --out {root}/o5", "not a vision-language model"),
    ("trace: --max-new-tokens 0", "trace --model {model} --images {images} --out {root}/o6 --max-new-tokens 0", "at least 1"),
    ("trace: --out is a folder that is not a store", "trace --model {model} --images {images} --out {notastore}", "not an empty folder"),
    ("trace: --out is checked before the model loads", "trace --model {root}/nomodel --images {images} --out {notastore}", "not an empty folder"),
    ("compare: --out is checked before the model loads", "compare --model {root}/nomodel --images {images} --out {notastore} --correct afip", "not an afip-probe compare output"),
    ("trace: bad --shard", "trace --model {model} --images {images} --out {root}/o7 --shard 2/2", "0 <= i < N"),
    ("chair: caption file missing", "chair {root}/nope.jsonl", "no such caption file"),
    ("chair: malformed JSON", "chair {bad_json}", "not valid JSON"),
    ("chair: malformed JSONL (no usable line)", "chair {bad_jsonl}", "no usable captions"),
    ("chair: unknown image ids only", "chair {unknown_jsonl}", "has ground truth"),
    ("chair: --annotations folder without instances", "chair {unknown_jsonl} --annotations {empty}", "no instances_"),
    ("pope: question file missing", "pope {root}/nope.json {q_jsonl}", "not found"),
    ("pope: malformed question file", "pope {bad_json} {q_jsonl}", "no usable questions"),
    ("pope: malformed answers file", "pope {q_jsonl} {bad_jsonl}", "no usable answers"),
    ("pope-questions: malformed instances JSON", "pope-questions {bad_json} -o {root}/q.out", "not valid JSON"),
    ("compare: --images path does not exist", "compare --model {model} --images {root}/nope --out {root}/c1 --correct afip", "no such file"),
    ("compare: unknown corrector", "compare --model {model} --images {images} --out {root}/c2 --correct bogus", "unknown corrector"),
    ("compare: corrector layers the model lacks", "compare --model {model} --images {images} --out {root}/c4 --correct afip:layers=1-9", "the model has layers"),
    ("compare: bad corrector parameter", "compare --model {model} --images {images} --out {root}/c3 --correct afip:alpha=x", "is not a float"),
    ("chair-eval: model without image tokens", "chair-eval --model {textonly} --images {images} --out {root}/e1.jsonl", "not a vision-language model"),
    ("chair-eval: --images folder has no images", "chair-eval --model {model} --images {empty} --out {root}/e2.jsonl", "no image files"),
    ("pope-eval: question file missing", "pope-eval --model {model} --images {images} --questions {root}/nope.jsonl --out {root}/e3.jsonl", "not found"),
    ("pope-eval: questions name images that are missing", "pope-eval --model {model} --images {images} --questions {q_jsonl} --out {root}/e4.jsonl", "cannot be read"),
    ("figures: not a trace store", "figures {notastore} --out {root}/f1", "not a trace store"),
    ("figures: no object token has a label", "figures {store} --out {root}/f2", "no object tokens"),
    ("figures: unknown layer range", "figures {store} --layers upper --out {root}/f3", "layer range"),
    ("figures: store path does not exist (default --out)", "figures {root}/nope", "no trace store at"),
    ("explore: not a trace store", "explore {notastore} --out {root}/x1", "not a trace store"),
    ("explore: store path does not exist (default --out)", "explore {root}/nope", "no trace store at"),
    ("detect eval: not a trace store", "detect eval {notastore} --out {root}/de1", "not a trace store"),
    ("detect eval: no object token has a label", "detect eval {store} --out {root}/de2", "no labelled object tokens"),
    ("detect train: not a trace store", "detect train {notastore} -o {root}/dt/det.json", "not a trace store"),
    ("heatmap: unknown sample id", "heatmap {store} nosuch --out {root}/h.png", "no finished sample"),
    ("heatmap: store recorded at stats", "heatmap {store} COCO_val2014_000000000001 --out {root}/h.png", "--record maps"),
    ("heatmap: layers outside the model", "heatmap {store} COCO_val2014_000000000001 --layers 7- --out {root}/h.png", "has layers"),
    ("verify: not a trace store", "verify {notastore}", "not a trace store"),
    ("merge: a shard is not a trace store", "merge {root}/m1 {notastore}", "not a trace store"),
    ("organism scenes: --n 0", "organism scenes --n 0 --out {root}/sc", "at least 1"),
    ("demo: --n 0", "demo --n 0 --out {root}/d", "at least 1"),
    ("demo: --out holds files the demo did not write", "demo --out {notastore}", "not an afip-probe demo output"),
    ("demo: --out is a file", "demo --out {notes_csv}", "is a file"),
    ("sweep: --n 0", "sweep --n 0 --out {root}/s.csv", "at least 1"),
    ("chair: caption file missing (output in a new folder)", "chair {root}/nope.jsonl -o {root}/ch/out.json", "no such caption file"),
    ("chair-eval: model without image tokens (output in a new folder)", "chair-eval --model {textonly} --images {images} --out {root}/ce/e.jsonl", "not a vision-language model"),
]


def run_case(argv: str, files: dict[str, str]) -> tuple[int, str, str, list[str]]:
    """Run one case from an empty working folder; returns (exit code, stdout, stderr, paths it left behind
    under the files' root or in the working folder)."""
    args = argv.format(**files).split() + (["--no-progress"] if argv.split()[0] in
                                           ("trace", "compare", "chair-eval", "pope-eval", "demo", "figures",
                                            "explore") else [])
    root = Path(files["root"])
    cwd = Path(tempfile.mkdtemp(prefix="cwd-", dir=root))
    before = {p for p in root.rglob("*")}
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(args)
    finally:
        os.chdir(here)
    left = sorted(str(p.relative_to(root)) for p in set(root.rglob("*")) - before)
    cwd.rmdir() if not any(cwd.iterdir()) else None
    return rc, out.getvalue(), err.getvalue(), left


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("what,argv,expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(files, what, argv, expect):
    rc, _out, err, left = run_case(argv, files)
    assert left == [], f"{what}: left {left} behind"
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[transformers]")
             and "Loading weights" not in ln]
    assert rc == 2, (what, err)
    assert "Traceback" not in err
    assert len(lines) == 1, lines
    assert lines[0].startswith("afip-probe ") and ": error: " in lines[0]
    assert expect in lines[0], lines[0]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        f = make_files(Path(tmp))
        print("| bad input | command | what the user sees (exit code 2) | leaves nothing |\n|---|---|---|---|")
        for what, argv, _ in CASES:
            rc, _o, err, left = run_case(argv, f)
            line = next(ln for ln in err.splitlines() if ": error: " in ln).replace(tmp, "…").replace("`", "'")
            shown = " ".join(argv.split()[:2]) if argv.split()[0] in ("organism", "detect") else argv.split()[0]
            print(f"| {what.split(': ', 1)[1]} | `{shown}` | `{line}` (rc {rc}) | {'yes' if not left else 'no: ' + ', '.join(left)} |")
