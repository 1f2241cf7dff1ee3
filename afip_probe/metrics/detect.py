"""Hallucination detectors on the recorded statistics, validated without leaks between captions.

A detector scores object-mention tokens (CHAIR label real vs hallucinated) from columns of the token
table (`afip_probe.metrics.table`): every metric per layer range and per layer, token entropy,
log-probability and position, and one learned column, the token prior (`TOKEN_PRIOR`: how often the
training captions' object mentions that begin with this token id were hallucinated; fitted on the
training captions only, so cross-validation does not leak it). Three kinds:

- every single signal as it is (no training): its AUROC says how far it separates the two groups;
- ``logistic``: standardised features, L2 logistic regression;
- ``mlp``: standardised features, one hidden ReLU layer (sklearn's MLPClassifier).

Validation is grouped by caption (`grouped_folds`: never the same caption in train and test), and
confidence intervals resample captions, not tokens. Detectors are saved as JSON (feature names,
scaling, weights; no pickle) and score any token table with `Detector.predict`.

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"sample_id": np.repeat(np.arange(40), 5), "x": rng.normal(size=200)})
    >>> df["label"] = np.where(df.x + rng.normal(scale=0.5, size=200) > 0.8, "hallucinated", "real")
    >>> det = train(df, ["x"], kind="logistic")
    >>> Detector.from_json(det.to_json()).predict(df).round(6).equals(det.predict(df).round(6))
    True
    >>> cross_validate(df, ["x"], "logistic", folds=4).auroc > 0.8
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.neural_network import MLPClassifier

from ..errors import AfipError
from ..jsonio import read_json
from ..records import model_name
from .findings import is_hallucinated
from .table import METRICS, default_layer_ranges, layer_metrics, sample_metrics, token_table

KINDS = ("logistic", "mlp")
TOKEN_PRIOR = "token_prior"  # log hallucination rate of the token id among training object mentions
FORMAT = "afip-probe-detector/1"
OBJECT_LABELS = ("real", "hallucinated")


def object_tokens(df: pd.DataFrame) -> pd.DataFrame:
    """The object-mention tokens of a token table (label real or hallucinated)."""
    return df[df.label.astype(str).isin(OBJECT_LABELS)].reset_index(drop=True)


def feature_names(df: pd.DataFrame, ranges: Sequence[str] | None = None, per_layer: bool = True,
                  position: bool = True, prior: bool = False) -> list[str]:
    """Feature columns of a token table: each metric per layer range (`ranges`, default all of them) and,
    with `per_layer`, per single layer (ranges named ``layer<i>``), token entropy, log-probability,
    with `position` the relative position along the caption (not known while generating), and with
    `prior` the token prior (`TOKEN_PRIOR`, learned by `train`). A signal is listed once when two range names
    are one set of layers, hence one array (``late`` and ``layer3`` on a 4-layer model): the first name is kept."""
    names = []
    layers = range_layers(df)
    seen: set[tuple[str, Any]] = set()
    for col in df.columns:
        metric, _, rng = col.rpartition("_")
        if metric not in METRICS:
            continue
        is_layer = rng.startswith("layer") and rng[5:].isdigit()
        same = (metric, layers.get(rng, rng))
        if same in seen:
            continue
        if (is_layer and per_layer) or (not is_layer and (ranges is None or rng in ranges)):
            seen.add(same)
            names.append(col)
    names += ["token_entropy", "logprob"] + (["relative_position"] if position else [])
    return names + ([TOKEN_PRIOR] if prior else [])


def range_layers(df: pd.DataFrame) -> dict[str, frozenset[int]]:
    """The layers of each layer range a token table's columns are named by: its ``layer_ranges`` attribute, else
    the default ranges and ``layer<i>`` of a model with as many layers as the table has ``layer<i>`` columns.

    >>> sorted(range_layers(pd.DataFrame(columns=["var_late", "var_layer0", "var_layer1"])).items())[:3]
    [('all', frozenset({0, 1})), ('early', frozenset({0})), ('layer0', frozenset({0}))]
    """
    singles = [int(c.rpartition("_layer")[2]) for c in df.columns if c.rpartition("_layer")[2].isdigit()]
    n = max(singles) + 1 if singles else 0
    named = (default_layer_ranges(n) | {f"layer{i}": [i] for i in range(n)}) if n else {}
    named |= df.attrs.get("layer_ranges") or {}
    return {name: frozenset(int(i) for i in v) for name, v in named.items()}


def _xy(df: pd.DataFrame, features: Sequence[str], prior: "TokenPrior | None" = None) -> tuple[np.ndarray, np.ndarray]:
    if TOKEN_PRIOR in features:
        if "token_id" not in df:
            raise AfipError(f"the token table has no token_id column, which {TOKEN_PRIOR} needs "
                            "(leave it out: --no-token-prior)")
        if prior is None:
            raise AfipError(f"{TOKEN_PRIOR} is learned: train a detector with it (it is no signal on its own)")
        df = df.assign(**{TOKEN_PRIOR: prior(df.token_id.to_numpy())})
    missing = [f for f in features if f not in df]
    if missing:
        raise AfipError(f"the token table has no {', '.join(missing[:3])}: trace with the layers this detector "
                        "was trained on, or train it on this store")
    x = df[list(features)].to_numpy(dtype=np.float64)
    y = is_hallucinated(df) if "label" in df else np.zeros(len(df), bool)
    return _finite(x), y


def _finite(x: np.ndarray) -> np.ndarray:
    """Features as a detector reads them: NaN and ±inf (e.g. a layer that sees no image key) read as 0."""
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


@dataclass
class TokenPrior:
    """Log hallucination rate per token id among training object mentions, shrunk towards the overall rate
    `base` by one pseudo-hallucination: log((h + 1) / (n + 1 / base)) for h of n mentions; a token id not
    seen in training gets log(base).

    Example:
        >>> prior = TokenPrior.fit(np.array([7, 7, 7, 9]), np.array([True, True, False, False]))
        >>> prior(np.array([7, 9, 3])).round(3).tolist()   # base 0.5: (2+1)/(3+2), (0+1)/(1+2), 0.5
        [-0.511, -1.099, -0.693]
    """

    rates: dict[str, float]  # token id (as text: JSON keys) -> log rate
    base: float  # overall rate

    @classmethod
    def fit(cls, token_ids: np.ndarray, hallucinated: np.ndarray) -> "TokenPrior":
        base = float(np.mean(hallucinated))
        counts = pd.DataFrame({"id": token_ids, "h": hallucinated}).groupby("id").h.agg(["sum", "count"])
        rates = np.log((counts["sum"] + 1.0) / (counts["count"] + 1.0 / base))
        return cls({str(int(i)): float(r) for i, r in rates.items()}, base)

    def __call__(self, token_ids: Any) -> np.ndarray:
        default = float(np.log(self.base))
        return np.array([self.rates.get(str(int(i)), default) for i in np.asarray(token_ids).reshape(-1)])


@dataclass
class Detector:
    """A trained detector: standardisation, then a logistic output (kind ``logistic``) or one hidden ReLU
    layer then a logistic output (kind ``mlp``). `weights` are [W, b] per layer, as nested lists."""

    kind: str
    features: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[list[Any]]
    trained_on: dict[str, Any] = field(default_factory=dict)
    token_prior: dict[str, Any] | None = None  # a `TokenPrior`'s fields, when `TOKEN_PRIOR` is a feature

    @property
    def prior(self) -> TokenPrior | None:
        return None if self.token_prior is None else TokenPrior(**self.token_prior)

    def model_mismatch(self, model: str) -> str | None:
        """A warning when this detector's token prior was learned on another model's tokens than `model`'s
        (token ids are each tokenizer's own), else None."""
        trained = self.trained_on.get("model")
        if self.token_prior is None or not trained or not model or model_name(model) == model_name(trained):
            return None
        return (f"this detector's token prior was learned on {trained}'s token ids, not {model}'s; "
                "its risks mean little here (train one with --no-token-prior to carry it to another model)")

    def predict(self, df: pd.DataFrame) -> pd.Series:
        """P(hallucinated) for every row of a token table (meaningful on object-mention tokens)."""
        x, _ = _xy(df, self.features, self.prior)
        return pd.Series(self.forward(x), index=df.index, name="risk")

    def forward(self, x: np.ndarray) -> np.ndarray:
        """P(hallucinated) of feature rows x [N, F] (in `features` order)."""
        h = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        for k, (w, b) in enumerate(self.weights):
            h = h @ np.asarray(w) + np.asarray(b)
            if k < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return 1.0 / (1.0 + np.exp(-h[:, 0]))

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)})

    @classmethod
    def from_json(cls, text: str) -> "Detector":
        data = json.loads(text)
        if data.pop("format", None) != FORMAT:
            raise AfipError(f"not an afip-probe detector (expected format {FORMAT})")
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        Path(path).write_text(self.to_json() + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Detector":
        data = read_json(path, "detector file")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise AfipError(f"{path} is not an afip-probe detector (train one with `afip-probe detect train`)")
        return cls.from_json(json.dumps(data))


def train(df: pd.DataFrame, features: Sequence[str], kind: str = "logistic", seed: int = 0) -> Detector:
    """Fit a detector on the object-mention tokens of `df`."""
    if kind not in KINDS:
        raise AfipError(f"unknown detector kind {kind!r}: use one of {', '.join(KINDS)}")
    obj = object_tokens(df)
    y = is_hallucinated(obj)
    if y.all() or not y.any():
        raise AfipError("training a detector needs both real and hallucinated object tokens")
    prior = TokenPrior.fit(obj.token_id.to_numpy(), y) if TOKEN_PRIOR in features and "token_id" in obj else None
    x, _ = _xy(obj, features, prior)  # (without token ids, this says so)
    if prior is not None:  # the model learns from priors fitted without the row's own caption (no leak)
        x[:, list(features).index(TOKEN_PRIOR)] = _out_of_fold_prior(obj, y)
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - mean) / scale
    if kind == "logistic":
        model = LogisticRegression(C=1.0, max_iter=2000).fit(z, y)
        weights = [[model.coef_.T.tolist(), model.intercept_.tolist()]]
    else:
        model = MLPClassifier(hidden_layer_sizes=(16,), alpha=1e-2, max_iter=2000, random_state=seed).fit(z, y)
        weights = [[w.tolist(), b.tolist()] for w, b in zip(model.coefs_, model.intercepts_)]
    return Detector(kind, list(features), mean.tolist(), scale.tolist(), weights,
                    {"tokens": int(len(y)), "hallucinated": int(y.sum()), "captions": int(obj.sample_id.nunique())},
                    None if prior is None else asdict(prior))


def _out_of_fold_prior(obj: pd.DataFrame, y: np.ndarray, folds: int = 5) -> np.ndarray:
    """Each object token's `TokenPrior` value fitted on the other captions' tokens (grouped folds)."""
    out = np.full(len(obj), np.log(max(y.mean(), 1e-12)))
    ids = obj.token_id.to_numpy()
    for tr, te in grouped_folds(obj.sample_id.to_numpy(), folds):
        if y[tr].any():
            out[te] = TokenPrior.fit(ids[tr], y[tr])(ids[te])
    return out


def grouped_folds(groups: Sequence[Any], folds: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs in which no group (caption) is on both sides."""
    groups = np.asarray(groups)
    k = min(folds, len(np.unique(groups)))
    if k < 2:
        raise AfipError("grouped cross-validation needs at least 2 captions with object tokens")
    return list(GroupKFold(n_splits=k).split(np.zeros(len(groups)), groups=groups))


@dataclass
class Evaluation:
    """How well scores separate hallucinated from real object tokens, CIs resampled by caption."""

    name: str
    auroc: float
    auroc_ci: tuple[float, float]
    auprc: float
    auprc_ci: tuple[float, float]
    brier: float
    n_tokens: int
    n_hallucinated: int
    n_captions: int
    reliability: tuple[list[float], list[float]] = ((), ())  # (mean predicted, fraction hallucinated) per bin
    scores: np.ndarray | None = field(default=None, repr=False)
    positive: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        return {"detector": self.name, "AUROC": self.auroc, "AUROC 95% CI": self.auroc_ci, "AUPRC": self.auprc,
                "AUPRC 95% CI": self.auprc_ci, "Brier": self.brier, "tokens": self.n_tokens,
                "hallucinated": self.n_hallucinated, "captions": self.n_captions}


def evaluate_scores(name: str, scores: np.ndarray, positive: np.ndarray, groups: np.ndarray,
                    n_resamples: int = 1000, seed: int = 0, probabilities: bool = False) -> Evaluation:
    """AUROC and AUPRC of `scores` with percentile CIs from resampling captions (`groups`) with
    replacement; Brier score and reliability curve when the scores are probabilities."""
    s, y, g = np.asarray(scores, np.float64), np.asarray(positive, bool), np.asarray(groups)
    keep = np.isfinite(s)
    s, y, g = s[keep], y[keep], g[keep]
    if y.all() or not y.any():
        raise AfipError(f"{name}: scoring needs both real and hallucinated object tokens")
    caps, inverse = np.unique(g, return_inverse=True)
    b = caption_bootstrap(s, y, inverse, n_resamples, np.random.default_rng(seed))  # [R, 2]
    if not np.isfinite(b).any():
        b = np.full((1, 2), np.nan)
    lo, hi = np.nanpercentile(b, [2.5, 97.5], axis=0)
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


def cross_validate(df: pd.DataFrame, features: Sequence[str], kind: str = "logistic", folds: int = 5,
                   n_resamples: int = 1000, seed: int = 0) -> Evaluation:
    """Out-of-fold predictions of a `kind` detector over grouped folds (by caption), then `evaluate_scores`."""
    obj = object_tokens(df)
    y = is_hallucinated(obj)
    oof = np.full(len(obj), np.nan)
    for tr, te in grouped_folds(obj.sample_id, folds):
        if y[tr].all() or not y[tr].any():
            continue  # a fold without both classes to learn from: its captions are left out
        det = train(obj.iloc[tr], features, kind, seed)
        oof[te] = det.predict(obj.iloc[te]).to_numpy()
    return evaluate_scores(f"{kind} ({len(features)} features, {folds}-fold by caption)", oof, y,
                           obj.sample_id.to_numpy(), n_resamples, seed, probabilities=True)


def single_signals(df: pd.DataFrame, features: Sequence[str], n_resamples: int = 1000,
                   seed: int = 0) -> list[Evaluation]:
    """Every feature as a detector as it is (higher = hallucinated), no training (so not the learned
    `TOKEN_PRIOR`: cross-validate it on its own instead)."""
    obj = object_tokens(df)
    features = [f for f in features if f != TOKEN_PRIOR]
    x, y = _xy(obj, features)
    return [evaluate_scores(f, x[:, j], y, obj.sample_id.to_numpy(), n_resamples, seed)
            for j, f in enumerate(features)]


def table(evaluations: Sequence[Evaluation]) -> pd.DataFrame:
    """One row per evaluation: AUROC and AUPRC with their 95 % CIs, Brier score, counts."""
    rows = []
    for e in evaluations:
        rows.append({"detector": e.name, "AUROC": round(e.auroc, 3),
                     "AUROC 95% CI": f"{e.auroc_ci[0]:.3f}–{e.auroc_ci[1]:.3f}", "AUPRC": round(e.auprc, 3),
                     "AUPRC 95% CI": f"{e.auprc_ci[0]:.3f}–{e.auprc_ci[1]:.3f}",
                     "Brier": round(e.brier, 4) if np.isfinite(e.brier) else "",
                     "tokens": e.n_tokens, "hallucinated": e.n_hallucinated, "captions": e.n_captions})
    return pd.DataFrame(rows)


def detection_table(store: Any, chair: Any = None) -> pd.DataFrame:
    """The token table of a store with every metric per layer range and per single layer (``<metric>_layer<i>``)."""
    num_layers = int(store.settings.get("num_layers") or 0)
    if not num_layers:
        raise AfipError(f"{store.root}: the manifest does not say how many layers the model has")
    ranges = default_layer_ranges(num_layers) | {f"layer{i}": [i] for i in range(num_layers)}
    return token_table(store, chair=chair, layer_ranges=ranges)


def _ranges_for(features: Sequence[str], num_layers: int) -> dict[str, list[int]]:
    named = default_layer_ranges(num_layers) | {f"layer{i}": [i] for i in range(num_layers)}
    wanted = {f.rpartition("_")[2] for f in features if f.rpartition("_")[0] in METRICS}
    unknown = wanted - set(named)
    if unknown:
        raise AfipError(f"the detector uses layer ranges {sorted(unknown)} that a {num_layers}-layer model lacks")
    return {name: named[name] for name in wanted}


def trace_features(arrays: Any, tokens: pd.DataFrame, features: Sequence[str], num_layers: int) -> pd.DataFrame:
    """The detector's feature columns for one traced sample, from its arrays (as stored, or a
    `SampleTrace.arrays()`) and its tokens table (token entropy, logprob, position): the same numbers
    `detection_table` reads back from a store."""
    cols = sample_metrics(arrays, _ranges_for(features, num_layers))
    frame = tokens.reset_index(drop=True).copy()
    for name, values in cols.items():
        frame[name] = np.asarray(values, dtype=np.float32)
    return frame


class LiveScorer:
    """A detector's risk for the steps of a generation as they come, with no pandas in the way (for
    streaming): the same features and numbers as `Detector.predict` on the stored token table.

    Example (organism: 4 layers; layer 0 of every head attends with VAR 0.2):
        >>> from afip_probe.records import array_name, HEAD_FIELDS, LAYER_FIELDS
        >>> det = Detector("logistic", ["var_all", "token_entropy"], [0.0, 0.0], [1.0, 1.0],
        ...                [([[1.0], [0.0]], [0.0])])
        >>> arrays = {array_name("head", f): np.zeros((2, 4, 4)) for f in HEAD_FIELDS}
        >>> arrays |= {array_name("layer", f): np.zeros((2, 4)) for f in LAYER_FIELDS}
        >>> arrays[array_name("head", "var")][:, 0] = 0.2
        >>> LiveScorer(det, 4)(arrays, [1.0, 2.0], [-0.1, -0.2]).round(4)   # sigmoid(mean VAR over layers)
        array([0.5125, 0.5125])
    """

    def __init__(self, detector: Detector, num_layers: int):
        if "relative_position" in detector.features:
            raise AfipError("this detector needs the caption's length (relative_position), unknown while "
                            "generating; train one with `afip-probe detect train --features live`")
        ranges = _ranges_for(detector.features, num_layers)
        self.detector = detector
        self.prior = detector.prior if TOKEN_PRIOR in detector.features else None
        # a layer-range feature is one metric's per-layer row times averaging weights: all of them in one
        # product per step (a per-feature numpy mean costs more than the rest of a streamed token)
        self.metrics = list(METRICS)
        self.metric_of: list[int] = []  # [F_layer] metric index of each layer-range feature
        weights: list[np.ndarray] = []  # [F_layer] x [L] averaging weights
        self.columns: list[tuple[int, str | None]] = []  # feature order: (index into the layer features | -1, token column)
        for f in detector.features:
            metric, _, rng = f.rpartition("_")
            if metric in METRICS:
                w = np.zeros(num_layers)
                w[ranges[rng]] = 1.0 / len(ranges[rng])
                self.columns.append((len(weights), None))
                self.metric_of.append(self.metrics.index(metric))
                weights.append(w)
            else:
                self.columns.append((-1, f))
        self.weights = np.stack(weights) if weights else np.zeros((0, num_layers))  # [F_layer, L]

    def __call__(self, arrays: Any, token_entropy: Any, logprob: Any, token_ids: Any = None) -> np.ndarray:
        """Risks [S] of S consecutive steps: `arrays` [S, L, ...] named as stored (as `Recorder.steps_since`
        gives them), token entropy, chosen-token log-probability and chosen token ids [S]."""
        per_layer = layer_metrics(arrays)  # metric -> [S, L]
        rows = np.stack([per_layer[m] for m in self.metrics], axis=1)[:, self.metric_of]  # [S, F_layer, L]
        # a layer outside a feature's range adds nothing, not even its NaN or inf (0 * inf is NaN)
        means = np.einsum("sfl,fl->sf", np.where(self.weights > 0, rows, 0.0), self.weights)  # [S, F_layer]
        tokens = {"token_entropy": np.asarray(token_entropy, dtype=np.float64),
                  "logprob": np.asarray(logprob, dtype=np.float64)}
        if self.prior is not None:
            if token_ids is None:
                raise AfipError(f"this detector uses {TOKEN_PRIOR}: pass the chosen token ids")
            tokens[TOKEN_PRIOR] = self.prior(token_ids)
        x = np.stack([means[:, i] if i >= 0 else tokens[col] for i, col in self.columns], axis=1)  # [S, F]
        return np.asarray(self.detector.forward(_finite(x)), dtype=np.float64)
