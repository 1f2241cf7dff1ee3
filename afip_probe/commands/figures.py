"""`afip-probe figures STORE...` and `afip-probe heatmap STORE SAMPLE`: the Findings figures and
attention heatmaps of recorded stores."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import pandas as pd

from .. import store as st
from ..errors import require_positive
from ..metrics.table import chair_for, store_layers, token_table
from ..outputs import check_dir, check_file, claim_file
from ..plots.report import figures_report
from ..plots.store_maps import token_heatmap


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("figures", help="Findings 1-2 statistics and figures (PNG, SVG, HTML) of trace stores")
    f.add_argument("stores", nargs="+", help="trace store folders (Fig. 3 left draws one curve per store)")
    f.add_argument("--out", default="figures", help="output folder (default: %(default)s)")
    f.add_argument("--layers", default="all", help="layer range of the token table: all, early, middle, late "
                   "(default: %(default)s)")
    f.add_argument("--annotations", help="COCO-format annotation folder for CHAIR labels (default: the dataset "
                   "the traced images belong to, else the packaged COCO 2014 ground truth)")
    f.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    f.add_argument("--tokens", help="also write the labelled token table to this Parquet file")
    f.add_argument("--overwrite", action="store_true", help="replace an earlier figures output in --out (only "
                   "the files it wrote) and an existing --tokens file")
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(func=run_figures)

    h = sub.add_parser("heatmap", help="attention of one generated token drawn over its image")
    h.add_argument("store", help="trace store folder recorded at --record maps or full")
    h.add_argument("sample", help="sample id (see the store's samples table)")
    which = h.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, help="generated token index (default 0)")
    which.add_argument("--word", help="the first generated token that starts this word")
    h.add_argument("--layers", help="decoder layer range, e.g. 16-31 or 2- (default: all traced layers; a hybrid "
                   "decoder traces its attention layers only, see the manifest's decoder_layers)")
    h.add_argument("--per-head", action="store_true", help="one map per head (needs --record full)")
    h.add_argument("--corrected", action="store_true", help="the corrected rows of a corrector run")
    h.add_argument("--out", default="heatmap.png", help="image file (default: %(default)s)")
    h.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    h.set_defaults(func=run_heatmap)


def run_figures(args: argparse.Namespace) -> int:
    require_positive(args.resamples, "--resamples")
    if args.tokens:
        check_file(args.tokens, overwrite=args.overwrite, flag="--tokens")
    check_dir(args.out, "figures", overwrite=args.overwrite)
    stores = [st.open(s) for s in args.stores]
    tables = [token_table(s, chair=chair_for(s, args.annotations), progress=not args.no_progress) for s in stores]
    report = figures_report(stores, args.out, args.layers, n_resamples=args.resamples, tables=tables,
                            overwrite=args.overwrite)
    if args.tokens:
        pd.concat(tables, ignore_index=True).to_parquet(claim_file(args.tokens, overwrite=args.overwrite,
                                                                   flag="--tokens"))
    for name, f in report.findings.items():
        print(f"## {name}")
        print(f.markdown())
    print(f"wrote {len(report.files)} files to {report.out} (open {Path(report.out) / 'index.html'})")
    return 0


def run_heatmap(args: argparse.Namespace) -> int:
    matplotlib.use("Agg")
    store = st.open(args.store)
    layers = store_layers(args.layers, store.settings) if args.layers else None  # decoder layers
    check_file(args.out, overwrite=args.overwrite)
    fig = token_heatmap(store, args.sample, step=args.step, word=args.word, layers=layers,
                        per_head=args.per_head, source="corrected" if args.corrected else "raw")
    out = claim_file(args.out, overwrite=args.overwrite)
    fig.savefig(out, dpi=150)
    print(f"wrote {out}")
    return 0
