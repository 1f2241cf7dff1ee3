"""A detector as saved and loaded: standardisation and weights, or one signal as it is, in JSON (no pickle).

Kinds: ``logistic`` (standardised features, L2 logistic regression), ``mlp`` (one hidden ReLU layer, then a
logistic output) and ``signal`` (a training-free signal: one column, times +1 or -1 so that higher means
hallucinated; its risk is that value, not a probability).

Example:
    >>> det = Detector.signal("pas_layer0", "high")
    >>> det.forward(np.array([[0.2], [0.7]])).tolist(), Detector.from_json(det.to_json()) == det
    ([0.2, 0.7], True)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import AfipError
from ...jsonio import read_json
from ...records import model_name
from ..signals import SIGNALS, family_of
from .features import TokenPrior, feature_matrix

KINDS = ("logistic", "mlp")  # the kinds `train` fits
FORMAT = "afip-probe-detector/1"


@dataclass
class Detector:
    """A detector: standardisation, then a logistic output (kind ``logistic``), one hidden ReLU layer then a
    logistic output (kind ``mlp``), or a signal as it is (kind ``signal``). `weights` are [W, b] per layer,
    as nested lists."""

    kind: str
    features: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[list[Any]]
    trained_on: dict[str, Any] = field(default_factory=dict)
    token_prior: dict[str, Any] | None = None  # a `TokenPrior`'s fields, when `TOKEN_PRIOR` is a feature

    @classmethod
    def signal(cls, column: str, hallucinated_when: str = "high") -> "Detector":
        """A training-free detector: the signal `column`, higher (``high``) or lower (``low``) meaning
        hallucinated. No training file is needed (`afip-probe stream --detector pas_layer0`)."""
        if hallucinated_when not in ("high", "low"):
            raise AfipError(f"a signal is hallucinated when 'high' or 'low', not {hallucinated_when!r}")
        sign = 1.0 if hallucinated_when == "high" else -1.0
        return cls("signal", [column], [0.0], [1.0], [[[[sign]], [0.0]]],
                   {"signal": column, "hallucinated_when": hallucinated_when})

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
        """The risk of every row of a token table (meaningful on object-mention tokens): P(hallucinated), or
        the oriented signal for kind ``signal``."""
        x, _ = feature_matrix(df, self.features, self.prior)
        return pd.Series(self.forward(x), index=df.index, name="risk")

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Risks of feature rows x [N, F] (in `features` order)."""
        h = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        for k, (w, b) in enumerate(self.weights):
            h = h @ np.asarray(w) + np.asarray(b)
            if k < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        if self.kind == "signal":
            return h[:, 0]
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


def load_detector(spec: "str | Path | Detector") -> Detector:
    """A saved detector (a JSON file), or a training-free signal column (e.g. ``pas_layer0``, ``ic``,
    ``ads_late``) oriented as its paper has it: no training file needed. A `Detector` is returned as it is.

    >>> load_detector("pas_layer0").trained_on
    {'signal': 'pas_layer0', 'hallucinated_when': 'high'}
    """
    if isinstance(spec, Detector):
        return spec
    path = Path(spec)
    if path.exists():
        return Detector.load(path)
    family = family_of(str(spec))
    if family and SIGNALS[family].scalar:
        return Detector.signal(str(spec), SIGNALS[family].hallucinated_when or "high")
    raise AfipError(f"{spec} is neither a detector file nor a signal column (e.g. pas_layer0, ic, ads_late: "
                    "docs/signals.md)")
