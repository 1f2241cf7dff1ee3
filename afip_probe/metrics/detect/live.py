"""A detector's risk for the steps of a generation as they come, with no pandas in the way (streaming,
`trace --detector`): the same features and numbers as `Detector.predict` on the stored token table.

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

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...errors import AfipError, option
from ..signals import SIGNALS, SampleContext, family_of, signal_columns
from ..table import METRICS, default_layer_ranges, layer_metrics
from .features import OUTPUT, POSITION, TOKEN_PRIOR, finite
from .models import Detector


def _ranges(num_layers: int) -> dict[str, list[int]]:
    return default_layer_ranges(num_layers) | {f"layer{i}": [i] for i in range(num_layers)}


class LiveScorer:
    """Scores steps as they come. `context` (the sample's prompt and image token counts, tiles and recorded
    hidden layers) is needed by every signal beyond afip-probe's own statistics and the output's."""

    def __init__(self, detector: Detector, num_layers: int, context: SampleContext | None = None):
        if POSITION in detector.features:
            raise AfipError("this detector needs the caption's length (relative_position), unknown while "
                            f"generating: train one with {option('features', 'live')} (what is known when a token "
                            "is chosen)")
        late = [f for f in detector.features if family_of(f) and SIGNALS[family_of(f)].needs_next_step(f)]
        if late:
            raise AfipError(f"this detector reads {late[0]}, known only one token later (the token's own "
                            f"position): train one with {option('features', 'live')}")
        named = _ranges(num_layers)
        self.detector = detector
        self.context = context or SampleContext(0, 0, (), num_layers)
        self.prior = detector.prior if TOKEN_PRIOR in detector.features else None
        # a layer-range feature of afip-probe's statistics is one metric's per-layer row times averaging weights:
        # all of them in one product per step (a per-feature numpy mean costs more than the rest of a streamed token)
        self.metrics = list(METRICS)
        self.metric_of: list[int] = []  # [F_layer] metric index of each layer-range feature
        weights: list[np.ndarray] = []  # [F_layer] x [L] averaging weights
        self.columns: list[tuple[int, str | None]] = []  # feature order: (index into the layer features | -1, column)
        self.signals: list[str] = []  # the other signals' columns, computed by `signal_columns`
        for f in detector.features:
            metric, _, rng = f.rpartition("_")
            if metric in METRICS and rng in named:
                w = np.zeros(num_layers)
                w[named[rng]] = 1.0 / len(named[rng])
                self.columns.append((len(weights), None))
                self.metric_of.append(self.metrics.index(metric))
                weights.append(w)
                continue
            if metric in METRICS:
                raise AfipError(f"the detector uses layer range {rng!r}, which a {num_layers}-layer model lacks")
            if f not in OUTPUT and f != TOKEN_PRIOR:
                if not family_of(f):
                    raise AfipError(f"the detector reads {f!r}, which no signal gives")
                self.signals.append(f)
            self.columns.append((-1, f))
        self.weights = np.stack(weights) if weights else np.zeros((0, num_layers))  # [F_layer, L]

    def __call__(self, arrays: Any, token_entropy: Any, logprob: Any, token_ids: Any = None,
                 first_step: int = 0) -> np.ndarray:
        """Risks [S] of S consecutive steps from `first_step` on: `arrays` [S, L, ...] named as stored (as
        `Recorder.steps_since` gives them), token entropy, chosen-token log-probability and chosen token ids [S]."""
        tokens = {"token_entropy": np.asarray(token_entropy, dtype=np.float64),
                  "logprob": np.asarray(logprob, dtype=np.float64)}
        if len(self.weights):
            per_layer = layer_metrics(arrays)  # metric -> [S, L]
            rows = np.stack([per_layer[m] for m in self.metrics], axis=1)[:, self.metric_of]  # [S, F_layer, L]
            # a layer outside a feature's range adds nothing, not even its NaN or inf (0 * inf is NaN)
            means = np.einsum("sfl,fl->sf", np.where(self.weights > 0, rows, 0.0), self.weights)  # [S, F_layer]
        if self.signals:
            ctx = dataclasses.replace(self.context, first_step=first_step)
            tokens |= {k: np.asarray(v, np.float64) for k, v in signal_columns(arrays, ctx, columns=self.signals).items()}
        if self.prior is not None:
            if token_ids is None:
                raise AfipError(f"this detector uses {TOKEN_PRIOR}: pass the chosen token ids")
            tokens[TOKEN_PRIOR] = self.prior(token_ids)
        x = np.stack([means[:, i] if i >= 0 else tokens[col] for i, col in self.columns], axis=1)  # [S, F]
        return np.asarray(self.detector.forward(finite(x)), dtype=np.float64)
