"""The language of a scene: multi-sentence captions in COCO vocabulary (counts, positions, varied
phrasing) and yes/no questions with their answers.

Example:
    >>> from afip_probe.organism.catalog import SCENE_TYPES, SceneObject, scene_rng
    >>> text = describe(scene_rng(0, "val", 0), SCENE_TYPES[3], [SceneObject("dog", (8, 8, 20, 20))])
    >>> "dog" in text
    True
"""

from __future__ import annotations

import numpy as np

from .catalog import BY_NAME, CATEGORIES, COUNT_WORDS, ENDINGS, IMAGE_SIZE, SceneObject, SceneType

def _position(obj: SceneObject) -> str:
    cx, cy = obj.centre
    third = IMAGE_SIZE / 3
    col = "left" if cx < third else "right" if cx > 2 * third else ""
    row = "top" if cy < third else "bottom" if cy > 2 * third else ""
    if row and col:
        return f"in the {row} {col} corner"
    if col:
        return f"on the {col}"
    if row:
        return f"at the {row}"
    return "in the center"


def _noun_phrase(rng: np.random.Generator, name: str, count: int) -> tuple[str, str]:
    """("a dog" / "two dogs", the bare noun used), with a/an as English wants."""
    cat = BY_NAME[name]
    k = int(rng.integers(len(cat.nouns)))
    if count == 1:
        noun = cat.nouns[k]
        return ("an " if noun[0] in "aeiou" else "a ") + noun, noun
    noun = cat.plural[k]
    return f"{COUNT_WORDS[count]} {noun}", noun


def describe(rng: np.random.Generator, stype: SceneType, objects: list[SceneObject]) -> str:
    """A multi-sentence detailed caption naming every category present, with counts and positions."""
    by_cat: dict[str, list[SceneObject]] = {}
    for o in objects:
        by_cat.setdefault(o.category, []).append(o)
    # largest category first, then the rest in random order
    names = sorted(by_cat, key=lambda c: -max(o.bbox[2] * o.bbox[3] for o in by_cat[c]))
    rest = [names[i] for i in rng.permutation(len(names) - 1) + 1] if len(names) > 1 else []
    names = names[:1] + rest
    phrase = stype.phrases[int(rng.integers(len(stype.phrases)))]
    intro = ["The image shows {}.", "This is a picture of {}.", "In this image we can see {}."]
    sentences = [intro[int(rng.integers(3))].format(phrase)]
    prev = None
    for name in names:
        group = by_cat[name]
        n = len(group)
        np_, noun = _noun_phrase(rng, name, n)
        pos = _position(group[0]) if n == 1 else "in the picture"
        be = "is" if n == 1 else "are"
        templates = [
            f"There {be} {np_} {pos}.",
            f"{np_[0].upper() + np_[1:]} can be seen {pos}.",
            f"{pos[0].upper() + pos[1:]}, there {be} {np_}.",
            f"I can also see {np_}.",
        ]
        if prev is not None:
            templates.append(f"Near the {prev} there {be} {np_}.")
        sentences.append(templates[int(rng.integers(len(templates)))])
        prev = noun if n == 1 else None
    if rng.random() < 0.5:
        sentences.append(ENDINGS[int(rng.integers(len(ENDINGS)))])
    return " ".join(sentences)


def questions_for(rng: np.random.Generator, stype: SceneType, present: set[str], n: int = 4) -> list[tuple[str, str]]:
    """POPE-style yes/no questions: half about present objects, half about absent (often companions)."""
    out = []
    absent_typed = [c for c in stype.priors if c not in present]
    absent_any = [c.name for c in CATEGORIES if c.name not in present]
    pres = sorted(present)
    for i in range(n):
        if i % 2 == 0 and pres:
            name, ans = pres[int(rng.integers(len(pres)))], "Yes."
        else:
            pool = absent_typed if absent_typed and rng.random() < 0.7 else absent_any
            name, ans = pool[int(rng.integers(len(pool)))], "No."
        art = "an" if name[0] in "aeiou" else "a"
        out.append((f"Is there {art} {name} in the image?", ans))
    return out
