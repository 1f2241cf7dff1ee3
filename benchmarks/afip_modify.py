"""`AFIP.modify` per call: this tree's corrector against a past revision's, in one process, interleaved.

The past revision's `afip_probe/correctors/afip.py` is read with `git show REV:...` and loaded as a
sibling module of the package (its relative imports resolve to this tree's package). Both correct the
same random score rows of a decoding run (shapes of the wide benchmark model or the organism), layer by
layer and step by step, as the interceptor would call them; the script checks that both return the same
rows and prints the median microseconds per call and the ratio.

    python benchmarks/afip_modify.py --against c3c8ca9 --shape wide
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from afip_probe.correctors import afip as current  # noqa: E402
from afip_probe.hooks.interceptor import RowContext  # noqa: E402
from afip_probe.hooks.rowstats import image_index, text_keys  # noqa: E402
from past_revision import past_module  # noqa: E402

SHAPES = {  # layers, heads, image tokens, prompt tokens before the image, after it
    "wide": (32, 32, 576, 5, 12),
    "organism": (4, 8, 64, 3, 8),
}


def rows(shape: str, steps: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    """Score rows [B, H, kv] of `steps` decoding steps for one layer (reused for every layer), and is_image."""
    layers, heads, n, before, after = SHAPES[shape]
    prompt = before + n + after
    is_image = torch.zeros(1, prompt + steps, dtype=torch.bool)
    is_image[0, before: before + n] = True
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, heads, prompt + s + 1, generator=g) * 3 for s in range(steps)], is_image, layers


def run_once(module: Any, rows_: list[torch.Tensor], is_image: torch.Tensor, layers: int,
             run: int) -> tuple[float, list[torch.Tensor]]:
    afip = module.AFIP(alpha=0.1, gamma=0.1, k=6, layers=None)
    spent, outs = 0.0, []
    for step, scores in enumerate(rows_, start=1):
        kv = scores.shape[-1]
        mask = is_image[:, :kv]
        allowed = torch.ones_like(mask)
        ctx = RowContext(step=step, is_image=mask, allowed=allowed, image_index=image_index(mask),
                         num_layers=layers, run=run, text=text_keys(allowed.clone(), mask))
        for layer in sorted(afip.layer_set(layers)):  # the interceptor asks only these
            start = time.perf_counter()
            out = afip.modify(layer, scores, ctx)
            spent += time.perf_counter() - start
            outs.append(scores if out is None else out.clone())  # every (step, layer): compared below
    return spent / (len(rows_) * len(afip.layer_set(layers))), outs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--against", required=True, help="git revision whose corrector is the 'before' side")
    p.add_argument("--shape", choices=sorted(SHAPES), default="wide")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--reps", type=int, default=9)
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    past = past_module(args.against, "afip_probe/correctors/afip.py")
    rows_, is_image, layers = rows(args.shape, args.steps)
    sides = {f"{args.against}": past, "this tree": current}
    times: dict[str, list[float]] = {k: [] for k in sides}
    results: dict[str, list[torch.Tensor]] = {}
    for rep in range(args.reps + 1):  # the first round warms up
        for name in (list(sides) if rep % 2 else list(sides)[::-1]):
            t, outs = run_once(sides[name], rows_, is_image, layers, run=1000 + 2 * rep + (name == "this tree"))
            if rep:
                times[name].append(t)
            results[name] = outs
    a, b = (results[k] for k in sides)
    assert len(a) == len(b) == args.steps * len(current.AFIP(layers=None).layer_set(layers))
    differ = [i for i, (x, y) in enumerate(zip(a, b)) if not torch.equal(x, y)]
    worst = max(float((x - y).abs().max()) for x, y in zip(a, b))
    print(f"{args.shape} shapes, {args.steps} steps x {layers} layers, medians of {args.reps} interleaved runs")
    base = statistics.median(times[args.against])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<12} {1e6 * med:7.1f} us per corrected layer   x{med / base:5.3f}")
    print(f"  corrected rows of all {len(a)} (step, layer) pairs: {len(a) - len(differ)} bit-identical, "
          f"largest difference {worst:.2e}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
