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
    p.add_argument("--batch-size", type=int, default=1, help="images per generate() call (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="skip samples the store already holds")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="model dtype (default: float16 on GPU, float32 on CPU)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the checkpoint's own modelling code to run (off unless asked)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..run import trace_images

    summary = trace_images(
        args.model,
        args.images,
        args.prompt,
        args.out,
        level=args.record,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        resume=args.resume,
        device=args.device,
        dtype=args.dtype,
        progress=not args.no_progress,
        trust_remote_code=args.trust_remote_code,
    )
    for err in summary.errors[:10]:
        print(f"failed: {err}", file=sys.stderr)
    if len(summary.errors) > 10:
        print(f"failed: ... and {len(summary.errors) - 10} more (see the store's samples table)", file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0
