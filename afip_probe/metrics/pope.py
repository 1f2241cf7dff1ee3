"""POPE (Li et al. 2023): question building for COCO-format data, answer parsing, metrics (DESIGN §6).

Example:
    >>> parse_answer("No, there is no dog.")
    'no'
    >>> score(["yes", "no"], ["yes", "yes"])["accuracy"]
    0.5
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import AfipError
from ..jsonio import read_json

SAMPLINGS = ("random", "popular", "adversarial")
QUESTION = "Is there a {} in the image?"


def parse_answer(text: str) -> str:
    """POPE's rule: keep text before the first period, drop commas; 'no'/'not'/'No' as a word -> no."""
    if text.find(".") != -1:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def score(labels: Sequence[str], answers: Sequence[str]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 ('yes' is positive) and yes-ratio of parsed answers."""
    if len(labels) != len(answers):
        raise AfipError(f"{len(labels)} questions but {len(answers)} answers")
    if not labels:
        raise AfipError("no questions to score")
    tp = sum(1 for lab, ans in zip(labels, answers) if lab == "yes" and ans == "yes")
    fp = sum(1 for lab, ans in zip(labels, answers) if lab == "no" and ans == "yes")
    tn = sum(1 for lab, ans in zip(labels, answers) if lab == "no" and ans == "no")
    fn = sum(1 for lab, ans in zip(labels, answers) if lab == "yes" and ans == "no")
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / len(labels),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": sum(a == "yes" for a in answers) / len(answers),
        "n": float(len(labels)),
    }


def read_jsonl(path: str | os.PathLike, what: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Objects of a JSON-lines file (or a JSON list) and warnings for malformed lines."""
    p = Path(path)
    if not p.exists():
        raise AfipError(f"{what} file not found: {p}")
    text = p.read_text()
    if text.lstrip().startswith("["):
        return list(read_json(p, f"{what} file")), []
    rows, warnings = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            warnings.append(f"{p.name} line {lineno}: not valid JSON, skipped")
            continue
        if not isinstance(obj, dict):
            warnings.append(f"{p.name} line {lineno}: not a JSON object, skipped")
            continue
        rows.append(obj)
    return rows, warnings


def evaluate_files(questions: str | os.PathLike, answers: str | os.PathLike) -> tuple[dict[str, float], list[str]]:
    """Score an answers file (``question_id`` + ``text`` or ``answer``) against a POPE question file."""
    qs, warnings = read_jsonl(questions, "question")
    if not qs:
        raise AfipError(f"{questions}: no usable questions" + (f" ({warnings[0]})" if warnings else ""))
    ans, w2 = read_jsonl(answers, "answer")
    if not ans:
        raise AfipError(f"{answers}: no usable answers" + (f" ({w2[0]})" if w2 else ""))
    warnings += w2
    by_id = {}
    for a in ans:
        text = a.get("text", a.get("answer"))
        if "question_id" not in a or not isinstance(text, str):
            warnings.append(f"answer without question_id/text skipped: {str(a)[:60]}")
            continue
        by_id[a["question_id"]] = text
    labels, parsed, missing = [], [], 0
    for q in qs:
        if q.get("question_id") not in by_id:
            missing += 1
            continue
        labels.append(q["label"])
        parsed.append(parse_answer(by_id[q["question_id"]]))
    if missing:
        warnings.append(f"{missing} questions have no answer and are left out")
    return score(labels, parsed), warnings


def build_questions(
    instances: dict[str, Any] | str | os.PathLike,
    sampling: str = "random",
    num_images: int = 500,
    num_per_image: int = 3,
    seed: int = 0,
    min_objects: int = 3,
) -> list[dict[str, Any]]:
    """POPE questions for COCO-format instance annotations.

    For each of `num_images` images (with at least `min_objects` categories) ask about
    `num_per_image` present categories ('yes') and as many absent ones ('no'), chosen:
    random — uniformly among absent categories; popular — the most frequent categories of the
    dataset that are absent; adversarial — the categories that co-occur most with the image's
    objects and are absent. Questions alternate yes/no as in the published files.
    """
    if sampling not in SAMPLINGS:
        raise AfipError(f"unknown POPE sampling {sampling!r}: use one of {', '.join(SAMPLINGS)}")
    data = instances if isinstance(instances, dict) else json.loads(Path(instances).read_text())
    try:
        names = {c["id"]: c["name"] for c in data["categories"]}
        files = {im["id"]: im["file_name"] for im in data["images"]}
        objects: dict[int, set[str]] = {}
        for ann in data["annotations"]:
            objects.setdefault(ann["image_id"], set()).add(names[ann["category_id"]])
    except (KeyError, TypeError) as e:
        raise AfipError(f"not COCO-format instances ({e}): need images, annotations and categories") from e
    frequency = Counter(name for objs in objects.values() for name in objs)
    cooccur: dict[str, Counter] = {}
    for objs in objects.values():
        for a in objs:
            cooccur.setdefault(a, Counter()).update(b for b in objs if b != a)
    all_names = sorted(set(names.values()))
    rng = random.Random(seed)
    eligible = sorted(i for i, objs in objects.items() if len(objs) >= min_objects and i in files)
    chosen = rng.sample(eligible, min(num_images, len(eligible)))
    questions, qid = [], 1
    for image_id in chosen:
        present = sorted(objects[image_id])
        absent = [n for n in all_names if n not in objects[image_id]]
        positives = rng.sample(present, min(num_per_image, len(present)))
        if sampling == "random":
            negatives = rng.sample(absent, min(num_per_image, len(absent)))
        elif sampling == "popular":
            negatives = sorted(absent, key=lambda n: (-frequency[n], n))[:num_per_image]
        else:
            together = Counter()
            for p in present:
                together.update(cooccur.get(p, Counter()))
            negatives = sorted(absent, key=lambda n: (-together[n], n))[:num_per_image]
        for pos, neg in zip(positives, negatives):
            for obj, label in ((pos, "yes"), (neg, "no")):
                questions.append({"question_id": qid, "image": files[image_id], "text": QUESTION.format(obj),
                                  "label": label})
                qid += 1
    return questions


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> None:
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
