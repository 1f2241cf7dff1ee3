"""The runnable examples in docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "afip_probe",
    "afip_probe.models",
    "afip_probe.models.base",
    "afip_probe.models.tiny",
    "afip_probe.hooks.interceptor",
    "afip_probe.hooks.recorder",
    "afip_probe.hooks.rowstats",
    "afip_probe.store.writer",
    "afip_probe.tokens",
    "afip_probe.metrics.pope",
    "afip_probe.organism",
    "afip_probe.organism.scenes",
    "afip_probe.correct",
    "afip_probe.correct.afip",
    "afip_probe.correct.baselines",
    "afip_probe.correct.spec",
    "afip_probe.correct.sweep",
    "afip_probe.plots.heatmap",
    "afip_probe.metrics.attention",
    "afip_probe.metrics.stats",
    "afip_probe.metrics.table",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no runnable example"
