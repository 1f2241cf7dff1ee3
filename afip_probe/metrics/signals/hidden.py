"""Signals from the recorded decoder hidden states (``trace --hidden``): cross-modal grounding consistency,
internal confidence and the hidden-state probe's inputs.

- **CGC** (Nguyen et al., CVPR 2026, arXiv 2604.04863): at a layer, the cosine similarity of the token's
  hidden state z_t with every image patch's state v_p, ``S_tp = z_t·v_p / (|z_t| |v_p|)``, and the mean
  of its `k` largest values, ``C_t = mean(top-k_p S_tp)``; high CGC is a token that matches some image
  region. The paper concatenates the per-layer scores (with ADS's) into a small classifier.
- **IC**, internal confidence (Jiang et al. 2025, "Interpreting and editing vision-language
  representations", the baseline PAS compares with): the highest logit-lens probability of the object
  token over layers, ``max_l softmax(W_U · norm(h_l))[y]``; `ic` reads the states of the row that chose
  the token, `image_ic` (Jiang et al.'s own form) the image tokens' states, best over layers and patches.
  The recorder computes the log-probabilities (`afip_probe.hooks.hidden`), as they need the unembedding.
- the **probe**: a generated token's hidden state at chosen layers, the input of a logistic regression.

Two states can stand for "the token": the row that chose it (``row``: step t's last row, known when the
token is chosen) and the token's own position (``own``: step t+1's last row, where the token is the input;
one token later, and none for the caption's last token, NaN there). CGC's paper compares the token's
own embedding with the patches; both are offered.

Example:
    >>> import numpy as np
    >>> hidden = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])        # [T, K, d]: 2 tokens, 1 layer
    >>> image = np.array([[[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]]])  # [K, n, d]
    >>> grounding_consistency(hidden, image, k=2).round(3)      # row states: top-2 cosines, averaged
    array([[0.854],
           [0.354]])
    >>> token_states(hidden, "own")[:, 0].tolist()
    [[0.0, 1.0], [nan, nan]]
"""

from __future__ import annotations

import numpy as np

POSITIONS = ("row", "own")


def token_states(hidden: np.ndarray, position: str = "row") -> np.ndarray:
    """The states [T, K, d] standing for each token: its choosing row's, or its own position's (the next
    step's row; NaN for the last token)."""
    if position not in POSITIONS:
        raise ValueError(f"position is one of {POSITIONS}, not {position!r}")
    h = np.asarray(hidden, np.float64)
    if position == "row":
        return h
    out = np.full_like(h, np.nan)
    out[:-1] = h[1:]
    return out


def grounding_consistency(hidden: np.ndarray, image_hidden: np.ndarray, k: int = 10,
                          position: str = "row") -> np.ndarray:
    """CGC [T, K]: per recorded layer, the mean of the `k` largest cosine similarities between the token's
    state (`token_states`) and the image tokens' states image_hidden [K, n, d]. A zero state (Gemma 3's image
    tokens enter layer 0 as zeros) has no cosine: a zero patch is left out, a zero token state gives NaN."""
    z = token_states(hidden, position)  # [T, K, d]
    v = np.asarray(image_hidden, np.float64)  # [K, n, d]
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero state has no direction: its cosines are NaN
        zn = z / np.linalg.norm(z, axis=-1, keepdims=True)
        vn = v / np.linalg.norm(v, axis=-1, keepdims=True)
    cos = np.einsum("tkd,knd->tkn", zn, vn)  # [T, K, n]
    top = -np.sort(-np.nan_to_num(cos, nan=-np.inf), axis=-1)[..., : min(k, cos.shape[-1])]  # NaN patches last
    with np.errstate(invalid="ignore"):
        mean = np.where(np.isfinite(top), top, 0.0).sum(-1) / np.isfinite(top).sum(-1)
    return np.where(np.isnan(zn).any(-1), np.nan, mean)


def internal_confidence(lens: np.ndarray) -> np.ndarray:
    """IC [T]: the highest logit-lens probability of the chosen token over the recorded layers, from the
    log-probabilities lens [T, K] (the recorder's ``lens`` or ``image_lens``)."""
    return np.exp(np.asarray(lens, np.float64).max(axis=-1))
