"""`afip-probe explore STORE... --out DIR`: the interactive explorer, a static page that opens from disk
(`afip_probe.explore`)."""

from __future__ import annotations

import argparse

from .figures import ANNOTATIONS_HELP
from .flags import progress_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="write an interactive page over trace stores (opens from disk, no server)",
                       description="Write DIR/index.html: every caption as tokens coloured by CHAIR label, each "
                       "token's attention over its images, metric charts along the caption, conditions of a "
                       "compare store side by side. Open it in a browser; nothing is fetched from the network.")
    p.add_argument("stores", nargs="+", help="trace store folders (a compare run's OUT/store shows its conditions)")
    p.add_argument("--out", default="explore", help="output folder (default: %(default)s)")
    p.add_argument("--max-samples", type=int, default=200,
                   help="samples per store on the page (default: %(default)s; in Python, afip_probe.explore shown "
                   "inline in a notebook takes 50: the whole page travels inside the notebook there)")
    p.add_argument("--annotations", help=ANNOTATIONS_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier explorer in --out (only its files)")
    progress_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import api

    page = api.explore(args.stores, out=args.out, max_samples=args.max_samples, annotations=args.annotations,
                       overwrite=args.overwrite, progress=not args.no_progress)
    print(f"explorer: {page} (open it in a browser)")
    return 0
