"""`afip-probe pope` (score answers) and `afip-probe pope-questions` (build a question file)."""

from __future__ import annotations

import argparse
import sys



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pope", help="score a POPE answers file against a question file")
    p.add_argument("questions", help="POPE question file (JSON lines: question_id, image, text, label)")
    p.add_argument("answers", help="answers (JSON lines: question_id and text or answer)")
    p.set_defaults(func=run_score)
    b = sub.add_parser("pope-questions", help="build POPE questions for COCO-format instance annotations")
    b.add_argument("instances", help="COCO-format instances JSON")
    b.add_argument("--sampling", choices=["random", "popular", "adversarial"], default="random",
                   help="how each negative object is chosen, as POPE's utils.py (default: %(default)s)")
    b.add_argument("--num-images", type=int, default=500, help="images to ask about (default: %(default)s)")
    b.add_argument("--num-per-image", type=int, default=3, help="positive (and as many negative) questions per "
                   "image (default: %(default)s)")
    b.add_argument("--seed", type=int, default=0, help="seed of the image and negative sampling "
                   "(default: %(default)s)")
    b.add_argument("-o", "--output", required=True, help="question file to write (JSON lines)")
    b.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    b.set_defaults(func=run_build)


def run_score(args: argparse.Namespace) -> int:
    from ..metrics.pope import evaluate_files

    metrics, warnings = evaluate_files(args.questions, args.answers)
    for w in warnings[:5]:
        print(f"warning: {w}", file=sys.stderr)
    for k in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
        print(f"{k:<10}: {metrics[k] * 100:.2f}")
    print(f"questions : {int(metrics['n'])}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from ..jsonio import read_json
    from ..metrics.pope import build_questions, write_jsonl
    from ..outputs import claim_file

    output = claim_file(args.output, overwrite=args.overwrite, name="output")
    data = read_json(args.instances, "annotation file")
    qs = build_questions(data, args.sampling, args.num_images, args.num_per_image, args.seed)
    write_jsonl(qs, output)
    print(f"{len(qs)} {args.sampling} questions on {len(qs) // (2 * args.num_per_image)} images -> {output}")
    return 0
