"""GPU-readiness: nothing afip-probe runs per layer forces a host-device sync.

On a GPU, `.item()`, `.tolist()`, `.cpu()`, `.numpy()` and Python branching on a tensor's value (`bool`,
`int`, `float`) wait for every queued kernel. This counts those calls during generate() on CPU, for the
same inputs on a 2-layer and a 6-layer model: what tracing or correcting adds over plain generation
must not grow with the number of layers (a few per step are allowed: masks are checked once per step).
"""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
import torch

import afip_probe
from afip_probe.correctors import parse_spec
from afip_probe.models import adapter_for, tiny

SYNCING = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")
NEW_TOKENS = 6


@contextlib.contextmanager
def counting(counts: Counter):
    saved = {name: getattr(torch.Tensor, name) for name in SYNCING}

    def wrap(name, original):
        def counted(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)
        return counted

    for name, original in saved.items():
        setattr(torch.Tensor, name, wrap(name, original))
    try:
        yield counts
    finally:
        for name, original in saved.items():
            setattr(torch.Tensor, name, original)


def _syncs(layers: int, mode: str) -> int:
    """Sync calls during one generate() in `mode`, minus those of plain generation of the same model."""
    model, processor = tiny.tiny_llava(layers=layers, heads=4, kv_heads=2)
    inputs = adapter_for(model, processor).build_inputs(tiny.random_images(2, sizes=[(48, 40), (40, 48)]),
                                                      ["describe", "please describe this image"])
    kwargs = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    model.generate(**inputs, **kwargs)  # warm-up: lazy initialisation is not per step
    plain, traced = Counter(), Counter()
    with counting(plain):
        model.generate(**inputs, **kwargs)
    if mode == "afip":
        context = afip_probe.correct(model, parse_spec("afip:layers=0-,tau=100"), processor=processor)
    else:
        context = afip_probe.trace(model, processor, level="maps", exact=mode == "exact")
    with context:
        model.generate(**inputs, **kwargs)  # warm-up of the interceptor's caches
        with counting(traced):
            model.generate(**inputs, **kwargs)
    return sum(traced.values()) - sum(plain.values())


@pytest.mark.parametrize("mode", ["exact", "fast", "afip"])
def test_no_host_sync_per_layer(mode):
    two, six = _syncs(2, mode), _syncs(6, mode)
    assert six == two, f"{mode}: {two} syncs with 2 layers, {six} with 6: some run per layer"
