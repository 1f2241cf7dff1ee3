"""The three Findings notebooks run top to bottom on the organism (a few scenes) and show their numbers."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "afip_probe" / "notebooks"  # packaged: `afip-probe notebooks` copies them
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def test_notebooks_are_the_generated_ones():
    """The committed notebooks hold the cells `notebooks/make_notebooks.py` writes (outputs aside)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "notebooks" / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert NAMES == sorted(mod.NOTEBOOKS)
    for name, cells in mod.NOTEBOOKS.items():
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert [c.source for c in nb.cells] == [c.source for c in cells], name


def test_the_heatmap_notebook_uses_only_the_top_level_api():
    """Notebook 03 (and the README's hello-world, tests/test_api.py) need nothing but ``import afip_probe as ap``."""
    nb = nbformat.read(NOTEBOOKS / "03_heatmaps_and_correction.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    imports = re.findall(r"^\s*(?:from\s+(\S+)\s+import|import\s+(\S+))", code, re.MULTILINE)
    assert {a or b for a, b in imports} <= {"os", "afip_probe", "IPython.display"}
    assert re.findall(r"\bafip_probe\.\w+", code) == [] and "import afip_probe as ap" in code


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name, tmp_path, monkeypatch):
    monkeypatch.setenv("AFIP_NB_SCENES", "24")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, f"{name} drew {len(images)} figures"
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "traced" in text
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]  # no warning of anybody's
    assert "site-packages" not in text
    if name.startswith(("01", "02")):
        assert "| statistic (layers: all) | value |" in text
