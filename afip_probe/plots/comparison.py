"""Figures of before/after comparisons: VAR over position per condition, and one image's attention
before and after a corrector.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"step": [0, 1, 0, 1], "var": [0.3, 0.2, 0.35, 0.25]})
    >>> fig = var_position_figure({"baseline": frame}, layers=[2, 3])
    >>> fig.axes[0].get_ylabel()
    'VAR (layers 2–3, head mean)'
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from ..errors import AfipError
from ..metrics.comparison import BASELINE, split_condition
from .findings import var_by_position
from .store_maps import before_after_heatmap


def var_position_figure(frames: Mapping[str, pd.DataFrame], layers: Sequence[int]) -> Any:
    """Mean ± std of VAR at each token position, one curve per condition (`metrics.comparison.condition_var`)."""
    fig = var_by_position(dict(frames), column="var", min_count=1)
    ax = fig.axes[0]
    ax.set_ylabel(f"VAR (layers {layers[0]}–{layers[-1]}, head mean)")
    ax.set_title("VAR along the caption per condition (mean ± std)", fontsize=9)
    return fig


def attention_figure(store: Any, cond: str, sample: str | None, layers: list[int]) -> tuple[Any, str]:
    """Before/after heatmap of one image's first generated token: baseline maps vs the condition's
    corrected maps; returns (figure, image)."""
    samples = store.samples("ok")
    by_image = {c: g.set_index(split_condition(g.sample_id)) for c, g in samples.groupby("condition")}
    if BASELINE not in by_image or cond not in by_image:
        raise AfipError("no image was traced in both conditions; nothing to compare")
    base, other = by_image[BASELINE], by_image[cond]
    common = [i for i in base.index if i in other.index]
    if not common:
        raise AfipError("no image was traced in both conditions; nothing to compare")
    image = sample if sample is not None else common[0]
    if image not in common:
        raise AfipError(f"--sample {image!r} is not among the compared images (e.g. {common[0]!r})")
    fig = before_after_heatmap(store, base.loc[image].sample_id, other.loc[image].sample_id, 0, layers,
                               titles=(BASELINE, cond),
                               suptitle=f"{image}: first generated token, layers {layers[0]}–{layers[-1]}")
    return fig, image
