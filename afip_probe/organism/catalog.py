"""The organism's world: the 31 COCO categories it draws, the four scene types with their priors and
companion rules, and the sampling of what one scene holds and where (docs/design.md §9).

Everything is a pure function of a random generator seeded by ``(seed, split, index)``.

Example:
    >>> rng = scene_rng(0, "val", 3)
    >>> stype, counts = sample_contents(rng)
    >>> stype.name in {t.name for t in SCENE_TYPES}, all(c in BY_NAME for c in counts)
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..records import DEFAULT_PROMPT

PROMPT = DEFAULT_PROMPT  # the prompt the organism was trained with
IMAGE_SIZE = 64
MAX_OBJECTS = 8
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


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS[split], index])


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
