"""The AFIP paper's attention metrics (docs/design.md §5, Eqs. 1–4 and the gating signals) on plain arrays.

Every function takes the last-query attention row(s) of one generated token and works on any leading
batch shape, so one call covers ``[T, L, H, n]`` as well as a single ``[H, n]`` row. Notation:
``attn_img`` is the post-softmax attention restricted to the image keys I, **not** renormalised
(``A_I``, shape ``[..., H, n]``); ``scores`` is the pre-softmax row B over all keys.

Example:
    >>> import numpy as np
    >>> a = np.full((2, 4), 0.125)                  # [H, n]: each head puts 0.5 on 4 image keys
    >>> float(visual_attention_ratio(a)[0])
    0.5
    >>> round(float(attention_entropy(a, renormalise=True)), 4) == round(float(np.log(4)), 4)
    True
    >>> float(cross_head_kl(a))                     # identical heads
    0.0
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, xlogy

EPS = 1e-8  # ε of Eq. 1


def attention_entropy(attn_img: np.ndarray, renormalise: bool = False, eps: float = EPS) -> np.ndarray:
    """Eq. 1: ``D = -Σ_{i∈I} Ā_i log(Ā_i + ε)`` with Ā the head mean of A_I. [..., H, n] -> [...].

    As written in the paper Ā is not renormalised over I; `renormalise=True` divides it by its sum."""
    a = np.asarray(attn_img, dtype=np.float64).mean(axis=-2)  # [..., n]
    if renormalise:
        a = a / a.sum(axis=-1, keepdims=True)
    return -(a * np.log(a + eps)).sum(axis=-1)


def visual_attention_ratio(attn_img: np.ndarray) -> np.ndarray:
    """Eq. 2: VAR = Σ_{i∈I} A_i per head. [..., H, n] -> [..., H]."""
    return np.asarray(attn_img, dtype=np.float64).sum(axis=-1)


def cross_head_kl(attn_img: np.ndarray) -> np.ndarray:
    """Eq. 3 for one layer: ``(1/H) Σ_h KL(P^(h) || P̄)``, P^(h) = A_I^(h) renormalised. [..., H, n] -> [...].

    Average the result over layers for the paper's D_kl."""
    a = np.asarray(attn_img, dtype=np.float64)
    p = a / a.sum(axis=-1, keepdims=True)  # [..., H, n]
    p_bar = p.mean(axis=-2, keepdims=True)  # [..., 1, n]
    return (xlogy(p, p) - xlogy(p, p_bar)).sum(axis=-1).mean(axis=-1)


def token_entropy(logits: np.ndarray) -> np.ndarray:
    """Eq. 4: entropy of softmax(logits) over the vocabulary (raw logits, not processed scores). [..., V] -> [...]."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    return -(np.exp(logp) * logp).sum(axis=-1)


def gating_signals(scores: np.ndarray, is_image: np.ndarray, is_text: np.ndarray) -> dict[str, np.ndarray]:
    """The text–visual gating signals of one row per head. scores [..., kv] (pre-softmax B).

    `is_image` / `is_text` are boolean masks over the keys [kv]; text keys are the non-image keys the
    query may see, its own key excluded. Returns, each [...]:
    ``peak_gap`` T − V (max text score − max image score), ``mean_gap`` mean text − mean image score,
    and ``mean_gap_prob`` the same difference of the post-softmax means.
    """
    b = np.asarray(scores, dtype=np.float64)
    img, txt = np.asarray(is_image, bool), np.asarray(is_text, bool)
    a = np.exp(log_softmax(np.where(img | txt | _self_key(b.shape[-1]), b, -np.inf), axis=-1))
    return {
        "peak_gap": b[..., txt].max(axis=-1) - b[..., img].max(axis=-1),
        "mean_gap": b[..., txt].mean(axis=-1) - b[..., img].mean(axis=-1),
        "mean_gap_prob": a[..., txt].mean(axis=-1) - a[..., img].mean(axis=-1),
    }


def _self_key(kv: int) -> np.ndarray:
    mask = np.zeros(kv, dtype=bool)
    mask[-1] = True
    return mask
