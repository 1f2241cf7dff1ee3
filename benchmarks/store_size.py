"""Bytes per generated token in the trace store at each record level, for a given model shape.

Writes synthetic traces of the requested shape (random values, the real writer) and divides the
store's size on disk by the number of tokens. Default shape: LLaVA-1.5-7B (32 layers, 32 heads,
576 image tokens).

    python benchmarks/store_size.py [--layers 32 --heads 32 --image-tokens 576 --tokens 128]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from afip_probe.records import HEAD_FIELDS, LAYER_FIELDS, ImageLayout, SampleRow, SampleTrace, token_rows
from afip_probe.store import StoreWriter


class _Tok:
    def decode(self, ids, skip_special_tokens=True):
        return "".join(f" w{i}" for i in ids)

    def convert_ids_to_tokens(self, ids):
        return [f"w{i}" for i in ids]


def synthetic_trace(t: int, layers: int, heads: int, n: int, level: str, rng: np.random.Generator) -> SampleTrace:
    f32 = np.float32
    return SampleTrace(
        prompt_ids=list(range(n + 40)),
        generated_ids=list(rng.integers(0, 32000, t)),
        layout=ImageLayout(positions=list(range(5, 5 + n)), grid=(int(n**0.5), int(n**0.5))),
        head={f: rng.standard_normal((t, layers, heads)).astype(f32) for f in HEAD_FIELDS},
        layer={f: rng.standard_normal((t, layers)).astype(f32) for f in LAYER_FIELDS},
        token_entropy=rng.random(t).astype(f32),
        logprob=rng.random(t).astype(f32),
        maps=rng.random((t, layers, n)).astype(np.float16) if level != "stats" else None,
        scores=rng.standard_normal((t, layers, heads, n)).astype(np.float16) if level == "full" else None,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--image-tokens", type=int, default=576)
    ap.add_argument("--tokens", type=int, default=128, help="generated tokens per sample")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--json", type=Path, help="also write the table here")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = {}
    for level in ("stats", "maps", "full"):
        with tempfile.TemporaryDirectory() as tmp:
            writer = StoreWriter(Path(tmp) / "s", {"model": "synthetic", "record_level": level})
            for s in range(args.samples):
                tr = synthetic_trace(args.tokens, args.layers, args.heads, args.image_tokens, level, rng)
                _, tokens = token_rows(f"s{s}", tr, _Tok())
                writer.write_sample(SampleRow(f"s{s}", image="", prompt="", model="synthetic"), tr, tokens)
            size = sum(p.stat().st_size for p in (Path(tmp) / "s").rglob("*") if p.is_file())
        rows[level] = size / (args.tokens * args.samples)
    print(f"shape: {args.layers} layers x {args.heads} heads x {args.image_tokens} image tokens, "
          f"{args.tokens} tokens/sample")
    print(f"{'level':<6} {'bytes/token':>12} {'KiB/token':>10} {'MiB per 500 x 128 tokens':>26}")
    for level, b in rows.items():
        print(f"{level:<6} {b:>12,.0f} {b / 1024:>10.1f} {b * 500 * 128 / 2**20:>26,.0f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
