"""Typed rows of a store's two tables: `SampleRow` (one per sample) and `token_rows` (one per token).

Example:
    >>> row = SampleRow(sample_id="img1", image="img1.png", prompt="describe", model="tiny")
    >>> row.failed("cannot read image").status
    'failed'
    >>> sorted(row.to_dict())[:3]
    ['condition', 'error', 'generated_ids']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .layout import Tile, tiles_json
from .tokens import token_char_spans
from .trace import SampleTrace


@dataclass
class SampleRow:
    """One row of the samples table (DESIGN §8): what was asked, what came out, where the image was."""

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

    def failed(self, error: str) -> "SampleRow":
        return dataclasses.replace(self, status="failed", error=error)

    def with_trace(self, trace: SampleTrace, output_text: str, image_size: tuple[int, int],
                   region: tuple[float, float, float, float], tiles: Sequence[Tile] = ()) -> "SampleRow":
        """This row completed with a finished sample's trace, text and image geometry."""
        return dataclasses.replace(
            self, status="ok", error="", output_text=output_text, prompt_ids=list(trace.prompt_ids),
            generated_ids=list(trace.generated_ids), num_tokens=trace.num_tokens,
            image_positions=list(trace.layout.positions), image_spans=[list(s) for s in trace.layout.spans],
            grid_rows=trace.layout.grid[0], grid_cols=trace.layout.grid[1], image_width=image_size[0],
            image_height=image_size[1], grid_region=[float(v) for v in region], tiles=tiles_json(tiles))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def token_rows(sample_id: str, trace: SampleTrace, tokenizer: Any) -> tuple[str, pd.DataFrame]:
    """The output text and the store's tokens table of one sample: one row per generated token with its
    char span and per-token summaries (head and layer means of the recorded statistics)."""
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
