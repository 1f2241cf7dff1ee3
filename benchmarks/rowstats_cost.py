"""`row_stats` per step: this tree's (with the lookback parts: prompt-text and generated attention mass per head)
against a past revision's, in one process, interleaved.

The past revision's `afip_probe/hooks/rowstats.py` is read with `git show REV:...` and loaded as a sibling module
of the package. Both summarise the same decoding steps' score rows [L, B, H, kv] of every layer at once (the
recorder's call), with the image as one block; the order of the two is shuffled every round; medians and the
median of the rounds' paired ratios are printed. The statistics both compute are checked equal first.

    python benchmarks/rowstats_cost.py [--rev main] [--steps 256] [--reps 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from afip_probe.hooks import rowstats as current  # noqa: E402
from past_revision import past_module  # noqa: E402

SHAPES = {  # layers, heads, image tokens, prompt tokens before the image, after it
    "wide": (32, 32, 576, 5, 12),
    "organism": (4, 4, 64, 3, 8),
}


def steps(shape: str, n_steps: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Each decoding step's rows [L, 1, H, kv], image-key mask [1, kv] and first generated key."""
    layers, heads, n, before, after = SHAPES[shape]
    prompt = before + n + after
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(n_steps):
        kv = prompt + s + 1
        is_image = torch.zeros(1, kv, dtype=torch.bool)
        is_image[0, before: before + n] = True
        out.append((torch.randn(layers, 1, heads, kv, generator=g) * 3, is_image, prompt))
    return out


def run(module: Any, rows: list[tuple[torch.Tensor, torch.Tensor, int]], new: bool) -> tuple[float, list[Any]]:
    work = module.Workspace()
    outs = []
    start = time.perf_counter()
    for scores, is_image, prompt in rows:
        allowed = torch.ones_like(is_image)
        index = module.image_index(is_image)
        st = (module.row_stats(scores, is_image, allowed, index, work, prompt) if new
              else module.row_stats(scores, is_image, allowed, index, work))
        outs.append(st.head.clone())
    return time.perf_counter() - start, outs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", default="main")
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES))
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s; on a shared CPU two "
                   "threads thrash)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    past = past_module(args.rev, "afip_probe/hooks/rowstats.py")
    for shape in args.shapes:
        rows = steps(shape, args.steps)
        _, old = run(past, rows, new=False)
        _, cur = run(current, rows, new=True)
        fields = old[0].shape[-2]
        for a, b in zip(old, cur):  # the statistics both compute are the same
            torch.testing.assert_close(a, b[..., :fields, :], rtol=1e-5, atol=1e-5)
        times: dict[str, list[float]] = {"past": [], "this": []}
        rng = random.Random(0)
        for _ in range(args.reps):
            order = ["past", "this"]
            rng.shuffle(order)
            for who in order:
                t, _ = run(past if who == "past" else current, rows, new=who == "this")
                times[who].append(t)
        per_step = {k: statistics.median(v) / args.steps * 1e3 for k, v in times.items()}
        paired = statistics.median(t / p for t, p in zip(times["this"], times["past"]))
        print(f"{shape:<9} {args.steps} steps: {args.rev} {per_step['past']:.3f} ms/step, this tree "
              f"{per_step['this']:.3f} ms/step: x{per_step['this'] / per_step['past']:.2f} (paired x{paired:.2f}); "
              f"{fields} -> {cur[0].shape[-2]} head fields")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
