"""`afip-probe explore STORE... --out DIR`: the interactive explorer, a static page that opens from disk."""

from __future__ import annotations

import argparse

from ..errors import require_positive
from ..plots.explorer import DEFAULT_MAX_SAMPLES, write_explorer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="write an interactive page over trace stores (opens from disk, no server)",
                       description="Write DIR/index.html: every caption as tokens coloured by CHAIR label, each "
                       "token's attention over its image, metric charts along the caption, conditions of a "
                       "compare store side by side. Open it in a browser; nothing is fetched from the network.")
    p.add_argument("stores", nargs="+", help="trace store folders (a compare run's OUT/store shows its conditions)")
    p.add_argument("--out", default="explore", help="output folder (default: %(default)s)")
    p.add_argument("--max-samples", type=int, default=DEFAULT_MAX_SAMPLES,
                   help="samples per store on the page (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier explorer in --out (only its files)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_positive(args.max_samples, "--max-samples")
    page = write_explorer(args.stores, args.out, max_samples=args.max_samples, progress=not args.no_progress,
                          overwrite=args.overwrite)
    print(f"explorer: {page} (open it in a browser)")
    return 0
