"""Heatmaps straight from a trace store: one generated token, a layer range, head mean or per head.

Head-averaged maps come from ``maps`` [T, L, n] (record level ``maps`` or ``full``); per-head maps
from ``scores`` [T, L, H, n] and ``head/lse`` (level ``full``): A = exp(B − lse). Corrected runs keep
``corrected/maps`` next to the raw ones (``source="corrected"``). Each patch grid is placed with the
boxes the tracer stored per sample (``tiles``: the image, its crops and overview; ``grid_region`` in
stores written before tiles), so crops and pads match the processor; tiled families get one map
stitched from their crops and, beside it, the overview. A sample that shows several images (a manifest
line) draws each image with its own map (the tiles name their image), one row per image.

Example:
    >>> from afip_probe.plots.store_maps import token_heatmap      # doctest: +SKIP
    >>> fig = token_heatmap(store, "000000000139", word="dog", layers=range(16, 32))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import AfipError, option
from ..images import load_image
from ..records import array_name, sample_images
from ..records.layout import Tile, grid_region, read_tiles, single_tile
from .heatmap import before_after, draw_tiled, head_grid


def sample_row(store: Any, sample_id: str) -> pd.Series:
    samples = store.samples("ok")
    hit = samples[samples.sample_id == sample_id]
    if hit.empty:
        some = ", ".join(samples.sample_id.head(3)) if not samples.empty else "none"
        raise AfipError(f"no finished sample {sample_id!r} in {store.root} (e.g. {some})")
    return hit.iloc[0]


def region_of(store: Any, row: pd.Series) -> tuple[float, float, float, float]:
    """The grid's box in image pixels: as stored by the tracer, else the family's usual processor."""
    region = row.get("grid_region") if hasattr(row, "get") else None
    if region is not None and not (isinstance(region, float) and np.isnan(region)) and len(region) == 4:
        return tuple(float(v) for v in region)  # type: ignore[return-value]
    return grid_region(store.settings.get("family", "llava"), int(row.image_width), int(row.image_height))


def tiles_of(store: Any, row: pd.Series) -> list[Tile]:
    """The sample's tiles as the tracer stored them; for stores written before tiles, its one grid on its box."""
    tiles = read_tiles(row.get("tiles") if hasattr(row, "get") else None)
    if tiles:
        return tiles
    grid = (int(row.grid_rows), int(row.grid_cols))
    return single_tile(grid[0] * grid[1], grid, region_of(store, row))


def open_image(path: str | Path) -> Any:
    """The traced image, which heatmaps are drawn over."""
    p = Path(path)
    if not p.exists():
        raise AfipError(f"the traced image is no longer at {p}; heatmaps need the original image file")
    return load_image(p)


def open_images(row: pd.Series) -> Any:
    """The traced image of a sample, or the list of its images when it shows several."""
    images = [open_image(im.path) for im in sample_images(row)]
    return images if len(images) > 1 else images[0]


def find_step(store: Any, sample_id: str, step: int | None = None, word: str | None = None,
              tokens: pd.DataFrame | None = None) -> int:
    """The step of `word` (first generated token whose text, stripped and lower-cased, starts it), or `step`.

    `tokens` is the sample's token table when the caller already read it."""
    tokens = store.tokens([sample_id]) if tokens is None else tokens
    if word is not None:
        texts = tokens.token_text.str.strip().str.lower()
        w = word.strip().lower()
        hits = tokens[(texts.str.len() > 0) & texts.map(lambda t: w.startswith(t) or t.startswith(w))]
        if hits.empty:
            raise AfipError(f"{word!r} is not among the generated tokens of {sample_id!r}")
        return int(hits.step.iloc[0])
    step = 0 if step is None else int(step)
    if not 0 <= step < len(tokens):
        raise AfipError(f"step {step} is outside 0..{len(tokens) - 1} for {sample_id!r}")
    return step


def image_attention(store: Any, sample_id: str, step: int, layers: Sequence[int] | None = None,
                    per_head: bool = False, source: str = "raw") -> np.ndarray:
    """Post-softmax attention over the image tokens at one step, mean over `layers`: [n], or [H, n] per head."""
    arrays = store.arrays(sample_id)
    num_layers = int(store.settings.get("num_layers", 0)) or None
    if per_head:
        if source == "corrected":
            raise AfipError("per-head maps of corrected rows are not recorded (only their head mean, corrected/maps)")
        if array_name("scores") not in arrays:
            raise AfipError(f"per-head maps need per-head rows: trace with {option('level', 'full')}")
        scores = np.asarray(arrays[array_name("scores")], dtype=np.float32)[step]  # [L, H, n]
        lse = np.asarray(arrays[array_name("head", "lse")], dtype=np.float32)[step]  # [L, H]
        rows = np.exp(scores - lse[..., None])  # [L, H, n]
    else:
        key = array_name("maps", source=source)
        if key not in arrays:
            need = (f"a corrector on and {option('level', 'maps')}" if source == "corrected"
                    else f"{option('level', 'maps')} (or full)")
            raise AfipError(f"heatmaps need {need}; this store has level {store.settings.get('record_level')!r}")
        rows = np.asarray(arrays[key], dtype=np.float32)[step]  # [L, n]
    idx = list(layers) if layers is not None else list(range(num_layers or rows.shape[0]))
    if not idx or max(idx) >= rows.shape[0]:
        raise AfipError(f"layers {idx} are outside 0..{rows.shape[0] - 1}")
    return rows[idx].mean(axis=0)


def token_heatmap(store: Any, sample_id: str, step: int | None = None, word: str | None = None,
                  layers: Sequence[int] | None = None, per_head: bool = False, source: str = "raw") -> Any:
    """The image with one generated token's attention over it (head mean, or a grid of heads)."""
    row = sample_row(store, sample_id)
    tokens = store.tokens([sample_id])
    step = find_step(store, sample_id, step, word, tokens)
    values = image_attention(store, sample_id, step, layers, per_head, source)
    tok = tokens.token_text.iloc[step].strip()
    idx = list(layers) if layers is not None else None
    where = f"layers {idx[0]}–{idx[-1]}" if idx else "all layers"
    title = f"{sample_id}, step {step} '{tok}', {where}{' (corrected)' if source == 'corrected' else ''}"
    image = open_images(row)
    tiles = tiles_of(store, row)
    if per_head:
        return head_grid(image, values, (0, 0), title=title, tiles=tiles)
    return draw_tiled(image, values, tiles, title=title)


def before_after_heatmap(store: Any, before_id: str, after_id: str, step: int = 0,
                         layers: Sequence[int] | None = None, titles: tuple[str, str] = ("before", "after"),
                         suptitle: str = "") -> Any:
    """The same image and step from two samples: the raw maps of `before_id`, the corrected maps of
    `after_id` (what the corrected model attended to)."""
    row = sample_row(store, before_id)
    before = image_attention(store, before_id, step, layers)
    after = image_attention(store, after_id, step, layers, source="corrected")
    return before_after(open_images(row), before, after, (0, 0), titles=titles, suptitle=suptitle,
                        tiles=tiles_of(store, row))
