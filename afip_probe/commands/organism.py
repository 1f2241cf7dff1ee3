"""`afip-probe organism {scenes,eval,train}`: the bundled model organism's data, evaluation and training."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import require_positive


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("organism", help="the bundled model organism: draw scenes, evaluate, retrain",
                       description="The model organism (DESIGN §9): a small trained LLaVA on synthetic COCO scenes.")
    osub = p.add_subparsers(dest="organism_command", metavar="ACTION", required=True)

    s = osub.add_parser("scenes", help="draw a split of scenes as a COCO-format dataset")
    s.add_argument("--split", default="val", choices=["train", "val"])
    s.add_argument("--n", type=int, default=500, help="number of scenes (default: %(default)s)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="dataset folder (default: the cache, $AFIP_PROBE_CACHE or ~/.cache/afip-probe)")
    s.set_defaults(func=run_scenes)

    e = osub.add_parser("eval", help="CHAIR of a model on the held-out scenes (greedy)")
    e.add_argument("--model", default="organism", help="model to evaluate (default: %(default)s)")
    e.add_argument("--n", type=int, default=500, help="held-out scenes (default: %(default)s)")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--max-new-tokens", type=int, default=96)
    e.add_argument("--json", help="also write the report as JSON here")
    e.set_defaults(func=run_eval)

    t = osub.add_parser("train", help="retrain the organism (python -m afip_probe.organism.train --help)")
    t.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the training script (--out DIR ...)")
    t.set_defaults(func=run_train)


def run_scenes(args: argparse.Namespace) -> int:
    from ..organism import scenes as sc

    require_positive(args.n, "--n")
    root = sc.ensure_split(args.split, n=args.n, seed=args.seed, root=args.out)
    print(f"{args.n} {args.split} scenes: images in {Path(root) / 'images' / args.split}, "
          f"annotations in {Path(root) / 'annotations'}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ..organism.evaluate import evaluate_heldout, report_json

    require_positive(args.n, "--n")
    report = evaluate_heldout(args.model, n=args.n, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    print("\n".join(report.lines()))
    if args.json:
        Path(args.json).write_text(report_json(report) + "\n")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from ..organism.train import main

    rest = [a for a in args.rest if a != "--"]
    return main(rest)
