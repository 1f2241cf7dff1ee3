"""`afip-probe chair-eval` / `pope-eval`: generate over a COCO-format image folder, with any corrector.

Outputs are in the published formats: captions JSONL ``{"image_id", "caption"}`` (OPERA's CHAIR
input) and answers JSONL ``{"question_id", "question", "text"}`` (POPE's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import AfipError
from .flags import add_generation_flags, generation_settings, progress_flag

QUESTION_KEYS = ("question_id", "image", "text", "label")


def _common(p: argparse.ArgumentParser, **defaults: object) -> None:
    p.add_argument("--correct", action="append", default=[], metavar="SPEC",
                   help="corrector spec (repeatable): afip[:alpha=..], pai[:alpha=..], hgai[:alpha=..]")
    p.add_argument("--out", required=True, help="JSONL file to write (an earlier run's file is resumed; any other "
                   "existing file is refused)")
    add_generation_flags(p, **defaults)
    progress_flag(p)


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("chair-eval", help="caption a COCO-format image folder and score it with CHAIR")
    c.add_argument("--images", nargs="+", help="image folder(s) (default for the organism: its held-out scenes)")
    c.add_argument("--annotations", help="instances_*.json + captions_*.json folder (default: the dataset the "
                   "images belong to, else the packaged COCO 2014 ground truth)")
    c.add_argument("--max-images", type=int, help="only the first N images")
    _common(c, max_new_tokens=96, why="the length the organism's published CHAIR numbers were measured at")
    c.set_defaults(func=run_chair)

    p = sub.add_parser("pope-eval", help="answer POPE questions about an image folder and score them")
    p.add_argument("--images", nargs="+", help="image folder(s) holding the questions' images "
                   "(default for the organism: its held-out scenes)")
    p.add_argument("--questions", help="POPE question file (JSONL: question_id, image, text, label); "
                   "default for the organism: built from its held-out scenes (adversarial)")
    p.add_argument("--max-questions", type=int, help="only the first N questions")
    _common(p, max_new_tokens=16, prompt=False, why="POPE answers are yes or no")  # the questions are the prompts
    p.set_defaults(func=run_pope)


def _images(args: argparse.Namespace) -> list[str]:
    from ..organism import default_images

    return args.images if args.images is not None else default_images(args.model, not args.no_progress)


def run_chair(args: argparse.Namespace) -> int:
    from ..correctors import parse_spec
    from ..images import collect_images
    from ..metrics.chair import Chair
    from ..outputs import check_jsonl
    from ..pipelines.generation import ROW_KEYS, caption_images

    check_jsonl(args.out, ROW_KEYS)
    settings = generation_settings(args)
    images = _images(args)
    items = collect_images(images)[: args.max_images]
    chair = Chair.for_images([it.path for it in items], args.annotations)
    rows = caption_images(settings, items, args.out, modifiers=[parse_spec(s) for s in args.correct],
                          progress=not args.no_progress)
    res = chair.compute([(r["image_id"], r["caption"]) for r in rows])
    for w in res.warnings[:5]:
        print(f"warning: {w}", file=sys.stderr)
    print(res.table())
    print(f"captions: {args.out}")
    return 0


def run_pope(args: argparse.Namespace) -> int:
    from ..correctors import parse_spec
    from ..images import ImageItem, coco_image_id
    from ..metrics import pope
    from ..outputs import check_jsonl, claim_jsonl
    from ..pipelines.generation import ROW_KEYS, Job, generate_jobs

    check_jsonl(args.out, ROW_KEYS)
    settings = generation_settings(args)
    images = _images(args)
    loaded = settings.load(not args.no_progress)  # before the question file is written: a bad --model leaves nothing
    questions = args.questions
    if questions is None:
        if args.images is not None:
            raise AfipError("give --questions (a POPE question file)")
        annotations = Path(images[0]).parent.parent / "annotations"  # the organism's dataset layout
        qs = pope.build_questions(annotations / "instances_val.json", "adversarial", num_images=500,
                                  num_per_image=3, seed=0)
        questions = str(claim_jsonl(Path(args.out).with_suffix(".questions.jsonl"), QUESTION_KEYS,
                                    name="out"))
        pope.write_jsonl(qs, questions)
    qs, warnings = pope.read_jsonl(questions, "question")
    qs = qs[: args.max_questions]
    folders = [Path(p) for p in images]
    jobs = []
    for q in qs:
        if not {"question_id", "image", "text"} <= q.keys():
            warnings.append(f"question without question_id/image/text skipped: {str(q)[:60]}")
            continue
        path = next((f / q["image"] for f in folders if (f / q["image"]).exists()), folders[0] / q["image"])
        item = ImageItem(Path(q["image"]).stem, path, coco_image_id(Path(q["image"]).stem))
        jobs.append(Job(item, q["text"], (("question_id", q["question_id"]), ("question", q["text"]))))
    generate_jobs(settings, jobs, args.out, loaded=loaded, output_key="text", modifiers=[parse_spec(s) for s in args.correct],
                  progress=not args.no_progress, desc="pope")
    metrics, w2 = pope.evaluate_files(questions, args.out)
    for w in (warnings + w2)[:5]:
        print(f"warning: {w}", file=sys.stderr)
    for k, v in metrics.items():
        print(f"{k.ljust(10)}: {v:.4f}")
    print(f"answers: {args.out}")
    return 0
