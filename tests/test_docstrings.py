"""The runnable examples in docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "afip_probe",
    "afip_probe.api",
    "afip_probe.errors",
    "afip_probe.models.loading",
    "afip_probe.models",
    "afip_probe.models.base",
    "afip_probe.models.tiny",
    "afip_probe.hooks.interceptor",
    "afip_probe.hooks.recorder",
    "afip_probe.hooks.rowstats",
    "afip_probe.store.writer",
    "afip_probe.records",
    "afip_probe.records.fields",
    "afip_probe.records.naming",
    "afip_probe.records.layout",
    "afip_probe.records.trace",
    "afip_probe.records.rows",
    "afip_probe.records.tokens",
    "afip_probe.images",
    "afip_probe.metrics.pope",
    "afip_probe.organism",
    "afip_probe.organism.dataset",
    "afip_probe.organism.catalog",
    "afip_probe.organism.drawing",
    "afip_probe.organism.captions",
    "afip_probe.correctors",
    "afip_probe.correctors.afip",
    "afip_probe.correctors.baselines",
    "afip_probe.correctors.spec",
    "afip_probe.pipelines.experiments",
    "afip_probe.pipelines.settings",
    "afip_probe.commands.flags",
    "afip_probe.metrics.comparison",
    "afip_probe.plots.comparison",
    "afip_probe.plots.report",
    "afip_probe.plots.heatmap",
    "afip_probe.plots.explorer",
    "afip_probe.metrics.attention",
    "afip_probe.metrics.stats",
    "afip_probe.metrics.table",
    "afip_probe.metrics.signals",
    "afip_probe.metrics.signals.lookback",
    "afip_probe.metrics.signals.spatial",
    "afip_probe.metrics.signals.hidden",
    "afip_probe.metrics.detect",
    "afip_probe.metrics.detect.features",
    "afip_probe.metrics.detect.models",
    "afip_probe.metrics.detect.training",
    "afip_probe.metrics.detect.evaluation",
    "afip_probe.metrics.detect.live",
    "afip_probe.metrics.detect.suite",
    "afip_probe.hooks.hidden",
    "afip_probe.plots.detect",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no runnable example"
