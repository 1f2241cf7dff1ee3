"""`afip-probe compare`: the same images with correctors off and on, CHAIR before/after and figures
(`afip_probe.compare`)."""

from __future__ import annotations

import argparse

from .figures import ANNOTATIONS_HELP
from .flags import add_generation_flags, progress_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="trace with correctors off and on; CHAIR before/after, paired statistics, figures",
        description="Trace the baseline and each --correct condition (same images, seed and decoding) "
        "into OUT/store, then write CHAIR per condition, paired per-caption differences with bootstrap CIs, "
        "an attention before/after figure and VAR over position (AFIP with and without history) into OUT.")
    p.add_argument("--images", nargs="+", help="COCO-format image folder(s) (default for the organism: its held-out "
                   "scenes)")
    p.add_argument("--annotations", help=ANNOTATIONS_HELP.replace("the one the store was traced with, else ", ""))
    p.add_argument("--correct", action="append", required=True, metavar="SPEC",
                   help="corrector spec, repeatable: afip[:alpha=..,gamma=..,k=..,tau=..,layers=a-b], pai[:alpha=..], "
                   "hgai[:alpha=..]")
    p.add_argument("--out", required=True, help="output folder")
    add_generation_flags(p, record=True, level="maps", why="the before/after attention figure needs maps")
    p.add_argument("--max-images", type=int, help="only the first N images")
    p.add_argument("--sample", help="image (file stem) for the before/after attention figure (default: the first)")
    p.add_argument("--no-history-ablation", action="store_true", help="skip the AFIP-without-history condition")
    p.add_argument("--resume", action="store_true", help="continue an earlier comparison in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in --out (only the "
                   "files it wrote)")
    progress_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import api

    res = api.compare(args.model, args.images, args.out, args.correct, level=args.level, prompt=args.prompt,
                      max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, do_sample=args.do_sample,
                      seed=args.seed, annotations=args.annotations, history_ablation=not args.no_history_ablation,
                      sample=args.sample, max_images=args.max_images, resume=args.resume, overwrite=args.overwrite,
                      device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                      exact=args.exact, progress=not args.no_progress)
    print("\n".join(res.lines()))
    return 0
