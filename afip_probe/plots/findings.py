"""The paper's Findings 1–2 figures, each drawn from token tables (`afip_probe.metrics.token_table`).

Every function takes a token table, or ``{name: token table}`` for several stores (models, runs), plus the
metric column to use, and returns a matplotlib Figure; none of them touches a model. Given several tables,
each figure draws every one of them: Fig. 3 left one curve each, the others one panel each, titled with
its name. Legends sit outside the axes, below the panels (figure-level, shared by the panels); the
numbers that differ per panel (n, p-values, AUCs) are in the panel titles.

=========================  ======================================================================
`entropy_distributions`    Fig. 2b: attention entropy of real vs hallucinated tokens, test p-value
`var_by_position`          Fig. 3 left: VAR vs token position, mean ± std band, one curve per model
`var_per_caption`          Fig. 3 right: VAR along a few captions, one small panel each, objects named
`kl_entropy_groups`        Fig. 4 left: token entropy per cross-head-KL quantile group with bootstrap CIs
`gap_roc`                  Fig. 5: ROC of the peak gap and mean gap as hallucination detectors
=========================  ======================================================================

Example:
    >>> from afip_probe.plots import findings as pf           # doctest: +SKIP
    >>> fig = pf.gap_roc({"run-a": df_a, "run-b": df_b})      # doctest: +SKIP
    >>> fig.savefig("fig5.png")                               # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..metrics.findings import is_hallucinated, object_tokens
from ..metrics.stats import bootstrap_ci, compare_groups, correlate, low_value_rate, quantile_groups, roc
from ..records import model_name

COLORS = {"real": "#2b8cbe", "hallucinated": "#e34a33"}
MARKERS = {"real": "o", "hallucinated": "x"}
LABELS = {
    "attn_entropy": "attention entropy (Eq. 1)",
    "attn_entropy_renorm": "attention entropy, renormalised (Eq. 1)",
    "var": "visual attention ratio (Eq. 2)",
    "kl": "cross-head KL (Eq. 3)",
    "peak_gap": "peak gap T − V",
    "mean_gap": "mean gap (pre-softmax)",
    "mean_gap_prob": "mean gap (post-softmax)",
    "risk": "hallucination risk (detector)",
}
TITLE_SIZE = 8.5


def _plt() -> Any:
    import matplotlib.pyplot as plt

    return plt


def label_of(column: str) -> str:
    """Axis label of a token-table column, e.g. ``var_late`` -> ``visual attention ratio (Eq. 2), layers: late``."""
    for m in sorted(LABELS, key=len, reverse=True):
        if column.startswith(m + "_"):
            return f"{LABELS[m]}, layers: {column[len(m) + 1:]}"
    return LABELS.get(column, column.replace("_", " "))


def _fmt_p(p: float) -> str:
    return "n/a" if not np.isfinite(p) else f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def named_tables(frames: pd.DataFrame | Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``{name: token table}``: a mapping as given, or one table named by its model (`model_name`).

    >>> named_tables(pd.DataFrame({"model": ["/x/afip_probe/organism/checkpoint"]})).keys()
    dict_keys(['organism'])
    """
    if isinstance(frames, pd.DataFrame):
        name = model_name(frames.model.iloc[0]) if "model" in frames and len(frames) else ""
        return {name: frames}
    return {str(k): v for k, v in frames.items()}


def _panels(n: int, size: tuple[float, float], rows: int = 1, sharey: bool = False) -> tuple[Any, np.ndarray]:
    """A figure of `rows` x ceil(n / rows) panels (constrained layout, so outside legends get their room)."""
    cols = int(np.ceil(n / rows))
    fig, axes = _plt().subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False,
                                layout="constrained", sharey=sharey)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes


def legend_below(fig: Any, handles: Sequence[Any], labels: Sequence[str], ncols: int | None = None) -> Any:
    """One legend for the whole figure, below every panel (off the data), in as many columns as fit the
    figure's width (one entry per row at the narrowest)."""
    renderer = fig.canvas.get_renderer()
    for n in range(ncols or len(labels), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=n, fontsize=8, frameon=False)
        if n == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width * 0.98:
            return legend
        legend.remove()
    return legend


def _each(frames: Any, draw: Callable[[pd.DataFrame, Any, str], None], size: tuple[float, float],
          ax: Any = None) -> Any:
    """Draw every table with `draw(df, ax, name)` (name '' for a single table), one panel each; one legend
    below them, made from the first panel's labelled artists."""
    tables = named_tables(frames)
    if ax is not None:
        if len(tables) > 1:
            raise ValueError("an ax holds one token table; give several tables without ax (one panel each)")
        draw(next(iter(tables.values())), ax, "")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # right of the axes
        return ax.figure
    fig, axes = _panels(len(tables), size)
    for panel, (name, df) in zip(axes[0], tables.items()):
        draw(df, panel, name if len(tables) > 1 else "")
    handles, labels = _handles(fig.axes)
    legend_below(fig, handles, labels)
    return fig


def _handles(axes: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """The labelled artists of the panels, each label once (first panel's first)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    return list(seen.values()), list(seen)


def _title(ax: Any, name: str, text: str) -> None:
    ax.set_title(f"{name}\n{text}" if name else text, fontsize=TITLE_SIZE)


def entropy_distributions(frames: Any, column: str = "attn_entropy_all", ax: Any = None) -> Any:
    """Fig. 2b: distributions (density histograms + KDE) of `column` for real vs hallucinated tokens; each
    panel's title carries the means, the counts and the Mann–Whitney U p-value."""
    import seaborn as sns

    def draw(df: pd.DataFrame, ax: Any, name: str) -> None:
        obj = object_tokens(df)
        for label in ("real", "hallucinated"):
            values = obj.loc[obj.label == label, column].dropna()
            if len(values):
                sns.histplot(values, ax=ax, stat="density", kde=len(values) > 2 and values.nunique() > 1,
                             color=COLORS[label], alpha=0.35, label=f"{label} object tokens", element="step")
        test = compare_groups(obj.loc[obj.label == "real", column], obj.loc[obj.label == "hallucinated", column])
        ax.set_xlabel(label_of(column))
        ax.set_ylabel("density")
        _title(ax, name, f"real {test.mean_a:.3f} (n={test.n_a}) vs hallucinated {test.mean_b:.3f} "
                         f"(n={test.n_b}); Mann–Whitney p = {_fmt_p(test.mannwhitney_p)}")

    return _each(frames, draw, (5.8, 3.6), ax)


def var_by_position(frames: Any, column: str = "var_all", max_step: int | None = None, min_count: int = 5,
                    ax: Any = None) -> Any:
    """Fig. 3 left: mean ± std of `column` at each token position, one curve per model.

    `frames` is a token table (curves per its ``model`` column) or {name: token table}. Positions
    with fewer than `min_count` tokens are not drawn."""
    if isinstance(frames, pd.DataFrame):
        frames = {model_name(name): g for name, g in frames.groupby("model", sort=False)}
    given = ax is not None
    fig, ax = (ax.figure, ax) if given else _plt().subplots(figsize=(6.4, 3.8), layout="constrained")
    for name, frame in frames.items():
        g = frame.groupby("step")[column].agg(["mean", "std", "count"])
        g = g[g["count"] >= min_count]
        if max_step is not None:
            g = g[g.index <= max_step]
        x = g.index.to_numpy()
        mean, std = g["mean"].to_numpy(), g["std"].fillna(0).to_numpy()
        (line,) = ax.plot(x, mean, lw=1.4, label=str(name))
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("generated token position")
    ax.set_ylabel(label_of(column))
    ax.set_title("VAR along the caption (mean ± std)", fontsize=TITLE_SIZE)
    if given:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # right of the axes
    else:
        legend_below(fig, *ax.get_legend_handles_labels(), ncols=min(len(frames), 3))
    return fig


def _pick_captions(df: pd.DataFrame, n: int) -> list[str]:
    """`n` captions: those with hallucinations first, then the rest, in store order."""
    hall = df.loc[df.label == "hallucinated", "sample_id"].drop_duplicates().tolist()
    seen = set(hall)
    rest = [s for s in df.sample_id.drop_duplicates() if s not in seen]
    return (hall + rest)[:n]


def var_per_caption(frames: Any, column: str = "var_all", samples: Sequence[str] | None = None, n: int = 6,
                    quantile: float = 0.3, cols: int = 3) -> Any:
    """Fig. 3 right: `column` along `n` captions, one small panel each (those with hallucinations first,
    unless `samples` names them); every object token is marked (× hallucinated, ○ real) and named. The
    title gives the hallucination rate among the lowest `quantile` of `column` tokens vs the rest.

    Several tables: one row of `cols` captions per table, its name in each panel's title."""
    tables = named_tables(frames)
    several = len(tables) > 1
    per_table = {name: list(samples) if samples is not None and not several else _pick_captions(df, cols if several else n)
                 for name, df in tables.items()}
    panels = [(name, sid) for name, ids in per_table.items() for sid in ids]
    rows = len(tables) if several else int(np.ceil(len(panels) / cols))
    fig, axes = _panels(max(len(panels), 1), (3.0, 2.5), rows=max(rows, 1), sharey=True)
    for ax, (name, sid) in zip(axes.ravel(), panels):
        df = tables[name]
        cap = df[df.sample_id == sid].sort_values("step")
        ax.plot(cap.step, cap[column], lw=0.9, color="0.45")
        for label in ("hallucinated", "real"):
            m = cap[cap.label == label]
            ax.scatter(m.step, m[column], marker=MARKERS[label], s=30, zorder=3, label=f"{label} object token",
                       **({"facecolors": "none", "edgecolors": COLORS[label]} if label == "real"
                          else {"color": COLORS[label]}))
            words = m.mention if "mention" in m else m.token_text
            for step, value, word in zip(m.step, m[column], words.astype(str).str.strip()):
                ax.annotate(word, (step, value), xytext=(0, 5), textcoords="offset points", ha="center",
                            fontsize=6.5, color=COLORS[label])
        counts = cap.label.astype(str).value_counts()
        ax.set_title(f"{name + ' · ' if several else ''}{sid}\n{counts.get('hallucinated', 0)} hallucinated, "
                     f"{counts.get('real', 0)} real", fontsize=7.5)
        ax.set_xlabel("token position", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.margins(y=0.18)  # room for the words above the marks
    fig.supylabel(label_of(column), fontsize=8.5)
    rates = []
    for name, df in tables.items():
        obj = object_tokens(df)
        rate = low_value_rate(obj[column], is_hallucinated(obj), quantile)
        rates.append(f"{name + ': ' if several else ''}{rate.low_rate:.3f} vs {rate.rest_rate:.3f}")
    fig.suptitle(f"{LABELS.get(column.rsplit('_', 1)[0], column)} along {len(panels)} captions; hallucination "
                 f"rate, lowest {quantile:.0%} vs the rest: " + "; ".join(rates), fontsize=9)
    handles, labels = _handles(fig.axes)
    legend_below(fig, handles, labels)
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


def quantile_axis_label(column: str, q: int) -> str:
    """Fig. 4's x label: which quantity is grouped, and how (one phrase, then the groups' order).

    >>> quantile_axis_label("kl_all", 5)
    'quantile group of cross-head KL (Eq. 3), layers: all\\n(Q1 lowest … Q5 highest)'
    """
    return f"quantile group of {label_of(column)}\n(Q1 lowest … Q{q} highest)"


def kl_entropy_groups(frames: Any, column: str = "kl_all", q: int = 5, n_resamples: int = 2000) -> Any:
    """Fig. 4 left: token entropy per cross-head-KL quantile group, real vs hallucinated (bootstrap 95 %
    CIs), hallucination-rate bars on the right axis; each panel's title gives the KL–token-entropy Spearman
    r and p. Of n panels, panel k's axes is ``fig.axes[k]``, its bar axes ``fig.axes[n + k]``."""
    tables = named_tables(frames)
    fig, axes = _panels(len(tables), (6.0, 3.9))
    for ax, (name, df) in zip(axes[0], tables.items()):
        table = kl_entropy_table(df, column, q, n_resamples)
        bars = ax.twinx()
        if len(table):
            rates = table.drop_duplicates("group")
            bars.bar(rates.group.to_numpy(), rates.hallucination_rate.to_numpy(np.float64), width=0.6,
                     color="0.85", zorder=0, label="hallucination rate (right axis)")
            for k, label in enumerate(("real", "hallucinated")):
                t = table[(table.label == label) & (table.n > 0)]
                x = t.group.to_numpy() + (k - 0.5) * 0.15
                y, lo, hi = (t[c].to_numpy(np.float64) for c in ("token_entropy", "ci_low", "ci_high"))
                ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o-", color=COLORS[label], capsize=3,
                            label=f"{label} object tokens (mean, 95 % CI)", zorder=3)
        ax.set_zorder(bars.get_zorder() + 1)
        ax.patch.set_visible(False)
        obj = object_tokens(df)
        c = correlate(obj[column], obj.token_entropy)
        ax.set_xticks(range(q))
        ax.set_xticklabels([f"Q{g + 1}" for g in range(q)])
        ax.set_xlabel(quantile_axis_label(column, q))
        ax.set_ylabel("token entropy (Eq. 4)")
        bars.set_ylabel("hallucination rate")
        _title(ax, name if len(tables) > 1 else "",
               f"KL vs token entropy: Spearman r = {c.spearman_r:.3f}, p = {_fmt_p(c.spearman_p)} (n={c.n})")
    handles, labels = _handles(fig.axes)
    legend_below(fig, handles, labels)
    return fig


def gap_roc(frames: Any, columns: Sequence[str] = ("peak_gap_all", "mean_gap_all"), ax: Any = None) -> Any:
    """Fig. 5: ROC curves of each gating signal as a detector of hallucinated object tokens (higher
    gap = more likely hallucinated); each panel's title gives the counts and every AUC (sklearn's
    roc_auc_score), the legend below names the signals."""

    def draw(df: pd.DataFrame, ax: Any, name: str) -> None:
        obj = object_tokens(df)
        y = is_hallucinated(obj)
        aucs = []
        for column in columns:
            curve = roc(obj[column].to_numpy(), y)
            ax.plot(curve.fpr, curve.tpr, lw=1.6, label=label_of(column))
            aucs.append(f"{LABELS.get(column.rsplit('_', 1)[0], column)} {curve.auc:.3f}")
        ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance (AUC 0.5)")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_aspect("equal")
        _title(ax, name, f"{int(y.sum())} hallucinated / {int((~y).sum())} real object tokens\nAUC: "
                         + ", ".join(aucs))

    return _each(frames, draw, (4.4, 4.6), ax)


def risk_per_caption(frames: Any, n: int = 6) -> Any:
    """A detector's recorded risk (``risk``, `afip-probe trace --detector`) along `n` captions, those with
    hallucinations first; hallucinated object tokens marked ×, real ones ○."""
    fig = var_per_caption(frames, "risk", n=n)
    parts = []
    for name, df in named_tables(frames).items():
        obj = object_tokens(df)
        means = obj.groupby(obj.label.astype(str)).risk.mean()
        parts.append(f"{name + ': ' if len(named_tables(frames)) > 1 else ''}hallucinated "
                     f"{means.get('hallucinated', np.nan):.3f} vs real {means.get('real', np.nan):.3f}")
    fig.suptitle("detector risk along the captions; mean risk " + "; ".join(parts), fontsize=9)
    return fig


def all_figures(frames: Any, layer_range: str = "all", n_resamples: int = 2000, title: str = "") -> dict[str, Any]:
    """Every Findings figure of one token table or ``{name: token table}`` (each figure draws every table),
    keyed by a file-name stem, plus the risk figure when a detector recorded one. `title` (e.g. the model
    and store) heads each figure."""
    r = layer_range
    tables = named_tables(frames)
    figs = {
        "fig2b_entropy": entropy_distributions(tables, f"attn_entropy_{r}"),
        "fig3_left_var_position": var_by_position(tables, f"var_{r}"),
        "fig3_right_var_caption": var_per_caption(tables, f"var_{r}"),
        "fig4_left_kl_entropy": kl_entropy_groups(tables, f"kl_{r}", n_resamples=n_resamples),
        "fig5_gap_roc": gap_roc(tables, (f"peak_gap_{r}", f"mean_gap_{r}")),
    }
    if all("risk" in df for df in tables.values()):
        figs["risk_caption"] = risk_per_caption(tables)
    if title:
        for fig in figs.values():
            head = fig.get_suptitle()
            fig.suptitle(f"{title}\n{head}" if head else title, fontsize=9)
    return figs
