"""GPU-readiness: nothing afip-probe runs per layer forces a host-device sync.

On a GPU, reading a tensor's value on the host waits for every queued kernel. Two counters run during
generate() on CPU, for the same inputs on a 2-layer and a 6-layer model:

- at the dispatcher (`TorchDispatchMode`): every ATen operation whose result depends on a device value
  reaching the host: `_local_scalar_dense` (`.item()`, `bool()`, `int()`, `float()`, `if tensor:`),
  `is_nonzero`, `nonzero`, `masked_select`, `equal`, `unique`, `bincount`, `repeat_interleave` without an
  output size, and indexing with a boolean mask (`index` / `index_put_` take the mask's `nonzero`);
- in Python: `.tolist()`, `.cpu()` and `.numpy()`, which do not always reach the dispatcher on a CPU tensor.

What tracing or correcting adds over plain generation must not grow with the number of layers (a few per
step are allowed: masks are checked once per step). When a GPU is present, the per-layer attention code also
runs under `torch.cuda.set_sync_debug_mode("error")`, which raises on any synchronising CUDA call.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import afip_probe
from afip_probe.correctors import parse_spec
from afip_probe.hooks import interceptor
from afip_probe.models import adapter_for, tiny

aten = torch.ops.aten
#: operations whose result needs a device value on the host
SYNC_OPS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.nonzero.default,
            aten.masked_select.default, aten.equal.default, aten._unique2.default, aten.unique_dim.default,
            aten.unique_consecutive.default, aten.bincount.default, aten.repeat_interleave.Tensor}
#: indexing operations that sync when an index is a boolean mask
MASK_INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}
PYTHON_SYNCS = ("tolist", "cpu", "numpy")
NEW_TOKENS = 6


class SyncCounter(TorchDispatchMode):
    """Counts the dispatched operations that synchronise with the host (by name, in `counts`)."""

    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNC_OPS and not (func is aten.repeat_interleave.Tensor and kwargs.get("output_size")):
            self.counts[str(func)] += 1
        elif func in MASK_INDEXING:
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in indices):
                self.counts[f"{func} (boolean mask)"] += 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def counting(counts: Counter):
    saved = {name: getattr(torch.Tensor, name) for name in PYTHON_SYNCS}

    def wrap(name, original):
        def counted(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)
        return counted

    for name, original in saved.items():
        setattr(torch.Tensor, name, wrap(name, original))
    try:
        with SyncCounter(counts):
            yield counts
    finally:
        for name, original in saved.items():
            setattr(torch.Tensor, name, original)


def _context(model, processor, mode):
    if mode == "afip":
        return afip_probe.correct(model, parse_spec("afip:layers=0-,tau=100"), processor=processor)
    return afip_probe.trace(model, processor, level="maps", exact=mode == "exact")


def _setup(layers: int, device: str = "cpu"):
    model, processor = tiny.tiny_llava(layers=layers, heads=4, kv_heads=2)
    model.to(device)
    inputs = adapter_for(model, processor).build_inputs(tiny.random_images(2, sizes=[(48, 40), (40, 48)]),
                                                        ["describe", "please describe this image"])
    return model, processor, {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}


def _syncs(layers: int, mode: str) -> Counter:
    """Sync operations during one generate() in `mode`, minus those of plain generation of the same model."""
    model, processor, inputs = _setup(layers)
    kwargs = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    model.generate(**inputs, **kwargs)  # warm-up: lazy initialisation is not per step
    plain, traced = Counter(), Counter()
    with counting(plain):
        model.generate(**inputs, **kwargs)
    with _context(model, processor, mode):
        model.generate(**inputs, **kwargs)  # warm-up of the interceptor's caches
        with counting(traced):
            model.generate(**inputs, **kwargs)
    traced.subtract(plain)
    return traced


@pytest.mark.parametrize("mode", ["exact", "fast", "afip"])
def test_no_host_sync_per_layer(mode):
    two, six = _syncs(2, mode), _syncs(6, mode)
    grown = {op: (two[op], six[op]) for op in set(two) | set(six) if six[op] != two[op]}
    assert not grown, f"{mode}: syncs (2 layers, 6 layers) that grow with the layers: {grown}"
    if torch.cuda.is_available():
        _no_sync_in_cuda_layers(mode)


def _no_sync_in_cuda_layers(mode: str) -> None:
    """On a GPU: every decoder layer's attention call raises on a synchronising CUDA operation."""
    model, processor, inputs = _setup(4, "cuda")
    original = interceptor._Session.attention

    def strict(self, *args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original(self, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    with _context(model, processor, mode):
        model.generate(**inputs, max_new_tokens=NEW_TOKENS)  # first calls may build cached masks
        interceptor._Session.attention = strict
        try:
            model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        finally:
            interceptor._Session.attention = original
