"""Llama 4 (`Llama4ForConditionalGeneration`): tiles written into the prompt, then a global tile.

`Llama4Processor._prompt_split_image` writes an image as ``<|image_start|>``, then, when the image is cut
into more than one tile, its tiles row by row (each `per` ``<|patch|>`` tokens, ``<|tile_x_separator|>``
between the tiles of a row, ``<|tile_y_separator|>`` after each row), then ``<|image|>`` and the global tile,
then ``<|image_end|>``. The image processor (`Llama4ImageProcessor`) resizes the image without distortion
into the canvas of those tiles (rows x cols tiles of `size` px; upscaling limited to `size` unless
`resize_to_max_canvas`), pastes it top left (the rest is padding), cuts the canvas into the tiles, and
makes the global tile from the whole image resized to one tile. With one tile, the tile after
``<|image|>`` is that padded canvas. Each tile's tokens are a square, row-major (the vision model's pixel
shuffle keeps the row order).

Example:
    >>> llama4_resized(480, 640, 672, 672, 336)
    (480, 640)
    >>> llama4_resized(200, 1000, 336, 1008, 336)
    (200, 1000)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..records.layout import ImageLayout, Region, Tile
from .base import TiledAdapter, marker_counts, token_id
from .compat import patch_llama4_output


def llama4_resized(height: int, width: int, canvas_h: int, canvas_w: int, tile: int,
                   resize_to_max_canvas: bool = False) -> tuple[int, int]:
    """(height, width) the image processor resizes an image to inside a `canvas_h` x `canvas_w` canvas
    (`Llama4ImageProcessor._preprocess` and `get_max_res_without_distortion`)."""
    if resize_to_max_canvas:
        target_h, target_w = canvas_h, canvas_w
    else:  # upscaling limited to one tile
        target_h, target_w = min(max(height, tile), canvas_h), min(max(width, tile), canvas_w)
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        new_w, new_h = target_w, min(math.floor(height * scale_w), target_h)
    else:
        new_h, new_w = target_h, min(math.floor(width * scale_h), target_w)
    return max(new_h, 1), max(new_w, 1)


class Llama4Adapter(TiledAdapter):
    family = "llama4"

    def __init__(self, model: Any, processor: Any = None):
        patch_llama4_output()  # transformers 5.24's Llama 4 forward cannot run without it (see compat)
        super().__init__(model, processor)

    def image_token_counts(self, inputs: dict[str, Any]) -> list[list[int]]:
        """Each image starts with ``<|image_start|>``."""
        marker = token_id(self.processor, "start_of_img_token", "<|image_start|>")
        return marker_counts(inputs, self.image_token_id, marker)

    def _tile_size(self) -> int:
        ip = getattr(self.processor, "image_processor", None)
        size = getattr(ip, "size", None)
        height = size.get("height") if isinstance(size, dict) else getattr(size, "height", None)
        if height:
            return int(height)
        image_size = self.model.config.vision_config.image_size
        return int(image_size[0] if isinstance(image_size, (list, tuple)) else image_size)

    def arrangement(self, layout: ImageLayout, prompt_ids: Sequence[int]) -> tuple[int, int, list[int]]:
        """(rows, cols, token count of each tile in prompt order, the global tile last) read from the
        separators between the image's tokens."""
        x_sep = token_id(self.processor, "<|tile_x_separator|>")
        y_sep = token_id(self.processor, "<|tile_y_separator|>")
        ids = list(prompt_ids)
        first, last = layout.positions[0], layout.positions[-1]
        rows = cols = 0
        chunks, current, in_row = [], 0, 0
        for p in range(first, last + 1):
            tok = ids[p] if p < len(ids) else None
            if tok == self.image_token_id:
                current += 1
                continue
            if current:
                chunks.append(current)
                current = 0
                in_row += 1
            if tok == y_sep:
                rows, cols, in_row = rows + 1, max(cols, in_row), 0
            elif tok != x_sep:  # <|image|> before the global tile
                in_row = 0
        if current:
            chunks.append(current)
        return max(rows, 1), max(cols, 1), chunks

    def tiles(self, layout: ImageLayout, prompt_ids: Sequence[int], width: int, height: int) -> list[Tile]:
        n = len(layout.positions)
        if not prompt_ids:
            return self.guessed_tiles(layout, width, height, "no prompt ids to read the tile separators from")
        rows, cols, chunks = self.arrangement(layout, prompt_ids)
        per = chunks[-1] if chunks else 0
        side = int(round(math.sqrt(per)))
        many = rows * cols > 1
        if side * side != per or any(c != per for c in chunks) or len(chunks) != rows * cols + int(many):
            return self.guessed_tiles(layout, width, height, f"{n} image tokens do not form {rows}x{cols} tiles "
                                      "and a global tile of one square each")
        tile = self._tile_size()
        ip = getattr(self.processor, "image_processor", None)
        new_h, new_w = llama4_resized(height, width, rows * tile, cols * tile, tile,
                                      bool(getattr(ip, "resize_to_max_canvas", False)))
        sx, sy = width / new_w, height / new_h  # original pixels per canvas pixel

        def box(r: int, c: int) -> Region:
            return (c * tile * sx, r * tile * sy, (c + 1) * tile * sx, (r + 1) * tile * sy)

        if not many:
            return [Tile("image", (side, side), tuple(range(per)), box(0, 0))]
        out = [Tile("crop", (side, side), tuple(range(k * per, (k + 1) * per)), box(*divmod(k, cols)))
               for k in range(rows * cols)]
        whole = (0.0, 0.0, float(width), float(height))
        return out + [Tile("overview", (side, side), tuple(range(rows * cols * per, n)), whole)]
