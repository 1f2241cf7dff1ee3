"""POPE (Li et al. 2023): question building for COCO-format data, answer parsing, metrics (docs/design.md §6).

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
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import AfipError, require_positive
from ..jsonio import read_json

SAMPLINGS = ("random", "popular", "adversarial")
QUESTION = "Is there a {} in the image?"
QUESTION_AN = "Is there an {} in the image?"
VOWELS = tuple("aeiou")
Segment = Mapping[str, Any]  # {"image": file name, "objects": [object, ...]} (POPE's segmentation format)


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


def question_text(obj: str) -> str:
    """POPE's question: "Is there a {object} in the image?", with "an" before a vowel (as published)."""
    return QUESTION.format(obj) if obj[:1] not in VOWELS else QUESTION_AN.format(obj)


def popularity(segments: Sequence[Segment]) -> list[str]:
    """Objects by how many images hold them, most first; ties in order of first appearance (POPE's
    ``sorted(ground_truth_objects.items(), key=count, reverse=True)`` over an insertion-ordered dict)."""
    counts: dict[str, int] = {}
    for seg in segments:
        for obj in seg["objects"]:
            counts[obj] = counts.get(obj, 0) + 1
    return sorted(counts, key=lambda o: counts[o], reverse=True)


def co_occurrence(segments: Sequence[Segment]) -> dict[str, list[str]]:
    """For each object, the objects seen with it, most often first; ties in order of first appearance
    (POPE's ``compute_co_occurrence``)."""
    counts: dict[str, dict[str, int]] = {}
    for seg in segments:
        for obj in seg["objects"]:
            row = counts.setdefault(obj, {})
            for other in seg["objects"]:
                if other != obj:
                    row[other] = row.get(other, 0) + 1
    return {obj: sorted(row, key=lambda o: row[o], reverse=True) for obj, row in counts.items()}


def sample_negatives(positives: Sequence[str], image_objects: Iterable[str], sampling: str,
                     popular: Sequence[str], co_occur: Mapping[str, Sequence[str]], pool: Sequence[str],
                     rng: random.Random) -> list[str]:
    """One absent object per positive, in turn, as POPE's released ``pope()`` picks it: never an object of
    the image nor one already asked about this image; random — uniform over `pool`; popular — the first
    of `popular` left; adversarial — the first left of that positive's own `co_occur` list. When a list
    runs out, a uniform pick from `pool` (POPE's fallback)."""
    present = set(image_objects)
    asked: list[str] = []
    out = []
    for pos in positives:
        asked.append(pos)
        ranked = popular if sampling == "popular" else co_occur.get(pos, []) if sampling == "adversarial" else []
        choice = next((o for o in ranked if o not in asked and o not in present), None)
        if choice is None:
            if not [o for o in pool if o not in asked and o not in present]:
                raise AfipError(f"no object is left to ask about as absent (image objects: {sorted(present)})")
            choice = rng.choice(pool)
            while choice in asked or choice in present:
                choice = rng.choice(pool)
        asked.append(choice)
        out.append(choice)
    return out


def segments_from_coco(instances: dict[str, Any] | str | os.PathLike) -> list[Segment]:
    """``{"image", "objects"}`` per annotated image of COCO-format instances: its categories in the order
    of their first annotation (POPE's segmentation input format)."""
    data = instances if isinstance(instances, dict) else json.loads(Path(instances).read_text())
    try:
        names = {c["id"]: c["name"] for c in data["categories"]}
        files = {im["id"]: im["file_name"] for im in data["images"]}
        objects: dict[int, list[str]] = {}
        for ann in data["annotations"]:
            objs = objects.setdefault(ann["image_id"], [])
            name = names[ann["category_id"]]
            if name not in objs:
                objs.append(name)
    except (KeyError, TypeError) as e:
        raise AfipError(f"not COCO-format instances ({e}): need images, annotations and categories") from e
    return [{"image": files[i], "objects": objs} for i, objs in sorted(objects.items()) if i in files]


def build_questions(
    instances: dict[str, Any] | str | os.PathLike,
    sampling: str = "random",
    num_images: int = 500,
    num_per_image: int = 3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """POPE questions for COCO-format instance annotations, built as POPE's released code builds them.

    `num_images` images with at least `num_per_image` categories are drawn (seeded); for each, its first
    `num_per_image` categories in annotation order are the 'yes' questions, each followed by one 'no'
    question from `sample_negatives`, with popularity and co-occurrence counted over the drawn images.
    """
    if sampling not in SAMPLINGS:
        raise AfipError(f"unknown POPE sampling {sampling!r}: use one of {', '.join(SAMPLINGS)}")
    require_positive(num_per_image, "num_per_image")
    rng = random.Random(seed)
    eligible = [seg for seg in segments_from_coco(instances) if len(seg["objects"]) >= num_per_image]
    segments = rng.sample(eligible, min(num_images, len(eligible)))
    return pope_questions(segments, sampling, num_per_image, rng)


def pope_questions(segments: Sequence[Segment], sampling: str, num_per_image: int = 3,
                   rng: random.Random | None = None) -> list[dict[str, Any]]:
    """POPE's ``pope()`` over `segments` (``{"image", "objects"}``, objects in order): positives, negatives and
    question ids as the published files have them."""
    rng = rng or random.Random(0)
    popular, co_occur = popularity(segments), co_occurrence(segments)
    pool = list(dict.fromkeys(o for seg in segments for o in seg["objects"]))  # POPE's gt_objects_list
    questions: list[dict[str, Any]] = []
    for seg in segments:
        positives = list(seg["objects"][:num_per_image])
        negatives = sample_negatives(positives, seg["objects"], sampling, popular, co_occur, pool, rng)
        for pos, neg in zip(positives, negatives):
            for obj, label in ((pos, "yes"), (neg, "no")):
                questions.append({"question_id": len(questions) + 1, "image": seg["image"],
                                  "text": question_text(obj), "label": label})
    return questions


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> None:
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
