"""How well scores separate hallucinated from real object tokens: AUROC and AUPRC with confidence intervals
that resample images (captions where the table has no image groups), never tokens, and the table of them.

Example:
    >>> rng = np.random.default_rng(0)
    >>> y = rng.random(400) < 0.2
    >>> ev = evaluate_scores("x", y + rng.normal(size=400), y, np.arange(400) // 4, n_resamples=200)
    >>> ev.auroc > 0.7 and ev.auroc_ci[0] < ev.auroc < ev.auroc_ci[1]
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ...errors import AfipError


@dataclass
class Evaluation:
    """How well scores separate hallucinated from real object tokens, CIs resampled by group (image)."""

    name: str
    auroc: float
    auroc_ci: tuple[float, float]
    auprc: float
    auprc_ci: tuple[float, float]
    brier: float
    n_tokens: int
    n_hallucinated: int
    n_captions: int  # groups: images (captions where the table has no image groups)
    reliability: tuple[list[float], list[float]] = ((), ())  # (mean predicted, fraction hallucinated) per bin
    scores: np.ndarray | None = field(default=None, repr=False)
    positive: np.ndarray | None = field(default=None, repr=False)
    group: str = ""  # what the evaluation belongs to in a report (single signals, published detectors, ...)
    setting: str = ""  # where it was measured (in-domain cross-validation, transfer to new scenes)
    note: str = ""  # e.g. the variant and orientation chosen on the training folds

    def row(self) -> dict[str, Any]:
        return {"detector": self.name, "AUROC": self.auroc, "AUROC 95% CI": self.auroc_ci, "AUPRC": self.auprc,
                "AUPRC 95% CI": self.auprc_ci, "Brier": self.brier, "tokens": self.n_tokens,
                "hallucinated": self.n_hallucinated, "captions": self.n_captions}


def evaluate_scores(name: str, scores: np.ndarray, positive: np.ndarray, groups: np.ndarray,
                    n_resamples: int = 1000, seed: int = 0, probabilities: bool = False) -> Evaluation:
    """AUROC and AUPRC of `scores` with percentile CIs from resampling `groups` (images, or captions) with
    replacement; Brier score and reliability curve when the scores are probabilities. Rows with a
    non-finite score are left out."""
    s, y, g = np.asarray(scores, np.float64), np.asarray(positive, bool), np.asarray(groups)
    keep = np.isfinite(s)
    s, y, g = s[keep], y[keep], g[keep]
    if y.all() or not y.any():
        raise AfipError(f"{name}: scoring needs both real and hallucinated object tokens")
    caps, inverse = np.unique(g, return_inverse=True)
    b = caption_bootstrap(s, y, inverse, n_resamples, np.random.default_rng(seed))  # [R, 2]
    if np.isfinite(b).any():
        lo, hi = np.nanpercentile(b, [2.5, 97.5], axis=0)
    else:  # no resample (n_resamples=0) or none with both classes
        lo = hi = np.full(2, np.nan)
    brier, rel = float("nan"), ((), ())
    if probabilities:
        brier = float(brier_score_loss(y, s))
        frac, pred = calibration_curve(y, s, n_bins=10, strategy="quantile")
        rel = (pred.tolist(), frac.tolist())
    return Evaluation(name, float(roc_auc_score(y, s)), (float(lo[0]), float(hi[0])),
                      float(average_precision_score(y, s)), (float(lo[1]), float(hi[1])), brier, int(len(y)),
                      int(y.sum()), int(len(caps)), rel, s, y)


def caption_bootstrap(scores: np.ndarray, positive: np.ndarray, caption: np.ndarray, n_resamples: int,
                      rng: np.random.Generator, chunk: int = 100) -> np.ndarray:
    """AUROC and average precision [R, 2] of `n_resamples` resamples of the captions with replacement
    (`caption`: each token's caption index 0..C-1; resample r draws C captions, ``rng.integers(0, C, C)``
    per resample in turn); NaN where a resample lacks one class.

    A caption drawn k times is its tokens with weight k, so every resample is a weighted AUROC and AP over
    one sort of the scores: ties share half their weight (AUROC) and one threshold (AP), as in sklearn's
    `roc_auc_score` and `average_precision_score` on the concatenated tokens, without building them.

    Example:
        >>> s, y = np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True])
        >>> caption_bootstrap(s, y, np.array([0, 1, 2, 3]), 2, np.random.default_rng(0)).round(3)
        array([[0.333, 0.833],
               [  nan,   nan]])
    """
    s, y, caption = np.asarray(scores, np.float64), np.asarray(positive, bool), np.asarray(caption)
    n_caps = int(caption.max()) + 1
    order = np.argsort(-s, kind="stable")  # descending
    starts = np.flatnonzero(np.r_[True, np.diff(s[order]) != 0])  # first token of each distinct score
    cap_sorted, pos_sorted = caption[order], y[order]
    out = np.full((n_resamples, 2), np.nan)
    for lo in range(0, n_resamples, chunk):
        r = min(chunk, n_resamples - lo)
        draws = rng.integers(0, n_caps, (r, n_caps))
        counts = np.zeros((r, n_caps))
        np.add.at(counts, (np.arange(r)[:, None], draws), 1.0)
        w = counts[:, cap_sorted]  # [r, N] weight of each token, in descending score order
        pos = np.add.reduceat(np.where(pos_sorted, w, 0.0), starts, axis=1)  # [r, G] per distinct score
        neg = np.add.reduceat(np.where(pos_sorted, 0.0, w), starts, axis=1)
        tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        n_pos, n_neg = tp[:, -1], fp[:, -1]
        ok = (n_pos > 0) & (n_neg > 0)
        # AUROC: each positive beats the negatives below its score and ties half of those at it
        below = n_neg[:, None] - fp  # negative weight strictly below each distinct score
        auc = (pos * (below + 0.5 * neg)).sum(1) / np.where(ok, n_pos * n_neg, 1.0)
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
        ap = (pos * precision).sum(1) / np.where(ok, n_pos, 1.0)
        out[lo: lo + r] = np.where(ok[:, None], np.stack([auc, ap], axis=1), np.nan)
    return out


def table(evaluations: Sequence[Evaluation]) -> pd.DataFrame:
    """One row per evaluation: its group and setting where set, AUROC and AUPRC with their 95 % CIs, Brier
    score, counts (``images``: the groups the folds and intervals keep apart)."""
    rows = []
    for e in evaluations:
        row = {"group": e.group, "setting": e.setting} if (e.group or e.setting) else {}
        row |= {"detector": e.name, "AUROC": round(e.auroc, 3),
                "AUROC 95% CI": f"{e.auroc_ci[0]:.3f}–{e.auroc_ci[1]:.3f}", "AUPRC": round(e.auprc, 3),
                "AUPRC 95% CI": f"{e.auprc_ci[0]:.3f}–{e.auprc_ci[1]:.3f}",
                "Brier": round(e.brier, 4) if np.isfinite(e.brier) else "",
                "tokens": e.n_tokens, "hallucinated": e.n_hallucinated, "images": e.n_captions, "note": e.note}
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame if frame.note.astype(bool).any() else frame.drop(columns="note")
