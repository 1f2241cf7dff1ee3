"""What live flags cost: plain generation, tracing, and streaming with a detector, timed side by side.

    python benchmarks/streaming_cost.py [--images 20] [--tokens 80] [--reps 3]

On the organism, one image at a time (streaming is per image), greedy; every variant is warmed up once,
then the variants are interleaved and shuffled per round, each run starting after `gc.collect()` (as in
`generation_cost.py`: a full collection landing inside a timed run costs ~0.2 s); medians and ratios to plain. Streaming runs with its default latency (0.05 s: tokens
that come faster are scored in bursts) and with ``latency=0`` (every token handed over on its own). The detector is a `live` logistic detector trained on a
trace of other held-out scenes.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import afip_probe  # noqa: E402
from afip_probe.cli import main as cli  # noqa: E402
from afip_probe.images import load_image  # noqa: E402
from afip_probe.metrics.detect import Detector  # noqa: E402
from afip_probe.models import load  # noqa: E402
from afip_probe.organism.dataset import heldout_dirs  # noqa: E402
from afip_probe.pipelines.streaming import stream  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=80)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    images_dir, _ = heldout_dirs(progress=False)
    paths = sorted(images_dir.iterdir())
    train = tmp / "train"
    train.mkdir()
    for p in paths[100:200]:
        (train / p.name).symlink_to(p)
    assert cli(["trace", "--model", "organism", "--images", str(train), "--out", str(tmp / "store"),
                "--max-new-tokens", str(args.tokens), "--device", "cpu", "--no-progress"]) == 0
    assert cli(["detect", "train", str(tmp / "store"), "-o", str(tmp / "live.json"), "--features", "live",
                "--resamples", "50"]) == 0
    det = Detector.load(tmp / "live.json")
    m = load("organism", device="cpu")
    images = [load_image(p) for p in paths[: args.images]]
    kw = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False)

    def plain():
        for img in images:
            m.model.generate(**m.adapter.build_inputs([img], afip_probe.records.DEFAULT_PROMPT), **kw)

    def traced():
        with afip_probe.trace(m.model, m.processor, adapter=m.adapter):
            plain()

    def streamed(latency):
        def run():
            for img in images:
                for _ in stream(m.model, m.processor, img, detector=det, adapter=m.adapter, latency=latency,
                                min_new_tokens=args.tokens, max_new_tokens=args.tokens):
                    pass
        return run

    variants = {"plain": plain, "trace (stats)": traced, "stream + detector": streamed(0.05),
                "stream, every token": streamed(0.0)}
    times: dict[str, list[float]] = {k: [] for k in variants}
    rng = random.Random(0)
    torch.set_num_threads(torch.get_num_threads())
    for run in variants.values():  # warm-up of every variant
        run()
    for _ in range(args.reps):
        order = list(variants)
        rng.shuffle(order)
        for name in order:
            gc.collect()
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["plain"])
    print(f"organism, {args.images} images x {args.tokens} tokens, one image per generate(), {args.reps} rounds")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<20} {med:7.2f} s   x {med / base:.2f}   ({' '.join(f'{t:.2f}' for t in ts)})")


if __name__ == "__main__":
    main()
