"""`afip-probe trace`: generate over images with tracing on, into a trace store (`afip_probe.trace_images`)."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import AfipError, option
from .flags import add_generation_flags, progress_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        help="record per-layer, per-head attention over image tokens during generation",
        description="Generate a reply for every image and record last-row attention of every decoder layer "
        "and head into a trace store (docs/design.md §3, §8). The model keeps its own attention "
        "implementation: the tokens are those of plain generation.",
    )
    p.add_argument("--images", required=True, nargs="+", help="image folders (searched with their subfolders), "
                   "image files, .txt lists of paths, or .jsonl manifests ({\"images\": [...], \"prompt\": ...} per "
                   "line, for prompts that show several images)")
    p.add_argument("--out", required=True, help="trace store folder to create (or to finish with --resume)")
    add_generation_flags(p, record=True, model_required=True)
    p.add_argument("--annotations", help="COCO-format annotation folder of the images: recorded in the store, "
                   "so later commands label its tokens with it (default: found from the images when they belong "
                   "to such a dataset, else the packaged COCO 2014 ground truth)")
    p.add_argument("--shard", help="i/N: trace only images i, i+N, ... into this --out (merge shards with "
                   "`afip-probe merge`); 'auto' takes i and N from RANK/WORLD_SIZE as set by accelerate launch "
                   "or torchrun and writes OUT.shard<i>of<N>")
    p.add_argument("--resume", action="store_true", help="skip samples the store already holds")
    p.add_argument("--detector", help="a detector JSON (`afip-probe detect train`), or a training-free signal "
                   "column (e.g. pas_layer0; docs/signals.md): each token row gets its hallucination risk as it is "
                   "traced")
    p.add_argument("--max-images", type=int, help="trace only the first N images (in sorted order)")
    progress_flag(p)
    p.set_defaults(func=run)


def parse_shard(text: str | None, out: str, device: str) -> tuple[tuple[int, int] | None, str, str]:
    """(shard, out, device) from --shard i/N or 'auto' (process rank and world size from the environment)."""
    if text is None:
        return None, out, device
    if text == "auto":
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        if device == "auto":
            import torch

            device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        return (rank, world), f"{out.rstrip('/')}.shard{rank}of{world}", device
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise AfipError(f"{option('shard')} {text!r}: write i/N (e.g. 0/4) or auto") from None
    return (i, n), out, device


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..metrics.detect import load_detector

    shard, out, device = parse_shard(args.shard, args.out, args.device)
    detector = load_detector(args.detector) if args.detector else None
    store = api.trace_images(args.model, args.images, out, level=args.level, prompt=args.prompt,
                             max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, exact=args.exact,
                             do_sample=args.do_sample, seed=args.seed, annotations=args.annotations,
                             detector=detector, hidden=args.hidden, max_images=args.max_images, shard=shard, resume=args.resume,
                             device=device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                             progress=not args.no_progress)
    summary = store.run
    for err in summary.errors[:10]:
        print(f"failed: {err}", file=sys.stderr)
    if len(summary.errors) > 10:
        print(f"failed: ... and {len(summary.errors) - 10} more (see the store's samples table)", file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0
