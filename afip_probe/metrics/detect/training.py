"""Training detectors and validating them without leaks between images.

Validation is grouped (`grouped_folds`): the object tokens of one image (all its captions, under every
condition of a compare store) are never on both sides of a split. The learned token prior is fitted on
the training side only, and within training the model learns from priors fitted without the row's own
image. A training-free signal's orientation (and, among its layer variants, which one) is chosen on the
training side too (`oriented_signal`).

Example:
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"sample_id": np.repeat(np.arange(40), 5), "x": rng.normal(size=200)})
    >>> df["label"] = np.where(df.x + rng.normal(scale=0.5, size=200) > 0.8, "hallucinated", "real")
    >>> det = train(df, ["x"], kind="logistic")
    >>> Detector.from_json(det.to_json()).predict(df).round(6).equals(det.predict(df).round(6))
    True
    >>> cross_validate(df, ["x"], "logistic", folds=4).auroc > 0.8
    True
    >>> oriented_signal(df.assign(x=-df.x), ["x"], folds=4).note     # lower x: hallucinated, on every fold
    'x, low (4 of 4 fits)'
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.neural_network import MLPClassifier

from ...errors import AfipError
from ..findings import is_hallucinated
from .evaluation import Evaluation, evaluate_scores
from .features import TOKEN_PRIOR, TokenPrior, feature_matrix, groups_of, object_tokens
from .models import KINDS, Detector


def grouped_folds(groups: Sequence[Any], folds: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs in which no group (image) is on both sides."""
    groups = np.asarray(groups)
    k = min(folds, len(np.unique(groups)))
    if k < 2:
        raise AfipError("grouped cross-validation needs at least 2 images with object tokens")
    return list(GroupKFold(n_splits=k).split(np.zeros(len(groups)), groups=groups))


def train(df: pd.DataFrame, features: Sequence[str], kind: str = "logistic", seed: int = 0,
          strength: float = 1.0) -> Detector:
    """Fit a detector on the object-mention tokens of `df` (`strength`: the logistic's inverse L2 penalty C)."""
    if kind not in KINDS:
        raise AfipError(f"unknown detector kind {kind!r}: use one of {', '.join(KINDS)}")
    obj = object_tokens(df)
    y = is_hallucinated(obj)
    if y.all() or not y.any():
        raise AfipError("training a detector needs both real and hallucinated object tokens")
    prior = TokenPrior.fit(obj.token_id.to_numpy(), y) if TOKEN_PRIOR in features and "token_id" in obj else None
    x, _ = feature_matrix(obj, features, prior)  # (without token ids, this says so)
    if prior is not None:  # the model learns from priors fitted without the row's own image (no leak)
        x[:, list(features).index(TOKEN_PRIOR)] = _out_of_fold_prior(obj, y)
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - mean) / scale
    if kind == "logistic":
        model = LogisticRegression(C=strength, max_iter=5000).fit(z, y)
        weights = [[model.coef_.T.tolist(), model.intercept_.tolist()]]
    else:
        model = MLPClassifier(hidden_layer_sizes=(16,), alpha=1e-2, max_iter=2000, random_state=seed).fit(z, y)
        weights = [[w.tolist(), b.tolist()] for w, b in zip(model.coefs_, model.intercepts_)]
    return Detector(kind, list(features), mean.tolist(), scale.tolist(), weights,
                    {"tokens": int(len(y)), "hallucinated": int(y.sum()), "images": int(len(set(groups_of(obj))))},
                    None if prior is None else asdict(prior))


def _out_of_fold_prior(obj: pd.DataFrame, y: np.ndarray, folds: int = 5) -> np.ndarray:
    """Each object token's `TokenPrior` value fitted on the other images' tokens (grouped folds)."""
    out = np.full(len(obj), np.log(max(y.mean(), 1e-12)))
    ids = obj.token_id.to_numpy()
    for tr, te in grouped_folds(groups_of(obj), folds):
        if y[tr].any():
            out[te] = TokenPrior.fit(ids[tr], y[tr])(ids[te])
    return out


def out_of_fold(df: pd.DataFrame, features: Sequence[str], kind: str = "logistic", folds: int = 5, seed: int = 0,
                strength: float = 1.0) -> tuple[pd.DataFrame, np.ndarray]:
    """(object tokens, their out-of-fold risks): each fold's tokens scored by a detector trained on the other
    folds' images (NaN where a fold's training side lacks one class)."""
    obj = object_tokens(df)
    y = is_hallucinated(obj)
    oof = np.full(len(obj), np.nan)
    for tr, te in grouped_folds(groups_of(obj), folds):
        if y[tr].all() or not y[tr].any():
            continue  # a fold without both classes to learn from: its images are left out
        det = train(obj.iloc[tr], features, kind, seed, strength)
        oof[te] = det.predict(obj.iloc[te]).to_numpy()
    return obj, oof


def cross_validate(df: pd.DataFrame, features: Sequence[str], kind: str = "logistic", folds: int = 5,
                   n_resamples: int = 1000, seed: int = 0, name: str | None = None,
                   strength: float = 1.0) -> Evaluation:
    """Out-of-fold predictions of a `kind` detector over folds grouped by image, then `evaluate_scores`."""
    obj, oof = out_of_fold(df, features, kind, folds, seed, strength)
    return evaluate_scores(name or f"{kind} ({len(features)} features, {folds}-fold by image)", oof,
                           is_hallucinated(obj), groups_of(obj), n_resamples, seed, probabilities=True)


def choose_orientation(x: np.ndarray, y: np.ndarray, columns: Sequence[str]) -> tuple[int, float]:
    """The column and sign (+1: higher is hallucinated) with the highest AUROC on these rows; NaN rows of a
    column are left out of its AUROC."""
    best = (0, 1.0, -1.0)
    for j in range(len(columns)):
        keep = np.isfinite(x[:, j])
        if y[keep].all() or not y[keep].any():
            continue
        auc = float(roc_auc_score(y[keep], x[keep, j]))
        for sign, value in ((1.0, auc), (-1.0, 1.0 - auc)):
            if value > best[2]:
                best = (j, sign, value)
    return best[0], best[1]


def _raw(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    missing = [c for c in columns if c not in df]
    if missing:
        raise AfipError(f"the token table has no {', '.join(missing[:3])}")
    return df[list(columns)].to_numpy(np.float64)


def oriented_signal(df: pd.DataFrame, columns: Sequence[str], folds: int = 5, n_resamples: int = 1000,
                    seed: int = 0, name: str | None = None) -> Evaluation:
    """A training-free signal, validated: on each fold's training images the variant (one of `columns`, e.g.
    its layers) and the orientation with the best AUROC are chosen, and the test images scored with them.
    The note says which variant and orientation were chosen how often."""
    obj = object_tokens(df)
    y = is_hallucinated(obj)
    x = _raw(obj, columns)
    oof = np.full(len(obj), np.nan)
    picks = []
    for tr, te in grouped_folds(groups_of(obj), folds):
        j, sign = choose_orientation(x[tr], y[tr], columns)
        oof[te] = sign * x[te, j]
        picks.append((columns[j], "high" if sign > 0 else "low"))
    (column, way), count = Counter(picks).most_common(1)[0]
    ev = evaluate_scores(name or column, oof, y, groups_of(obj), n_resamples, seed)
    ev.note = f"{column}, {way} ({count} of {len(picks)} fits)"
    return ev


def transfer_signal(train_df: pd.DataFrame, test_df: pd.DataFrame, columns: Sequence[str],
                    n_resamples: int = 1000, seed: int = 0, name: str | None = None) -> Evaluation:
    """A training-free signal on new scenes: variant and orientation chosen on all of `train_df`'s object
    tokens, then `test_df`'s scored with them."""
    tr, te = object_tokens(train_df), object_tokens(test_df)
    j, sign = choose_orientation(_raw(tr, columns), is_hallucinated(tr), columns)
    ev = evaluate_scores(name or columns[j], sign * _raw(te, [columns[j]])[:, 0], is_hallucinated(te), groups_of(te),
                         n_resamples, seed)
    ev.note = f"{columns[j]}, {'high' if sign > 0 else 'low'} (chosen on the training scenes)"
    return ev
