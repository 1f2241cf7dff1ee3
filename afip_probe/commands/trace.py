"""`afip-probe trace`: generate over images with the interceptor on, into a trace store."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from ..errors import AfipError, require_positive
from ..images import collect_images
from ..metrics.detect import load_detector
from ..pipelines.tracing import trace_images
from .flags import add_generation_flags, generation_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        help="record per-layer, per-head attention over image tokens during generation",
        description="Generate a reply for every image and record last-row attention of every decoder layer "
        "and head into a trace store (DESIGN §3, §8).",
    )
    p.add_argument("--images", required=True, nargs="+", help="image folder(s), image file(s) or .txt list(s) of paths")
    p.add_argument("--out", required=True, help="trace store folder to create (or to finish with --resume)")
    add_generation_flags(p, record=True, model_required=True)
    p.add_argument("--shard", help="i/N: trace only images i, i+N, ... into this --out (merge shards with "
                   "`afip-probe merge`); 'auto' takes i and N from RANK/WORLD_SIZE as set by accelerate launch "
                   "or torchrun and writes OUT.shard<i>of<N>")
    p.add_argument("--resume", action="store_true", help="skip samples the store already holds")
    p.add_argument("--detector", help="a detector JSON (`afip-probe detect train`), or a training-free signal "
                   "column (e.g. pas_layer0; docs/signals.md): each token row gets its hallucination risk as it is "
                   "traced")
    p.add_argument("--max-images", type=int, help="trace only the first N images (in sorted order)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_shard(text: str | None, out: str, device: str) -> tuple[tuple[int, int] | None, str, str]:
    """(shard, out, device) from --shard i/N or 'auto' (process rank and world size from the environment)."""
    if text is None:
        return None, out, device
    if text == "auto":
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        if device == "auto":
            device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        return (rank, world), f"{out.rstrip('/')}.shard{rank}of{world}", device
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise AfipError(f"--shard {text!r}: write i/N (e.g. 0/4) or auto") from None
    return (i, n), out, device


def run(args: argparse.Namespace) -> int:
    shard, out, device = parse_shard(args.shard, args.out, args.device)
    settings = generation_settings(args, device=device)
    images = args.images
    if args.max_images is not None:
        require_positive(args.max_images, "--max-images")
        images = collect_images(images)[: args.max_images]
    detector = load_detector(args.detector) if args.detector else None
    summary = trace_images(settings, images, out, resume=args.resume, progress=not args.no_progress, shard=shard,
                           detector=detector)
    for err in summary.errors[:10]:
        print(f"failed: {err}", file=sys.stderr)
    if len(summary.errors) > 10:
        print(f"failed: ... and {len(summary.errors) - 10} more (see the store's samples table)", file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0
