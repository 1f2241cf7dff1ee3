"""Image inputs: folders, files, path lists and manifests to samples, and images opened with clear errors.

A sample is one prompt with its image(s). Folders are searched recursively: an image in a subfolder gets
the sample id ``sub/name`` (its path under the folder, without the extension). A JSONL manifest
(``.jsonl``) lists prompts of several images, one per line:
``{"images": ["a.jpg", "b.jpg"], "prompt": "What differs?"}`` (paths relative to the manifest; ``prompt``
and ``id`` optional: the default prompt, and the image names joined by ``+``).

Example:
    >>> coco_image_id("COCO_val2014_000000499775")
    499775
    >>> coco_image_id("my_photo") is None
    True
    >>> item = ImageItem("a+b", Path("a.png"), None, paths=(Path("a.png"), Path("b.png")), prompt="compare")
    >>> [p.name for p in item.all_paths], item.image_ids
    (['a.png', 'b.png'], [-1, -1])
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, UnidentifiedImageError

from .errors import AfipError, option

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ImageItem:
    """One sample to run: its id (the file's path under the folder given, without extension, made unique),
    its (first) image's path and COCO image id if any; `paths`, all its images when it has several (a
    manifest line), and `prompt`, its own prompt (None: the run's prompt)."""

    sample_id: str
    path: Path
    image_id: int | None
    paths: tuple[Path, ...] = ()
    prompt: str | None = None

    @property
    def all_paths(self) -> list[Path]:
        """Every image of the sample, in prompt order."""
        return list(self.paths) if self.paths else [self.path]

    @property
    def image_ids(self) -> list[int]:
        """The COCO image id of each image (-1 where the name has none)."""
        return [-1 if (i := coco_image_id(p.stem)) is None else i for p in self.all_paths]

    def renamed(self, sample_id: str) -> "ImageItem":
        return ImageItem(sample_id, self.path, self.image_id, self.paths, self.prompt)


def coco_image_id(stem: str) -> int | None:
    """The image id in a file stem's trailing digits (COCO names end in it), else None."""
    match = re.search(r"(\d+)$", stem)
    return int(match.group(1)) if match else None


def _folder_images(folder: Path) -> list[tuple[str, Path]]:
    """(id, path) of the image files under `folder`, subfolders included (hidden ones skipped), sorted by path;
    the id is the path under the folder without extension (``sub/name``)."""
    found = []
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not any(part.startswith(".") for part in rel.parts):
            found.append((rel.with_suffix("").as_posix(), f))
    return found


def _manifest(path: Path) -> list[tuple[str, Path, tuple[Path, ...], str | None]]:
    """(id, first image, images, prompt) per line of a JSONL manifest."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise AfipError(f"{option('images')} {path}, line {number}: not JSON ({e.msg}); write one "
                            '{"images": [...], "prompt": "..."} per line') from e
        images = entry.get("images") if isinstance(entry, dict) else None
        if not isinstance(images, list) or not images or not all(isinstance(i, str) for i in images):
            raise AfipError(f'--images {path}, line {number}: needs "images", a list of image paths')
        prompt = entry.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise AfipError(f'--images {path}, line {number}: "prompt" must be text')
        paths = tuple(Path(i) if Path(i).is_absolute() else path.parent / i for i in images)
        sid = str(entry.get("id") or "+".join(Path(i).with_suffix("").as_posix() for i in images))
        out.append((sid, paths[0], paths, prompt))
    return out


def collect_images(specs: Sequence[str | Path]) -> list[ImageItem]:
    """Samples from folders (their image files, subfolders included, sorted), image files, .txt lists of
    paths and .jsonl manifests (prompts of several images, see the module doc).

    Paths named directly must exist; paths inside a list file or manifest that are missing become failed
    samples. Sample ids are unique (a repeated id gets ``_2``, ``_3``, ...).
    """
    entries: list[tuple[str, Path, tuple[Path, ...], str | None]] = []
    for spec in specs:
        p = Path(spec)
        if not p.exists():
            raise AfipError(f"{option('images')} {spec}: no such file or folder")
        if p.is_dir():
            found = _folder_images(p)
            if not found:
                raise AfipError(f"{option('images')} {spec}: the folder and its subfolders hold no image files "
                                f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
            entries.extend((sid, f, (), None) for sid, f in found)
        elif p.suffix.lower() not in IMAGE_EXTENSIONS | {".txt", ".jsonl"}:
            raise AfipError(f"{option('images')} {spec}: not an image file, a .txt list of paths nor a .jsonl manifest "
                            f"(image types: {', '.join(sorted(IMAGE_EXTENSIONS))})")
        elif p.suffix.lower() == ".txt":
            lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            for ln in lines:
                f = (p.parent / ln) if not Path(ln).is_absolute() else Path(ln)
                entries.append((f.stem, f, (), None))
        elif p.suffix.lower() == ".jsonl":
            entries.extend(_manifest(p))
        else:
            entries.append((p.stem, p, (), None))
    if not entries:
        raise AfipError(f"no images given: pass {option('images')} with a folder, image files, a .txt list of paths or a "
                        ".jsonl manifest")
    items, seen = [], {}
    for sid, path, paths, prompt in entries:
        count = seen.get(sid, 0) + 1
        seen[sid] = count
        unique = sid if count == 1 else f"{sid}_{count}"
        items.append(ImageItem(sample_id=unique, path=path, image_id=coco_image_id(path.stem),
                               paths=paths if len(paths) > 1 else (), prompt=prompt))
    return items


def load_image(path: Path) -> Any:
    """Open an image as RGB, raising AfipError with the cause for missing or corrupt files."""
    if not path.exists():
        raise AfipError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise AfipError(f"cannot read image {path}: {e}") from e
