"""The explorer: a static page over one or more trace stores, opened from disk with no server.

`write_explorer(stores, out)` writes ``out/index.html`` with its script, style, data and images beside
it (no CDN, no network). `Explorer(stores)` shows the same page inline in Jupyter. The page lists the
samples with their CHAIR counts, shows each caption as tokens coloured by label (or shaded by a metric),
and for the selected token (click, or ←/→) draws its attention over the image: the head mean over a
layer range, placed tile by tile on the boxes the processor's grids cover (as `afip-probe heatmap`), with a colour
scale, and one map per head for ``full`` stores; a sample that shows several images draws each image with
the map of its own tiles. Line charts follow VAR, attention entropy and token
entropy along the caption. Stores of several conditions (`afip-probe compare`) are shown side by side,
their selection synchronised by step.

Maps travel as uint8 per (token, layer[, head]) with that row's maximum as the scale: a value is off by
at most max/510. The page exposes its state in the DOM: tokens carry ``data-sample``, ``data-step`` and
``data-label``; ``#heatmap`` carries ``data-sample``, ``data-step`` and the drawn values (``data-values``).

Example:
    >>> import afip_probe                                                 # doctest: +SKIP
    >>> afip_probe.explore("runs/organism")        # in Jupyter: the page inline    # doctest: +SKIP
    >>> write_explorer(["runs/organism"], "explore/")                     # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm  # text bars: tqdm.auto warns in a notebook without ipywidgets

from .. import store as st
from ..errors import AfipError
from ..images import load_image
from ..metrics.table import labelled_table
from ..outputs import check_dir, claim_dir
from ..records import array_name, model_name, sample_images
from .heatmap import main_tiles
from .report import figures_title
from .store_maps import tiles_of

ASSETS = ("explorer.js", "explorer.css")
#: token-table columns the page shades tokens by and draws along the caption (plus ``risk`` when a
#: detector recorded it, `afip-probe trace --detector`)
METRICS = {"var_all": "VAR", "attn_entropy_all": "attention entropy", "kl_all": "cross-head KL",
           "token_entropy": "token entropy", "risk": "hallucination risk"}
IMAGE_SIDE = 384  # the longest side images are stored at (the geometry stays in original pixels)
#: samples per store: written to a folder / inline in a notebook (the whole page, its data and images, travels
#: inside the notebook there, so it shows fewer)
DEFAULT_MAX_SAMPLES, INLINE_MAX_SAMPLES = 200, 50


def _asset(name: str) -> str:
    return (resources.files("afip_probe.plots") / "explorer_assets" / name).read_text()


def _script_asset(name: str) -> str:
    """A packaged script, checked to hold nothing that would end an inline ``<script>`` element early."""
    text = _asset(name)
    if re.search(r"</script|<!--", text, re.IGNORECASE):
        raise AfipError(f"the packaged {name} holds '</script' or '<!--' and cannot be inlined; reinstall afip-probe")
    return text


def _quantise(values: np.ndarray) -> tuple[str, list[float]]:
    """[..., n] floats -> (base64 of uint8 rows scaled to each row's maximum, the maxima)."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0).clip(min=0.0)
    flat = v.reshape(-1, v.shape[-1])  # [rows, n]
    scale = flat.max(axis=1)
    q = np.rint(flat / np.where(scale > 0, scale, 1.0)[:, None] * 255).astype(np.uint8)
    return base64.b64encode(q.tobytes()).decode(), [float(f"{s:.6g}") for s in scale]


def _image_data(path: str) -> tuple[bytes, int, int]:
    """The image as PNG bytes (longest side at most IMAGE_SIDE) and its original size."""
    img = load_image(Path(path))
    width, height = img.size
    if max(width, height) > IMAGE_SIDE:
        img = img.copy()
        img.thumbnail((IMAGE_SIDE, IMAGE_SIDE))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue(), width, height


#: characters a JSON text may hold that end or disturb an HTML script element: every ``<`` (``</script``,
#: ``</SCRIPT``, ``<!--``), ``>`` and ``&``, and the line separators U+2028 / U+2029
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(value: Any) -> str:
    """`value` as JSON that is safe inside an HTML ``<script>`` element: the same JavaScript value, with no
    character of the data able to end the script or start markup (model output can hold anything).

    Example:
        >>> script_json({"text": "</SCRIPT><h6>x</h6>"})
        '{"text":"\\\\u003c/SCRIPT\\\\u003e\\\\u003ch6\\\\u003ex\\\\u003c/h6\\\\u003e"}'
    """
    text = json.dumps(value, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _SCRIPT_UNSAFE[m.group()], text)


def _round(values: Any) -> list[float | None]:
    return [None if not np.isfinite(x) else float(f"{x:.5g}") for x in np.asarray(values, dtype=np.float64)]


@dataclass
class _Sample:
    index: dict[str, Any]
    payload: dict[str, Any]
    images: list[bytes]  # PNG of each image of the sample


def _image_name(i: int, k: int) -> str:
    """The file of image `k` of sample `i` in the explorer's images/ folder."""
    return f"images/{i}.png" if k == 0 else f"images/{i}_{k}.png"


def _collect(stores: Sequence[Any], max_samples: int | None, progress: bool, annotations: str | None = None
             ) -> tuple[dict[str, Any], list[_Sample]]:
    opened = [s if hasattr(s, "samples") else st.open(s) for s in stores]
    if not opened:
        raise AfipError("give at least one trace store")
    samples: list[_Sample] = []
    layers = heads = 0
    levels = set()
    ranges: dict[str, list[int]] = {}
    for k, store in enumerate(opened):
        table = labelled_table(store, annotations)
        ranges = {name: list(v) for name, v in table.attrs.get("layer_ranges", {}).items()}
        rows = store.samples("ok").set_index("sample_id")
        level = str(store.settings.get("record_level", "stats"))
        levels.add(level)
        prefix = f"{Path(store.root).name}: " if len(opened) > 1 else ""
        groups = table.groupby("sample_id", sort=False)
        ids = list(groups.groups)[: max_samples] if max_samples else list(groups.groups)
        for sid in tqdm(ids, desc=f"explorer {Path(store.root).name}", unit="sample", disable=not progress):
            tok = groups.get_group(sid).sort_values("step")
            row = rows.loc[sid]
            arrays = store.arrays(sid)
            cond = prefix + (str(row.get("condition", "")) or ("" if not prefix else "store"))
            condition = str(row.get("condition", "") or "")  # ids are <condition>/<image> in compare stores
            image_key = str(sid)[len(condition) + 1:] if condition and str(sid).startswith(condition + "/") else str(sid)
            tiles = tiles_of(store, row)
            pngs, shown_images = [], []
            for k, im in enumerate(sample_images(row)):
                png, width, height = _image_data(im.path)
                pngs.append(png)
                # each image's map: its tiles (the image, or its crops) on their boxes; overviews are not drawn
                mine = [t for t in tiles if t.image == k]
                shown_images.append({"width": width, "height": height, "tiles": [
                    {"grid": list(t.grid), "cells": list(t.cells), "box": [round(float(v), 2) for v in t.box]}
                    for t in main_tiles(mine)[0]]})
            payload: dict[str, Any] = {
                "id": str(sid), "cond": cond, "n": len(row.image_positions), "images": shown_images,
                "tokens": tok.token_text.tolist(), "labels": tok.label.astype(str).tolist(),
                "words": tok.word_label.astype(str).tolist(),  # the label on every token of an object word
                "objects": tok.object.astype(str).tolist(),
                "metrics": {m: _round(tok[m]) for m in METRICS if m in tok},
            }
            if array_name("maps") in arrays:
                maps = np.asarray(arrays[array_name("maps")], dtype=np.float32)  # [T, L, n]
                layers = maps.shape[1]
                payload["maps"], payload["scales"] = _quantise(maps)
            if array_name("scores") in arrays:
                scores = np.asarray(arrays[array_name("scores")], dtype=np.float32)  # [T, L, H, n]
                lse = np.asarray(arrays[array_name("head", "lse")], dtype=np.float32)  # [T, L, H]
                heads = scores.shape[2]
                payload["heads"], payload["hscales"] = _quantise(np.exp(scores - lse[..., None]))
            counts = tok.label.astype(str).value_counts()
            index = {"id": str(sid), "cond": cond, "image": image_key, "tokens": len(tok),
                     "real": int(counts.get("real", 0)), "hall": int(counts.get("hallucinated", 0)),
                     "text": str(row.output_text)[:120]}
            samples.append(_Sample(index, payload, pngs))
        layers = layers or int(store.settings.get("num_layers", 0))
    if not samples:
        raise AfipError("the stores hold no finished samples to explore")
    shown = {m: label for m, label in METRICS.items()
             if all(m in s.payload["metrics"] for s in samples)}  # risk only where a detector recorded it
    title = figures_title([Path(s.root) for s in opened], [model_name(s.settings.get("model", "")) for s in opened])
    meta = {"title": title, "layers": layers, "heads": heads,
            "levels": sorted(levels), "ranges": ranges, "metrics": shown,
            "samples": [s.index for s in samples]}
    return meta, samples


#: the entries the explorer writes into its folder
WRITTEN = ("index.html", "explorer.js", "explorer.css", "data", "images")


def write_explorer(stores: Sequence[Any], out: str | Path, max_samples: int | None = DEFAULT_MAX_SAMPLES,
                   progress: bool = False, overwrite: bool = False, annotations: str | None = None) -> Path:
    """Write the explorer of `stores` into the folder `out`; returns index.html.

    `out` follows the output rule (`afip_probe.outputs`): a new or empty folder, or an earlier explorer
    replaced with `overwrite` (only its files); it is created once the stores are read."""
    check_dir(out, "explorer", overwrite=overwrite)
    meta, samples = _collect(stores, max_samples, progress, annotations)
    out = claim_dir(out, "explorer", writes=WRITTEN, overwrite=overwrite)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    for name in ASSETS:
        (out / name).write_text(_asset(name))
    for i, s in enumerate(samples):
        for k, png in enumerate(s.images):
            (out / _image_name(i, k)).write_bytes(png)
        payload = dict(s.payload, images=[dict(info, image=_image_name(i, k))
                                          for k, info in enumerate(s.payload["images"])])
        (out / "data" / f"s{i}.js").write_text(f"AFIP.register({i},{script_json(payload)});\n")
    (out / "data" / "index.js").write_text(f"window.AFIP_INDEX={script_json(meta)};\n")
    page = _asset("page.html").replace("{{TITLE}}", html.escape(meta["title"]))
    page = page.replace("{{HEAD}}", '<link rel="stylesheet" href="explorer.css">')
    page = page.replace("{{SCRIPTS}}", '<script src="data/index.js"></script>\n<script src="explorer.js"></script>')
    (out / "index.html").write_text(page)
    return out / "index.html"


def inline_page(stores: Sequence[Any], max_samples: int | None = INLINE_MAX_SAMPLES, progress: bool = False,
                annotations: str | None = None) -> str:
    """The whole explorer as one HTML document (data and images inline), for notebooks."""
    meta, samples = _collect(stores, max_samples, progress, annotations)
    data = [f"window.AFIP_INDEX={script_json(meta)};", _script_asset("explorer.js")]
    for i, s in enumerate(samples):
        images = [dict(info, image="data:image/png;base64," + base64.b64encode(png).decode())
                  for info, png in zip(s.payload["images"], s.images)]
        data.append(f"AFIP.register({i},{script_json(dict(s.payload, images=images))});")
    page = _asset("page.html").replace("{{TITLE}}", html.escape(meta["title"]))
    page = page.replace("{{HEAD}}", f"<style>{_asset('explorer.css')}</style>")
    return page.replace("{{SCRIPTS}}", "<script>\n" + "\n".join(data) + "\n</script>")


class Explorer:
    """The explorer of `stores` shown inline in Jupyter (an iframe holding the whole page).

    Example:
        >>> Explorer(["runs/organism"], max_samples=20)      # doctest: +SKIP
    """

    def __init__(self, stores: Any, max_samples: int | None = INLINE_MAX_SAMPLES, height: int = 760,
                 annotations: str | None = None):
        self.stores = [stores] if isinstance(stores, (str, Path)) or hasattr(stores, "samples") else list(stores)
        self.max_samples, self.height, self.annotations = max_samples, height, annotations

    def _repr_html_(self) -> str:
        page = inline_page(self.stores, self.max_samples, annotations=self.annotations)
        return (f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{self.height}px;'
                'border:1px solid #ddd" sandbox="allow-scripts"></iframe>')
