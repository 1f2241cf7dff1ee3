"""From a trace store (or one traced sample) to the table detectors read: every signal's columns per token,
CHAIR labels, and each row's image group.

Example:
    >>> import afip_probe                                                        # doctest: +SKIP
    >>> df = detection_table(afip_probe.store.open("runs/organism"), objects_only=True)   # doctest: +SKIP
    >>> df.filter(like="pas_").columns.tolist()                                  # doctest: +SKIP
    ['pas_layer0', 'pas_layer1', 'pas_layer2', 'pas_layer3']
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ...errors import AfipError, AfipWarning
from ..signals import SIGNALS, SampleContext, available, family_of, signal_columns
from ..table import token_table
from .features import GROUP, OBJECT_LABELS, image_key


def store_signals(store: Any) -> list[str]:
    """The signals a store's recorded arrays allow (those of its first finished sample), and a warning naming
    the ones it cannot give."""
    samples = store.samples(status="ok")
    if samples.empty:
        raise AfipError(f"{store.root}: no finished samples to analyse")
    names = available(store.arrays(samples.sample_id.iloc[0]))
    missing = [n for n in SIGNALS if n not in names]
    if missing:
        warnings.warn(f"{store.root}: no {', '.join(missing)} (their arrays were not recorded; docs/signals.md says "
                      "what each needs)", AfipWarning, stacklevel=3)
    return names


def detection_table(store: Any, chair: Any = None, signals: Sequence[str] | None = None,
                    objects_only: bool = False) -> pd.DataFrame:
    """The token table of a store with the columns of `signals` (default: every one its arrays allow) and
    each row's image group (`GROUP`); with `objects_only`, the object-mention rows alone (faster: what
    training and evaluation read)."""
    names = list(signals) if signals is not None else store_signals(store)
    settings = store.settings
    if not int(settings.get("num_layers") or 0):
        raise AfipError(f"{store.root}: the manifest does not say how many layers the model has")

    def columns(arrays: Mapping[str, np.ndarray], row: Mapping[str, Any]) -> Mapping[str, np.ndarray]:
        return signal_columns(arrays, SampleContext.from_sample(row, settings), names)

    rows = (lambda frame: frame.label.astype(str).isin(OBJECT_LABELS).to_numpy()) if objects_only else None
    frame = token_table(store, chair=chair, columns=columns, rows=rows)
    keys = {sid: image_key(path) for sid, path in store.samples(status="ok").set_index("sample_id").image.items()}
    frame[GROUP] = frame.sample_id.map(keys)
    return frame


def trace_features(arrays: Mapping[str, np.ndarray], tokens: pd.DataFrame, features: Sequence[str],
                   context: SampleContext) -> pd.DataFrame:
    """The detector's feature columns for one traced sample, from its arrays (as stored, or a
    `SampleTrace.arrays()`) and its tokens table (position, token ids): the same numbers
    `detection_table` reads back from a store."""
    wanted = [f for f in features if family_of(f)]
    cols = signal_columns(arrays, context, columns=wanted)
    missing = [f for f in wanted if f not in cols]
    if missing:
        raise AfipError(f"the detector uses {', '.join(missing[:3])}, which this model's trace does not give "
                        "(other layers?)")
    frame = tokens.reset_index(drop=True)
    added = pd.DataFrame({name: np.asarray(values, dtype=np.float32) for name, values in cols.items()},
                         index=frame.index)
    return pd.concat([frame.drop(columns=[c for c in added if c in frame]), added], axis=1)
