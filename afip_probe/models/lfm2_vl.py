"""LFM2-VL (`Lfm2VlForConditionalGeneration`): one resized image, or tiles and a thumbnail.

`Lfm2VlImageProcessor` resizes a small image whole (its `smart_resize`: multiples of patch x downsample,
aspect kept) into one tile; an image too large for that is resized to a grid of `tile_size` tiles (the
arrangement whose aspect ratio is closest to the image's, `min_tiles` to `max_tiles` tiles), cut into
them, and followed by a thumbnail of the whole image (`use_thumbnail`). Every tile's patch grid is in the
model's inputs (`spatial_shapes`, patches); the model merges `downsample_factor` x `downsample_factor`
patches into one token, row-major. `Lfm2VlProcessor` writes each image between ``<|image_start|>`` and
``<|image_end|>``, each tile after ``<|img_row_R_col_C|>`` and the thumbnail after ``<|img_thumbnail|>``.

Example:
    >>> lfm2_grid_layout(1000, 200, min_tiles=2, max_tiles=10, tile_size=512)
    (1, 5)
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from ..records.layout import ImageLayout, Tile, split_boxes
from .base import TiledAdapter, marker_counts, token_id

ROW_COL = re.compile(r"<\|img_row_(\d+)_col_(\d+)\|>")


def lfm2_grid_layout(width: int, height: int, min_tiles: int, max_tiles: int, tile_size: int) -> tuple[int, int]:
    """(rows, cols) of the tiles of a large image (`Lfm2VlImageProcessor._get_grid_layout` and
    `find_closest_aspect_ratio`)."""
    ratios = sorted({(w, h) for n in range(min_tiles, max_tiles + 1) for w in range(1, n + 1)
                     for h in range(1, n + 1) if min_tiles <= w * h <= max_tiles}, key=lambda r: r[0] * r[1])
    aspect, best_diff, best = width / height, float("inf"), (1, 1)
    for w, h in ratios:
        diff = abs(aspect - w / h)
        if diff < best_diff:
            best_diff, best = diff, (w, h)
        elif diff == best_diff and width * height > 0.5 * tile_size * tile_size * w * h:
            best = (w, h)
    return best[1], best[0]


class Lfm2VlAdapter(TiledAdapter):
    family = "lfm2_vl"

    def image_token_counts(self, inputs: dict[str, Any]) -> list[list[int]]:
        """Each image starts with ``<|image_start|>`` (without those tokens: each run of image tokens)."""
        marker = token_id(self.processor, "image_start_token", "<|image_start|>")
        return marker_counts(inputs, self.image_token_id, marker)

    def tile_grids(self, inputs: dict[str, Any]) -> list[list[tuple[tuple[int, int], ...]]] | None:
        """Each tile's token grid from `spatial_shapes` (patches, merged `downsample_factor` at a time), the
        tiles given to the images in order."""
        shapes = inputs.get("spatial_shapes")
        if shapes is None:
            return None
        factor = int(self.model.config.downsample_factor)
        grids = [(int(h) // factor, int(w) // factor) for h, w in shapes.tolist()]
        counts = self.image_token_counts(inputs)
        out, k = [], 0
        for per_image in counts:
            mine = []
            for n in per_image:
                tiles: list[tuple[int, int]] = []
                while n > 0 and k < len(grids):
                    tiles.append(grids[k])
                    n -= grids[k][0] * grids[k][1]
                    k += 1
                if n != 0:
                    return None  # not the processor's tiles: `tiles` says so
                mine.append(tuple(tiles))
            out.append(mine)
        return out

    def _setting(self, name: str, default: int) -> int:
        return int(getattr(getattr(self.processor, "image_processor", None), name, None) or default)

    def arrangement(self, layout: ImageLayout, prompt_ids: Sequence[int], width: int, height: int,
                    tiles: int) -> tuple[int, int]:
        """(rows, cols) of the image's crops: from its ``<|img_row_R_col_C|>`` tokens, else from the
        processor's arithmetic (`lfm2_grid_layout`)."""
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None and prompt_ids:
            first, last = layout.positions[0], layout.positions[-1]
            found = [ROW_COL.fullmatch(t) for t in tokenizer.convert_ids_to_tokens(list(prompt_ids[first:last + 1]))]
            marks = [(int(m[1]), int(m[2])) for m in found if m]
            if marks:
                return max(r for r, _ in marks), max(c for _, c in marks)
        if tiles == 1:
            return 1, 1
        return lfm2_grid_layout(width, height, self._setting("min_tiles", 2), self._setting("max_tiles", 10),
                                self._setting("tile_size", 512))

    def tiles(self, layout: ImageLayout, prompt_ids: Sequence[int], width: int, height: int) -> list[Tile]:
        n = len(layout.positions)
        grids = list(layout.tile_grids[0]) if layout.tile_grids else []
        if not grids or sum(r * c for r, c in grids) != n:
            return self.guessed_tiles(layout, width, height, "the inputs carry no spatial_shapes for this image's "
                                      f"{n} tokens (build them with the model's processor)")
        rows, cols = self.arrangement(layout, prompt_ids, width, height, len(grids))
        whole = (0.0, 0.0, float(width), float(height))
        if len(grids) == 1:
            return [Tile("image", grids[0], tuple(range(n)), whole)]
        if len(grids) not in (rows * cols, rows * cols + 1):
            return self.guessed_tiles(layout, width, height, f"{len(grids)} tiles are not {rows}x{cols} crops "
                                      "and a thumbnail")
        out, start = [], 0
        boxes = split_boxes(rows, cols, width, height)
        for k, grid in enumerate(grids):
            cells = tuple(range(start, start + grid[0] * grid[1]))
            start += len(cells)
            out.append(Tile("crop", grid, cells, boxes[k]) if k < rows * cols else Tile("overview", grid, cells, whole))
        return out

