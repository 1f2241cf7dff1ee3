"""Synthetic scenes of COCO objects with COCO-like co-occurrence priors, written as a COCO dataset.

Each scene is drawn from one of four scene types (dining, street, living room, park). A scene type
includes each of its categories with a prior probability, and companion rules (fork → knife,
tv → remote, dog → frisbee, ...) make pairs co-occur usually but not always; now and then an object
from another scene type intrudes. Each of the 31 categories is a distinct drawn icon (shape, colour,
texture) of varied size and position, objects may partly occlude each other, and the background
carries the scene type's tint, noise and clutter. Captions are multi-sentence descriptions in COCO
vocabulary (counts, positions, varied phrasing); yes/no questions come with their answers.

Everything is a pure function of ``(seed, split, index)``: the same seed writes byte-identical
annotation files and images.

Example:
    >>> from afip_probe.organism.scenes import make_scene
    >>> scene = make_scene(seed=0, split="val", index=3)
    >>> scene.image.size, len(scene.objects) >= 1
    ((64, 64), True)
    >>> sorted(scene.categories) == sorted({o.category for o in scene.objects})
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
MAX_OBJECTS = 8
PROMPT = "Please describe this image in detail."
SPLITS = {"train": 1, "val": 2}
ID_BASE = {"train": 1_000_000, "val": 2_000_000}  # image ids: split base + index


@dataclass(frozen=True)
class Category:
    """A COCO category and how the organism draws and names it."""

    id: int  # the real COCO 2014 category id
    name: str  # the COCO category name
    supercategory: str
    nouns: tuple[str, ...]  # caption nouns (singular); CHAIR maps each back to `name`
    plural: tuple[str, ...]
    shape: str
    colour: tuple[int, int, int]
    texture: str
    texture_colour: tuple[int, int, int]
    aspect: float = 1.0  # width / height
    scale: float = 1.0  # size relative to an ordinary object


def _c(id, name, sup, nouns, plural, shape, colour, texture="solid", tex=(0, 0, 0), aspect=1.0, scale=1.0):
    return Category(id, name, sup, tuple(nouns), tuple(plural), shape, colour, texture, tex, aspect, scale)


CATEGORIES: tuple[Category, ...] = (
    # dining
    _c(67, "dining table", "furniture", ["table", "dining table"], ["tables", "dining tables"], "rect",
       (139, 90, 43), "hstripes", (95, 60, 25), 1.8, 1.7),
    _c(59, "pizza", "food", ["pizza"], ["pizzas"], "ellipse", (240, 170, 40), "dots", (200, 30, 30)),
    _c(47, "cup", "kitchen", ["cup"], ["cups"], "rect", (120, 180, 230), "outline", (20, 40, 90), 0.8, 0.8),
    _c(48, "fork", "kitchen", ["fork"], ["forks"], "rect", (185, 185, 195), "vstripes", (70, 70, 80), 0.35),
    _c(49, "knife", "kitchen", ["knife"], ["knives"], "rect", (70, 70, 85), "solid", (0, 0, 0), 0.3),
    _c(51, "bowl", "kitchen", ["bowl"], ["bowls"], "bowl", (0, 150, 150), "solid", (0, 0, 0), 1.5, 0.9),
    _c(44, "bottle", "kitchen", ["bottle"], ["bottles"], "rect", (40, 140, 60), "hstripes", (235, 235, 235), 0.45),
    _c(46, "wine glass", "kitchen", ["wine glass"], ["wine glasses"], "tri_down", (150, 60, 160), "solid",
       (0, 0, 0), 0.8, 0.9),
    _c(50, "spoon", "kitchen", ["spoon"], ["spoons"], "ellipse", (230, 210, 60), "solid", (0, 0, 0), 0.5, 0.8),
    # street
    _c(3, "car", "vehicle", ["car"], ["cars"], "rect", (210, 40, 40), "solid", (0, 0, 0), 1.6, 1.1),
    _c(6, "bus", "vehicle", ["bus"], ["buses"], "rect", (240, 200, 30), "checker", (60, 60, 60), 2.0, 1.4),
    _c(1, "person", "person", ["person", "man", "woman"], ["people", "people", "people"], "ellipse",
       (240, 120, 170), "vstripes", (120, 40, 110), 0.5),
    _c(10, "traffic light", "outdoor", ["traffic light"], ["traffic lights"], "rect", (30, 30, 30), "dots",
       (250, 220, 0), 0.4),
    _c(2, "bicycle", "vehicle", ["bicycle", "bike"], ["bicycles", "bikes"], "ring", (40, 70, 200), "solid",
       (0, 0, 0), 1.3),
    _c(13, "stop sign", "outdoor", ["stop sign"], ["stop signs"], "octagon", (220, 20, 30), "hstripes",
       (250, 250, 250)),
    _c(8, "truck", "vehicle", ["truck"], ["trucks"], "rect", (30, 50, 120), "vstripes", (230, 230, 230), 1.4, 1.3),
    _c(11, "fire hydrant", "outdoor", ["fire hydrant", "hydrant"], ["fire hydrants", "hydrants"], "diamond",
       (230, 90, 20), "solid", (0, 0, 0), 0.8, 0.9),
    # living room
    _c(63, "couch", "furniture", ["couch", "sofa"], ["couches", "sofas"], "rect", (128, 30, 50), "checker",
       (170, 70, 90), 2.0, 1.6),
    _c(72, "tv", "electronic", ["tv", "television"], ["tvs", "televisions"], "rect", (20, 20, 25), "frame",
       (130, 200, 250), 1.4, 1.2),
    _c(75, "remote", "electronic", ["remote"], ["remotes"], "rect", (60, 60, 60), "dots", (230, 40, 40), 0.3, 0.8),
    _c(64, "potted plant", "furniture", ["potted plant", "houseplant"], ["potted plants", "houseplants"],
       "tri_up", (30, 160, 40), "dots", (10, 80, 20)),
    _c(62, "chair", "furniture", ["chair"], ["chairs"], "tee", (160, 100, 50), "solid"),
    _c(84, "book", "indoor", ["book"], ["books"], "rect", (190, 40, 150), "hstripes", (250, 250, 250), 0.75, 0.8),
    _c(85, "clock", "indoor", ["clock"], ["clocks"], "ellipse", (245, 245, 245), "cross", (10, 10, 10), 1.0, 0.9),
    _c(86, "vase", "indoor", ["vase"], [],  # CHAIR lemmatises "vases" to "vas": one vase at most
       "hexagon", (40, 200, 210), "solid", (0, 0, 0), 0.7, 0.9),
    # park
    _c(18, "dog", "animal", ["dog", "puppy"], ["dogs", "puppies"], "ellipse", (190, 140, 80), "dots",
       (90, 55, 20), 1.4),
    _c(34, "frisbee", "sports", ["frisbee"], ["frisbees"], "ellipse", (250, 60, 200), "outline", (120, 0, 90),
       1.3, 0.7),
    _c(15, "bench", "outdoor", ["bench"], ["benches"], "rect", (120, 80, 40), "vstripes", (60, 35, 10), 2.5, 1.2),
    _c(16, "bird", "animal", ["bird"], ["birds"], "vee", (40, 40, 90), "solid", (0, 0, 0), 1.3, 0.8),
    _c(38, "kite", "sports", ["kite"], ["kites"], "diamond", (250, 230, 40), "vstripes", (220, 30, 30), 0.8),
    _c(28, "umbrella", "accessory", ["umbrella"], ["umbrellas"], "dome", (90, 60, 200), "vstripes",
       (240, 240, 240), 1.5),
    _c(37, "sports ball", "sports", ["ball"], ["balls"], "ellipse", (240, 240, 240), "checker", (20, 20, 20),
       1.0, 0.7),
)
BY_NAME = {c.name: c for c in CATEGORIES}


@dataclass(frozen=True)
class SceneType:
    name: str
    background: tuple[int, int, int]
    phrases: tuple[str, ...]
    priors: dict[str, float]  # category -> probability of appearing


SCENE_TYPES: tuple[SceneType, ...] = (
    SceneType("dining", (236, 224, 198), ("a dining scene", "a meal", "a kitchen scene"), {
        "dining table": 0.85, "pizza": 0.5, "cup": 0.55, "fork": 0.55, "knife": 0.45, "bowl": 0.4,
        "bottle": 0.3, "wine glass": 0.35, "spoon": 0.35}),
    SceneType("street", (150, 150, 156), ("a city street", "a busy road", "a street scene"), {
        "car": 0.8, "person": 0.65, "bus": 0.4, "traffic light": 0.5, "bicycle": 0.35, "stop sign": 0.35,
        "truck": 0.35, "fire hydrant": 0.35}),
    SceneType("living", (205, 175, 135), ("a living room", "a cozy room", "an indoor room"), {
        "couch": 0.8, "tv": 0.6, "remote": 0.4, "potted plant": 0.45, "chair": 0.45, "book": 0.35,
        "clock": 0.35, "vase": 0.35}),
    SceneType("park", (112, 172, 92), ("a park", "a sunny park", "an outdoor scene"), {
        "dog": 0.7, "frisbee": 0.45, "person": 0.6, "bench": 0.45, "bird": 0.4, "kite": 0.35,
        "umbrella": 0.35, "sports ball": 0.35}),
)
# (a, b, p): when a is present and b is not, b joins with probability p
COMPANIONS: tuple[tuple[str, str, float], ...] = (
    ("fork", "knife", 0.7), ("knife", "fork", 0.6), ("pizza", "dining table", 0.8), ("cup", "bowl", 0.3),
    ("bottle", "wine glass", 0.4), ("car", "traffic light", 0.4), ("bus", "car", 0.6), ("bicycle", "person", 0.6),
    ("stop sign", "car", 0.6), ("tv", "remote", 0.6), ("couch", "tv", 0.5), ("remote", "couch", 0.6),
    ("chair", "potted plant", 0.3), ("dog", "frisbee", 0.55), ("frisbee", "person", 0.5), ("bench", "person", 0.4),
    ("kite", "person", 0.5),
)
INTRUDER_P = 0.12  # an object from another scene type
COUNT_P = (0.78, 0.17, 0.05)  # 1, 2 or 3 instances of a category
COUNT_WORDS = {2: "two", 3: "three"}
ENDINGS = ("The scene looks calm.", "Everything looks neat.", "It seems to be daytime.",
           "Overall, it is a simple scene.", "The colors are bright.")


@dataclass(frozen=True)
class SceneObject:
    category: str
    bbox: tuple[int, int, int, int]  # x, y, w, h in pixels

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.bbox
        return x + w / 2, y + h / 2


@dataclass
class Scene:
    """One drawn scene: its image, objects, scene type and captions."""

    image_id: int
    split: str
    scene_type: str
    image: Image.Image
    objects: list[SceneObject]
    captions: list[str]
    questions: list[tuple[str, str]] = field(default_factory=list)  # (question, "Yes."/"No.")

    @property
    def categories(self) -> set[str]:
        return {o.category for o in self.objects}

    @property
    def file_name(self) -> str:
        return f"organism_{self.split}_{self.image_id:08d}.png"


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS[split], index])


# ---------------------------------------------------------------- content ----


def sample_contents(rng: np.random.Generator) -> tuple[SceneType, dict[str, int]]:
    """Scene type and {category: count} following the priors, 1..MAX_OBJECTS instances."""
    stype = SCENE_TYPES[int(rng.integers(len(SCENE_TYPES)))]
    present = [c for c, p in stype.priors.items() if rng.random() < p]
    for a, b, p in COMPANIONS:
        if a in present and b not in present and rng.random() < p:
            present.append(b)
    if rng.random() < INTRUDER_P:
        others = [c.name for c in CATEGORIES if c.name not in stype.priors]
        present.append(others[int(rng.integers(len(others)))])
    if not present:
        names = list(stype.priors)
        present = [names[int(rng.integers(len(names)))]]
    order = rng.permutation(len(present))
    counts: dict[str, int] = {}
    total = 0
    for i in order:
        n = int(rng.choice(3, p=COUNT_P)) + 1 if BY_NAME[present[i]].plural else 1
        n = min(n, MAX_OBJECTS - total)
        if n <= 0:
            break
        counts[present[i]] = n
        total += n
    return stype, counts


def place_objects(rng: np.random.Generator, counts: dict[str, int]) -> list[SceneObject]:
    """Boxes for each instance; large furniture first, small objects may overlap each other ≤ 30 %."""
    items = sorted([(BY_NAME[c].scale, c) for c, n in counts.items() for _ in range(n)], key=lambda t: -t[0])
    placed: list[SceneObject] = []
    for scale, name in items:
        cat = BY_NAME[name]
        best = None
        for _attempt in range(30):
            size = rng.uniform(12, 19) * scale
            w = int(round(min(IMAGE_SIZE - 2, size * np.sqrt(cat.aspect))))
            h = int(round(min(IMAGE_SIZE - 2, size / np.sqrt(cat.aspect))))
            w, h = max(w, 5), max(h, 5)
            x = int(rng.integers(0, IMAGE_SIZE - w + 1))
            y = int(rng.integers(0, IMAGE_SIZE - h + 1))
            box = (x, y, w, h)
            worst = max((_overlap(box, o.bbox) for o in placed if BY_NAME[o.category].scale < 1.5), default=0.0)
            if best is None or worst < best[0]:
                best = (worst, box)
            if worst <= 0.3:
                break
        placed.append(SceneObject(name, best[1]))
    return placed


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box's area."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / min(a[2] * a[3], b[2] * b[3])


# ---------------------------------------------------------------- drawing ----


def _shape_mask(shape: str, w: int, h: int) -> Image.Image:
    m = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(m)
    W, H = w - 1, h - 1
    if shape == "rect":
        d.rectangle([0, 0, W, H], fill=255)
    elif shape == "ellipse":
        d.ellipse([0, 0, W, H], fill=255)
    elif shape == "ring":
        d.ellipse([0, 0, W, H], fill=255)
        t = max(2, min(w, h) // 4)
        d.ellipse([t, t, W - t, H - t], fill=0)
    elif shape == "tri_up":
        d.polygon([(W / 2, 0), (W, H), (0, H)], fill=255)
    elif shape == "tri_down":
        d.polygon([(0, 0), (W, 0), (W / 2, H)], fill=255)
    elif shape == "diamond":
        d.polygon([(W / 2, 0), (W, H / 2), (W / 2, H), (0, H / 2)], fill=255)
    elif shape == "octagon":
        a, b = W * 0.3, H * 0.3
        d.polygon([(a, 0), (W - a, 0), (W, b), (W, H - b), (W - a, H), (a, H), (0, H - b), (0, b)], fill=255)
    elif shape == "hexagon":
        b = H * 0.25
        d.polygon([(W / 2, 0), (W, b), (W, H - b), (W / 2, H), (0, H - b), (0, b)], fill=255)
    elif shape == "bowl":
        d.pieslice([0, -H, W, H], 0, 180, fill=255)
    elif shape == "dome":
        d.pieslice([0, 0, W, 2 * H], 180, 360, fill=255)
    elif shape == "tee":
        t = max(2, h // 3)
        d.rectangle([0, 0, W, t], fill=255)
        d.rectangle([W * 0.35, 0, W * 0.65, H], fill=255)
    elif shape == "vee":
        d.polygon([(0, 0), (W / 2, H * 0.55), (W, 0), (W, H * 0.45), (W / 2, H), (0, H * 0.45)], fill=255)
    else:  # pragma: no cover - the table above is fixed
        raise ValueError(f"unknown shape {shape!r}")
    return m


def _texture(cat: Category, w: int, h: int) -> Image.Image:
    img = Image.new("RGB", (w, h), cat.colour)
    d = ImageDraw.Draw(img)
    c = cat.texture_colour
    if cat.texture == "hstripes":
        for y in range(1, h, 3):
            d.line([(0, y), (w, y)], fill=c)
    elif cat.texture == "vstripes":
        for x in range(1, w, 3):
            d.line([(x, 0), (x, h)], fill=c)
    elif cat.texture == "dots":
        for y in range(1, h, 4):
            for x in range(1 + (y // 4) % 2 * 2, w, 4):
                d.rectangle([x, y, x + 1, y + 1], fill=c)
    elif cat.texture == "checker":
        for y in range(0, h, 3):
            for x in range(0, w, 3):
                if (x // 3 + y // 3) % 2:
                    d.rectangle([x, y, x + 2, y + 2], fill=c)
    elif cat.texture == "outline":
        d.rectangle([0, 0, w - 1, h - 1], outline=c, width=2)
    elif cat.texture == "frame":
        d.rectangle([2, 2, w - 3, h - 3], fill=c)
    elif cat.texture == "cross":
        d.line([(w // 2, 1), (w // 2, h // 2)], fill=c, width=1)
        d.line([(w // 2, h // 2), (w - 3, h // 2)], fill=c, width=1)
    return img


def draw_scene(rng: np.random.Generator, stype: SceneType, objects: list[SceneObject]) -> Image.Image:
    """Background tint + noise + clutter, then the icons in order (later ones occlude earlier ones)."""
    bg = np.array(stype.background, dtype=np.int16)
    arr = bg + rng.integers(-10, 11, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.int16)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):  # clutter: muted strokes and blobs in background shades
        shade = tuple(int(v) for v in np.clip(bg + rng.integers(-45, 46, 3), 0, 255))
        x, y = (int(v) for v in rng.integers(0, IMAGE_SIZE, 2))
        if rng.random() < 0.5:
            dx, dy = (int(v) for v in rng.integers(-12, 13, 2))
            d.line([(x, y), (x + dx, y + dy)], fill=shade, width=int(rng.integers(1, 3)))
        else:
            r = int(rng.integers(1, 4))
            d.ellipse([x - r, y - r, x + r, y + r], fill=shade)
    for obj in objects:
        cat = BY_NAME[obj.category]
        x, y, w, h = obj.bbox
        img.paste(_texture(cat, w, h), (x, y), _shape_mask(cat.shape, w, h))
    return img


# ---------------------------------------------------------------- language ----


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


def make_scene(seed: int, split: str, index: int, n_captions: int = 2) -> Scene:
    """Scene `index` of `split`, a pure function of its arguments."""
    rng = scene_rng(seed, split, index)
    stype, counts = sample_contents(rng)
    objects = place_objects(rng, counts)
    image = draw_scene(rng, stype, objects)
    captions = [describe(rng, stype, objects) for _ in range(n_captions)]
    questions = questions_for(rng, stype, {o.category for o in objects})
    return Scene(ID_BASE[split] + index, split, stype.name, image, objects, captions, questions)


def iter_scenes(seed: int, split: str, n: int) -> Iterator[Scene]:
    for i in range(n):
        yield make_scene(seed, split, i)


# ---------------------------------------------------------------- COCO files ----


def coco_dicts(scenes: list[Scene], split: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(instances, captions) dicts in the COCO 2014 annotation format."""
    info = {"description": f"afip-probe model organism scenes ({split})", "version": "1.0"}
    images = [{"id": s.image_id, "file_name": s.file_name, "width": IMAGE_SIZE, "height": IMAGE_SIZE,
               "scene_type": s.scene_type} for s in scenes]
    anns, caps = [], []
    for s in scenes:
        for o in s.objects:
            x, y, w, h = o.bbox
            anns.append({"id": len(anns) + 1, "image_id": s.image_id, "category_id": BY_NAME[o.category].id,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                         "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
        for c in s.captions:
            caps.append({"id": len(caps) + 1, "image_id": s.image_id, "caption": c})
    cats = [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in sorted(CATEGORIES, key=lambda c: c.id)]
    instances = {"info": info, "licenses": [], "images": images, "annotations": anns, "categories": cats}
    captions = {"info": info, "licenses": [], "images": images, "annotations": caps}
    return instances, captions


def write_split(root: str | Path, split: str, n: int, seed: int = 0, progress: bool = False) -> Path:
    """Draw `n` scenes of `split` into ``root/images/<split>/`` and write its COCO annotations.

    Also writes ``annotations/questions_<split>.jsonl`` (yes/no questions with answers). Files are
    written to a temporary name and renamed, so an interrupted write never leaves a half file.
    """
    root = Path(root)
    img_dir = root / "images" / split
    ann_dir = root / "annotations"
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    scenes = []
    it: Any = range(n)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"drawing {split} scenes", unit="scene")
    for i in it:
        s = make_scene(seed, split, i)
        path = img_dir / s.file_name
        tmp = path.with_suffix(".tmp.png")
        s.image.save(tmp, format="PNG")
        os.replace(tmp, path)
        scenes.append(s)
    instances, captions = coco_dicts(scenes, split)
    _write_json(ann_dir / f"instances_{split}.json", instances)
    _write_json(ann_dir / f"captions_{split}.json", captions)
    lines = [json.dumps({"image_id": s.image_id, "image": s.file_name, "question": q, "answer": a})
             for s in scenes for q, a in s.questions]
    _write_text(ann_dir / f"questions_{split}.jsonl", "\n".join(lines) + "\n")
    return root


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, sort_keys=True, separators=(",", ":")))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- cache ----

HELDOUT_SEED = 0
HELDOUT_SIZE = 500


def cache_root() -> Path:
    """Where generated scenes live: ``$AFIP_PROBE_CACHE`` or ``~/.cache/afip-probe``."""
    base = os.environ.get("AFIP_PROBE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "afip-probe")
    return Path(base) / "organism-scenes"


def _fingerprint(split: str, n: int, seed: int) -> str:
    src = Path(__file__).read_bytes()  # the generator itself: any change to it regenerates the cache
    return hashlib.sha256(src + f"{split}:{n}:{seed}".encode()).hexdigest()[:16]


def ensure_split(split: str = "val", n: int = HELDOUT_SIZE, seed: int = HELDOUT_SEED,
                 root: str | Path | None = None, progress: bool = True) -> Path:
    """The scenes of `split` in the cache (drawn on first use); returns the dataset root.

    Example:
        >>> from afip_probe.organism.scenes import ensure_split
        >>> root = ensure_split("val", n=500)           # doctest: +SKIP
        >>> sorted(p.name for p in (root / "annotations").iterdir())   # doctest: +SKIP
        ['captions_val.json', 'instances_val.json', 'questions_val.jsonl']
    """
    root = Path(root) if root is not None else cache_root() / f"seed{seed}-{split}{n}"
    stamp = root / f".complete-{split}"
    fp = _fingerprint(split, n, seed)
    if stamp.exists() and stamp.read_text() == fp:
        return root
    write_split(root, split, n, seed=seed, progress=progress)
    stamp.write_text(fp)
    return root


def heldout_dirs(progress: bool = True) -> tuple[Path, Path]:
    """(image folder, annotation folder) of the held-out scenes, drawn into the cache on first use."""
    root = ensure_split("val", progress=progress)
    return root / "images" / "val", root / "annotations"


def image_paths(root: str | Path, split: str) -> list[Path]:
    return sorted((Path(root) / "images" / split).glob("*.png"))
