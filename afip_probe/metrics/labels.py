"""Token-level hallucination labels: CHAIR mentions joined onto a trace store's generated tokens.

Each CHAIR mention is a character span of the output text; the generated token covering its first
character gets the label ``real`` or ``hallucinated`` (and the object's node word), every other
token ``none`` (docs/design.md §6). ``word_label`` marks every token of the mention's word with its label
(``woman`` may be ``wo`` + ``man``), for drawing whole words; the statistics use ``label``. Character spans come from the tokenizer's own decoding, so this works
for any tokenizer.

Example:
    >>> from afip_probe.metrics.chair import Chair                      # doctest: +SKIP
    >>> labelled = label_store(afip_probe.store.open("runs/s"), Chair.from_packaged())  # doctest: +SKIP
    >>> labelled.label.value_counts()                                   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .chair import Chair

LABELS = ("none", "real", "hallucinated")


def label_tokens(tokens: pd.DataFrame, samples: pd.DataFrame, chair: Chair,
                 gt: Mapping[Any, set[str]] | None = None) -> pd.DataFrame:
    """`tokens` plus columns `label`, `object` (node word), `mention` (the word as written) and `word_label`
    (the label on every token of the mention's word, not only its first).

    `samples` needs `sample_id`, `image_id` and `output_text`; ground truth is `gt[image_id]` when
    given, else the evaluator's own. A sample that shows several images (its ``image_ids``) has the union
    of their objects as ground truth. Samples with no ground truth (for some image) keep `none` and are
    listed in ``result.attrs["warnings"]``.
    """
    out = tokens.copy()
    label = np.full(len(out), "none", dtype=object)
    obj = np.full(len(out), "", dtype=object)
    mention = np.full(len(out), "", dtype=object)
    word_label = np.full(len(out), "none", dtype=object)
    warnings = []
    positions = out.groupby("sample_id").indices
    for row in samples.itertuples(index=False):
        idx = positions.get(row.sample_id)
        if idx is None:
            continue
        ids = _image_ids(row)
        truths = [gt.get(i) if gt is not None else chair.gt.get(i) for i in ids]
        if any(t is None for t in truths):
            missing = next(i for i, t in zip(ids, truths) if t is None)
            warnings.append(f"{row.sample_id}: image id {missing!r} has no ground truth; tokens left unlabelled")
            continue
        truth = set().union(*truths)
        starts = out["char_start"].to_numpy()[idx]
        ends = out["char_end"].to_numpy()[idx]
        for m in chair.evaluate(row.image_id, row.output_text, gt=truth).mentions:
            hit = np.nonzero((starts <= m.char_start) & (m.char_start < ends))[0]
            if not len(hit):
                warnings.append(f"{row.sample_id}: no token covers {m.word!r} at {m.char_start}")
                continue
            k = idx[hit[0]]
            label[k] = "hallucinated" if m.hallucinated else "real"
            word_label[idx[(starts < max(m.char_end, m.char_start + 1)) & (ends > m.char_start)]] = label[k]
            obj[k] = m.node
            mention[k] = m.word
    out["label"] = pd.Categorical(label, categories=LABELS)
    out["object"] = obj
    out["mention"] = mention
    out["word_label"] = pd.Categorical(word_label, categories=LABELS)
    out.attrs["warnings"] = warnings
    return out


def _image_ids(row: Any) -> list[Any]:
    """The image ids of a samples-table row: every image's (``image_ids``) when it shows several, else its
    ``image_id``."""
    ids = getattr(row, "image_ids", None)
    if ids is not None and not isinstance(ids, float) and len(ids) > 1:
        return [int(i) for i in ids]
    return [row.image_id]


def label_store(store: Any, chair: Chair, gt: Mapping[Any, set[str]] | None = None) -> pd.DataFrame:
    """The store's token table with CHAIR labels (see `label_tokens`)."""
    return label_tokens(store.tokens(), store.samples(status="ok"), chair, gt)
