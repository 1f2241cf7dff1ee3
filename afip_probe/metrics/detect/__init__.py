"""Hallucination detectors on the recorded signals, validated without leaks between images.

A detector scores object-mention tokens (CHAIR label real vs hallucinated) from columns of the detection
table: every signal of `afip_probe.metrics.signals` (afip-probe's statistics, the lookback ratio, PAS,
SVAR, ADS, CGC, internal confidence, per layer range and per layer), token entropy, log-probability,
position, the hidden states, and one learned column, the token prior (how often the training captions'
object mentions that begin with this token id were hallucinated). Kinds:

- every single signal as it is (no training; its orientation and layer chosen on training folds);
- ``logistic``: standardised features, L2 logistic regression;
- ``mlp``: standardised features, one hidden ReLU layer (sklearn's MLPClassifier).

One job per module: `features` (feature sets, token prior, image groups), `models` (the saved detector),
`training` (fitting, grouped cross-validation, oriented signals), `evaluation` (AUROC/AUPRC with
image-resampled CIs), `tables` (store to table), `live` (scoring while generating), `suite` (the
comparison `afip-probe detect eval` reports).

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"sample_id": np.repeat(np.arange(40), 5), "x": rng.normal(size=200)})
    >>> df["label"] = np.where(df.x + rng.normal(scale=0.5, size=200) > 0.8, "hallucinated", "real")
    >>> cross_validate(df, ["x"], "logistic", folds=4).auroc > 0.8
    True
"""

from ..table import METRICS
from .evaluation import Evaluation, caption_bootstrap, evaluate_scores, table
from .features import (FEATURE_SETS, GROUP, OBJECT_LABELS, TOKEN_PRIOR, TokenPrior, feature_matrix, feature_names,
                       finite, groups_of, image_key, object_tokens)
from .live import LiveScorer
from .models import FORMAT, KINDS, Detector, load_detector
from .tables import detection_table, store_signals, trace_features
from .training import (choose_orientation, cross_validate, grouped_folds, oriented_signal, out_of_fold, train,
                       transfer_signal)

__all__ = [
    "FEATURE_SETS", "FORMAT", "GROUP", "KINDS", "METRICS", "OBJECT_LABELS", "TOKEN_PRIOR", "Detector", "Evaluation",
    "LiveScorer", "TokenPrior", "caption_bootstrap", "choose_orientation", "cross_validate", "detection_table",
    "evaluate_scores", "feature_matrix", "feature_names", "finite", "grouped_folds", "groups_of", "image_key",
    "load_detector", "object_tokens", "oriented_signal", "out_of_fold", "store_signals", "table", "trace_features", "train",
    "transfer_signal",
]
