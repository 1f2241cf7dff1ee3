"""The organism's scenes as a COCO-format dataset: scenes assembled from the catalog, drawing and
captions modules, written as images + instances/captions annotations, and cached by fingerprint.

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
    >>> from afip_probe.organism.dataset import make_scene
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

from PIL import Image
from tqdm import tqdm  # text bars: tqdm.auto warns in a notebook without ipywidgets

from .captions import describe, questions_for
from .catalog import BY_NAME, CATEGORIES, ID_BASE, IMAGE_SIZE, SceneObject, place_objects, sample_contents, scene_rng
from .drawing import draw_scene

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


HELDOUT_SEED = 0
HELDOUT_SIZE = 500


def cache_root() -> Path:
    """Where generated scenes live: ``$AFIP_PROBE_CACHE`` or ``~/.cache/afip-probe``."""
    base = os.environ.get("AFIP_PROBE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "afip-probe")
    return Path(base) / "organism-scenes"


GENERATOR_MODULES = ("catalog", "drawing", "captions", "dataset")


def _fingerprint(split: str, n: int, seed: int) -> str:
    here = Path(__file__).resolve().parent  # the generator itself: any change to it regenerates the cache
    src = b"".join((here / f"{name}.py").read_bytes() for name in GENERATOR_MODULES)
    return hashlib.sha256(src + f"{split}:{n}:{seed}".encode()).hexdigest()[:16]


def ensure_split(split: str = "val", n: int = HELDOUT_SIZE, seed: int = HELDOUT_SEED,
                 root: str | Path | None = None, progress: bool = True) -> Path:
    """The scenes of `split` in the cache (drawn on first use); returns the dataset root.

    Example:
        >>> from afip_probe.organism.dataset import ensure_split
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
