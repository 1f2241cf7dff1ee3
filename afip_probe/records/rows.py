"""Typed rows of a store's two tables: `SampleRow` (one per sample) and `token_rows` (one per token).

A sample shows one image or several: `SampleImage` is one of them (path, size, the grid's box, COCO id),
all of them in the ``images`` column; the ``image``, ``image_width``, ``image_height``, ``grid_region`` and
``image_id`` columns keep their meaning for the first (the only one in a store written before ``images``).

Example:
    >>> row = SampleRow(sample_id="img1", image="img1.png", prompt="describe", model="tiny")
    >>> row.failed("cannot read image").status
    'failed'
    >>> sorted(row.to_dict())[:3]
    ['condition', 'error', 'generated_ids']
    >>> two = [SampleImage("a.png", 64, 48, (0, 0, 64, 48)), SampleImage("b.png", 30, 50, (0, 0, 30, 50), 7)]
    >>> [im.path for im in sample_images(SampleRow("a+b", "a.png", "compare", "tiny", images=images_json(two)))]
    ['a.png', 'b.png']
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported when a token table is built, not with the records (CLI start-up)
    import pandas as pd

from .layout import Tile, tiles_json
from .tokens import token_char_spans
from .trace import SampleTrace


@dataclass(frozen=True)
class SampleImage:
    """One image of a sample: its file, size (original pixels), the box its patch grid covers (the single-grid
    families' ``grid_region``) and COCO image id (-1 for none)."""

    path: str
    width: int
    height: int
    region: tuple[float, float, float, float]
    image_id: int = -1

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "width": self.width, "height": self.height,
                "region": [float(v) for v in self.region], "image_id": self.image_id}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "SampleImage":
        return SampleImage(str(d["path"]), int(d["width"]), int(d["height"]),
                           tuple(float(v) for v in d["region"]), int(d.get("image_id", -1)))  # type: ignore[arg-type]


def images_json(images: Sequence[SampleImage]) -> str:
    """The samples table's ``images`` column: a JSON list of the sample's images ("" for none)."""
    return json.dumps([im.to_dict() for im in images], separators=(",", ":")) if images else ""


def _get(row: Any, name: str, default: Any = None) -> Any:
    value = row.get(name, default) if hasattr(row, "get") else getattr(row, name, default)
    return default if value is None or (isinstance(value, float) and value != value) else value


def sample_images(row: Any) -> list[SampleImage]:
    """The images of a samples-table row (a `SampleRow`, a pandas row or a dict), in prompt order; for stores
    written before the ``images`` column, the one image of the ``image`` columns."""
    value = _get(row, "images", "")
    if isinstance(value, str) and value:
        return [SampleImage.from_dict(d) for d in json.loads(value)]
    region = _get(row, "grid_region", None)
    width, height = int(_get(row, "image_width", 0)), int(_get(row, "image_height", 0))
    box = tuple(float(v) for v in region) if region is not None and len(region) == 4 else \
        (0.0, 0.0, float(width), float(height))
    return [SampleImage(str(_get(row, "image", "")), width, height, box, int(_get(row, "image_id", -1)))]  # type: ignore[arg-type]


@dataclass
class SampleRow:
    """One row of the samples table (docs/design.md §8): what was asked, what came out, where the image was."""

    sample_id: str
    image: str
    prompt: str
    model: str
    image_id: int = -1  # COCO image id from the file name's trailing digits; -1 when it has none
    condition: str = ""
    status: str = "ok"  # ok | failed
    error: str = ""
    output_text: str = ""
    prompt_ids: list[int] = field(default_factory=list)
    generated_ids: list[int] = field(default_factory=list)
    num_tokens: int = 0
    image_positions: list[int] = field(default_factory=list)
    image_spans: list[list[int]] = field(default_factory=list)
    grid_rows: int = 0
    grid_cols: int = 0
    image_width: int = 0
    image_height: int = 0
    grid_region: list[float] = field(default_factory=list)  # (x0, y0, x1, y1) box of the image the grid covers
    tiles: str = ""  # JSON list of `Tile`s: each patch grid (image, crops, overview) and its box ("" before tiles)
    images: str = ""  # JSON list of the sample's `SampleImage`s, prompt order ("" before prompts of several images)
    image_ids: list[int] = field(default_factory=list)  # COCO image id of each image (-1 for none)

    def failed(self, error: str) -> "SampleRow":
        return dataclasses.replace(self, status="failed", error=error)

    def with_trace(self, trace: SampleTrace, output_text: str, images: Sequence[SampleImage],
                   tiles: Sequence[Tile] = ()) -> "SampleRow":
        """This row completed with a finished sample's trace, text and the geometry of its images."""
        first = images[0]
        return dataclasses.replace(
            self, status="ok", error="", output_text=output_text, prompt_ids=list(trace.prompt_ids),
            generated_ids=list(trace.generated_ids), num_tokens=trace.num_tokens,
            image_positions=list(trace.layout.positions), image_spans=[list(s) for s in trace.layout.spans],
            grid_rows=trace.layout.grid[0], grid_cols=trace.layout.grid[1], image_width=first.width,
            image_height=first.height, grid_region=[float(v) for v in first.region], tiles=tiles_json(tiles),
            images=images_json(images), image_ids=[im.image_id for im in images])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def token_rows(sample_id: str, trace: SampleTrace, tokenizer: Any) -> tuple[str, "pd.DataFrame"]:
    """The output text and the store's tokens table of one sample: one row per generated token with its
    char span and per-token summaries (head and layer means of the recorded statistics)."""
    import pandas as pd

    ids = trace.generated_ids
    text, spans = token_char_spans(tokenizer, ids)
    head, layer = trace.head, trace.layer
    frame = pd.DataFrame(
        {
            "sample_id": sample_id,
            "step": np.arange(len(ids), dtype=np.int32),
            "position": np.arange(len(ids), dtype=np.int64) + len(trace.prompt_ids),
            "token_id": np.asarray(ids, dtype=np.int64),
            "token_text": [text[s:e] for s, e in spans],
            "token_raw": tokenizer.convert_ids_to_tokens(list(ids)),
            "char_start": np.asarray([s for s, _ in spans], dtype=np.int32),
            "char_end": np.asarray([e for _, e in spans], dtype=np.int32),
            "relative_position": (np.arange(len(ids)) + 0.5) / max(len(ids), 1),
            "token_entropy": trace.token_entropy,
            "logprob": trace.logprob,
            "var_mean": head["var"].mean(axis=(1, 2)),
            "peak_gap_mean": (head["txt_max_score"] - head["img_max_score"]).mean(axis=(1, 2)),
            "attn_entropy_mean": layer["attn_entropy"].mean(axis=1),
            "kl_mean": layer["kl"].mean(axis=1),
        }
    )
    return text, frame
