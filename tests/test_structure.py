"""The import structure: layers point one way (import-linter's contract in pyproject.toml), the contract
catches an upward import, and the store, metrics and plots work without torch or transformers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(cwd), "PATH": str(LINT.parent), "HOME": str(cwd)})


def test_layers_contract_is_kept():
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 kept, 0 broken" in res.stdout


def test_layers_contract_catches_an_upward_import(tmp_path):
    """A copy of the package with one import from the records layer up to the pipelines: broken."""
    shutil.copytree(ROOT / "afip_probe", tmp_path / "afip_probe", ignore=shutil.ignore_patterns(
        "checkpoint", "data", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    fields = tmp_path / "afip_probe" / "records" / "fields.py"
    fields.write_text(fields.read_text() + "\nfrom ..pipelines import settings  # an upward import\n")
    res = _lint(tmp_path)
    assert res.returncode != 0
    assert "1 broken" in res.stdout
    assert "afip_probe.records.fields -> afip_probe.pipelines.settings" in res.stdout


TORCH_FREE = textwrap.dedent('''
    import sys

    class Block:
        """Import hook: torch and transformers are not installed."""
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers"):
                raise ImportError(f"{name} is not installed (blocked by the test)")

    sys.meta_path.insert(0, Block())
    import numpy as np
    import afip_probe, afip_probe.store, afip_probe.metrics, afip_probe.plots
    from afip_probe.records import HEAD_FIELDS, LAYER_FIELDS, ImageLayout, SampleRow, SampleTrace, array_name
    from afip_probe.metrics.table import default_layer_ranges, sample_metrics
    from afip_probe.plots.findings import var_by_position

    T, L, H = 5, 3, 2
    rng = np.random.default_rng(0)
    trace = SampleTrace([1, 2], list(range(T)), ImageLayout([0], (1, 1)),
                        head={f: rng.random((T, L, H)).astype(np.float32) for f in HEAD_FIELDS},
                        layer={f: rng.random((T, L)).astype(np.float32) for f in LAYER_FIELDS},
                        token_entropy=rng.random(T).astype(np.float32), logprob=rng.random(T).astype(np.float32))
    import pandas as pd
    writer = afip_probe.store.StoreWriter(sys.argv[1], {"model": "x", "record_level": "stats", "num_layers": L})
    tokens = pd.DataFrame({"sample_id": "s", "step": np.arange(T)})
    writer.write_sample(SampleRow("s", image="s.png", prompt="p", model="x", num_tokens=T), trace, tokens)
    store = afip_probe.store.open(sys.argv[1])
    cols = sample_metrics(store.arrays("s"), default_layer_ranges(L))
    expect = trace.head["var"].mean(axis=(1, 2))
    assert np.allclose(cols["var_all"], expect), (cols["var_all"], expect)
    var_by_position({"x": pd.DataFrame({"step": np.arange(T), "var_all": cols["var_all"]})}, min_count=1)
    assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")]
    print("torch-free ok", len(store))
''')


def test_store_metrics_plots_work_without_torch(tmp_path):
    res = subprocess.run([sys.executable, "-c", TORCH_FREE, str(tmp_path / "store")], capture_output=True,
                         text=True, cwd=tmp_path, env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin",
                                                      "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "torch-free ok 1" in res.stdout


def test_every_vision_test_module_is_run_by_make_test():
    """`make test` runs the `vision` tests in .venv-vision over the modules named in the Makefile's VISION_TESTS
    (the main venv deselects them): a vision test in any other module would run nowhere."""
    import re

    makefile = (ROOT / "Makefile").read_text()
    named = set(re.search(r"^VISION_TESTS\s*:=\s*(.+)$", makefile, re.M).group(1).split())
    marked = {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py")
              if re.search(r"pytest\.mark\.vision\b", p.read_text())}
    assert marked and marked == named, (marked, named)
    assert '-m "not vision"' in makefile and "-m vision $(VISION_TESTS)" in makefile
