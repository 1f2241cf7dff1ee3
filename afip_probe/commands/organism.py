"""`afip-probe organism {scenes,eval,train}`: the bundled model organism's data, evaluation and training."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import require_positive
from .flags import add_generation_flags, generation_settings, progress_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("organism", help="the bundled model organism: draw scenes, evaluate, retrain",
                       description="The model organism (docs/design.md §9): a small trained LLaVA on synthetic "
                       "COCO scenes.")
    osub = p.add_subparsers(dest="organism_command", metavar="ACTION", required=True,
                            help="scenes, eval or train")

    s = osub.add_parser("scenes", help="draw a split of scenes as a COCO-format dataset")
    s.add_argument("--split", default="val", choices=["train", "val"], help="the training scenes or the held-out "
                   "ones (default: %(default)s)")
    s.add_argument("--n", type=int, default=500, help="number of scenes (default: %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="seed of the scenes (default: %(default)s; the held-out "
                   "split the organism is evaluated on is seed 0)")
    s.add_argument("--out", help="dataset folder (default: the cache, $AFIP_PROBE_CACHE or ~/.cache/afip-probe)")
    progress_flag(s)
    s.set_defaults(func=run_scenes)

    e = osub.add_parser("eval", help="CHAIR of a model on the held-out scenes (greedy)")
    e.add_argument("--n", type=int, default=500, help="held-out scenes (default: %(default)s)")
    add_generation_flags(e, prompt=False, max_new_tokens=96, why="the length the organism's published CHAIR "
                         "numbers were measured at")
    e.add_argument("--json", help="also write the report as JSON here")
    e.add_argument("--overwrite", action="store_true", help="replace --json if it exists")
    progress_flag(e)
    e.set_defaults(func=run_eval)

    t = osub.add_parser("train", help="retrain the organism (python -m afip_probe.pipelines.organism_training --help)")
    t.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the training script (--out DIR ...)")
    t.set_defaults(func=run_train)


def run_scenes(args: argparse.Namespace) -> int:
    from ..organism import dataset
    from ..outputs import claim_dir

    require_positive(args.n, "n")
    if args.out is not None:  # a folder of the user's: new, empty, or scenes drawn there before
        claim_dir(args.out, "organism-scenes", writes=["images", "annotations", f".complete-{args.split}"],
                  resume=True)
    root = dataset.ensure_split(args.split, n=args.n, seed=args.seed, root=args.out, progress=not args.no_progress)
    print(f"{args.n} {args.split} scenes: images in {Path(root) / 'images' / args.split}, "
          f"annotations in {Path(root) / 'annotations'}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ..outputs import claim_file
    from ..pipelines.organism_eval import evaluate_heldout, report_json

    require_positive(args.n, "n")
    out = claim_file(args.json, overwrite=args.overwrite, name="json") if args.json else None
    report = evaluate_heldout(generation_settings(args), n=args.n, progress=not args.no_progress)
    print("\n".join(report.lines()))
    if out is not None:
        out.write_text(report_json(report) + "\n")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from ..pipelines import organism_training

    rest = [a for a in args.rest if a != "--"]
    return organism_training.main(rest)
