"""Statistics of before/after comparisons: CHAIR per condition, paired per-caption differences with
bootstrap CIs and Wilcoxon p-values, and VAR per token for each condition.

A compared store holds one sample per (condition, image), with sample ids ``<condition>/<image>``;
`BASELINE` is the condition without a corrector.

Example:
    >>> import pandas as pd
    >>> split_condition(pd.Series(["baseline/img1", "afip/img1"])).tolist()
    ['img1', 'img1']
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..records import array_name
from .stats import bootstrap_ci

BASELINE = "baseline"


def split_condition(sample_ids: pd.Series) -> pd.Series:
    """The image part of ``<condition>/<image>`` sample ids."""
    return sample_ids.str.split("/", n=1).str[-1]


def chair_tables(samples: pd.DataFrame, chair: Any, order: Sequence[str] | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(overall per condition, per-caption metrics, paired differences against the baseline).

    Conditions come in `order` (default: as they appear in `samples`)."""
    ok = samples[samples.status == "ok"]
    per_caption, overall = [], []
    for cond in order if order is not None else ok.condition.unique():
        group = ok[ok.condition == cond]
        res = chair.compute(list(zip(group.image_id.tolist(), group.output_text.tolist())))
        overall.append({"condition": cond, "n": len(res.sentences),
                        **{k: round(v * 100, 2) for k, v in res.overall.items()}})
        for sid, s in zip(group.sample_id, res.sentences):
            per_caption.append({"condition": cond, "image": sid.split("/", 1)[-1], "image_id": s.image_id,
                                "CHAIRs": s.metrics["CHAIRs"], "CHAIRi": s.metrics["CHAIRi"],
                                "hallucinated": len(s.hallucinated), "mentions": len(s.generated)})
    caps = pd.DataFrame(per_caption)
    rows = []
    if len(caps):
        base = caps[caps.condition == BASELINE].set_index("image")
        for cond in caps.condition.unique():
            if cond == BASELINE:
                continue
            other = caps[caps.condition == cond].set_index("image")
            common = base.index.intersection(other.index)
            for metric in ("CHAIRi", "CHAIRs"):
                diff = (other.loc[common, metric] - base.loc[common, metric]).to_numpy(dtype=np.float64)
                mean, lo, hi = bootstrap_ci(diff)
                p = float(stats.wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
                rows.append({"condition": cond, "metric": metric, "n": len(common),
                             "mean_diff_pct": round(mean * 100, 2), "ci_low_pct": round(lo * 100, 2),
                             "ci_high_pct": round(hi * 100, 2), "wilcoxon_p": p})
    return pd.DataFrame(overall), caps, pd.DataFrame(rows)


def condition_var(store: Any, conditions: Sequence[str], layers: Sequence[int]) -> dict[str, pd.DataFrame]:
    """{condition: one row per generated token with its ``step`` and ``var`` (VAR, mean over `layers` and
    heads)}. A corrected condition's VAR is that of its corrected rows: what the model attended to."""
    samples = store.samples("ok")
    idx = list(layers)
    out = {}
    for cond in conditions:
        parts = []
        for sid in samples[samples.condition == cond].sample_id:
            arrays = store.arrays(sid)
            name = array_name("head", "var", "corrected")
            if cond == BASELINE or name not in arrays:
                name = array_name("head", "var")
            var = np.asarray(arrays[name])[:, idx, :].mean(axis=(1, 2))  # [T]
            parts.append(pd.DataFrame({"sample_id": sid, "step": np.arange(len(var)), "var": var}))
        if parts:
            out[cond] = pd.concat(parts, ignore_index=True)
    return out
