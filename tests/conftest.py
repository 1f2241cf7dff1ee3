"""Shared fixtures: tiny random-weight models of every supported family (built once per session)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"  # reference data, with sources and licences in SOURCES.md
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# generated organism scenes go to a fresh cache per test session (removed at its end) unless the caller
# chose one
_OWN_CACHE = None if "AFIP_PROBE_CACHE" in os.environ else tempfile.mkdtemp(prefix="afip-probe-cache-")
if _OWN_CACHE is not None:
    os.environ["AFIP_PROBE_CACHE"] = _OWN_CACHE

from afip_probe.models import tiny  # noqa: E402

FAMILIES = {
    "llava": lambda: tiny.tiny_llava(layers=2, heads=4, kv_heads=2),
    "qwen2_vl": lambda: tiny.tiny_qwen2_vl("qwen2_vl"),
    "qwen2_5_vl": lambda: tiny.tiny_qwen2_vl("qwen2_5_vl"),
}

# image sizes that give different patch grids on Qwen (LLaVA resizes all to one grid)
IMAGE_SIZES = [(56, 56), (112, 56), (84, 84)]
PROMPTS = ["describe", "please describe this image in detail .", "is there a dog in the image ?"]


def _has_torchvision() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or built for another torch
        return False
    return True


def pytest_collection_modifyitems(config, items):
    """Tests marked `vision` check processors that need torchvision (LFM2-VL, Llama 4, Pixtral). The project's
    venv has none (CPU torch 2.13.0): there they skip, naming where they run; `make test` runs them in
    .venv-vision (`make test-vision`, AFIP_PROBE_VISION=1), where a missing torchvision is an error."""
    if _has_torchvision():
        return
    if os.environ.get("AFIP_PROBE_VISION"):
        raise pytest.UsageError("AFIP_PROBE_VISION is set but torchvision cannot be imported: run `make setup-vision`")
    skip = pytest.mark.skip(reason="needs torchvision: `make test` runs it in .venv-vision (make test-vision)")
    for item in items:
        if "vision" in item.keywords:
            item.add_marker(skip)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def family_model(request):
    model, processor = FAMILIES[request.param]()
    return request.param, model, processor


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
