"""What tracing and correcting cost, against plain SDPA and eager ``output_attentions`` generation.

In ONE process, with interleaved repetitions (the variants' order is shuffled every round), this
times one greedy ``generate()`` of exactly N new tokens (``min_new_tokens = max_new_tokens``) for:

    plain   SDPA, no afip-probe
    stats / maps / full   traced at that record level, exact (every output is SDPA's)
    stats-fast / maps-fast   traced with exact=False (a decoding step's output from the recorded row)
    eager   eager attention with output_attentions=True, return_dict_in_generate=True
    afip / pai / hgai     a corrector on (no recording)

and, in one more round that is not timed, each call's peak memory above the level before the call
(on CPU glibc's bytes in use, sampled every 2 ms; ``torch.cuda.max_memory_allocated`` on CUDA).
It prints medians and ratios to plain and writes the table as JSON.

Every run starts after `gc.collect()`. A full collection of the process's ~420,000 Python objects (the
model's modules, transformers) takes about 0.2 s on this CPU and otherwise lands in a random run: 12 % of an
organism run. The JSON counts the full collections that still happened inside timed runs (`full_gc`).

Models: ``organism`` (the bundled checkpoint) and ``wide`` (random weights with LLaVA-1.5-7B's
attention shape scaled in width only: 32 layers, 32 heads, 576 image tokens, head dim 8, or
``--wide-head-dim``), or any model name `afip_probe.models.load` accepts.

    python benchmarks/generation_cost.py --models wide organism --tokens 64 256 512 --reps 3
    python benchmarks/generation_cost.py --models llava-hf/llava-1.5-7b-hf --device cuda --dtype float16
    python benchmarks/generation_cost.py --markdown benchmarks/results/generation_cost.json   # README table
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import afip_probe  # noqa: E402
from afip_probe.correctors import AFIP, HGAI, PAI  # noqa: E402
from afip_probe.models import LoadedModel, adapter_for, load, tiny  # noqa: E402

VARIANTS = ["plain", "stats", "maps", "full", "stats-fast", "maps-fast", "eager", "afip", "pai", "hgai"]
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def wide_model(head_dim: int = 8) -> LoadedModel:
    """Random weights, LLaVA-1.5-7B attention shape (32 x 32 heads, 576 image tokens), head dim 8 by default
    (hidden 32 x head_dim, MLP twice that)."""
    hidden = 32 * head_dim
    model, processor = tiny.tiny_llava(layers=32, heads=32, hidden=hidden, intermediate=2 * hidden, image_size=336,
                                       patch_size=14, vision_layers=1, vision_hidden=32, seed=0)
    name = "wide-random (32L x 32H, 576 img tok)" + ("" if head_dim == 8 else f", head dim {head_dim}")
    return LoadedModel(model, processor, adapter_for(model, processor), name)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _heap_in_use() -> Callable[[], int] | None:
    """glibc's bytes in use (heap chunks + mmapped blocks), or None off glibc. Unlike RSS it falls when
    memory is freed, so each call's peak is its own even after earlier calls grew the process."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2

    def in_use() -> int:
        info = fn()
        return int(info.uordblks + info.hblkhd)

    return in_use


_IN_USE = _heap_in_use()


class PeakMemory:
    """Peak memory of a block above the level at its start.

    CUDA: the allocator's peak. CPU: glibc's bytes in use (`mallinfo2`, sampled every 2 ms), or the
    resident set size where that is not available.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        self._probe = _IN_USE or _rss
        self.base = self._probe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._probe() - self.base)
            time.sleep(0.002)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._probe() - self.base)


def runner(m: LoadedModel, variant: str, inputs: dict[str, Any], n: int) -> Callable[[], Any]:
    kwargs = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False)
    model = m.model

    def go() -> Any:
        if variant == "plain":
            return model.generate(**inputs, **kwargs)
        if variant.split("-")[0] in ("stats", "maps", "full"):
            level, _, mode = variant.partition("-")
            with afip_probe.trace(model, m.processor, level=level, adapter=m.adapter, exact=mode != "fast") as rec:
                model.generate(**inputs, **kwargs)
            return rec.traces
        if variant == "eager":
            key = m.adapter.text_config_key
            model.set_attn_implementation({key: "eager"} if key else "eager")
            try:
                return model.generate(**inputs, **kwargs, output_attentions=True, return_dict_in_generate=True)
            finally:
                model.set_attn_implementation({key: "sdpa"} if key else "sdpa")
        corrector = {"afip": AFIP(), "pai": PAI(), "hgai": HGAI()}[variant]
        with afip_probe.correct(model, corrector, processor=m.processor):
            return model.generate(**inputs, **kwargs)

    return go


def bench_model(m: LoadedModel, tokens: list[int], reps: int, variants: list[str], seed: int) -> list[dict[str, Any]]:
    from afip_probe.organism import dataset as sc

    dev = next(m.model.parameters()).device
    image = sc.make_scene(0, "val", 0).image
    inputs = m.adapter.build_inputs([image], "Please describe this image in detail.", device=dev)
    rows = []
    rng = random.Random(seed)
    for n in tokens:
        times: dict[str, list[float]] = {v: [] for v in variants}
        mems: dict[str, int] = {}
        full_gc = {v: 0 for v in variants}
        for v in variants:  # warm-up of every variant: lazy initialisation and caches are not what is timed
            with torch.inference_mode():
                runner(m, v, inputs, min(n, 8))()
        for rep in range(reps + 1):  # the last round measures memory only: sampling it would slow the timed runs
            order = list(variants)
            rng.shuffle(order)
            for v in order:
                fn = runner(m, v, inputs, n)
                gc.collect()  # see the module's docstring
                before_gc = gc.get_stats()[2]["collections"]
                with torch.inference_mode(), (PeakMemory(dev) if rep == reps else contextlib.nullcontext()) as mem:
                    if dev.type == "cuda":  # CUDA events after a synchronize: the GPU's time, not the launch queue's
                        torch.cuda.synchronize(dev)
                        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        begin.record()
                        out = fn()
                        end.record()
                        torch.cuda.synchronize(dev)
                        elapsed = begin.elapsed_time(end) / 1000
                    else:
                        start = time.perf_counter()
                        out = fn()
                        elapsed = time.perf_counter() - start
                del out
                if rep == reps:
                    mems[v] = mem.peak
                else:
                    times[v].append(elapsed)
                    full_gc[v] += gc.get_stats()[2]["collections"] - before_gc
        base = statistics.median(times["plain"])
        for v in variants:
            med = statistics.median(times[v])
            rows.append({"model": m.name, "new_tokens": n, "variant": v, "median_s": round(med, 4),
                         "ratio_to_plain": round(med / base, 3), "times_s": [round(t, 4) for t in times[v]],
                         "paired_ratio_median": round(paired_ratio(times[v], times["plain"]), 3),
                         "peak_mem_mb": round(mems[v] / 2**20, 1),
                         "extra_mem_mb_vs_plain": round((mems[v] - mems["plain"]) / 2**20, 1),
                         "full_gc": full_gc[v]})
            print(f"{m.name[:38]:<38} {n:>4} {v:<6} {med:8.3f} s  x{med / base:5.2f}  "
                  f"(paired x{rows[-1]['paired_ratio_median']:5.2f})  peak +{mems[v] / 2**20:8.1f} MB", flush=True)
    return rows


def paired_ratio(times: list[float], plain: list[float]) -> float:
    """The median of each round's ratio to plain (the two runs minutes apart at most): steadier than the ratio
    of medians when the machine's speed drifts. Both lists are in round order."""
    return statistics.median(t / p for t, p in zip(times, plain))


def markdown(table: dict[str, Any]) -> str:
    """The README's table from a written JSON table: one row per model and length; each cell the ratio of
    medians, the median of the rounds' paired ratios, and the extra peak memory."""
    variants = list(dict.fromkeys(r["variant"] for r in table["rows"]))
    lines = ["| model | new tokens | plain (s) | " + " | ".join(v for v in variants if v != "plain") + " |",
             "|---|---|---|" + "---|" * (len(variants) - 1)]
    groups: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in table["rows"]:
        groups.setdefault((r["model"], r["new_tokens"]), {})[r["variant"]] = r
    for (model, n), by in groups.items():
        plain = by["plain"]["times_s"]  # round by round, in the same order as every variant's
        paired = {v: paired_ratio(by[v]["times_s"], plain) for v in variants}
        cells = [f"{by[v]['ratio_to_plain']:.2f}× / {paired[v]:.2f}× ({by[v]['extra_mem_mb_vs_plain']:+.0f} MB)"
                 for v in variants if v != "plain"]
        lines.append(f"| {model} | {n} | {by['plain']['median_s']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["wide", "organism"])
    p.add_argument("--tokens", nargs="+", type=int, default=[64, 256, 512])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    p.add_argument("--wide-head-dim", type=int, default=8, help="head dim of the wide model (hidden = 32 x this)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default="benchmarks/results/generation_cost.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", metavar="JSON", help="print the markdown table of a written JSON table and exit")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        m = wide_model(args.wide_head_dim) if name == "wide" else load(name, device=args.device, dtype=args.dtype)
        if name == "organism":
            m.name = "organism"
        if name == "wide":
            m.model.to(args.device)
        rows += bench_model(m, args.tokens, args.reps, args.variants, args.seed)
        del m
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
               "device": args.device, "cuda": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "reps": args.reps, "rows": rows}, indent=1) + "\n")
    print(f"table: {args.out}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
