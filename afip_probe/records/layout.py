"""Where a sample's image tokens are, and which box of the original image their patch grid covers.

`ImageLayout` is what the models layer finds for each sample; `processor_region` computes the grid's
box from an image processor's config with the processor's own integer arithmetic (LLaVA-1.5's CLIP
processor resizes the shortest edge and centre-crops, `LlavaImageProcessor(do_pad=True)` pads to a
centred square first, Qwen2-VL resizes the whole image). Image tokens are row-major on the grid.

Example:
    >>> ImageLayout(positions=[5, 6, 7, 8], grid=(2, 2)).spans
    [(5, 9)]
    >>> grid_region("llava", 640, 480)
    (80.0, 0.0, 560.0, 480.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class ImageLayout:
    """Where one sample's image tokens are and how they map onto the image.

    `positions` are indices into the sample's own (unpadded) prompt; `grid` is (rows, cols) of the
    patch grid the image tokens form, row-major, so `positions[r * cols + c]` is patch (r, c).
    """

    positions: list[int]
    grid: tuple[int, int]

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


SQUARE_CROP = {"llava"}  # families whose processor centre-crops a square (fallback when no region was stored)
Region = tuple[float, float, float, float]


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
