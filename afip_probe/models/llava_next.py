"""LLaVA-NeXT and LLaVA-OneVision: a base image plus "anyres" crops, unpadded, one newline per row.

The image tokens of one image are, in order (`pack_image_features` in transformers):
- the base image, the whole image resized to one crop (p x p patches): an *overview* tile;
- the high-resolution grid: the image resized to fit the best of `image_grid_pinpoints` (aspect kept),
  padded to it (centred), cut into crops and re-joined as one (rows x p·sw) feature grid, whose padded
  rows or columns are then removed ("unpadding"); OneVision shrinks it further when it has more than
  `anyres_max_N` crops' worth of features. Every row is followed by one *newline* embedding, also under
  the image token id: an image key (it carries image features) but no patch, so no tile cell.

The high-resolution grid is one *crop* tile whose box is the part of the original image its kept rows
and columns cover (the processor's resize, the centred paste and the unpadding, in original pixels).

In a prompt with several images, LLaVA-NeXT lays out every image so; OneVision shows each image of such a
prompt as its base image only (p x p patches) and one newline after it (`batch_num_images`).

Example:
    >>> llava_next_geometry((480, 640), [[32, 64], [64, 32], [64, 64]], 32, 8)
    (4, (6, 8), (0.0, 0.0, 640.0, 480.0))
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from transformers.image_processing_utils import select_best_resolution

from ..errors import AfipError
from ..records.layout import ImageLayout, Region, Tile
from .base import TiledAdapter, per_sample


def llava_next_geometry(size: tuple[int, int], pinpoints: Sequence[Sequence[int]], crop: int, patch: int,
                        max_crops: int | None = None) -> tuple[int, tuple[int, int], Region]:
    """(base grid side, high-resolution grid (rows, cols), its box in original pixels) of an image of
    `size` (height, width), from the processor's and the model's arithmetic.

    `crop` is the vision tower's image size, `patch` its patch size, `max_crops` OneVision's
    ``anyres_max_N`` (None for LLaVA-NeXT)."""
    height, width = size
    p = crop // patch
    best_h, best_w = select_best_resolution((height, width), [list(r) for r in pinpoints])
    feat_h, feat_w = p * (best_h // crop), p * (best_w // crop)  # features of the padded canvas
    # the processor's resize into the canvas (get_patch_output_size) and centred paste (_pad_for_patching)
    scale_w, scale_h = best_w / width, best_h / height
    if scale_w < scale_h:
        new_w, new_h = best_w, min(math.ceil(height * scale_w), best_h)
    else:
        new_h, new_w = best_h, min(math.ceil(width * scale_h), best_w)
    paste_y, paste_x = (best_h - new_h) // 2, (best_w - new_w) // 2
    # the model's unpad_image: rows (or columns) of padding removed in feature units
    top, left, rows, cols = 0, 0, feat_h, feat_w
    if width / height > feat_w / feat_h:
        padding = (feat_h - int(round(height * (feat_w / width), 7))) // 2
        top, rows = padding, feat_h - 2 * padding
    else:
        padding = (feat_w - int(round(width * (feat_h / height), 7))) // 2
        left, cols = padding, feat_w - 2 * padding
    px_y, px_x = best_h / feat_h, best_w / feat_w  # canvas pixels per feature
    sy, sx = height / new_h, width / new_w  # original pixels per canvas pixel
    box = ((left * px_x - paste_x) * sx, (top * px_y - paste_y) * sy,
           ((left + cols) * px_x - paste_x) * sx, ((top + rows) * px_y - paste_y) * sy)
    if max_crops is not None:  # OneVision: bilinear shrink of a grid larger than max_crops crops
        ratio = math.sqrt(rows * cols / (max_crops * p**2))
        if ratio > 1.1:
            rows, cols = int(rows // ratio), int(cols // ratio)
    return p, (rows, cols), tuple(float(v) for v in box)  # type: ignore[return-value]


class LlavaNextAdapter(TiledAdapter):
    family = "llava_next"

    def _max_crops(self) -> int | None:
        return None

    def _geometry(self, width: int, height: int) -> tuple[int, tuple[int, int], Region]:
        config = self.model.config
        vision = config.vision_config
        return llava_next_geometry((height, width), config.image_grid_pinpoints, int(vision.image_size),
                                   int(vision.patch_size), self._max_crops())

    def _newline(self) -> bool:
        return getattr(self.model.model, "image_newline", None) is not None if hasattr(self.model, "model") else True

    def _full_count(self, height: int, width: int) -> int:
        side, (rows, cols), _ = self._geometry(width, height)
        return side * side + rows * (cols + int(self._newline()))

    def image_token_counts(self, inputs: dict[str, Any]) -> list[list[int]]:
        """Each image's token count from its `image_sizes` row (the batch's images in order)."""
        sizes = inputs.get("image_sizes")
        if sizes is None:
            raise AfipError(f"{self.family} inputs carry no image_sizes: build them with the model's processor")
        counts = [self._full_count(int(h), int(w)) for h, w in sizes.tolist()]
        return [[counts[k] for k in mine] for mine in per_sample(inputs, self.image_token_id, counts, "image_sizes")]

    def tiles(self, layout: ImageLayout, prompt_ids: Sequence[int], width: int, height: int) -> list[Tile]:
        side, (rows, cols), box = self._geometry(width, height)
        base = side * side
        n = len(layout.positions)
        newline = self._newline()
        whole = (0.0, 0.0, float(width), float(height))
        if n == base + int(newline) and self.family == "llava_onevision":  # one of several images
            return [Tile("image", (side, side), tuple(range(base)), whole)]
        expected = base + rows * (cols + int(newline))
        if expected != n:
            return self.guessed_tiles(layout, width, height, f"{n} image tokens, but base {side}x{side} + "
                                      f"{rows}x{cols} crops + newlines make {expected}")
        step = cols + int(newline)
        cells = tuple(base + r * step + c for r in range(rows) for c in range(cols))
        return [Tile("overview", (side, side), tuple(range(base)), whole), Tile("crop", (rows, cols), cells, box)]


class LlavaOnevisionAdapter(LlavaNextAdapter):
    family = "llava_onevision"

    def _max_crops(self) -> int | None:
        aspect = str(getattr(self.model.config, "vision_aspect_ratio", "anyres_max_9"))
        return int(aspect.removeprefix("anyres_max_")) if aspect.startswith("anyres_max_") else None

    def image_token_counts(self, inputs: dict[str, Any]) -> list[list[int]]:
        """A prompt of several images (`batch_num_images`) shows each as its base image and one newline."""
        per_prompt = inputs.get("batch_num_images")
        if per_prompt is None or all(int(n) == 1 for n in per_prompt):
            return super().image_token_counts(inputs)
        sizes = inputs["image_sizes"].tolist()
        vision = self.model.config.vision_config
        side = int(vision.image_size) // int(vision.patch_size)
        out, k = [], 0
        for n in (int(v) for v in per_prompt):
            out.append([self._full_count(*sizes[k]) if n == 1 else side * side + int(self._newline())] * n)
            k += n
        return out
