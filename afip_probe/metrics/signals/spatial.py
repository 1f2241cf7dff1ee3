"""Attention dispersion (ADS, Nguyen et al., CVPR 2026, "Beyond the Global Scores", arXiv 2604.04863): how
compact a token's attention map over the image patches is.

The paper's recipe, as its project page states it: keep the top-10 % patches of the map, group them into
connected components (which suppresses attention sinks), and combine the foreground blobs' mass with the
background's entropy; low ADS is a compact focus (grounded), high ADS scattered attention
(hallucinated). The paper's exact equation was not available to us, so this is our reading of it, with
its two constants as parameters:

    p       the token's head-mean attention over the image slots, renormalised to sum 1
    F       the ceil(top · n) slots of highest p (ties: the earlier slot)
    blobs   connected components of F on the patch grids (4-neighbour, never across tiles); a component of
            fewer than `min_blob` slots is a sink: it is dropped and p renormalised over the other slots
    m_fg    the mass of the blobs;  H_bg the entropy of p over the slots outside F, divided by log of their
            count (0 to 1)
    ADS   = (1 - m_fg) · H_bg

The grids are the sample's tiles (`afip_probe.records.Tile`: the image, each crop, the overview), so the
score is right on tiled families: a blob never joins two crops, and a crop's edge is no neighbour.

Example (one 3x3 grid; a 2-slot blob holds most of the attention, the rest is spread evenly):
    >>> import numpy as np
    >>> from afip_probe.records import Tile
    >>> grid = Tile("image", (3, 3), tuple(range(9)), (0.0, 0.0, 9.0, 9.0))
    >>> a = np.array([[0.4, 0.3, 0.05, 0.05, 0.05, 0.05, 0.04, 0.03, 0.03]])   # [T, n]
    >>> float(attention_dispersion(a, [grid], top=0.2).round(4)[0])
    0.2966
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...records import Tile


def grid_edges(tiles: Sequence[Tile]) -> np.ndarray:
    """Neighbour pairs [E, 2] of image slots: right and down neighbours within each tile's grid."""
    pairs = []
    for tile in tiles:
        rows, cols = tile.grid
        cells = np.asarray(tile.cells).reshape(rows, cols)
        pairs.append(np.stack([cells[:, :-1].ravel(), cells[:, 1:].ravel()], axis=1))
        pairs.append(np.stack([cells[:-1, :].ravel(), cells[1:, :].ravel()], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def components(mask: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Connected components of the True slots of each row of mask [R, n] over `edges`: each slot's
    component label (its lowest slot index), -1 outside the mask."""
    n = mask.shape[-1]
    label = np.where(mask, np.arange(n), n).astype(np.int64)  # n: not in the mask
    if len(edges):
        i, j = edges[:, 0], edges[:, 1]
        both = mask[:, i] & mask[:, j]  # [R, E] edges inside the mask
        while True:  # propagate the smallest label along the edges until nothing changes
            low = np.minimum(label[:, i], label[:, j])
            new = label.copy()
            rows = np.nonzero(both)[0]
            np.minimum.at(new, (rows, i[np.nonzero(both)[1]]), low[both])
            np.minimum.at(new, (rows, j[np.nonzero(both)[1]]), low[both])
            if np.array_equal(new, label):
                break
            label = new
    return np.where(mask, label, -1)


def attention_dispersion(maps: np.ndarray, tiles: Sequence[Tile], top: float = 0.1, min_blob: int = 2) -> np.ndarray:
    """ADS of token maps [..., n] (attention over the image slots) on the sample's `tiles` -> [...]; NaN where
    a map has no attention on the tiles' slots outside sinks (e.g. the image left a sliding window)."""
    slots = np.unique(np.concatenate([np.asarray(t.cells) for t in tiles])) if tiles else np.arange(maps.shape[-1])
    shape = maps.shape[:-1]
    a = np.asarray(maps, np.float64).reshape(-1, maps.shape[-1])[:, slots]  # [R, s]
    remap = {int(s): k for k, s in enumerate(slots)}
    edges = grid_edges(tiles)
    edges = np.array([[remap[int(x)], remap[int(y)]] for x, y in edges if int(x) in remap and int(y) in remap],
                     dtype=np.int64).reshape(-1, 2)
    r, s = a.shape
    total = a.sum(-1, keepdims=True)
    p = np.divide(a, total, out=np.zeros_like(a), where=total > 0)
    k = max(1, math.ceil(top * s))
    order = np.argsort(-p, axis=-1, kind="stable")[:, :k]
    fg = np.zeros((r, s), dtype=bool)
    np.put_along_axis(fg, order, True, axis=-1)
    label = components(fg, edges)
    sizes = np.zeros((r, s + 1), dtype=np.int64)
    np.add.at(sizes, (np.repeat(np.arange(r), s), np.where(label >= 0, label, s).ravel()), 1)
    size_of = np.take_along_axis(sizes, np.where(label >= 0, label, s), axis=-1)  # [R, s] size of each slot's blob
    sink = fg & (size_of < min_blob)
    kept = np.where(sink, 0.0, p)
    kept_total = kept.sum(-1, keepdims=True)
    q = np.divide(kept, kept_total, out=np.zeros_like(kept), where=kept_total > 0)
    m_fg = np.where(fg & ~sink, q, 0.0).sum(-1)
    bg = np.where(fg, 0.0, q)  # background: the slots outside the top fraction
    bg_total = bg.sum(-1, keepdims=True)
    qb = np.divide(bg, bg_total, out=np.zeros_like(bg), where=bg_total > 0)
    n_bg = s - k
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(qb > 0, qb * np.log(qb), 0.0).sum(-1)
    h_bg = entropy / math.log(n_bg) if n_bg > 1 else np.zeros(r)
    ads = (1.0 - m_fg) * h_bg
    return np.where(kept_total[:, 0] > 0, ads, np.nan).reshape(shape)
