"""Where a sample's image tokens are, and which box of the original image their patch grid covers.

`ImageLayout` is what the models layer finds for each sample; `processor_region` computes the grid's
box from an image processor's config with the processor's own integer arithmetic (LLaVA-1.5's CLIP
processor resizes the shortest edge and centre-crops, `LlavaImageProcessor(do_pad=True)` pads to a
centred square first, Qwen2-VL resizes the whole image). Image tokens are row-major on the grid.

A prompt may hold several images: `ImageLayout.image_grids` then gives each image's grid, in prompt
order, and each image's slots follow the previous image's (`image_slots`, `image_of_slots`).

Example:
    >>> ImageLayout(positions=[5, 6, 7, 8], grid=(2, 2)).spans
    [(5, 9)]
    >>> two = ImageLayout(positions=[2, 3, 4, 8, 9], grid=(1, 5), image_grids=((1, 3), (1, 2)))
    >>> two.num_images, two.image_slots, two.image(1).positions
    (2, [(0, 3), (3, 5)], [8, 9])
    >>> grid_region("llava", 640, 480)
    (80.0, 0.0, 560.0, 480.0)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class ImageLayout:
    """Where one sample's image tokens are and how they map onto its image(s).

    `positions` are indices into the sample's own (unpadded) prompt; `grid` is (rows, cols) of the
    patch grid the image tokens form, row-major, so `positions[r * cols + c]` is patch (r, c). A prompt
    with several images lists each image's grid in `image_grids` (prompt order; one row of its tokens for
    tiled families, whose geometry is in their tiles) and has `grid` (1, n), all its image tokens in one
    row; `image_grids` is empty for one image (its grid is `grid`).
    """

    positions: list[int]
    grid: tuple[int, int]
    image_grids: tuple[tuple[int, int], ...] = ()
    #: per image, the patch grids of its tiles in token order when the model's inputs state them (LFM2-VL's
    #: `spatial_shapes`); empty when they do not
    tile_grids: tuple[tuple[tuple[int, int], ...], ...] = ()

    def __post_init__(self) -> None:
        if self.image_grids and sum(r * c for r, c in self.image_grids) != len(self.positions):
            raise ValueError(f"the image grids {list(self.image_grids)} do not cover {len(self.positions)} positions")

    @property
    def num_images(self) -> int:
        return max(len(self.image_grids), 1)

    @property
    def grids_of_images(self) -> list[tuple[int, int]]:
        """The patch grid of each image, in prompt order."""
        return list(self.image_grids) if self.image_grids else [self.grid]

    @property
    def image_slots(self) -> list[tuple[int, int]]:
        """[start, stop) slots (indices into `positions`, and into a trace's maps) of each image."""
        out, start = [], 0
        for rows, cols in self.grids_of_images:
            out.append((start, start + rows * cols))
            start += rows * cols
        return out

    def image_of_slots(self) -> list[int]:
        """The image number (0 for the first) of every slot."""
        return [i for i, (start, stop) in enumerate(self.image_slots) for _ in range(start, stop)]

    def image(self, i: int) -> "ImageLayout":
        """The layout of image `i` alone (its positions and grid)."""
        start, stop = self.image_slots[i]
        return ImageLayout(positions=self.positions[start:stop], grid=self.grids_of_images[i],
                           tile_grids=self.tile_grids[i: i + 1])

    @property
    def spans(self) -> list[tuple[int, int]]:
        """Contiguous [start, end) runs of image positions."""
        runs: list[tuple[int, int]] = []
        for p in self.positions:
            if runs and runs[-1][1] == p:
                runs[-1] = (runs[-1][0], p + 1)
            else:
                runs.append((p, p + 1))
        return runs


Region = tuple[float, float, float, float]

#: what a tile is: the image at one resolution (the whole map); one crop of a tiled image (the crops of an
#: image, placed by their boxes, make its map); an overview, a low-resolution view of the whole image that
#: tiled families add beside the crops (LLaVA-NeXT's base image, Idefics3's global image, InternVL's thumbnail)
TILE_KINDS = ("image", "crop", "overview")


@dataclass(frozen=True)
class Tile:
    """One patch grid of an image, placed over the original image.

    `cells` are the image-token slots (indices into `ImageLayout.positions`, and into a trace's maps)
    of the grid's cells, row-major; `box` is (x0, y0, x1, y1), the part of the original image the grid
    covers, in original pixels; `image` numbers the prompt's images (0 for the first).

    >>> t = Tile("crop", (1, 2), (4, 5), (0.0, 0.0, 64.0, 32.0))
    >>> Tile.from_dict(t.to_dict()) == t
    True
    """

    kind: str
    grid: tuple[int, int]
    cells: tuple[int, ...]
    box: tuple[float, float, float, float]
    image: int = 0

    def __post_init__(self) -> None:
        if self.kind not in TILE_KINDS:
            raise ValueError(f"tile kind {self.kind!r} is not one of {TILE_KINDS}")
        if len(self.cells) != self.grid[0] * self.grid[1]:
            raise ValueError(f"{len(self.cells)} cells do not fill a {self.grid[0]}x{self.grid[1]} grid")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "grid": list(self.grid), "cells": list(self.cells), "box": list(self.box),
                "image": self.image}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "Tile":
        return Tile(kind=str(d["kind"]), grid=(int(d["grid"][0]), int(d["grid"][1])),
                    cells=tuple(int(c) for c in d["cells"]), box=tuple(float(v) for v in d["box"]),  # type: ignore[arg-type]
                    image=int(d.get("image", 0)))


def on_image(tiles: Sequence[Tile], image: int, first_slot: int) -> list[Tile]:
    """Tiles of one image of a prompt (cells numbered within that image) as tiles of the whole prompt: cells
    shifted by the image's `first_slot`, `image` set.

    >>> on_image([Tile("image", (1, 2), (0, 1), (0.0, 0.0, 8.0, 4.0))], 1, 6)[0].cells
    (6, 7)
    """
    return [Tile(t.kind, t.grid, tuple(c + first_slot for c in t.cells), t.box, image) for t in tiles]


def tiles_json(tiles: Sequence[Tile]) -> str:
    """The samples table's ``tiles`` column: a JSON list of tiles ("" for none)."""
    return json.dumps([t.to_dict() for t in tiles], separators=(",", ":")) if tiles else ""


def read_tiles(value: Any) -> list[Tile]:
    """Tiles from the samples table's ``tiles`` column (empty for stores written before tiles existed)."""
    if not isinstance(value, str) or not value:
        return []
    return [Tile.from_dict(d) for d in json.loads(value)]


def single_tile(n: int, grid: tuple[int, int], box: Region) -> list[Tile]:
    """One grid over one box: the layout of families that show the image once (LLaVA-1.5, Qwen-VL, ...)."""
    return [Tile("image", grid, tuple(range(n)), box)]


def split_boxes(rows: int, cols: int, width: int, height: int) -> list[Region]:
    """The boxes of a `rows` x `cols` split of a `width` x `height` image, row-major (equal parts: the
    processor resizes the image to a multiple of the tile size, then cuts it)."""
    return [(c * width / cols, r * height / rows, (c + 1) * width / cols, (r + 1) * height / rows)
            for r in range(rows) for c in range(cols)]


SQUARE_CROP = {"llava"}  # families whose processor centre-crops a square (fallback when no region was stored)


def grid_region(family: str, width: int, height: int) -> Region:
    """(x0, y0, x1, y1) in original pixels covered by the grid, from the family's usual processor."""
    if family in SQUARE_CROP:
        m = min(width, height)
        x0, y0 = (width - m) / 2, (height - m) / 2
        return float(x0), float(y0), float(x0 + m), float(y0 + m)
    return 0.0, 0.0, float(width), float(height)


def processor_region(config: Mapping[str, Any], width: int, height: int) -> Region:
    """(x0, y0, x1, y1) in original pixels covered by the grid, from an image processor's config dict.

    Follows transformers' arithmetic: centred pad to a square (``do_pad``, pad = (max − side) // 2),
    shortest-edge resize (long side ``int(S · long / short)``), centre crop (offset (side − crop) // 2).
    Processors without a crop (Qwen2-VL's smart resize, fixed height/width resizes) cover the whole image.

    >>> processor_region({"size": {"shortest_edge": 336}, "do_center_crop": True,
    ...                   "crop_size": {"height": 336, "width": 336}}, 640, 480)
    (80.0, 0.0, 560.0, 480.0)
    >>> processor_region({"do_pad": True, "size": {"shortest_edge": 336}}, 640, 480)
    (0.0, -80.0, 640.0, 560.0)
    """
    x0, y0, w, h = 0.0, 0.0, int(width), int(height)
    if config.get("do_pad") and "min_pixels" not in config:
        m = max(w, h)
        x0, y0 = float(-((m - w) // 2)), float(-((m - h) // 2))
        w = h = m
    size = config.get("size") or {}
    if config.get("do_resize", True) and size.get("shortest_edge") and "min_pixels" not in config \
            and not size.get("longest_edge"):
        s = int(size["shortest_edge"])
        if w <= h:
            new_w, new_h = s, int(s * h / w)
        else:
            new_w, new_h = int(s * w / h), s
    elif config.get("do_resize", True) and size.get("height") and size.get("width"):
        new_w, new_h = int(size["width"]), int(size["height"])
    else:
        new_w, new_h = w, h
    crop = config.get("crop_size") or {}
    if config.get("do_center_crop") and crop.get("height") and crop.get("width"):
        ch, cw = int(crop["height"]), int(crop["width"])
        top, left = (new_h - ch) // 2, (new_w - cw) // 2
        sx, sy = w / new_w, h / new_h
        return (float(x0 + left * sx), float(y0 + top * sy), float(x0 + (left + cw) * sx), float(y0 + (top + ch) * sy))
    return float(x0), float(y0), float(x0 + w), float(y0 + h)
