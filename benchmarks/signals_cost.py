"""What the published signals cost per token: recording the hidden states they need (generation time, bytes),
and computing each signal from the recorded arrays.

Recording, in ONE process with interleaved repetitions (the variants' order shuffled every round, `gc.collect()`
before every run, as `generation_cost.py`): one greedy ``generate()`` of exactly N new tokens,

    plain         SDPA, no afip-probe
    stats         traced (per-head statistics: afip-probe's own, the lookback parts, PAS, SVAR)
    stats+hidden  the same plus every hidden state (``--hidden all``: CGC, IC, the probe)
    maps          traced with head-mean maps (ADS)
    maps+hidden   both

printing medians, ratios to plain and to stats (the median of the rounds' paired ratios), and the bytes per token
each record adds (the arrays' sizes: the hidden arrays and, for maps, the maps).

Computing, from a store (``--store``, e.g. an organism store traced with ``--record maps --hidden all``): each
signal's `signal_columns` time over the store's samples, per token.

    python benchmarks/signals_cost.py --models organism wide --tokens 80 --reps 7
    python benchmarks/signals_cost.py --store runs/organism --samples 200
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import afip_probe  # noqa: E402
from afip_probe.models import LoadedModel, load  # noqa: E402
from generation_cost import paired_ratio, wide_model  # noqa: E402

VARIANTS = ["plain", "stats", "stats+hidden", "maps", "maps+hidden"]


def runner(m: LoadedModel, variant: str, inputs: dict[str, Any], n: int) -> Callable[[], Any]:
    kwargs = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False)

    def go() -> Any:
        if variant == "plain":
            return m.model.generate(**inputs, **kwargs)
        level, _, extra = variant.partition("+")
        with afip_probe.trace(m.model, m.processor, level=level, adapter=m.adapter,
                              hidden="all" if extra else None) as rec:
            m.model.generate(**inputs, **kwargs)
        return rec.traces

    return go


def record_bytes(traces: list[Any]) -> dict[str, float]:
    """Bytes per generated token of the hidden arrays and of the maps in these traces."""
    tokens = sum(tr.num_tokens for tr in traces)
    hidden = sum(getattr(tr, k).nbytes for tr in traces for k in ("hidden", "image_hidden", "lens", "image_lens")
                 if getattr(tr, k) is not None)
    maps = sum(tr.maps.nbytes for tr in traces if tr.maps is not None)
    return {"hidden_bytes_per_token": hidden / tokens, "maps_bytes_per_token": maps / tokens}


def bench_recording(m: LoadedModel, n: int, reps: int, seed: int) -> list[dict[str, Any]]:
    from afip_probe.organism import dataset as sc

    inputs = m.adapter.build_inputs([sc.make_scene(0, "val", 0).image], "Please describe this image in detail.",
                                    device=next(m.model.parameters()).device)
    for v in VARIANTS:  # warm every variant up
        runner(m, v, inputs, min(n, 8))()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    sizes: dict[str, dict[str, float]] = {}
    rng = random.Random(seed)
    for _ in range(reps):
        order = list(VARIANTS)
        rng.shuffle(order)
        for v in order:
            fn = runner(m, v, inputs, n)
            gc.collect()
            with torch.inference_mode():
                start = time.perf_counter()
                out = fn()
                elapsed = time.perf_counter() - start
            times[v].append(elapsed)
            if v != "plain":
                sizes[v] = record_bytes(out)
            del out
    rows = []
    base = statistics.median(times["plain"])
    for v in VARIANTS:
        med = statistics.median(times[v])
        row = {"model": m.name, "new_tokens": n, "variant": v, "median_s": round(med, 4),
               "ratio_to_plain": round(med / base, 3), "paired_to_plain": round(paired_ratio(times[v], times["plain"]), 3),
               "paired_to_traced": round(paired_ratio(times[v], times[v.split("+")[0]]), 3) if v != "plain" else 1.0,
               "times_s": [round(t, 4) for t in times[v]], **{k: round(b, 1) for k, b in sizes.get(v, {}).items()}}
        rows.append(row)
        print(f"{m.name[:38]:<38} {n:>4} {v:<13} {med:8.3f} s  x{med / base:5.2f} plain (paired x"
              f"{row['paired_to_plain']:5.2f}); x{row['paired_to_traced']:5.2f} of the same level without hidden; "
              f"hidden {row.get('hidden_bytes_per_token', 0):,.0f} B/token", flush=True)
    return rows


def bench_signals(store_path: str, samples: int) -> list[dict[str, Any]]:
    """Each signal's computation time per token over the first `samples` samples of a store."""
    from afip_probe import store as st
    from afip_probe.metrics.signals import SampleContext, available, signal_columns

    store = st.open(store_path)
    table = store.samples(status="ok").head(samples)
    loaded = [(dict(store.arrays(sid).items()), SampleContext.from_sample(row, store.settings))
              for sid, (_, row) in zip(table.sample_id, table.iterrows())]
    tokens = sum(len(a["logprob"]) for a, _ in loaded)
    rows = []
    for name in available(loaded[0][0]):
        start = time.perf_counter()
        for arrays, ctx in loaded:
            signal_columns(arrays, ctx, [name])
        per_token = (time.perf_counter() - start) / tokens
        rows.append({"signal": name, "us_per_token": round(per_token * 1e6, 2)})
        print(f"{name:<24} {per_token * 1e6:8.2f} µs/token", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["organism"])
    p.add_argument("--tokens", type=int, default=80)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--store", help="a store traced with --record maps --hidden all: time each signal's computation")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--out", default="benchmarks/results/signals_cost.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"recording": [], "signals": []}
    for name in args.models:
        m = wide_model() if name == "wide" else load(name, device="cpu")
        result["recording"] += bench_recording(m, args.tokens, args.reps, args.seed)
    if args.store:
        result["signals"] = bench_signals(args.store, args.samples)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
