"""Explorer size and first paint: 100 organism samples x 80 tokens at `maps` (the issue's target: at most
10 MB on disk, first paint under 2 s in headless Chromium on this machine).

    python benchmarks/explorer_size.py [--samples 100] [--tokens 80] [--reps 5]

Traces the organism (cached in a temp folder), writes the explorer, sums the bytes on disk, then loads
the page `--reps` times, each in a new headless Chromium with a new, empty profile (a cold load: nothing
cached), and reports the first contentful paint and the moment the first heatmap was painted on its canvas
(the page sets ``#heatmap[data-drawn]`` right after drawing the image and its map, once the image has
loaded), both from the browser's own performance clock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from afip_probe.cli import main as cli  # noqa: E402
from afip_probe.organism.dataset import heldout_dirs  # noqa: E402
from tests.browser import chromium  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--tokens", type=int, default=80)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="explorer-bench-"))
    images, _ = heldout_dirs(progress=False)
    assert cli(["trace", "--model", "organism", "--images", str(images), "--out", str(tmp / "store"), "--record",
                "maps", "--max-new-tokens", str(args.tokens), "--max-images", str(args.samples), "--device", "cpu",
                "--no-progress"]) == 0
    t0 = time.perf_counter()
    assert cli(["explore", str(tmp / "store"), "--out", str(tmp / "ex"), "--no-progress"]) == 0
    write_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in (tmp / "ex").rglob("*") if p.is_file())
    paints, heatmaps = [], []
    for rep in range(args.reps):
        driver = chromium(tmp / f"profile{rep}")  # cold: a new browser and an empty profile every load
        try:
            driver.get((tmp / "ex" / "index.html").as_uri())
            deadline = time.time() + 30
            while not driver.execute_script("const h=document.getElementById('heatmap');"
                                            "return h && h.dataset.drawn ? 1 : 0"):
                if time.time() > deadline:
                    raise SystemExit("the page did not draw a heatmap within 30 s")
                time.sleep(0.01)
            drawn = float(driver.execute_script("return document.getElementById('heatmap').dataset.drawn"))
            fcp = driver.execute_script("const e=performance.getEntriesByName('first-contentful-paint');"
                                        "return e.length ? e[0].startTime : null")
            paints.append(fcp)
            heatmaps.append(drawn)
        finally:
            driver.quit()
    result = {"samples": args.samples, "tokens": args.tokens, "bytes": size, "write_s": round(write_s, 2),
              "first_contentful_paint_ms": round(statistics.median(paints), 1),
              "first_heatmap_drawn_ms": round(statistics.median(heatmaps), 1)}
    print(f"{args.samples} samples x {args.tokens} tokens (maps): {size / 1e6:.2f} MB on disk, written in "
          f"{write_s:.1f} s; first contentful paint {result['first_contentful_paint_ms']} ms, first heatmap drawn "
          f"at {result['first_heatmap_drawn_ms']} ms (medians of {args.reps} cold loads, headless Chromium)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
