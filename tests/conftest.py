"""Shared fixtures: tiny random-weight models of every supported family (built once per session)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"  # reference data, with sources and licences in SOURCES.md
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# generated organism scenes go to a fresh cache per test session unless the caller chose one
os.environ.setdefault("AFIP_PROBE_CACHE", tempfile.mkdtemp(prefix="afip-probe-cache-"))

from afip_probe.models import tiny  # noqa: E402

FAMILIES = {
    "llava": lambda: tiny.tiny_llava(layers=2, heads=4, kv_heads=2),
    "qwen2_vl": lambda: tiny.tiny_qwen2_vl("qwen2_vl"),
    "qwen2_5_vl": lambda: tiny.tiny_qwen2_vl("qwen2_5_vl"),
}

# image sizes that give different patch grids on Qwen (LLaVA resizes all to one grid)
IMAGE_SIZES = [(56, 56), (112, 56), (84, 84)]
PROMPTS = ["describe", "please describe this image in detail .", "is there a dog in the image ?"]


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def family_model(request):
    model, processor = FAMILIES[request.param]()
    return request.param, model, processor


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
