"""Figures of hallucination detectors: ROC, precision–recall and reliability (calibration) curves, and one
ROC figure per group of `afip-probe detect eval`'s comparison (in-domain and transfer side by side).

Example:
    >>> import numpy as np
    >>> from afip_probe.metrics.detect import evaluate_scores
    >>> rng = np.random.default_rng(0)
    >>> y = rng.random(300) < 0.2
    >>> ev = evaluate_scores("x", y + rng.normal(size=300), y, np.arange(300) // 3, n_resamples=50)
    >>> len(detector_figure([ev]).axes)
    3
"""

from __future__ import annotations

import textwrap

from typing import Any, Sequence

from sklearn.metrics import precision_recall_curve, roc_curve

from ..metrics.detect import Evaluation


def detector_figure(evaluations: Sequence[Evaluation]) -> Any:
    """ROC (AUROC in the legend), precision–recall (AUPRC) and, for probability scores, the reliability
    curve of each evaluation, side by side."""
    import matplotlib.pyplot as plt

    fig, (roc_ax, pr_ax, cal_ax) = plt.subplots(1, 3, figsize=(13, 4))
    for ev in evaluations:
        if ev.scores is None or ev.positive is None:
            continue
        fpr, tpr, _ = roc_curve(ev.positive, ev.scores)
        roc_ax.plot(fpr, tpr, lw=1.3, label=f"{ev.name} ({ev.auroc:.3f})")
        precision, recall, _ = precision_recall_curve(ev.positive, ev.scores)
        pr_ax.plot(recall, precision, lw=1.3, label=f"{ev.name} ({ev.auprc:.3f})")
        if ev.reliability[0]:
            cal_ax.plot(ev.reliability[0], ev.reliability[1], marker="o", ms=3, label=f"{ev.name} (Brier {ev.brier:.3f})")
    roc_ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (AUROC)")
    base = evaluations[0].n_hallucinated / max(evaluations[0].n_tokens, 1) if evaluations else 0
    pr_ax.axhline(base, color="#999", lw=0.8, ls="--")
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision–recall (AUPRC)")
    cal_ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
    cal_ax.set(xlabel="predicted risk", ylabel="fraction hallucinated", title="reliability")
    for ax in (roc_ax, pr_ax, cal_ax):
        if ax.get_legend_handles_labels()[0]:  # (no reliability curve for scores that are no probabilities)
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def roc_figure(evaluations: Sequence[Evaluation], title: str) -> Any:
    """ROC curves of one group of a comparison: a panel per setting (in-domain, transfer), AUROC and its CI
    in the legend.

    >>> import numpy as np
    >>> from afip_probe.metrics.detect import evaluate_scores
    >>> rng = np.random.default_rng(1)
    >>> y = rng.random(200) < 0.3
    >>> ev = evaluate_scores("x", y + rng.normal(size=200), y, np.arange(200), n_resamples=20)
    >>> ev.setting = "in-domain"
    >>> [ax.get_title() for ax in roc_figure([ev], "single signals").axes]
    ['single signals: in-domain']
    """
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(ev.setting for ev in evaluations))
    names = list(dict.fromkeys(ev.name for ev in evaluations))
    # one look per detector in every panel: ten colours, then the same colours dashed, then dotted
    looks = {name: {"color": plt.get_cmap("tab10")(i % 10), "ls": ("-", "--", ":")[(i // 10) % 3]}
             for i, name in enumerate(names)}
    height = 4.4 + 0.15 * len(names) + 0.1 * sum(len(n) > 60 for n in names)  # the legend's lines below the panel
    fig, axes = plt.subplots(1, len(settings), figsize=(5.8 * len(settings), height),
                             squeeze=False, layout="constrained")
    for ax, setting in zip(axes[0], settings):
        for ev in evaluations:
            if ev.setting != setting or ev.scores is None or ev.positive is None:
                continue
            fpr, tpr, _ = roc_curve(ev.positive, ev.scores)
            label = f"{ev.name} {ev.auroc:.3f} ({ev.auroc_ci[0]:.3f}–{ev.auroc_ci[1]:.3f})"
            ax.plot(fpr, tpr, lw=1.2, **looks[ev.name], label=textwrap.fill(label, 80, subsequent_indent="  "))
        ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{title}: {setting}")
        ax.set_aspect("equal")
        # below the panel, off the curves: AUROC (95 % CI) per detector
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False,
                  title="AUROC (95 % CI)", title_fontsize=7)
    return fig
