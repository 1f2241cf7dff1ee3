"""The comparison `afip-probe detect eval` reports: every signal alone, the published detectors, the
hidden-state probe and the best combination, in-domain (cross-validated, folds grouped by image) and on
new scenes (trained on all the training scenes, then scored on scenes it never saw).

Everything that is chosen is chosen on training images only: a signal's orientation and layer variant on
each fold's training side (in-domain) or on all training scenes (transfer); the probe's hidden layer and
the combination (feature set and regularisation) by their cross-validated AUROC on the training scenes.
The transfer scenes are never looked at before they are scored. The in-domain figure of a choice made by
cross-validation (the probe's layer, the combination) is the best of several and so a little optimistic;
its transfer figure is not.

Example:
    >>> rng = np.random.default_rng(0)
    >>> def table(seed):
    ...     r = np.random.default_rng(seed)
    ...     y = r.random(600) < 0.2
    ...     return pd.DataFrame({"sample_id": np.repeat(np.arange(150), 4), "label": np.where(y, "hallucinated", "real"),
    ...                          "pas_layer0": y + r.normal(size=600), "token_entropy": r.normal(size=600),
    ...                          "logprob": r.normal(size=600), "token_id": r.integers(0, 5, 600)})
    >>> rows = compare(table(0), table(1), SuiteConfig(resamples=50)).evaluations
    >>> [(e.group, e.setting.split()[0], e.name) for e in rows if e.name.startswith("PAS")]
    [('published detectors', 'in-domain', 'PAS, layer 0 (threshold)'), ('published detectors', 'transfer', 'PAS, layer 0 (threshold)')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..findings import is_hallucinated
from ..signals import SIGNALS, family_of, scalar_columns
from .evaluation import Evaluation, evaluate_scores
from .features import feature_names, groups_of, object_tokens
from .training import cross_validate, oriented_signal, train, transfer_signal

SINGLE, PUBLISHED, PROBE, COMBINED = "single signals", "published detectors", "hidden-state probe", "combination"
GROUPS = (SINGLE, PUBLISHED, PROBE, COMBINED)
#: the candidate combinations (feature sets, `feature_names`), each with and without a weaker L2 penalty
COMBINATIONS = ("afip", "all", "all,lookback-split", "all,probe={k}", "all,lookback-split,probe={k}")
STRENGTHS = (1.0, 0.1)


@dataclass
class SuiteConfig:
    folds: int = 5
    resamples: int = 1000
    seed: int = 0
    prior: bool = True  # the learned token prior in the combinations
    combinations: Sequence[str] = COMBINATIONS
    strengths: Sequence[float] = STRENGTHS


@dataclass
class Choice:
    """A learned detector the suite chose by cross-validation on the training scenes."""

    features: str  # a `feature_names` spec
    kind: str = "logistic"
    strength: float = 1.0
    prior: bool = False
    cv_auroc: float = float("nan")
    candidates: list[tuple[str, float, float]] = field(default_factory=list)  # (features, strength, CV AUROC)

    def columns(self, df: pd.DataFrame) -> list[str]:
        return feature_names(df, self.features, prior=self.prior)


def _settings(config: SuiteConfig) -> tuple[str, str]:
    return f"in-domain ({config.folds}-fold by image)", "transfer (trained on all training scenes)"


def _learned(name: str, group: str, train_df: pd.DataFrame, test_df: pd.DataFrame | None, features: list[str],
             config: SuiteConfig, kind: str = "logistic", strength: float = 1.0,
             cv: Evaluation | None = None) -> list[Evaluation]:
    """A learned detector's in-domain and transfer evaluations."""
    inside, outside = _settings(config)
    cv = cv or cross_validate(train_df, features, kind, config.folds, config.resamples, config.seed, name, strength)
    cv.name, cv.group, cv.setting = name, group, inside
    out = [cv]
    if test_df is not None:
        det = train(train_df, features, kind, config.seed, strength)
        obj = object_tokens(test_df)
        ev = evaluate_scores(name, det.predict(obj).to_numpy(), is_hallucinated(obj), groups_of(obj),
                             config.resamples, config.seed, probabilities=True)
        ev.group, ev.setting = group, outside
        out.append(ev)
    return out


def single_signals(train_df: pd.DataFrame, test_df: pd.DataFrame | None, config: SuiteConfig) -> list[Evaluation]:
    """Every training-free signal alone: its variant (layer, range) and orientation chosen on training folds."""
    inside, outside = _settings(config)
    out = []
    for family, columns in scalar_columns(train_df.columns).items():
        title = f"{SIGNALS[family].title} [{family}]"
        ev = oriented_signal(train_df, columns, config.folds, config.resamples, config.seed, title)
        ev.group, ev.setting = SINGLE, inside
        out.append(ev)
        if test_df is not None:
            ev = transfer_signal(train_df, test_df, [c for c in columns if c in test_df], config.resamples,
                                 config.seed, title)
            ev.group, ev.setting = SINGLE, outside
            out.append(ev)
    return out


def _fixed(name: str, column: str, sign: float, dfs: Sequence[tuple[str, pd.DataFrame | None]],
           config: SuiteConfig) -> list[Evaluation]:
    """A signal with the paper's orientation, no training: scored as it is wherever it is."""
    out = []
    for setting, df in dfs:
        if df is None or column not in df:
            continue
        obj = object_tokens(df)
        ev = evaluate_scores(name, sign * obj[column].to_numpy(np.float64), is_hallucinated(obj), groups_of(obj),
                             config.resamples, config.seed)
        ev.group, ev.setting, ev.note = PUBLISHED, setting, f"{column}, {'high' if sign > 0 else 'low'} (the paper's)"
        out.append(ev)
    return out


def published(train_df: pd.DataFrame, test_df: pd.DataFrame | None, config: SuiteConfig) -> list[Evaluation]:
    """The papers' own detectors: Lookback Lens (logistic over per-head lookback ratios; and with the
    image/text split), PAS (layer 0, thresholded: higher is hallucinated), the ADS + CGC classifier (an MLP
    over the per-layer scores) and internal confidence (lower is hallucinated)."""
    inside, outside = _settings(config)
    out: list[Evaluation] = []
    families = {family_of(c) for c in train_df.columns}
    if "lookback_heads" in families:
        out += _learned("Lookback Lens (logistic, per-head lookback ratios)", PUBLISHED, train_df, test_df,
                        feature_names(train_df, "lookback-lens"), config)
        if "lookback_split_heads" in families:
            out += _learned("Lookback Lens, split image / prompt text / generated (logistic)", PUBLISHED, train_df,
                            test_df, feature_names(train_df, "lookback-split"), config)
    out += _fixed("PAS, layer 0 (threshold)", "pas_layer0", 1.0, [(inside, train_df), (outside, test_df)], config)
    if "ads" in families and "cgc" in families:
        out += _learned("ADS + CGC per layer (MLP)", PUBLISHED, train_df, test_df, feature_names(train_df, "ads-cgc"),
                        config, kind="mlp")
    for column, name in (("image_ic", "internal confidence, image tokens (threshold)"),
                         ("ic", "internal confidence, choosing row (threshold)")):
        out += _fixed(name, column, -1.0, [(inside, train_df), (outside, test_df)], config)
    return out


def probe_layers(df: pd.DataFrame) -> list[int]:
    """The hidden indices whose states the table holds."""
    return sorted({int(c.split("_")[2][1:]) for c in df.columns if c.startswith("hidden_row_h")})


def probes(train_df: pd.DataFrame, test_df: pd.DataFrame | None, config: SuiteConfig) -> tuple[list[Evaluation], int]:
    """The hidden-state probe at each recorded layer (in-domain), and at the layer whose cross-validated AUROC
    is best on the training scenes (in-domain and transfer); returns them and that layer (-1: none)."""
    layers = probe_layers(train_df)
    if not layers:
        return [], -1
    inside, _ = _settings(config)
    per_layer = {}
    for k in layers:
        ev = cross_validate(train_df, feature_names(train_df, f"probe={k}"), "logistic", config.folds,
                            config.resamples, config.seed, f"probe, hidden state {k} (logistic)")
        ev.group, ev.setting = PROBE, inside
        per_layer[k] = ev
    best = max(layers, key=lambda k: per_layer[k].auroc)
    out = [per_layer[k] for k in layers if k != best]
    out += _learned(f"probe, hidden state {best} (logistic; layer chosen by training CV)", PROBE, train_df, test_df,
                    feature_names(train_df, f"probe={best}"), config, cv=per_layer[best])
    return out, best


def choose_combination(train_df: pd.DataFrame, config: SuiteConfig, probe_layer: int) -> Choice:
    """The candidate combination with the best cross-validated AUROC on the training scenes."""
    best: Choice | None = None
    tried = []
    for spec in config.combinations:
        if "{k}" in spec:
            if probe_layer < 0:
                continue
            spec = spec.format(k=probe_layer)
        try:
            features = feature_names(train_df, spec, prior=config.prior)
        except Exception:  # a set this table cannot give (e.g. no lookback parts recorded)
            continue
        for strength in config.strengths:
            ev = cross_validate(train_df, features, "logistic", config.folds, 0, config.seed, strength=strength)
            tried.append((spec, strength, ev.auroc))
            if best is None or ev.auroc > best.cv_auroc:
                best = Choice(spec, "logistic", strength, config.prior, ev.auroc)
    assert best is not None
    best.candidates = tried
    return best


PREVIOUS = "afip"  # the feature set of afip-probe's detector before the published signals (with the token prior)


def combination(train_df: pd.DataFrame, test_df: pd.DataFrame | None, config: SuiteConfig,
                probe_layer: int) -> tuple[list[Evaluation], Choice]:
    """The chosen combination, and for reference afip-probe's previous detector (its own statistics, the
    output's and the token prior; logistic, C=1) on the same scenes."""
    choice = choose_combination(train_df, config, probe_layer)
    prior = " + token prior" if choice.prior else ""
    name = f"best combination: {choice.features}{prior} (logistic, C={choice.strength:g}; chosen by training CV)"
    rows = _learned(name, COMBINED, train_df, test_df, choice.columns(train_df), config, choice.kind, choice.strength)
    try:
        previous = feature_names(train_df, PREVIOUS, prior=config.prior)
    except Exception:  # a table without afip-probe's statistics
        return rows, choice
    rows += _learned(f"for reference, the previous detector: {PREVIOUS}{prior} (logistic, C=1)", COMBINED, train_df,
                     test_df, previous, config)
    return rows, choice


@dataclass
class Comparison:
    evaluations: list[Evaluation]
    choice: Choice  # the combination chosen on the training scenes
    probe_layer: int  # the probe's hidden index chosen on them (-1: no hidden states)


def compare(train_df: pd.DataFrame, test_df: pd.DataFrame | None = None,
            config: SuiteConfig | None = None) -> Comparison:
    """Every group of the comparison (`GROUPS`), in-domain on `train_df` and, when given, on `test_df`'s new
    scenes."""
    config = config or SuiteConfig()
    rows = single_signals(train_df, test_df, config) + published(train_df, test_df, config)
    probe_rows, layer = probes(train_df, test_df, config)
    combined, choice = combination(train_df, test_df, config, layer)
    return Comparison(rows + probe_rows + combined, choice, layer)
