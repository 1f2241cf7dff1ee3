"""What detectors read: the object-mention rows of a token table, named feature sets, the learned token
prior, and the groups validation keeps apart (images).

Feature sets (`FEATURE_SETS`, ``--features``; several join with commas, e.g. ``all,probe``):

- ``all``: every training-free signal of `afip_probe.metrics.signals` in the table, per layer range and
  per layer (once where two range names are the same layers), token entropy, log-probability and the
  relative position;
- ``ranges``: the same per layer range only; ``afip``: afip-probe's own statistics only (the set before
  the published signals were added);
- ``live``: as ``all``, without what is unknown when the token is chosen (the relative position, the
  token's own-position hidden state);
- ``lookback-lens``: the per-head lookback ratios (Chuang et al.'s detector); ``lookback-split``: with the
  per-head image and prompt-text shares;
- ``ads-cgc``: ADS per layer and CGC per recorded hidden layer (Nguyen et al.'s classifier);
- ``probe``: the hidden states of the row that chose the token (``probe=K``: at hidden index K only).

Example:
    >>> df = pd.DataFrame({"var_all": [0.1], "var_late": [0.2], "var_layer0": [0.2], "var_layer1": [0.2],
    ...                    "var_layer2": [0.2], "pas_layer0": [0.3], "token_entropy": [1.0], "logprob": [-1.0],
    ...                    "relative_position": [0.5], "lookback_l0_h0": [0.9]})
    >>> feature_names(df, "all")     # a 3-layer model: var_layer2 is var_late (listed once)
    ['var_all', 'var_late', 'var_layer0', 'var_layer1', 'pas_layer0', 'token_entropy', 'logprob', 'relative_position']
    >>> feature_names(df, "live,lookback-lens")[-3:]
    ['token_entropy', 'logprob', 'lookback_l0_h0']
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ...errors import AfipError
from ..findings import is_hallucinated
from ..signals import SIGNALS, family_of
from ..table import METRICS, default_layer_ranges

OBJECT_LABELS = ("real", "hallucinated")
TOKEN_PRIOR = "token_prior"  # log hallucination rate of the token id among training object mentions
OUTPUT = ("token_entropy", "logprob")
POSITION = "relative_position"
GROUP = "group"  # the validation group of a row: its image (see `image_groups`)

FEATURE_SETS = {
    "all": "every training-free signal per layer range and per layer, token entropy, log-probability, relative "
           "position",
    "ranges": "as all, per layer range only (no single layers)",
    "live": "as all, without what is unknown when the token is chosen (relative position, own-position states): "
            "for trace --detector and streaming",
    "afip": "afip-probe's own statistics (VAR, entropies, KL, gaps) per range and layer, token entropy, "
            "log-probability, relative position",
    "lookback-lens": "the lookback ratio of every head (Chuang et al. 2024's detector)",
    "lookback-split": "per head, the lookback ratio and the image and prompt-text shares",
    "ads-cgc": "ADS per layer and CGC per recorded hidden layer (Nguyen et al. 2026's classifier)",
    "probe": "the hidden state of the row that chose the token, every recorded layer (probe=K: hidden index K)",
}


def object_tokens(df: pd.DataFrame) -> pd.DataFrame:
    """The object-mention tokens of a token table (label real or hallucinated)."""
    return df[df.label.astype(str).isin(OBJECT_LABELS)].reset_index(drop=True)


def groups_of(df: pd.DataFrame) -> np.ndarray:
    """Each row's validation group: its image (`GROUP`) where the table has it, else its caption."""
    return (df[GROUP] if GROUP in df else df.sample_id).astype(str).to_numpy()


def _scalar(column: str) -> bool:
    family = family_of(column)
    return bool(family) and SIGNALS[family].scalar


def _live(column: str) -> bool:
    family = family_of(column)
    return not (family and SIGNALS[family].needs_next_step(column))


def _is_layer(column: str) -> bool:
    rng = column.rpartition("_")[2]
    return rng.startswith("layer") and rng[5:].isdigit()


def feature_names(df: pd.DataFrame, which: str = "all", prior: bool = False) -> list[str]:
    """The columns of a named feature set (`FEATURE_SETS`; several joined by commas), in table order, with
    the token prior last when `prior`."""
    names: list[str] = []
    for part in (p.strip() for p in which.split(",")):
        kind, _, arg = part.partition("=")
        if kind not in FEATURE_SETS:
            raise AfipError(f"unknown feature set {kind!r}: use one of {', '.join(FEATURE_SETS)}")
        names += [c for c in _feature_set(df, kind, arg) if c not in names]
    if not names:
        raise AfipError(f"the token table has no column of feature set {which!r} (was it traced with what the "
                        "set reads? docs/signals.md)")
    return names + ([TOKEN_PRIOR] if prior else [])


def range_layers(df: pd.DataFrame) -> dict[str, frozenset[int]]:
    """The layers of each layer range a table's columns are named by: its ``layer_ranges`` attribute, else the
    default ranges and ``layer<i>`` of a model with as many layers as the table has ``layer<i>`` columns.

    >>> sorted(range_layers(pd.DataFrame(columns=["var_late", "var_layer0", "var_layer1"])).items())[:3]
    [('all', frozenset({0, 1})), ('early', frozenset({0})), ('layer0', frozenset({0}))]
    """
    singles = [int(c.rpartition("_layer")[2]) for c in df.columns if c.rpartition("_layer")[2].isdigit()]
    n = max(singles) + 1 if singles else 0
    named = (default_layer_ranges(n) | {f"layer{i}": [i] for i in range(n)}) if n else {}
    named |= df.attrs.get("layer_ranges") or {}
    return {name: frozenset(int(i) for i in v) for name, v in named.items()}


def _once(columns: list[str], df: pd.DataFrame) -> list[str]:
    """`columns` with each signal listed once where two range names are one set of layers, hence one array
    (``late`` and ``layer3`` on a 4-layer model): the first name is kept."""
    layers, seen, out = range_layers(df), set(), []
    for c in columns:
        family = family_of(c)
        rng = c[len(family) + 1:] if family else ""
        key = (family, layers[rng]) if rng in layers else (c, None)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _feature_set(df: pd.DataFrame, kind: str, arg: str) -> list[str]:
    cols = list(df.columns)
    if kind in ("all", "ranges", "live", "afip"):
        signal = [c for c in cols if _scalar(c) and c not in OUTPUT and (kind != "ranges" or not _is_layer(c))
                  and (kind != "afip" or family_of(c) in METRICS) and (kind != "live" or _live(c))]
        return _once(signal, df) + [c for c in OUTPUT if c in df] + ([POSITION] if kind != "live" and POSITION in df
                                                                    else [])
    if kind == "lookback-lens":
        return [c for c in cols if family_of(c) == "lookback_heads"]
    if kind == "lookback-split":
        return [c for c in cols if family_of(c) in ("lookback_heads", "lookback_split_heads")]
    if kind == "ads-cgc":
        return [c for c in cols if (family_of(c) == "ads" and _is_layer(c)) or c.startswith("cgc_own_h")]
    # probe
    prefix = "hidden_row_h" + (f"{int(arg)}_" if arg else "")
    return [c for c in cols if c.startswith(prefix)]


def finite(x: np.ndarray) -> np.ndarray:
    """Features as a detector reads them: NaN and ±inf (e.g. a layer that sees no image key) read as 0."""
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def feature_matrix(df: pd.DataFrame, features: Sequence[str], prior: "TokenPrior | None" = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(x [N, F], hallucinated [N]) of a token table's rows for `features`, the token prior filled in by
    `prior` (its table; a detector learns it) where it is one of them."""
    if TOKEN_PRIOR in features:
        if "token_id" not in df:
            raise AfipError(f"the token table has no token_id column, which {TOKEN_PRIOR} needs "
                            "(leave it out: --no-token-prior)")
        if prior is None:
            raise AfipError(f"{TOKEN_PRIOR} is learned: train a detector with it (it is no signal on its own)")
    missing = [f for f in features if f not in df and f != TOKEN_PRIOR]
    if missing:
        raise AfipError(f"the token table has no {', '.join(missing[:3])}: trace with what this detector was "
                        "trained on (layers, --record, --hidden), or train it on this store")
    x = np.empty((len(df), len(features)))
    for j, f in enumerate(features):
        x[:, j] = prior(df.token_id.to_numpy()) if f == TOKEN_PRIOR else df[f].to_numpy(dtype=np.float64)  # type: ignore[misc]
    y = is_hallucinated(df) if "label" in df else np.zeros(len(df), bool)
    return finite(x), y


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


def image_key(path: Any) -> str:
    """What makes two samples the same image: the file's size and the hash of its first 64 KiB where the file
    is readable (the same image under another folder or condition is one group), else its path as written.

    >>> image_key("/nonexistent/a.png")
    'path:/nonexistent/a.png'
    """
    text = str(path)
    try:
        with open(text, "rb") as fh:
            head = fh.read(65536)
        return f"sha1:{hashlib.sha1(head).hexdigest()}:{os.path.getsize(text)}"
    except OSError:
        return f"path:{text}"
