"""Peak memory of a traced run does not grow with the number of samples (docs/design.md §10): the store streams.

Runs `trace_images` on the bundled organism over N held-out scenes in a fresh subprocess per N
(peak RSS is a per-process high-water mark) and compares the peaks, with the same batch size and
record level for every N.

    python benchmarks/memory_streaming.py [--samples 2 20 --level maps --batch-size 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import resource, sys, json
from afip_probe.images import collect_images
from afip_probe.organism.dataset import heldout_dirs
from afip_probe.pipelines.settings import GenerationSettings
from afip_probe.pipelines.tracing import trace_images
n, level, batch, new, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
images, _ = heldout_dirs(progress=False)
settings = GenerationSettings("organism", level=level, max_new_tokens=new, batch_size=batch, device="cpu")
loaded = settings.load()
items = collect_images([images])[:n]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = trace_images(settings, items, out, loaded=loaded, progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"samples": n, "ok": s.ok, "tokens": s.tokens, "rss_before_mb": before / 1024, "peak_mb": peak / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, nargs="+", default=[2, 20])
    ap.add_argument("--level", default="maps", choices=["stats", "maps", "full"])
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    for n in args.samples:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, "-c", CHILD, str(n), args.level, str(args.batch_size),
                                  str(args.max_new_tokens), str(Path(tmp) / "store")],
                                 capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    base = rows[0]["peak_mb"]
    print(f"organism, record level {args.level}, batch size {args.batch_size}, {args.max_new_tokens} new tokens")
    print(f"{'samples':>8} {'tokens':>8} {'peak RSS MB':>12} {'ratio':>7}")
    for r in rows:
        r["ratio"] = r["peak_mb"] / base
        print(f"{r['samples']:>8} {r['tokens']:>8} {r['peak_mb']:>12.1f} {r['ratio']:>7.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
