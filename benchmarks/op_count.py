"""Tensor operations per generated token: plain generation against tracing and correcting (a count, not a time).

On a small model (the organism) or a GPU, a decoding step is bound by the number of operations dispatched,
not by their arithmetic: a few microseconds each on this CPU whatever their size. Counts do not vary from run
to run, unlike times on a shared machine. For each variant this profiles greedy ``generate()`` of two lengths
with `torch.profiler` and divides the difference by the extra tokens, so prefill and set-up drop out. It
reports all ATen operations (nested ones included) and, separately, those that compute or copy data (views,
reshapes and other metadata-only operations left out).

    python benchmarks/op_count.py --model organism
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generation_cost import runner, wide_model  # noqa: E402

from afip_probe.models import load  # noqa: E402
from afip_probe.organism import dataset as sc  # noqa: E402

#: operations that only make a new view or wrapper of existing storage
METADATA = {"aten::as_strided", "aten::select", "aten::view", "aten::slice", "aten::reshape", "aten::transpose",
            "aten::unsqueeze", "aten::squeeze", "aten::expand", "aten::resolve_conj", "aten::resolve_neg",
            "aten::_unsafe_view", "aten::t", "aten::permute", "aten::alias", "aten::detach", "aten::lift_fresh",
            "aten::result_type", "aten::to", "aten::empty", "aten::empty_strided", "aten::empty_like",
            "aten::_reshape_alias", "aten::contiguous", "aten::narrow", "aten::unflatten", "aten::flatten"}


def counts(m, variant: str, inputs, n: int) -> dict[str, int]:
    go = runner(m, variant, inputs, n)
    go()  # warm
    with torch.inference_mode(), profile() as p:
        go()
    return {e.key: e.count for e in p.key_averages() if e.key.startswith("aten::")}


def per_token(m, variant: str, inputs, short: int, long: int) -> dict[str, float]:
    a, b = counts(m, variant, inputs, short), counts(m, variant, inputs, long)
    return {k: (b.get(k, 0) - a.get(k, 0)) / (long - short) for k in set(a) | set(b)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="organism", help="'organism', 'wide' or a model name")
    p.add_argument("--variants", nargs="+", default=["plain", "stats", "stats-fast", "maps", "afip"])
    p.add_argument("--short", type=int, default=32)
    p.add_argument("--long", type=int, default=96)
    p.add_argument("--top", type=int, default=8, help="list this many of the operations each variant adds")
    args = p.parse_args(argv)
    m = wide_model() if args.model == "wide" else load(args.model, device="cpu")
    image = sc.make_scene(0, "val", 0).image
    inputs = m.adapter.build_inputs([image], "Please describe this image in detail.")
    plain = per_token(m, "plain", inputs, args.short, args.long)
    print(f"{args.model}: ATen operations per generated token ({args.short} vs {args.long} new tokens)")
    print(f"  {'variant':<12} {'all':>8} {'added':>8} {'data':>8} {'added':>8}")
    for variant in args.variants:
        ops = plain if variant == "plain" else per_token(m, variant, inputs, args.short, args.long)
        total = sum(ops.values())
        data = sum(v for k, v in ops.items() if k not in METADATA)
        base_total = sum(plain.values())
        base_data = sum(v for k, v in plain.items() if k not in METADATA)
        print(f"  {variant:<12} {total:8.1f} {total - base_total:+8.1f} {data:8.1f} {data - base_data:+8.1f}")
        if variant != "plain" and args.top:
            added = sorted(((ops.get(k, 0) - plain.get(k, 0), k) for k in set(ops) | set(plain)
                            if k not in METADATA), reverse=True)[: args.top]
            print("      data operations added: " + ", ".join(f"{k[6:]} {v:+.1f}" for v, k in added if v > 0.05))
    return 0


if __name__ == "__main__":
    sys.exit(main())
