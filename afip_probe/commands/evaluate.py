"""`afip-probe chair-eval` / `pope-eval`: generate over a COCO-format image folder, with any corrector.

Outputs are in the published formats: captions JSONL ``{"image_id", "caption"}`` (OPERA's CHAIR
input) and answers JSONL ``{"question_id", "question", "text"}`` (POPE's).
"""

from __future__ import annotations

import argparse
import sys


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="organism", help="hub id, local checkpoint, or 'organism' (default)")
    p.add_argument("--correct", action="append", default=[], metavar="SPEC",
                   help="corrector spec (repeatable): afip[:alpha=..], pai[:alpha=..], hgai[:alpha=..]")
    p.add_argument("--out", required=True, help="JSONL file to write (appended to and resumed if it exists)")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("chair-eval", help="caption a COCO-format image folder and score it with CHAIR")
    c.add_argument("--images", nargs="+", help="image folder(s) (default for the organism: its held-out scenes)")
    c.add_argument("--annotations", help="instances_*.json + captions_*.json folder (default: packaged COCO 2014)")
    c.add_argument("--prompt", default="Please describe this image in detail.")
    c.add_argument("--max-images", type=int)
    _common(c)
    c.set_defaults(func=run_chair)

    p = sub.add_parser("pope-eval", help="answer POPE questions about an image folder and score them")
    p.add_argument("--images", nargs="+", help="image folder(s) holding the questions' images "
                   "(default for the organism: its held-out scenes)")
    p.add_argument("--questions", help="POPE question file (JSONL: question_id, image, text, label); "
                   "default for the organism: built from its held-out scenes (adversarial)")
    p.add_argument("--max-questions", type=int)
    _common(p)
    p.set_defaults(func=run_pope)


def _organism_default(args: argparse.Namespace) -> tuple[list[str] | None, str | None]:
    if args.images is not None or args.model != "organism":
        return args.images, None
    from ..organism.scenes import heldout_dirs

    image_dir, annotations = heldout_dirs(not args.no_progress)
    return [str(image_dir)], str(annotations)


def _modifiers(specs: list[str]) -> list:
    from ..correct import parse_spec

    return [parse_spec(s) for s in specs]


def run_chair(args: argparse.Namespace) -> int:
    from ..errors import AfipError
    from ..generate import caption_images
    from ..metrics.chair import Chair
    from ..run import collect_images

    images, annotations = _organism_default(args)
    if images is None:
        raise AfipError("give --images (a COCO-format image folder)")
    mods = _modifiers(args.correct)
    items = collect_images(images)[: args.max_images]
    chair = Chair.load(args.annotations or annotations)
    rows = caption_images(args.model, items, args.out, prompt=args.prompt, modifiers=mods,
                          max_new_tokens=args.max_new_tokens or 96, batch_size=args.batch_size,
                          device=args.device, progress=not args.no_progress)
    res = chair.compute([(r["image_id"], r["caption"]) for r in rows])
    for w in res.warnings[:5]:
        print(f"warning: {w}", file=sys.stderr)
    print(res.table())
    print(f"captions: {args.out}")
    return 0


def run_pope(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import AfipError
    from ..generate import Job, generate_jobs
    from ..metrics import pope
    from ..run import ImageItem, _coco_image_id

    images, annotations = _organism_default(args)
    questions = args.questions
    if questions is None:
        if annotations is None:
            raise AfipError("give --questions (a POPE question file)")
        qs = pope.build_questions(Path(annotations) / "instances_val.json", "adversarial", num_images=500,
                                  num_per_image=3, seed=0)
        questions = str(Path(args.out).with_suffix(".questions.jsonl"))
        pope.write_jsonl(qs, questions)
    if images is None:
        raise AfipError("give --images (the folder holding the questions' images)")
    qs, warnings = pope.read_jsonl(questions, "question")
    qs = qs[: args.max_questions]
    folders = [Path(p) for p in images]
    jobs = []
    for q in qs:
        if not {"question_id", "image", "text"} <= q.keys():
            warnings.append(f"question without question_id/image/text skipped: {str(q)[:60]}")
            continue
        path = next((f / q["image"] for f in folders if (f / q["image"]).exists()), folders[0] / q["image"])
        item = ImageItem(Path(q["image"]).stem, path, _coco_image_id(Path(q["image"]).stem))
        jobs.append(Job(item, q["text"], (("question_id", q["question_id"]), ("question", q["text"]))))
    generate_jobs(args.model, jobs, args.out, output_key="text", max_new_tokens=args.max_new_tokens or 16,
                  batch_size=args.batch_size, modifiers=_modifiers(args.correct), device=args.device,
                  progress=not args.no_progress, desc="pope")
    metrics, w2 = pope.evaluate_files(questions, args.out)
    for w in (warnings + w2)[:5]:
        print(f"warning: {w}", file=sys.stderr)
    for k, v in metrics.items():
        print(f"{k.ljust(10)}: {v:.4f}")
    print(f"answers: {args.out}")
    return 0
