"""Attention over image tokens drawn on the image, exactly where the processor put each patch.

The patch grid covers a box of the original image that depends on the image processor:
LLaVA-1.5's CLIP processor resizes the shortest edge and centre-crops (the grid covers a central
square); `LlavaImageProcessor(do_pad=True)` first pads to a centred square (the grid reaches past the
image); Qwen2-VL resizes the whole image to multiples of 28 (the merged-patch grid covers all of it).
`afip_probe.records.layout.processor_region` computes that box from the processor's config with the processor's own integer
arithmetic; the tracer stores it per sample (``grid_region``), and the drawing functions map every
image pixel to the patch that covers it. Image tokens are in row-major grid order in all of these.

A prompt may show several images: each tile names its image (`Tile.image`), and the drawing functions
given a list of images draw each with its own tiles' map, on one colour scale.

Example:
    >>> import numpy as np
    >>> from PIL import Image
    >>> grid_region("llava", 640, 480)
    (80.0, 0.0, 560.0, 480.0)
    >>> heat = pixel_heat(np.eye(4).ravel(), (4, 4), (0, 0, 64, 48), 64, 48)
    >>> heat.shape, float(heat[0, 0]), float(heat[0, 63])
    ((48, 64), 1.0, 0.0)
    >>> fig = draw_heatmap(Image.new("RGB", (64, 48)), np.eye(4).ravel(), (4, 4), "llava")
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..records.layout import Tile, grid_region


def to_grid(values: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """[n] image-token values -> [rows, cols] (row-major)."""
    rows, cols = grid
    values = np.asarray(values, dtype=np.float32)
    if values.size != rows * cols:
        raise ValueError(f"{values.size} image-token values do not fill a {rows}x{cols} grid")
    return values.reshape(rows, cols)


def pixel_heat(values: np.ndarray, grid: tuple[int, int], region: Sequence[float], width: int, height: int) -> np.ndarray:
    """[height, width] value of the patch covering each pixel centre of the original image; NaN where
    no patch does (outside a centre crop)."""
    cells = to_grid(values, grid)  # [rows, cols]
    rows, cols = grid
    x0, y0, x1, y1 = (float(v) for v in region)
    cx = np.floor(((np.arange(width) + 0.5) - x0) / (x1 - x0) * cols).astype(np.int64)  # [W]
    cy = np.floor(((np.arange(height) + 0.5) - y0) / (y1 - y0) * rows).astype(np.int64)  # [H]
    ok = (cy[:, None] >= 0) & (cy[:, None] < rows) & (cx[None, :] >= 0) & (cx[None, :] < cols)
    heat = cells[np.clip(cy, 0, rows - 1)[:, None], np.clip(cx, 0, cols - 1)[None, :]].astype(np.float32)
    heat[~ok] = np.nan
    return heat


#: the tiles one map is stitched from: the image (a single grid) or its crops; overviews are drawn apart
MAP_KINDS = ("image", "crop")


def tiles_heat(values: np.ndarray, tiles: Sequence[Tile], width: int, height: int,
               kinds: Sequence[str] = MAP_KINDS) -> np.ndarray:
    """[height, width] value of the cell covering each pixel centre of the original image, stitched from the
    tiles of `kinds` placed on their boxes (later tiles win where boxes overlap); NaN where none does.

    `values` [n] are per image-token slot (a trace's maps); newline / row-break slots are in no tile.

    >>> t = [Tile("crop", (1, 1), (0,), (0, 0, 2, 1)), Tile("crop", (1, 1), (2,), (2, 0, 4, 1))]
    >>> tiles_heat(np.array([1.0, 5.0, 3.0]), t, 4, 1).tolist()
    [[1.0, 1.0, 3.0, 3.0]]
    """
    values = np.asarray(values, dtype=np.float32)
    heat = np.full((height, width), np.nan, dtype=np.float32)
    for tile in tiles:
        if tile.kind in kinds:
            part = pixel_heat(values[list(tile.cells)], tile.grid, tile.box, width, height)
            heat = np.where(np.isfinite(part), part, heat)
    return heat


def main_tiles(tiles: Sequence[Tile]) -> tuple[list[Tile], list[Tile]]:
    """(the tiles the map is stitched from, the overview tiles drawn beside it). A layout of overviews only
    (no crops) draws them as the map."""
    main = [t for t in tiles if t.kind in MAP_KINDS]
    overview = [t for t in tiles if t.kind not in MAP_KINDS]
    return (main, overview) if main else (overview, [])


def _region(family: str, image: Any, region: Sequence[float] | None) -> Sequence[float]:
    return region if region is not None else grid_region(family, image.width, image.height)


def draw_heatmap(image: Any, values: np.ndarray, grid: tuple[int, int], family: str = "llava", ax: Any = None,
                 title: str = "", alpha: float = 0.55, cmap: str = "inferno", vmax: float | None = None,
                 region: Sequence[float] | None = None, colorbar: bool = True,
                 tiles: Sequence[Tile] | None = None) -> Any:
    """Draw `values` (one per image token) over `image` (PIL); returns the Figure.

    `region` is the grid's box in image pixels (a store's ``grid_region``); without it the family's
    usual processor is assumed. With `tiles` (a store's ``tiles``: crops, overviews), the map is
    stitched from the image or crop tiles placed on their boxes and `grid` / `region` are not used."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 4 * image.height / max(image.width, 1)), layout="constrained")
    fig = ax.figure
    if tiles:
        shown = main_tiles(tiles)[0]  # the image or crop tiles; overviews when given alone
        heat = tiles_heat(values, shown, image.width, image.height, kinds=tuple({t.kind for t in shown}))
    else:
        heat = pixel_heat(values, grid, _region(family, image, region), image.width, image.height)
    ax.imshow(np.asarray(image), extent=(0, image.width, image.height, 0))
    im = ax.imshow(np.ma.masked_invalid(heat), extent=(0, image.width, image.height, 0), alpha=alpha, cmap=cmap,
                   interpolation="nearest", vmin=0.0, vmax=vmax)
    ax.set_xlim(0, image.width)
    ax.set_ylim(image.height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        add_colorbar(fig, im, ax)
    return fig


def add_colorbar(fig: Any, im: Any, ax: Any) -> Any:
    """The colour bar of a map: opaque colours (the map is drawn translucent over the image), a few ticks whose
    labels all differ, and a label saying what the colours are."""
    from matplotlib.ticker import MaxNLocator

    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.solids.set_alpha(1.0)
    bar.locator = MaxNLocator(nbins=4)
    bar.update_ticks()
    bar.set_label("attention to the image token", fontsize=8)
    bar.ax.tick_params(labelsize=8)
    return bar


def _of_image(tiles: Sequence[Tile], i: int) -> list[Tile]:
    return [t for t in tiles if t.image == i]


def _as_list(image: Any) -> list[Any]:
    return list(image) if isinstance(image, (list, tuple)) else [image]


def head_grid(image: Any, rows: np.ndarray, grid: tuple[int, int], family: str = "llava",
              region: Sequence[float] | None = None, title: str = "", cols: int | None = None,
              tiles: Sequence[Tile] | None = None) -> Any:
    """One small heatmap per head: rows [H, n] post-softmax image attention; one colour scale. With a list of
    images (a prompt of several), one row of heads per image, each drawn with its own tiles."""
    import matplotlib.pyplot as plt

    rows = np.asarray(rows, dtype=np.float32)
    heads = rows.shape[0]
    images = _as_list(image)
    vmax = float(max(rows.max(), 1e-12))
    if len(images) > 1:
        fig, axes = plt.subplots(len(images), heads, figsize=(2.0 * heads, 2.0 * len(images)), squeeze=False)
        for i, im in enumerate(images):
            for h in range(heads):
                draw_heatmap(im, rows[h], grid, family, ax=axes[i, h], title=f"image {i}, head {h}", vmax=vmax,
                             colorbar=False, tiles=main_tiles(_of_image(tiles or [], i))[0])
    else:
        cols = cols or int(np.ceil(np.sqrt(heads)))
        nrows = int(np.ceil(heads / cols))
        fig, axes = plt.subplots(nrows, cols, figsize=(2.0 * cols, 2.0 * nrows), squeeze=False)
        for h, ax in enumerate(axes.ravel()):
            if h < heads:
                draw_heatmap(images[0], rows[h], grid, family, ax=ax, title=f"head {h}", vmax=vmax, region=region,
                             colorbar=False, tiles=tiles)
            else:
                ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def before_after(image: Any, before: np.ndarray, after: np.ndarray, grid: tuple[int, int], family: str = "llava",
                 titles: tuple[str, str] = ("before", "after"), suptitle: str = "",
                 region: Sequence[float] | None = None, tiles: Sequence[Tile] | None = None) -> Any:
    """Two heatmaps side by side on one colour scale (with a list of images, one such row per image)."""
    import matplotlib.pyplot as plt

    images = _as_list(image)
    fig, axes = plt.subplots(len(images), 2, figsize=(8, 4 * len(images)), squeeze=False)
    vmax = float(max(np.max(before), np.max(after), 1e-12))
    for i, im in enumerate(images):
        mine = _of_image(tiles, i) if tiles and len(images) > 1 else tiles
        name = f"image {i}: " if len(images) > 1 else ""
        draw_heatmap(im, before, grid, family, ax=axes[i, 0], title=name + titles[0], vmax=vmax, region=region,
                     tiles=mine)
        draw_heatmap(im, after, grid, family, ax=axes[i, 1], title=name + titles[1], vmax=vmax, region=region,
                     tiles=mine)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def draw_tiled(image: Any, values: np.ndarray, tiles: Sequence[Tile], title: str = "", alpha: float = 0.55,
               cmap: str = "inferno") -> Any:
    """The stitched map over `image` and, for tiled families, each overview tile's map beside it (LLaVA-NeXT's
    base image, Idefics3's global image, InternVL's thumbnail), all on one colour scale; returns the Figure.

    `image` may be a list, the images of a prompt of several: one row per image, each with the map of its
    own tiles (`Tile.image`).

    >>> from PIL import Image
    >>> t = [Tile("crop", (1, 1), (0,), (0, 0, 8, 8)), Tile("overview", (1, 1), (1,), (0, 0, 8, 8))]
    >>> len(draw_tiled(Image.new("RGB", (8, 8)), np.array([1.0, 2.0]), t).axes)
    3
    >>> two = [Tile("image", (1, 1), (0,), (0, 0, 8, 8)), Tile("image", (1, 1), (1,), (0, 0, 4, 8), image=1)]
    >>> fig = draw_tiled([Image.new("RGB", (8, 8)), Image.new("RGB", (4, 8))], np.array([1.0, 2.0]), two)
    >>> [ax.get_title() for ax in fig.axes if ax.get_title()]
    ['image 0', 'image 1']
    """
    import matplotlib.pyplot as plt

    images = _as_list(image)
    several = len(images) > 1
    per_image = [main_tiles(_of_image(tiles, i) if several else tiles) for i in range(len(images))]
    values = np.asarray(values, dtype=np.float32)
    panels = 1 + max(len(overview) for _, overview in per_image)
    aspect = max(im.height / max(im.width, 1) for im in images)
    fig, axes = plt.subplots(len(images), panels, figsize=(4 * panels + 0.8, 4 * aspect * len(images)), squeeze=False,
                             layout="constrained")  # room for the colour bar's ticks and label
    vmax = float(max(np.nanmax(values) if values.size else 0.0, 1e-12))
    for i, (im, (main, overview)) in enumerate(zip(images, per_image)):
        name = f"image {i}" if several else ""
        head = title if i == 0 and title and not several else ""
        label = head or name or ("crops" if overview else "")
        if several and i == 0 and title:
            fig.suptitle(title, fontsize=10)
        last = i == len(images) - 1
        draw_heatmap(im, values, (0, 0), ax=axes[i, 0], title=label + (" (crops)" if several and overview else ""),
                     alpha=alpha, cmap=cmap, vmax=vmax, colorbar=panels == 1 and last, tiles=main)
        for k, ax in enumerate(axes[i, 1:]):
            if k >= len(overview):
                ax.axis("off")
                continue
            tile = overview[k]
            draw_heatmap(im, values, (0, 0), ax=ax, title=f"overview ({tile.grid[0]}x{tile.grid[1]})", alpha=alpha,
                         cmap=cmap, vmax=vmax, colorbar=last and ax is axes[i, -1], tiles=[tile])  # alone: the map
    return fig
