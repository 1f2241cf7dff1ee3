"""Families that cut an image into crops and add a low-resolution view of the whole image.

- Idefics3 / SmolVLM: the image resized to a multiple of the tile size and cut into rows x cols equal
  crops, each `image_seq_len` tokens after a ``<row_r_col_c>`` text token, then the global image after
  ``<global-img>`` (an image that fits one tile has the global image only). The crop of each run of
  image tokens is read from the text token before it.
- InternVL and Aya Vision (GOT-OCR2 image processor): the image resized to the tile arrangement whose
  aspect ratio is closest to its own (`get_optimal_tiled_canvas`, between `min_patches` and
  `max_patches` tiles), cut into rows x cols equal crops, then a thumbnail of the whole image when there
  is more than one crop; each tile is the same number of consecutive image tokens.
- Gemma 3 with pan-and-scan: the whole image first, then 2 or more crops along its long side
  (`Gemma3ImageProcessor.pan_and_scan`), each `mm_tokens_per_image` tokens (a square).

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
from .base import TiledAdapter


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


class Gemma3Adapter(TiledAdapter):
    """Gemma 3: one square of `mm_tokens_per_image` soft tokens, or with pan-and-scan the image and its crops."""

    family = "gemma3"

    def pan_and_scan_settings(self) -> dict[str, Any]:
        """The pan-and-scan settings the processor uses when a call does not override them: its own defaults
        (`Gemma3Processor.images_kwargs`), else the image processor's."""
        ip = getattr(self.processor, "image_processor", None)
        settings = {k: v for k, v in (ip.to_dict() if ip is not None else {}).items() if v is not None}
        settings.update({k: v for k, v in (getattr(self.processor, "images_kwargs", None) or {}).items()
                         if v is not None})
        return settings

    def pan_and_scan_boxes(self, width: int, height: int) -> list[Region]:
        """The crops' boxes, from `Gemma3ImageProcessor.pan_and_scan`'s arithmetic (applied whatever the
        `do_pan_and_scan` switch: `tiles` only asks when the token count shows crops)."""
        config = self.pan_and_scan_settings()
        min_crop = int(config.get("pan_and_scan_min_crop_size", 256))
        max_crops = int(config.get("pan_and_scan_max_num_crops", 4))
        ratio = float(config.get("pan_and_scan_min_ratio_to_activate", 1.2))
        if width >= height:
            if width / height < ratio:
                return []
            across, down = min(max_crops, max(2, min(int(math.floor(width / min_crop)),
                                                     int(math.floor(width / height + 0.5))))), 1
        else:
            if height / width < ratio:
                return []
            across, down = 1, min(max_crops, max(2, min(int(math.floor(height / min_crop)),
                                                        int(math.floor(height / width + 0.5)))))
        cw, ch = int(math.ceil(width / across)), int(math.ceil(height / down))
        if min(cw, ch) < min_crop:
            return []
        return [(float(x), float(y), float(min(x + cw, width)), float(min(y + ch, height)))
                for y in range(0, ch * down, ch) for x in range(0, cw * across, cw)]

    def tiles(self, layout: ImageLayout, prompt_ids: Sequence[int], width: int, height: int) -> list[Tile]:
        n = len(layout.positions)
        per = int(self.model.config.mm_tokens_per_image)
        boxes = self.pan_and_scan_boxes(width, height) if n > per else []
        expected = per * (1 + len(boxes)) if len(boxes) > 1 else per  # the image (and its crops), `per` each
        tiles = crop_tiles(n, boxes, overview_last=False, width=width, height=height) if n == expected else []
        return tiles or self.guessed_tiles(layout, width, height, f"{n} image tokens are not the image and its "
                                           f"{len(boxes)} pan-and-scan crops of {per} tokens")
