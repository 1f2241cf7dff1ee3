"""The paper's Findings 1–2 figures, each drawn from a token table (`afip_probe.metrics.token_table`).

Every function takes the DataFrame (plus the metric column to use) and returns a matplotlib Figure;
none of them touches a model.

=========================  ======================================================================
`entropy_distributions`    Fig. 2b: attention entropy of real vs hallucinated tokens, test p-value
`var_by_position`          Fig. 3 left: VAR vs token position, mean ± std band, one curve per model
`var_per_caption`          Fig. 3 right: VAR over normalised position per caption, hallucinations marked
`kl_entropy_groups`        Fig. 4 left: token entropy per cross-head-KL quantile group with bootstrap CIs
`gap_roc`                  Fig. 5: ROC of the peak gap and mean gap as hallucination detectors
=========================  ======================================================================

Example:
    >>> from afip_probe.plots import findings as pf           # doctest: +SKIP
    >>> fig = pf.gap_roc(df)                                  # doctest: +SKIP
    >>> fig.savefig("fig5.png")                               # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..metrics.findings import is_hallucinated, object_tokens
from ..metrics.stats import bootstrap_ci, compare_groups, correlate, low_value_rate, quantile_groups, roc

COLORS = {"real": "#2b8cbe", "hallucinated": "#e34a33"}
LABELS = {
    "attn_entropy": "attention entropy (Eq. 1)",
    "attn_entropy_renorm": "attention entropy, renormalised (Eq. 1)",
    "var": "visual attention ratio (Eq. 2)",
    "kl": "cross-head KL (Eq. 3)",
    "peak_gap": "peak gap T − V",
    "mean_gap": "mean gap (pre-softmax)",
    "mean_gap_prob": "mean gap (post-softmax)",
}


def _plt() -> Any:
    import matplotlib.pyplot as plt

    return plt


def label_of(column: str) -> str:
    """Axis label of a token-table column, e.g. ``var_late`` -> ``visual attention ratio (Eq. 2), layers: late``."""
    for m in sorted(LABELS, key=len, reverse=True):
        if column.startswith(m + "_"):
            return f"{LABELS[m]}, layers: {column[len(m) + 1:]}"
    return column.replace("_", " ")


def _fmt_p(p: float) -> str:
    return "n/a" if not np.isfinite(p) else f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def entropy_distributions(df: pd.DataFrame, column: str = "attn_entropy_all", ax: Any = None) -> Any:
    """Fig. 2b: distributions (density histograms + KDE) of `column` for real vs hallucinated tokens;
    the title carries the means and the Mann–Whitney U p-value."""
    import seaborn as sns

    obj = object_tokens(df)
    fig, ax = (ax.figure, ax) if ax is not None else _plt().subplots(figsize=(5.5, 3.6))
    for label in ("real", "hallucinated"):
        values = obj.loc[obj.label == label, column].dropna()
        if len(values):
            sns.histplot(values, ax=ax, stat="density", kde=len(values) > 2 and values.nunique() > 1,
                         color=COLORS[label], alpha=0.35, label=f"{label} (n={len(values)})", element="step")
    test = compare_groups(obj.loc[obj.label == "real", column], obj.loc[obj.label == "hallucinated", column])
    ax.set_xlabel(label_of(column))
    ax.set_ylabel("density")
    ax.set_title(f"real {test.mean_a:.3f} vs hallucinated {test.mean_b:.3f}; Mann–Whitney p = "
                 f"{_fmt_p(test.mannwhitney_p)}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def var_by_position(frames: pd.DataFrame | Mapping[str, pd.DataFrame], column: str = "var_all",
                    max_step: int | None = None, min_count: int = 5, ax: Any = None) -> Any:
    """Fig. 3 left: mean ± std of `column` at each token position, one curve per model.

    `frames` is a token table (curves per its ``model`` column) or {name: token table}. Positions
    with fewer than `min_count` tokens are not drawn."""
    if isinstance(frames, pd.DataFrame):
        frames = {str(name): g for name, g in frames.groupby("model", sort=False)}
    fig, ax = (ax.figure, ax) if ax is not None else _plt().subplots(figsize=(6, 3.6))
    for name, frame in frames.items():
        g = frame.groupby("step")[column].agg(["mean", "std", "count"])
        g = g[g["count"] >= min_count]
        if max_step is not None:
            g = g[g.index <= max_step]
        x = g.index.to_numpy()
        mean, std = g["mean"].to_numpy(), g["std"].fillna(0).to_numpy()
        (line,) = ax.plot(x, mean, lw=1.4, label=f"{_short(name)}")
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("generated token position")
    ax.set_ylabel(label_of(column))
    ax.set_title("VAR along the caption (mean ± std)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def var_per_caption(df: pd.DataFrame, column: str = "var_all", samples: Sequence[str] | None = None,
                    n: int = 6, quantile: float = 0.3, ax: Any = None) -> Any:
    """Fig. 3 right: `column` over normalised position for `n` captions (those with hallucinations
    first, unless `samples` names them); hallucinated tokens are marked ×, real ones ○. The title
    gives the hallucination rate among the lowest `quantile` of VAR tokens vs the rest."""
    if samples is None:
        hall = df.loc[df.label == "hallucinated", "sample_id"].drop_duplicates().tolist()
        seen = set(hall)
        rest = [s for s in df.sample_id.drop_duplicates() if s not in seen]
        samples = (hall + rest)[:n]
    fig, ax = (ax.figure, ax) if ax is not None else _plt().subplots(figsize=(6, 3.6))
    for sid in samples:
        cap = df[df.sample_id == sid]
        ax.plot(cap.relative_position, cap[column], lw=0.9, alpha=0.7, color="0.45")
        for label, marker in (("hallucinated", "x"), ("real", "o")):
            m = cap[cap.label == label]
            ax.scatter(m.relative_position, m[column], marker=marker, s=30, color=COLORS[label], zorder=3,
                       facecolors="none" if marker == "o" else None)
    for label, marker in (("hallucinated", "x"), ("real", "o")):
        ax.scatter([], [], marker=marker, color=COLORS[label], label=f"{label} object token",
                   facecolors="none" if marker == "o" else None)
    obj = object_tokens(df)
    rate = low_value_rate(obj[column], is_hallucinated(obj), quantile)
    ax.set_xlabel("normalised position in caption")
    ax.set_ylabel(label_of(column))
    ax.set_title(f"{len(samples)} captions; hallucination rate: lowest {quantile:.0%} VAR {rate.low_rate:.3f} "
                 f"vs rest {rate.rest_rate:.3f}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def kl_entropy_table(df: pd.DataFrame, column: str = "kl_all", q: int = 5, n_resamples: int = 2000) -> pd.DataFrame:
    """Per KL quantile group and label: mean token entropy with its bootstrap CI; per group the
    hallucination rate. The numbers Fig. 4 left draws."""
    obj = object_tokens(df).copy()
    obj["group"] = quantile_groups(obj[column], q)
    rows = []
    for g, part in obj[obj.group >= 0].groupby("group"):
        rate = float((part.label == "hallucinated").mean())
        for label in ("real", "hallucinated"):
            te = part.loc[part.label == label, "token_entropy"].to_numpy()
            mean, lo, hi = bootstrap_ci(te, n_resamples=n_resamples)
            rows.append({"group": int(g), "kl_low": float(part[column].min()), "kl_high": float(part[column].max()),
                         "label": label, "n": len(te), "token_entropy": mean, "ci_low": lo, "ci_high": hi,
                         "hallucination_rate": rate})
    return pd.DataFrame(rows)


def kl_entropy_groups(df: pd.DataFrame, column: str = "kl_all", q: int = 5, n_resamples: int = 2000) -> Any:
    """Fig. 4 left: token entropy per cross-head-KL quantile group, real vs hallucinated (bootstrap 95 %
    CIs), hallucination-rate bars on the right axis; the title gives the KL–token-entropy Spearman r and p."""
    table = kl_entropy_table(df, column, q, n_resamples)
    fig, ax = _plt().subplots(figsize=(6, 3.8))
    bars = ax.twinx()
    if len(table):
        rates = table.drop_duplicates("group")
        bars.bar(rates.group.to_numpy(), rates.hallucination_rate.to_numpy(np.float64), width=0.6, color="0.85", zorder=0,
                 label="hallucination rate")
        for k, label in enumerate(("real", "hallucinated")):
            t = table[(table.label == label) & (table.n > 0)]
            x = t.group.to_numpy() + (k - 0.5) * 0.15
            y, lo, hi = (t[c].to_numpy(np.float64) for c in ("token_entropy", "ci_low", "ci_high"))
            ax.errorbar(x, y, yerr=[y - lo, hi - y],
                        fmt="o-", color=COLORS[label], capsize=3, label=f"{label} tokens", zorder=3)
    ax.set_zorder(bars.get_zorder() + 1)
    ax.patch.set_visible(False)
    obj = object_tokens(df)
    c = correlate(obj[column], obj.token_entropy)
    ax.set_xticks(range(q))
    ax.set_xticklabels([f"Q{g + 1}" for g in range(q)])
    ax.set_xlabel(f"{label_of(column)} quantile group (low → high)")
    ax.set_ylabel("token entropy (Eq. 4)")
    bars.set_ylabel("hallucination rate")
    ax.set_title(f"KL vs token entropy: Spearman r = {c.spearman_r:.3f}, p = {_fmt_p(c.spearman_p)} (n={c.n})",
                 fontsize=9)
    handles = ax.get_legend_handles_labels()
    extra = bars.get_legend_handles_labels()
    ax.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def gap_roc(df: pd.DataFrame, columns: Sequence[str] = ("peak_gap_all", "mean_gap_all"), ax: Any = None) -> Any:
    """Fig. 5: ROC curves of each gating signal as a detector of hallucinated object tokens (higher
    gap = more likely hallucinated); the legend gives each AUC (sklearn's roc_auc_score)."""
    obj = object_tokens(df)
    y = is_hallucinated(obj)
    fig, ax = (ax.figure, ax) if ax is not None else _plt().subplots(figsize=(4.4, 4.2))
    for column in columns:
        curve = roc(obj[column].to_numpy(), y)
        ax.plot(curve.fpr, curve.tpr, lw=1.6, label=f"{label_of(column)} (AUC = {curve.auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"hallucinated vs real object tokens ({int(y.sum())} / {int((~y).sum())})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def risk_per_caption(df: pd.DataFrame, n: int = 6, ax: Any = None) -> Any:
    """A detector's recorded risk (``risk``, `afip-probe trace --detector`) along `n` captions, those with
    hallucinations first; hallucinated object tokens marked ×, real ones ○."""
    fig = var_per_caption(df, "risk", n=n, ax=ax)
    ax = fig.axes[0]
    ax.set_ylabel("hallucination risk (detector)")
    obj = object_tokens(df)
    means = obj.groupby(obj.label.astype(str)).risk.mean()
    ax.set_title(f"detector risk along {n} captions; mean risk: hallucinated {means.get('hallucinated', np.nan):.3f}"
                 f" vs real {means.get('real', np.nan):.3f}", fontsize=9)
    return fig


def all_figures(df: pd.DataFrame, layer_range: str = "all", n_resamples: int = 2000) -> dict[str, Any]:
    """Every Findings figure of one token table, keyed by a file-name stem (plus the risk figure when a
    detector recorded one)."""
    r = layer_range
    figs = {
        "fig2b_entropy": entropy_distributions(df, f"attn_entropy_{r}"),
        "fig3_left_var_position": var_by_position(df, f"var_{r}"),
        "fig3_right_var_caption": var_per_caption(df, f"var_{r}"),
        "fig4_left_kl_entropy": kl_entropy_groups(df, f"kl_{r}", n_resamples=n_resamples),
        "fig5_gap_roc": gap_roc(df, (f"peak_gap_{r}", f"mean_gap_{r}")),
    }
    if "risk" in df:
        figs["risk_caption"] = risk_per_caption(df)
    return figs


def _short(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1] or name
