"""`afip-probe figures STORE...` and `afip-probe heatmap STORE SAMPLE`: the Findings figures and attention
heatmaps of recorded stores (`afip_probe.figures`, `afip_probe.heatmap`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .flags import progress_flag

ANNOTATIONS_HELP = ("COCO-format annotation folder for the CHAIR labels (default: the one the store was traced "
                    "with, else the dataset the traced images belong to, else the packaged COCO 2014 ground truth)")


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("figures", help="Findings 1-2 statistics and figures (PNG, SVG, HTML) of trace stores",
                       description="The AFIP paper's Findings 1-2 of trace stores: statistics and figures, one "
                       "HTML page. With several stores, the figures that compare them draw each one.")
    f.add_argument("stores", nargs="+", help="trace store folders (labelled by their folder names)")
    f.add_argument("--out", default="figures", help="output folder (default: %(default)s)")
    f.add_argument("--layers", default="all", help="layer range of the token table: all, early, middle, late "
                   "(default: %(default)s)")
    f.add_argument("--annotations", help=ANNOTATIONS_HELP)
    f.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    f.add_argument("--tokens", help="also write the labelled token table to this Parquet file")
    f.add_argument("--overwrite", action="store_true", help="replace an earlier figures output in --out (only "
                   "the files it wrote) and an existing --tokens file")
    progress_flag(f)
    f.set_defaults(func=run_figures)

    h = sub.add_parser("heatmap", help="attention of one generated token drawn over its images")
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
    from .. import api

    report = api.figures(args.stores, args.out, layers=args.layers, annotations=args.annotations,
                         resamples=args.resamples, tokens=args.tokens, overwrite=args.overwrite,
                         progress=not args.no_progress)
    for name, f in report.findings.items():
        print(f"## {name}")
        print(f.markdown())
    print(f"wrote {len(report.files)} files to {report.out} (open {Path(report.out) / 'index.html'})")
    return 0


def run_heatmap(args: argparse.Namespace) -> int:
    import matplotlib

    from .. import api

    matplotlib.use("Agg")
    api.heatmap(args.store, args.sample, step=args.step, word=args.word, layers=args.layers, per_head=args.per_head,
                corrected=args.corrected, out=args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}")
    return 0
