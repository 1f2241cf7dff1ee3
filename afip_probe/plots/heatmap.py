"""Attention over image tokens drawn on the image, where the processor put each patch.

LLaVA's CLIP processor resizes the shortest edge and centre-crops a square, so the patch grid covers
the central square of the original image. Qwen2-VL resizes the whole image (to multiples of 28) and
its merged-patch grid covers the whole image. Image tokens are in row-major grid order in both.

Example:
    >>> import numpy as np
    >>> from PIL import Image
    >>> from afip_probe.plots.heatmap import grid_region, draw_heatmap
    >>> grid_region("llava", 640, 480)
    (80.0, 0.0, 560.0, 480.0)
    >>> fig = draw_heatmap(Image.new("RGB", (64, 48)), np.eye(4).ravel(), (4, 4), "llava")
"""

from __future__ import annotations

from typing import Any

import numpy as np

SQUARE_CROP = {"llava"}  # families whose processor centre-crops a square


def grid_region(family: str, width: int, height: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in original image pixels covered by the image-token grid."""
    if family in SQUARE_CROP:
        m = min(width, height)
        x0, y0 = (width - m) / 2, (height - m) / 2
        return float(x0), float(y0), float(x0 + m), float(y0 + m)
    return 0.0, 0.0, float(width), float(height)


def to_grid(values: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """[n] image-token values -> [rows, cols] (row-major)."""
    rows, cols = grid
    values = np.asarray(values, dtype=np.float32)
    if values.size != rows * cols:
        raise ValueError(f"{values.size} image-token values do not fill a {rows}x{cols} grid")
    return values.reshape(rows, cols)


def draw_heatmap(image: Any, values: np.ndarray, grid: tuple[int, int], family: str, ax: Any = None,
                 title: str = "", alpha: float = 0.55, cmap: str = "inferno", vmax: float | None = None) -> Any:
    """Draw `values` (one per image token) over `image`; returns the Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4 * image.height / max(image.width, 1)))
    fig = ax.figure
    x0, y0, x1, y1 = grid_region(family, image.width, image.height)
    ax.imshow(np.asarray(image), extent=(0, image.width, image.height, 0))
    im = ax.imshow(to_grid(values, grid), extent=(x0, x1, y1, y0), alpha=alpha, cmap=cmap,
                   interpolation="nearest", vmin=0.0, vmax=vmax)
    ax.set_xlim(0, image.width)
    ax.set_ylim(image.height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig


def before_after(image: Any, before: np.ndarray, after: np.ndarray, grid: tuple[int, int], family: str,
                 titles: tuple[str, str] = ("before", "after"), suptitle: str = "") -> Any:
    """Two heatmaps side by side on one colour scale."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    vmax = float(max(np.max(before), np.max(after), 1e-12))
    draw_heatmap(image, before, grid, family, ax=axes[0], title=titles[0], vmax=vmax)
    draw_heatmap(image, after, grid, family, ax=axes[1], title=titles[1], vmax=vmax)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig
