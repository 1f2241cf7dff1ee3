"""Where tracing and correcting spend their time per generated token (the profile behind #7's report).

Two measurements, in one process:

1. Ablations of `stats` tracing, interleaved with plain generation (medians of --reps runs):

       plain       SDPA, no afip-probe
       intercept   trace(level="stats") with the per-step summary switched off (the interceptor and
                   the recorder's bookkeeping only; the run's records are then incomplete)
       scores      the same plus the last-row scores q·Kᵀ of every layer, into the step buffer
       stats       the full `stats` trace (scores + row statistics)

   The differences between rows are the cost of each part.

2. The corrector's pieces: wall time of every call to the score row, `AFIP.modify` and the row
   output during one AFIP generation, next to the model's SDPA calls they replace.

The ablations patch `Recorder._summarise` in this process only; nothing here is used by the package.

    python benchmarks/profile_tracing.py --model wide --tokens 256 --reps 3
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generation_cost import runner, wide_model  # noqa: E402

from afip_probe.correctors import afip as afip_module  # noqa: E402
from afip_probe.hooks import interceptor, recorder  # noqa: E402
from afip_probe.models import load  # noqa: E402
from afip_probe.organism import dataset as sc  # noqa: E402

FULL = recorder.Recorder._summarise


def _no_summary(self: Any, run: Any, step: int, raw: list, pending: list) -> None:
    return None


def _scores_only(self: Any, run: Any, step: int, raw: list, pending: list) -> None:
    self._score_rows(raw, "rows0")


ABLATIONS: dict[str, tuple[str, Callable[..., None] | None]] = {
    "plain": ("plain", None),
    "intercept": ("stats", _no_summary),
    "scores": ("stats", _scores_only),
    "stats": ("stats", FULL),
    "afip": ("afip", None),  # the AFIP corrector on, for comparison
}


def ablations(m: Any, inputs: dict[str, Any], n: int, reps: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in ABLATIONS}
    runner(m, "plain", inputs, 8)()  # warm-up
    for rep in range(reps):
        order = list(ABLATIONS) if rep % 2 == 0 else list(ABLATIONS)[::-1]
        for name in order:
            variant, summarise = ABLATIONS[name]
            recorder.Recorder._summarise = summarise or FULL  # type: ignore[method-assign]
            go = runner(m, variant, inputs, n)
            gc.collect()  # a full collection costs ~0.2 s; without this it lands in random runs (generation_cost.py)
            with torch.inference_mode():
                start = time.perf_counter()
                try:
                    go()
                except Exception:  # noqa: BLE001 - ablated runs have incomplete records by design
                    pass
                times[name].append(time.perf_counter() - start)
    recorder.Recorder._summarise = FULL
    return {k: statistics.median(v) for k, v in times.items()}


class _Timer:
    """Wraps functions of a module or class and sums their wall time per call."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        fn = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total[label] = self.total.get(label, 0.0) + time.perf_counter() - start
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, fn))

    def restore(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)


def corrector_pieces(m: Any, inputs: dict[str, Any], n: int) -> dict[str, dict[str, float]]:
    timer = _Timer()
    timer.wrap(interceptor, "_sdpa", "model SDPA (prefill, layers outside AFIP's set)")
    timer.wrap(interceptor, "row_scores", "score row q·Kᵀ")
    timer.wrap(afip_module.AFIP, "modify", "AFIP.modify")
    timer.wrap(interceptor, "_row_output", "row output softmax(B̃)·V")
    try:
        with torch.inference_mode():
            runner(m, "afip", inputs, n)()
    finally:
        timer.restore()
    return {k: {"calls": timer.calls[k], "us_per_call": round(1e6 * v / timer.calls[k], 1),
                "ms_per_token": round(1e3 * v / n, 3)} for k, v in timer.total.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="wide", help="'wide' (the benchmark's random model) or a model name")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/profile_tracing.json")
    args = p.parse_args(argv)
    m = wide_model() if args.model == "wide" else load(args.model, device="cpu")
    image = sc.make_scene(0, "val", 0).image
    inputs = m.adapter.build_inputs([image], "Please describe this image in detail.")
    n = args.tokens
    med = ablations(m, inputs, n, args.reps)
    base = med["plain"]
    print(f"{m.name}, {n} new tokens, medians of {args.reps} interleaved runs")
    previous = base
    for name, t in med.items():
        step = "" if name == "afip" else f"  +{1e3 * (t - previous) / n:6.2f} ms/token over the row above"
        print(f"  {name:<10} {t:7.3f} s  x{t / base:5.3f}{step}")
        previous = t
    pieces = corrector_pieces(m, inputs, n)
    print(f"AFIP pieces over one {n}-token generation (wall time of each call):")
    for k, v in pieces.items():
        print(f"  {k:<45} {v['calls']:>6} calls  {v['us_per_call']:8.1f} us/call  {v['ms_per_token']:7.3f} ms/token")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"model": m.name, "new_tokens": n, "reps": args.reps,
                                          "ablation_median_s": med, "afip_pieces": pieces}, indent=1) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
