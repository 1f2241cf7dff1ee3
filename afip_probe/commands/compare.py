"""`afip-probe compare`: the same images with correctors off and on, CHAIR before/after and figures."""

from __future__ import annotations

import argparse

from ..pipelines.comparison import compare
from .flags import add_generation_flags, generation_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="trace with correctors off and on; CHAIR before/after, paired statistics, figures",
        description="Trace the baseline and each --correct condition (same images, seed and decoding) "
        "into OUT/store, then write CHAIR per condition, paired per-caption differences with bootstrap CIs, "
        "an attention before/after figure and VAR over position (AFIP with and without history) into OUT.")
    p.add_argument("--images", nargs="+", help="COCO-format image folder(s) (default for the organism: its held-out scenes)")
    p.add_argument("--annotations", help="folder with instances_*.json + captions_*.json (default: the dataset the "
                   "images belong to, else the packaged COCO 2014 ground truth)")
    p.add_argument("--correct", action="append", required=True, metavar="SPEC",
                   help="corrector spec, repeatable: afip[:alpha=..,gamma=..,k=..,tau=..,layers=a-b], pai[:alpha=..], hgai[:alpha=..]")
    p.add_argument("--out", required=True, help="output folder")
    add_generation_flags(p, record=True, level="maps", max_new_tokens=96)  # as the README's comparison tables
    p.add_argument("--max-images", type=int, help="only the first N images")
    p.add_argument("--sample", help="image (file stem) for the before/after attention figure (default: the first)")
    p.add_argument("--no-history-ablation", action="store_true", help="skip the AFIP-without-history condition")
    p.add_argument("--resume", action="store_true", help="continue an earlier comparison in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in --out (only the "
                   "files it wrote)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = compare(generation_settings(args), args.images, args.out, args.correct, annotations=args.annotations,
                  history_ablation=not args.no_history_ablation, sample=args.sample, max_images=args.max_images,
                  resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    print("\n".join(res.lines()))
    return 0
