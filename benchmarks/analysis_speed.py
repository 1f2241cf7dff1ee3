"""Analysis speed (docs/design.md §10): token table + all Findings figures of a 500-caption x 512-token store.

Synthesises a `stats` store of the requested shape with the real writer (default LLaVA-1.5-7B:
32 layers, 32 heads, 576 image tokens). Captions are made of real words, object words among them,
for real COCO val2014 image ids, so CHAIR labels real and hallucinated tokens against the packaged
ground truth exactly as on a real run. Then it times, in this process:
- `token_table` (read every sample's arrays, CHAIR-label every caption, reduce to per-token columns),
- the Findings statistics and the five figures written as PNG + SVG + HTML (`figures_report`).

    python benchmarks/analysis_speed.py [--captions 500 --tokens 512] [--store DIR --keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store_size import synthetic_trace  # noqa: E402

from afip_probe.metrics.chair import packaged_ground_truth  # noqa: E402
from afip_probe.records import SampleRow, rows as record_rows  # noqa: E402
from afip_probe.store import StoreWriter  # noqa: E402
from afip_probe.store import open as open_store  # noqa: E402

FILLER = ("a", "the", "is", "on", "of", "with", "and", "there", "are", "in", "near", "next", "to", "image",
          "shows", "left", "right", "side", "background", "small", "large", "two", "some", ".", ",")
OBJECTS = ("dog", "cat", "person", "car", "chair", "table", "bottle", "cup", "bench", "bird", "horse", "bus",
           "truck", "umbrella", "bowl", "laptop", "clock", "vase", "book", "pizza")


class WordTokenizer:
    """One token per word: ids < len(FILLER) are filler words, the rest object words."""

    vocab = FILLER + OBJECTS

    def decode(self, ids, skip_special_tokens=True):
        return "".join(" " + self.vocab[i] for i in ids)

    def convert_ids_to_tokens(self, ids):
        return [self.vocab[i] for i in ids]


def synthesise(root: Path, captions: int, tokens: int, layers: int, heads: int, image_tokens: int) -> float:
    rng = np.random.default_rng(0)
    image_ids = sorted(packaged_ground_truth())[:captions]
    tok = WordTokenizer()
    writer = StoreWriter(root, {"model": "synthetic-llava-shape", "record_level": "stats", "num_layers": layers,
                                "num_heads": heads, "prompt": "describe", "family": "llava"})
    start = time.perf_counter()
    for c, image_id in enumerate(image_ids):
        tr = synthetic_trace(tokens, layers, heads, image_tokens, "stats", rng)
        is_obj = rng.random(tokens) < 0.08
        ids = np.where(is_obj, rng.integers(len(FILLER), len(tok.vocab), tokens), rng.integers(0, len(FILLER), tokens))
        tr.generated_ids = [int(i) for i in ids]
        tr.head["var"] = rng.random((tokens, layers, heads)).astype(np.float32)
        sid = f"COCO_val2014_{image_id:012d}"
        text, table = _fast_tokens(sid, tr, tok)
        row = SampleRow(sid, image="", prompt="describe", model="synthetic-llava-shape", image_id=image_id,
                        output_text=text, num_tokens=tokens)
        writer.write_sample(row, tr, table)
    return time.perf_counter() - start


def _fast_tokens(sid, tr, tok):
    """The writer's token table with word spans computed directly (decoding prefixes is O(T²))."""
    words = [tok.vocab[i] for i in tr.generated_ids]
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
    original = record_rows.token_char_spans
    record_rows.token_char_spans = lambda _t, _ids: (tok.decode(tr.generated_ids),
                                                     [(int(s), int(s) + len(w) + 1) for s, w in zip(starts, words)])
    try:
        return record_rows.token_rows(sid, tr, tok)
    finally:
        record_rows.token_char_spans = original


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captions", type=int, default=500)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--image-tokens", type=int, default=576)
    ap.add_argument("--store", type=Path, help="where to write the synthetic store (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the store (and reuse it if it exists)")
    ap.add_argument("--json", type=Path, help="also write the timings here")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    from afip_probe.metrics.table import token_table
    from afip_probe.plots.report import figures_report

    root = args.store or Path(tempfile.mkdtemp(prefix="afip-analysis-")) / "store"
    synth = 0.0
    if not (args.keep and root.exists()):
        if root.exists():
            shutil.rmtree(root)
        synth = synthesise(root, args.captions, args.tokens, args.layers, args.heads, args.image_tokens)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    store = open_store(root)
    t0 = time.perf_counter()
    df = token_table(store)
    t_table = time.perf_counter() - t0
    out = root.parent / "figures"
    t1 = time.perf_counter()
    report = figures_report([store], out, tables=[df])
    t_figs = time.perf_counter() - t1
    total = t_table + t_figs
    f = next(iter(report.findings.values()))
    rows = {
        "captions": args.captions, "tokens_per_caption": args.tokens, "tokens": len(df),
        "shape": f"{args.layers}L x {args.heads}H x {args.image_tokens} image tokens", "store_gb": size / 1e9,
        "object_tokens": f.n_real + f.n_hallucinated, "synthesise_s": synth, "token_table_s": t_table,
        "statistics_and_figures_s": t_figs, "total_s": total, "cpus": os.cpu_count(),
    }
    print(f"store: {rows['captions']} captions x {rows['tokens_per_caption']} tokens, {rows['shape']}, "
          f"{rows['store_gb']:.1f} GB on disk ({synth:.0f} s to synthesise)")
    print(f"token table (read + CHAIR labels + per-token metrics): {t_table:6.1f} s  ({len(df):,} rows, "
          f"{rows['object_tokens']:,} object tokens)")
    print(f"Findings statistics + 5 figures (PNG, SVG, HTML):    {t_figs:6.1f} s")
    print(f"total:                                                {total:6.1f} s  (target < 60 s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if not args.keep and args.store is None:
        shutil.rmtree(root.parent)


if __name__ == "__main__":
    main()
