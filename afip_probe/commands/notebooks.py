"""`afip-probe notebooks --out DIR`: copy the Findings notebooks, which run against the installed package."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notebooks", help="copy the Findings notebooks into a folder (they run against this install)",
                       description="Copy the notebooks (Finding 1: spatial inconsistency across heads; Finding 2: "
                       "temporal fading of visual attention; heatmaps and before/after correction) into --out. "
                       "They trace the bundled organism on the CPU; open them with Jupyter "
                       "(pip install 'afip-probe[notebooks]' installs JupyterLab).")
    p.add_argument("--out", default="notebooks", help="folder to copy them into (default: %(default)s); must be new "
                   "or empty, or an earlier copy with --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier copy in --out (only its notebooks)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api import copy_notebooks

    for path in copy_notebooks(args.out, overwrite=args.overwrite):
        print(path)
    print(f"open them with: jupyter lab {args.out}")
    return 0
