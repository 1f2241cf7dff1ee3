"""Where a generated token's attention goes: the image, the prompt's text, or the tokens generated so far.

The recorder keeps, per step, layer and head, the attention mass on the image keys (``var``), on the
prompt's text keys (``prompt_mass``) and on the generated keys (``generated_mass``, the query's own key
included from step 1 on); the three sum to 1. From them, per head:

- the **lookback ratio** (Chuang et al. 2024, "Lookback Lens", arXiv 2407.07071): the mean attention on a
  context key over that plus the mean attention on a new (generated) key,
  ``LR = (A_ctx / N_ctx) / (A_ctx / N_ctx + A_gen / N_gen)`` with A_ctx = image + prompt-text mass over
  the N_ctx prompt tokens and A_gen the generated mass over the N_gen = t keys generated before step t
  (the Lookback Lens repository's ``step01_extract_attns.py`` takes the same two means). At step 0 no key
  is generated yet: LR = 1.
- the same split for a vision-language model: the shares of the three per-key means, image / prompt text
  / generated (each mean over its keys, then normalised to sum 1);
- the **prelim attention score** (Hoang-Xuan et al. 2025, "PAS", arXiv 2511.11502): the attention the
  query that chose the token puts on the previously generated ("prelim") tokens, averaged over one
  layer's heads (layer 0 by default, as in the paper);
- **SVAR**: the image mass summed over heads and layers (the usual global baseline).

Counts are sequence positions: a key that left a sliding window still counts in its part's N (its
attention is 0).

Example:
    >>> import numpy as np
    >>> var, prompt, gen = (np.full((3, 1, 2), v) for v in (0.5, 0.3, 0.2))   # [T, L, H]
    >>> lookback_ratio(var, prompt, gen, prompt_tokens=10, steps=np.arange(3))[:, 0, 0].round(3)
    array([1.   , 0.286, 0.444])
    >>> prelim_attention(gen, layer=0).tolist()
    [0.2, 0.2, 0.2]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _steps(steps: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Generated keys before each step, broadcast over [T, L, H] rows."""
    return np.asarray(steps, dtype=np.float64).reshape((-1,) + (1,) * (like.ndim - 1))


def part_means(var: np.ndarray, prompt: np.ndarray, generated: np.ndarray, prompt_tokens: int,
               image_tokens: int, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean attention per key on the image, the prompt text and the generated tokens, each [T, L, H] from the
    recorded masses [T, L, H]; a part with no key has mean 0."""
    n_gen = _steps(steps, generated)
    img = np.asarray(var, np.float64) / max(image_tokens, 1)
    txt = np.asarray(prompt, np.float64) / max(prompt_tokens - image_tokens, 1)
    gen = np.divide(np.asarray(generated, np.float64), n_gen, out=np.zeros(np.broadcast_shapes(
        np.shape(generated), n_gen.shape)), where=n_gen > 0)
    return img, txt, gen


def lookback_ratio(var: np.ndarray, prompt: np.ndarray, generated: np.ndarray, prompt_tokens: int,
                   steps: np.ndarray) -> np.ndarray:
    """Lookback ratio per head [T, L, H]: mean attention per context (prompt) key over that plus the mean per
    generated key."""
    ctx = (np.asarray(var, np.float64) + np.asarray(prompt, np.float64)) / max(prompt_tokens, 1)
    _, _, gen = part_means(var, prompt, generated, prompt_tokens, 0, steps)
    total = ctx + gen
    return np.divide(ctx, total, out=np.full(total.shape, np.nan), where=total > 0)


def lookback_split(var: np.ndarray, prompt: np.ndarray, generated: np.ndarray, prompt_tokens: int,
                   image_tokens: int, steps: np.ndarray) -> np.ndarray:
    """The three per-key means (image, prompt text, generated) as shares summing to 1: [T, L, H, 3]."""
    parts = np.stack(part_means(var, prompt, generated, prompt_tokens, image_tokens, steps), axis=-1)
    total = parts.sum(-1, keepdims=True)
    return np.divide(parts, total, out=np.full(parts.shape, np.nan), where=total > 0)


def prelim_attention(generated: np.ndarray, layer: int = 0) -> np.ndarray:
    """PAS [T]: attention mass on the previously generated tokens at `layer`, mean over its heads."""
    return np.asarray(generated, np.float64)[:, layer].mean(-1)


def summed_visual_attention(var: np.ndarray, layers: Sequence[int] | None = None) -> np.ndarray:
    """SVAR [T]: the image attention mass summed over the heads of `layers` (all by default)."""
    v = np.asarray(var, np.float64)
    return (v if layers is None else v[:, list(layers)]).sum(axis=(1, 2))
