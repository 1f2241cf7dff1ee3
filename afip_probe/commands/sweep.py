"""`afip-probe sweep`: the AFIP hyper-parameter sweep, or with --ablation the paper's S1/S2/S3 ablation,
on the organism's held-out scenes."""

from __future__ import annotations

import argparse

from ..errors import require_positive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="AFIP hyper-parameter sweep (or --ablation) on the organism's held-out scenes",
                       description="CHAIR of the baseline and of each AFIP setting (one parameter varied at a "
                       "time, plus the alpha x gamma grid), or of each S1/S2/S3 switch combination; the CSV is "
                       "rewritten after every setting, so a killed run keeps what it finished.")
    p.add_argument("--model", default="organism", help="model (default: %(default)s)")
    p.add_argument("--n", type=int, default=200, help="held-out scenes per setting (default: %(default)s)")
    p.add_argument("--out", default="sweep.csv", help="CSV table to write (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--ablation", metavar="SPEC", help="run the S1/S2/S3 ablation of this AFIP spec instead "
                   "(e.g. afip:alpha=0.1,gamma=0.1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..outputs import claim_file
    from ..pipelines.experiments import ablation, sweep

    require_positive(args.n, "n")
    out = claim_file(args.out, overwrite=args.overwrite)
    if args.ablation:
        ablation(args.model, args.n, out, base=args.ablation)
    else:
        sweep(args.model, args.n, out)
    print(f"table: {args.out}")
    return 0
