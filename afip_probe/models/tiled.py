"""Families that cut an image into crops and add a low-resolution view of the whole image.

- Idefics3 / SmolVLM: the image resized to a multiple of the tile size and cut into rows x cols equal
  crops, each `image_seq_len` tokens after a ``<row_r_col_c>`` text token, then the global image after
  ``<global-img>`` (an image that fits one tile has the global image only). The crop of each run of
  image tokens is read from the text token before it.
- InternVL and Aya Vision (GOT-OCR2 image processor): the image resized to the tile arrangement whose
  aspect ratio is closest to its own (`get_optimal_tiled_canvas`, between `min_patches` and
  `max_patches` tiles), cut into rows x cols equal crops, then a thumbnail of the whole image when there
  is more than one crop; each tile is the same number of consecutive image tokens.
- Gemma 3 with pan-and-scan (saved in the processor or asked for at call time): the whole image first, then
  2 or more crops along its long side (`Gemma3ImageProcessor.pan_and_scan`), each `mm_tokens_per_image`
  tokens (a square) between <start_of_image> and <end_of_image>. The prompt says which blocks are crops of
  which image (the processor writes "Here is the original image ... and here are some crops ..." around
  them); the crop count fixes the crops' boxes (equal parts of the long side, rounded up).

In a prompt with several images, each image's tokens are told apart by the text the processor writes
around them (Idefics3: an image ends with its global image; InternVL's ``<img>``, Aya Vision's
``<|START_OF_IMG|>``); the tiles of each image are then placed on that image.

Crops are *crop* tiles placed on their boxes of the original image; the whole-image view is an
*overview* tile (or the *image* tile when there are no crops).

Example:
    >>> crop_tiles(12, [(0.0, 0.0, 32.0, 48.0), (32.0, 0.0, 64.0, 48.0)], overview_last=True, width=64, height=48)[2]
    Tile(kind='overview', grid=(2, 2), cells=(8, 9, 10, 11), box=(0.0, 0.0, 64.0, 48.0), image=0)
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

from ..records.layout import ImageLayout, Region, Tile, split_boxes
from .base import TiledAdapter, marker_counts, runs_of, token_id


def _square(n: int) -> tuple[int, int] | None:
    side = int(round(math.sqrt(n)))
    return (side, side) if side * side == n else None


def crop_tiles(n: int, crops: Sequence[Region], *, overview_last: bool, width: int, height: int) -> list[Tile]:
    """`n` image tokens as consecutive equal square tiles: the crops (in `crops` order) and, when there is
    more than one crop, an overview of the whole image after them (`overview_last`) or before them."""
    whole = (0.0, 0.0, float(width), float(height))
    if len(crops) <= 1:
        grid = _square(n)
        return [] if grid is None else [Tile("image", grid, tuple(range(n)), whole)]
    count = len(crops) + 1
    per = n // count
    grid = _square(per)
    if grid is None or per * count != n:
        return []
    chunks = [tuple(range(i * per, (i + 1) * per)) for i in range(count)]
    overview, crop_chunks = (chunks[-1], chunks[:-1]) if overview_last else (chunks[0], chunks[1:])
    tiles = [Tile("crop", grid, cells, box) for cells, box in zip(crop_chunks, crops)]
    return tiles + [Tile("overview", grid, overview, whole)] if overview_last else \
        [Tile("overview", grid, overview, whole)] + tiles


class Idefics3Adapter(TiledAdapter):
    family = "idefics3"
    ROW_COL = re.compile(r"<row_(\d+)_col_(\d+)>")

    def image_token_counts(self, inputs: dict[str, Any]) -> list[list[int]]:
        """An image's tokens end with its global image's run (the run after ``<global-img>``)."""
        glob = token_id(self.processor, "global_image_tag", "<global-img>")
        out = []
        for row in inputs["input_ids"]:
            counts, current = [], 0
            for start, stop in runs_of(row == self.image_token_id):
                current += stop - start
                if glob is None or glob in row[max(start - 3, 0): start].tolist():
                    counts.append(current)
                    current = 0
            out.append(counts + ([current] if current else []))
        return out

    def tiles(self, layout: ImageLayout, prompt_ids: Sequence[int], width: int, height: int) -> list[Tile]:
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None:
            return self.guessed_tiles(layout, width, height, "no tokenizer to read the crop tokens with")
        ids = list(prompt_ids)
        runs, slot = [], 0
        for start, stop in layout.spans:  # each run of image tokens is one tile; the text before it says which
            before = tokenizer.convert_ids_to_tokens(ids[max(start - 3, 0): start])
            where = next((self.ROW_COL.fullmatch(t) for t in reversed(before) if self.ROW_COL.fullmatch(t)), None)
            runs.append((None if where is None else (int(where[1]) - 1, int(where[2]) - 1),
                         tuple(range(slot, slot + stop - start))))
            slot += stop - start
        crops = [(rc, cells) for rc, cells in runs if rc is not None]
        rows = 1 + max((rc[0] for rc, _ in crops), default=-1)
        cols = 1 + max((rc[1] for rc, _ in crops), default=-1)
        boxes = split_boxes(rows, cols, width, height) if crops else []
        whole = (0.0, 0.0, float(width), float(height))
        tiles = []
        for rc, cells in runs:
            grid = _square(len(cells))
            if grid is None:
                return self.guessed_tiles(layout, width, height, f"a run of {len(cells)} image tokens is not a square")
            if rc is None:
                tiles.append(Tile("overview" if crops else "image", grid, cells, whole))
            else:
                tiles.append(Tile("crop", grid, cells, boxes[rc[0] * cols + rc[1]]))
        return tiles


class SmolVLMAdapter(Idefics3Adapter):
    family = "smolvlm"


class GotOcr2CropsAdapter(TiledAdapter):
    """InternVL and Aya Vision: GOT-OCR2 crops, then a thumbnail."""

    family = "internvl"

    def image_token_counts(self, inputs: dict[str, Any]) -> list[list[int]]:
        """Each image starts with InternVL's ``<img>`` (Aya Vision's ``<|START_OF_IMG|>``)."""
        marker = token_id(self.processor, "start_image_token", "start_of_img_token", "<img>", "<|START_OF_IMG|>")
        return marker_counts(inputs, self.image_token_id, marker)

    def crop_grid(self, width: int, height: int) -> tuple[int, int]:
        """(rows, cols) of the crops, from the image processor's settings and its own tiling function."""
        try:
            from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas
        except ImportError:  # older layouts of the module
            from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas
        ip = getattr(self.processor, "image_processor", None)
        config = ip.to_dict() if ip is not None else {}
        if not config.get("crop_to_patches", False):
            return 1, 1
        size = config.get("size") or {}
        cols, rows = get_optimal_tiled_canvas((height, width), (int(size.get("height", 448)), int(size.get("width", 448))),
                                              int(config.get("min_patches", 1)), int(config.get("max_patches", 12)))
        return rows, cols

    def tiles(self, layout: ImageLayout, prompt_ids: Sequence[int], width: int, height: int) -> list[Tile]:
        rows, cols = self.crop_grid(width, height)
        n = len(layout.positions)
        tiles = crop_tiles(n, split_boxes(rows, cols, width, height), overview_last=True, width=width, height=height)
        return tiles or self.guessed_tiles(layout, width, height, f"{n} image tokens do not split into {rows}x{cols} "
                                           "crops and a thumbnail")


class AyaVisionAdapter(GotOcr2CropsAdapter):
    family = "aya_vision"


def pan_and_scan_boxes(width: int, height: int, crops: int) -> list[Region]:
    """The boxes of `crops` pan-and-scan crops of a `width` x `height` image (`Gemma3ImageProcessor.pan_and_scan`:
    along the long side, a landscape or square image across, a portrait one down; each ceil(side / crops)
    pixels, the last cut at the edge).

    >>> pan_and_scan_boxes(1000, 200, 2)
    [(0.0, 0.0, 500.0, 200.0), (500.0, 0.0, 1000.0, 200.0)]
    """
    if crops < 2:
        return []
    across, down = (crops, 1) if width >= height else (1, crops)
    cw, ch = int(math.ceil(width / across)), int(math.ceil(height / down))
    return [(float(x), float(y), float(min(x + cw, width)), float(min(y + ch, height)))
            for y in range(0, ch * down, ch) for x in range(0, cw * across, cw)]


class Gemma3Adapter(TiledAdapter):
    """Gemma 3: one square of `mm_tokens_per_image` soft tokens per image, or with pan-and-scan the image and
    its crops, each such a square."""

    family = "gemma3"
    CROPS = "here are some crops"  # the processor's words before an image's crops
    ORIGINAL = "here is the original image"  # ... and before the image itself

    def _text(self, ids: Sequence[int]) -> str:
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None:
            return ""
        return str(tokenizer.decode(list(ids), skip_special_tokens=True)).replace("\u2581", " ").lower()

    def image_token_counts(self, inputs: dict[str, Any]) -> list[list[int]]:
        """Each block of image tokens is an image, unless the prompt's text makes it a crop of the image
        before: the processor's "... and here are some crops ..." before the first crop, and the blank
        ``" "`` joining it to the next ones."""
        out = []
        for row in inputs["input_ids"]:
            ids = row.tolist()
            counts: list[int] = []
            in_crops, stop_before = False, 0
            for start, stop in runs_of(row == self.image_token_id):
                between = self._text(ids[stop_before:start])
                joiner = in_crops and not between.strip() and " " in between and self.ORIGINAL not in between
                if counts and (self.CROPS in between or joiner):
                    counts[-1] += stop - start
                    in_crops = True
                else:
                    counts.append(stop - start)
                    in_crops = False
                stop_before = stop
            out.append(counts)
        return out

    def tiles(self, layout: ImageLayout, prompt_ids: Sequence[int], width: int, height: int) -> list[Tile]:
        n = len(layout.positions)
        per = int(self.model.config.mm_tokens_per_image)
        crops = n // per - 1 if n % per == 0 else -1
        tiles = crop_tiles(n, pan_and_scan_boxes(width, height, crops), overview_last=False, width=width,
                           height=height) if crops == 0 or crops >= 2 else []
        return tiles or self.guessed_tiles(layout, width, height, f"{n} image tokens are not the image and its "
                                           f"pan-and-scan crops of {per} tokens each")
