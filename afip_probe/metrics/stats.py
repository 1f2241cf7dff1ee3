"""Statistics for the Findings (docs/design.md §5): group tests, correlations, bootstrap CIs, quantile groups, ROC.

Thin, typed wrappers over scipy.stats and sklearn.metrics so every figure and report states the same
numbers the same way.

Example:
    >>> import numpy as np
    >>> t = compare_groups(np.array([1.0, 2, 3, 4]), np.array([3.0, 4, 5, 6]))
    >>> (t.n_a, t.n_b, t.mean_b - t.mean_a)
    (4, 4, 2.0)
    >>> r = roc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    >>> r.auc
    0.75
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class GroupTest:
    """Two independent groups (a, b): means, Welch's t-test and the Mann–Whitney U test (two-sided)."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    welch_t: float
    welch_p: float
    mannwhitney_u: float
    mannwhitney_p: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def compare_groups(a: np.ndarray, b: np.ndarray) -> GroupTest:
    """Welch t and Mann–Whitney U of `a` vs `b` (NaNs dropped; NaN statistics below 2 values per group)."""

    a = _finite(a)
    b = _finite(b)
    nan = float("nan")
    if len(a) < 2 or len(b) < 2:
        return GroupTest(len(a), len(b), _mean(a), _mean(b), nan, nan, nan, nan)
    t = stats.ttest_ind(a, b, equal_var=False)
    u = stats.mannwhitneyu(a, b, alternative="two-sided")
    return GroupTest(len(a), len(b), float(a.mean()), float(b.mean()), float(t.statistic), float(t.pvalue),
                     float(u.statistic), float(u.pvalue))


@dataclass(frozen=True)
class Correlation:
    """Spearman and Pearson correlation of paired values, with two-sided p-values."""

    n: int
    spearman_r: float
    spearman_p: float
    pearson_r: float
    pearson_p: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def correlate(x: np.ndarray, y: np.ndarray) -> Correlation:
    """Spearman and Pearson correlation of x and y (pairs with a NaN dropped)."""

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    nan = float("nan")
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return Correlation(len(x), nan, nan, nan, nan)
    s = stats.spearmanr(x, y)
    p = stats.pearsonr(x, y)
    return Correlation(len(x), float(s.statistic), float(s.pvalue), float(p.statistic), float(p.pvalue))


def bootstrap_ci(values: np.ndarray, statistic: Callable[..., float] = np.mean,
                 n_resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high): `statistic` of `values` and its percentile bootstrap CI (scipy.stats.bootstrap).

    With fewer than 2 values, or all equal, the CI collapses onto the estimate."""

    values = _finite(values)
    if len(values) == 0:
        nan = float("nan")
        return nan, nan, nan
    est = float(statistic(values))
    if len(values) < 2 or np.all(values == values[0]):
        return est, est, est
    ci = stats.bootstrap((values,), statistic, n_resamples=n_resamples, confidence_level=confidence,
                         method="percentile", vectorized=statistic is np.mean,
                         random_state=np.random.default_rng(seed)).confidence_interval
    return est, float(ci.low), float(ci.high)


def quantile_groups(values: np.ndarray | pd.Series, q: int = 5) -> np.ndarray:
    """Group index 0..q-1 of each value by its quantile (ties broken by order, so groups are equal-sized
    to within one); NaN values get -1."""
    s = pd.Series(np.asarray(values, np.float64))
    out = np.full(len(s), -1, dtype=np.int64)
    ok = s.notna().to_numpy()
    if ok.sum() == 0:
        return out
    ranks = s[ok].rank(method="first").to_numpy()
    n = len(ranks)
    out[ok] = np.minimum(((ranks - 1) * q / n).astype(np.int64), q - 1)
    return out


@dataclass(frozen=True)
class RocCurve:
    """A ROC curve of a score as a detector of the positive class (sklearn.metrics)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    n_pos: int
    n_neg: int


def roc(scores: np.ndarray, positive: np.ndarray) -> RocCurve:
    """ROC and AUC of `scores` (higher = more likely positive) against boolean `positive`."""

    s = np.asarray(scores, np.float64)
    y = np.asarray(positive).astype(bool)
    keep = np.isfinite(s)
    s, y = s[keep], y[keep]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        empty = np.array([0.0, 1.0])
        return RocCurve(empty, empty, np.array([np.inf, -np.inf]), float("nan"), n_pos, n_neg)
    fpr, tpr, thr = roc_curve(y, s)
    return RocCurve(fpr, tpr, thr, float(roc_auc_score(y, s)), n_pos, n_neg)


@dataclass(frozen=True)
class LowRate:
    """Hallucination rate among the tokens with the lowest values of a metric vs the rest (Fisher exact p)."""

    quantile: float
    threshold: float
    low_rate: float
    rest_rate: float
    n_low: int
    n_rest: int
    fisher_p: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def low_value_rate(values: np.ndarray, hallucinated: np.ndarray, quantile: float = 0.3) -> LowRate:
    """Hallucination rate among the lowest `quantile` of `values` (≤ the quantile) vs the rest."""

    v = np.asarray(values, np.float64)
    h = np.asarray(hallucinated).astype(bool)
    keep = np.isfinite(v)
    v, h = v[keep], h[keep]
    nan = float("nan")
    if len(v) == 0:
        return LowRate(quantile, nan, nan, nan, 0, 0, nan)
    cut = float(np.quantile(v, quantile))
    low = v <= cut
    rate = lambda m: float(h[m].mean()) if m.any() else nan  # noqa: E731
    table = [[int(h[low].sum()), int((~h[low]).sum())], [int(h[~low].sum()), int((~h[~low]).sum())]]
    p = float(stats.fisher_exact(table).pvalue) if low.any() and (~low).any() else nan
    return LowRate(quantile, cut, rate(low), rate(~low), int(low.sum()), int((~low).sum()), p)


def _finite(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def _mean(v: np.ndarray) -> float:
    return float(v.mean()) if len(v) else float("nan")
