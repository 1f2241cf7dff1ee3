"""`afip-probe demo`: the main job end to end on the bundled model organism (`afip_probe.pipelines.demo`)."""

from __future__ import annotations

import argparse

from ..errors import require_positive
from .flags import add_generation_flags, generation_settings, progress_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="trace the bundled organism over held-out scenes and write a short report")
    p.add_argument("--out", default="demo-out", help="output folder (default: %(default)s); must be new or empty, "
                   "or an earlier demo output with --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo output in --out (only the "
                   "files the demo wrote)")
    p.add_argument("--n", type=int, default=120, help="held-out scenes to trace (default: %(default)s)")
    add_generation_flags(p, record=True, prompt=False, level="maps", max_new_tokens=80, device="cpu",
                         why="the demo's report draws heatmaps (maps), its organism numbers are measured at 80 "
                         "tokens on the CPU")
    progress_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipelines.demo import run_demo

    require_positive(args.n, "n")
    result = run_demo(args.out, n=args.n, settings=generation_settings(args), overwrite=args.overwrite,
                      progress=not args.no_progress)
    print("\n".join(result.lines))
    return 1 if result.summary.failed else 0
