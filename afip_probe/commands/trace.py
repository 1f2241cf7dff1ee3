"""`afip-probe trace`: generate over images with the interceptor on, into a trace store."""

from __future__ import annotations

import argparse
import sys

from ..hooks.recorder import LEVELS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        help="record per-layer, per-head attention over image tokens during generation",
        description="Generate a reply for every image and record last-row attention of every decoder layer "
        "and head into a trace store (DESIGN §3, §8).",
    )
    p.add_argument("--model", required=True, help="hub id, local save_pretrained directory, or 'organism'")
    p.add_argument("--images", required=True, nargs="+", help="image folder(s), image file(s) or .txt list(s) of paths")
    p.add_argument("--prompt", default="Please describe this image in detail.", help="user prompt (default: %(default)s)")
    p.add_argument("--out", required=True, help="trace store folder to create (or to finish with --resume)")
    p.add_argument("--record", default="stats", choices=LEVELS, help="record level (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate per image (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="images per generate() call, left-padded; greedy results equal batch size 1 (default: %(default)s)")
    p.add_argument("--shard", help="i/N: trace only images i, i+N, ... into this --out (merge shards with "
                   "`afip-probe merge`); 'auto' takes i and N from RANK/WORLD_SIZE as set by accelerate launch "
                   "or torchrun and writes OUT.shard<i>of<N>")
    p.add_argument("--resume", action="store_true", help="skip samples the store already holds")
    p.add_argument("--max-images", type=int, help="trace only the first N images (in sorted order)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="model dtype (default: float16 on GPU, float32 on CPU)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the checkpoint's own modelling code to run (off unless asked)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_shard(text: str | None, out: str, device: str) -> tuple[tuple[int, int] | None, str, str]:
    """(shard, out, device) from --shard i/N or 'auto' (process rank and world size from the environment)."""
    import os

    from ..errors import AfipError

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
        raise AfipError(f"--shard {text!r}: write i/N (e.g. 0/4) or auto") from None
    return (i, n), out, device


def run(args: argparse.Namespace) -> int:
    from ..errors import require_positive
    from ..run import collect_images, trace_images

    shard, out, device = parse_shard(args.shard, args.out, args.device)
    images = args.images
    if args.max_images is not None:
        require_positive(args.max_images, "--max-images")
        images = collect_images(images)[: args.max_images]
    summary = trace_images(
        args.model,
        images,
        args.prompt,
        out,
        level=args.record,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        resume=args.resume,
        device=device,
        dtype=args.dtype,
        progress=not args.no_progress,
        trust_remote_code=args.trust_remote_code,
        shard=shard,
    )
    for err in summary.errors[:10]:
        print(f"failed: {err}", file=sys.stderr)
    if len(summary.errors) > 10:
        print(f"failed: ... and {len(summary.errors) - 10} more (see the store's samples table)", file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0
