"""Bytes per generated token in the trace store at each record level, for a given model shape, and what the
opt-in hidden states add (``--hidden``: the last state only, or all L + 1 of them).

Writes synthetic traces of the requested shape (random values, the real writer) and divides the
store's size on disk by the number of tokens. Default shape: LLaVA-1.5-7B (32 layers, 32 heads,
576 image tokens, hidden size 4096). Hidden states are float16: per token K x d x 2 bytes for the
chosen row's states plus 2 x K x 4 for the logit-lens log-probabilities, and per sample K x n x d x 2
for the image tokens' states (amortised over the sample's tokens in the table).

    python benchmarks/store_size.py [--layers 32 --heads 32 --image-tokens 576 --tokens 128 --hidden-size 4096]
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


def synthetic_trace(t: int, layers: int, heads: int, n: int, level: str, rng: np.random.Generator,
                    hidden: int = 0, width: int = 0) -> SampleTrace:
    """A random trace of the shape; with `hidden` > 0, that many hidden states of size `width` (float16)."""
    f32 = np.float32
    f16 = np.float16
    states = dict(hidden=rng.standard_normal((t, hidden, width)).astype(f16),
                  image_hidden=rng.standard_normal((hidden, n, width)).astype(f16),
                  lens=rng.standard_normal((t, hidden)).astype(f32),
                  image_lens=rng.standard_normal((t, hidden)).astype(f32)) if hidden else {}
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
        **states,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--image-tokens", type=int, default=576)
    ap.add_argument("--tokens", type=int, default=128, help="generated tokens per sample")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--hidden-size", type=int, default=4096, help="the decoder's hidden size d (default: %(default)s)")
    ap.add_argument("--json", type=Path, help="also write the table here")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = {}
    variants = [(level, 0) for level in ("stats", "maps", "full")] + [("stats", 1), ("stats", args.layers + 1)]
    for level, hidden in variants:
        name = level if not hidden else f"stats + hidden ({'last' if hidden == 1 else f'all {hidden}'})"
        with tempfile.TemporaryDirectory() as tmp:
            writer = StoreWriter(Path(tmp) / "s", {"model": "synthetic", "record_level": level})
            for s in range(args.samples):
                tr = synthetic_trace(args.tokens, args.layers, args.heads, args.image_tokens, level, rng, hidden,
                                     args.hidden_size)
                _, tokens = token_rows(f"s{s}", tr, _Tok())
                writer.write_sample(SampleRow(f"s{s}", image="", prompt="", model="synthetic"), tr, tokens)
            size = sum(p.stat().st_size for p in (Path(tmp) / "s").rglob("*") if p.is_file())
        rows[name] = size / (args.tokens * args.samples)
    print(f"shape: {args.layers} layers x {args.heads} heads x {args.image_tokens} image tokens, hidden size "
          f"{args.hidden_size}, {args.tokens} tokens/sample")
    print(f"{'level':<24} {'bytes/token':>12} {'KiB/token':>10} {'MiB per 500 x 128 tokens':>26}")
    for level, b in rows.items():
        print(f"{level:<24} {b:>12,.0f} {b / 1024:>10.1f} {b * 500 * 128 / 2**20:>26,.0f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
