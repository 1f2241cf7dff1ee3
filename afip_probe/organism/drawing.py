"""Drawing a scene: each category a distinct icon (shape, colour, texture) on the scene type's
tinted, noisy, cluttered background; objects may occlude each other.

Example:
    >>> from afip_probe.organism.catalog import SCENE_TYPES, SceneObject, scene_rng
    >>> img = draw_scene(scene_rng(0, "val", 0), SCENE_TYPES[0], [SceneObject("pizza", (8, 8, 24, 24))])
    >>> img.size
    (64, 64)
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .catalog import BY_NAME, IMAGE_SIZE, Category, SceneObject, SceneType

def _shape_mask(shape: str, w: int, h: int) -> Image.Image:
    m = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(m)
    W, H = w - 1, h - 1
    if shape == "rect":
        d.rectangle([0, 0, W, H], fill=255)
    elif shape == "ellipse":
        d.ellipse([0, 0, W, H], fill=255)
    elif shape == "ring":
        d.ellipse([0, 0, W, H], fill=255)
        t = max(2, min(w, h) // 4)
        d.ellipse([t, t, W - t, H - t], fill=0)
    elif shape == "tri_up":
        d.polygon([(W / 2, 0), (W, H), (0, H)], fill=255)
    elif shape == "tri_down":
        d.polygon([(0, 0), (W, 0), (W / 2, H)], fill=255)
    elif shape == "diamond":
        d.polygon([(W / 2, 0), (W, H / 2), (W / 2, H), (0, H / 2)], fill=255)
    elif shape == "octagon":
        a, b = W * 0.3, H * 0.3
        d.polygon([(a, 0), (W - a, 0), (W, b), (W, H - b), (W - a, H), (a, H), (0, H - b), (0, b)], fill=255)
    elif shape == "hexagon":
        b = H * 0.25
        d.polygon([(W / 2, 0), (W, b), (W, H - b), (W / 2, H), (0, H - b), (0, b)], fill=255)
    elif shape == "bowl":
        d.pieslice([0, -H, W, H], 0, 180, fill=255)
    elif shape == "dome":
        d.pieslice([0, 0, W, 2 * H], 180, 360, fill=255)
    elif shape == "tee":
        t = max(2, h // 3)
        d.rectangle([0, 0, W, t], fill=255)
        d.rectangle([W * 0.35, 0, W * 0.65, H], fill=255)
    elif shape == "vee":
        d.polygon([(0, 0), (W / 2, H * 0.55), (W, 0), (W, H * 0.45), (W / 2, H), (0, H * 0.45)], fill=255)
    else:  # pragma: no cover - the table above is fixed
        raise ValueError(f"unknown shape {shape!r}")
    return m


def _texture(cat: Category, w: int, h: int) -> Image.Image:
    img = Image.new("RGB", (w, h), cat.colour)
    d = ImageDraw.Draw(img)
    c = cat.texture_colour
    if cat.texture == "hstripes":
        for y in range(1, h, 3):
            d.line([(0, y), (w, y)], fill=c)
    elif cat.texture == "vstripes":
        for x in range(1, w, 3):
            d.line([(x, 0), (x, h)], fill=c)
    elif cat.texture == "dots":
        for y in range(1, h, 4):
            for x in range(1 + (y // 4) % 2 * 2, w, 4):
                d.rectangle([x, y, x + 1, y + 1], fill=c)
    elif cat.texture == "checker":
        for y in range(0, h, 3):
            for x in range(0, w, 3):
                if (x // 3 + y // 3) % 2:
                    d.rectangle([x, y, x + 2, y + 2], fill=c)
    elif cat.texture == "outline":
        d.rectangle([0, 0, w - 1, h - 1], outline=c, width=2)
    elif cat.texture == "frame":
        d.rectangle([2, 2, w - 3, h - 3], fill=c)
    elif cat.texture == "cross":
        d.line([(w // 2, 1), (w // 2, h // 2)], fill=c, width=1)
        d.line([(w // 2, h // 2), (w - 3, h // 2)], fill=c, width=1)
    return img


def draw_scene(rng: np.random.Generator, stype: SceneType, objects: list[SceneObject]) -> Image.Image:
    """Background tint + noise + clutter, then the icons in order (later ones occlude earlier ones)."""
    bg = np.array(stype.background, dtype=np.int16)
    arr = bg + rng.integers(-10, 11, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.int16)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):  # clutter: muted strokes and blobs in background shades
        shade = tuple(int(v) for v in np.clip(bg + rng.integers(-45, 46, 3), 0, 255))
        x, y = (int(v) for v in rng.integers(0, IMAGE_SIZE, 2))
        if rng.random() < 0.5:
            dx, dy = (int(v) for v in rng.integers(-12, 13, 2))
            d.line([(x, y), (x + dx, y + dy)], fill=shade, width=int(rng.integers(1, 3)))
        else:
            r = int(rng.integers(1, 4))
            d.ellipse([x - r, y - r, x + r, y + r], fill=shade)
    for obj in objects:
        cat = BY_NAME[obj.category]
        x, y, w, h = obj.bbox
        img.paste(_texture(cat, w, h), (x, y), _shape_mask(cat.shape, w, h))
    return img
