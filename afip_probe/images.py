"""Image inputs: folders, files and path lists to sample ids, and images opened with clear errors.

Example:
    >>> coco_image_id("COCO_val2014_000000499775")
    499775
    >>> coco_image_id("my_photo") is None
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, UnidentifiedImageError

from .errors import AfipError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ImageItem:
    """One image to run: its sample id (the file stem, made unique), path and COCO image id if any."""

    sample_id: str
    path: Path
    image_id: int | None


def coco_image_id(stem: str) -> int | None:
    """The image id in a file stem's trailing digits (COCO names end in it), else None."""
    match = re.search(r"(\d+)$", stem)
    return int(match.group(1)) if match else None


def collect_images(specs: Sequence[str | Path]) -> list[ImageItem]:
    """Images from folders (their image files, sorted), image files, and .txt lists of paths.

    Paths named directly must exist; paths inside a list file that are missing become failed samples.
    """
    paths: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if not p.exists():
            raise AfipError(f"--images {spec}: no such file or folder")
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise AfipError(f"--images {spec}: the folder holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            paths.extend(found)
        elif p.suffix.lower() not in IMAGE_EXTENSIONS | {".txt"}:
            raise AfipError(f"--images {spec}: not an image file nor a .txt list of paths "
                            f"(image types: {', '.join(sorted(IMAGE_EXTENSIONS))})")
        elif p.suffix.lower() == ".txt":
            lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            paths.extend((p.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines)
        else:
            paths.append(p)
    if not paths:
        raise AfipError("no images given: pass --images with a folder, image files or a .txt list of paths")
    items, seen = [], {}
    for path in paths:
        stem = path.stem
        count = seen.get(stem, 0) + 1
        seen[stem] = count
        sid = stem if count == 1 else f"{stem}_{count}"
        items.append(ImageItem(sample_id=sid, path=path, image_id=coco_image_id(stem)))
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
