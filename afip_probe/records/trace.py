"""`SampleTrace`: everything recorded for one sample of one `generate()` call, as numpy arrays.

Example:
    >>> import numpy as np
    >>> from afip_probe.records import HEAD_FIELDS, LAYER_FIELDS, ImageLayout
    >>> T, L, H = 3, 2, 4
    >>> tr = SampleTrace([1, 2], [7, 8, 9], ImageLayout([0], (1, 1)),
    ...                  head={f: np.zeros((T, L, H), np.float32) for f in HEAD_FIELDS},
    ...                  layer={f: np.zeros((T, L), np.float32) for f in LAYER_FIELDS},
    ...                  token_entropy=np.zeros(T, np.float32), logprob=np.zeros(T, np.float32))
    >>> tr.num_tokens, sorted(tr.arrays())[:2]
    (3, ['head/generated_mass', 'head/img_entropy'])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import ImageLayout
from .naming import array_name


@dataclass
class RowArrays:
    """Statistics of score rows after a corrector changed them (the raw rows stay in `SampleTrace`)."""

    head: dict[str, np.ndarray]  # field -> [T, L, H]
    layer: dict[str, np.ndarray]  # field -> [T, L]
    maps: np.ndarray | None = None  # [T, L, n]
    image_var: np.ndarray | None = None  # [T, L, H, I] VAR of each image (prompts of several images)


@dataclass
class SampleTrace:
    """Everything recorded for one sample of one `generate()` call (numpy, on the CPU)."""

    prompt_ids: list[int]
    generated_ids: list[int]
    layout: ImageLayout
    head: dict[str, np.ndarray]  # field -> [T, L, H] float32
    layer: dict[str, np.ndarray]  # field -> [T, L] float32
    token_entropy: np.ndarray  # [T] entropy of softmax(raw logits) (Eq. 4)
    logprob: np.ndarray  # [T] log-probability of the generated token under the raw logits
    maps: np.ndarray | None = None  # [T, L, n] head-averaged post-softmax image attention
    scores: np.ndarray | None = None  # [T, L, H, n] per-head pre-softmax image scores
    corrected: RowArrays | None = None  # the same statistics after a corrector, when one was on
    #: [T, L, H, I] VAR of each of the prompt's I images (Σ of A over that image's keys; they add up to
    #: ``head["var"]``); None when the prompt shows one image
    image_var: np.ndarray | None = None
    hidden: np.ndarray | None = None  # [T, K, d] hidden states of the row that chose each token (opt-in)
    image_hidden: np.ndarray | None = None  # [K, n, d] the image tokens' hidden states at prefill
    lens: np.ndarray | None = None  # [T, K] log-probability of the chosen token, logit lens of `hidden`
    image_lens: np.ndarray | None = None  # [T, K] the same, best over the image tokens' states

    @property
    def num_tokens(self) -> int:
        return len(self.generated_ids)

    @property
    def var(self) -> np.ndarray:
        """VAR (Eq. 2) of each generated token, the mean over layers and heads: [T]."""
        return self.head["var"].mean(axis=(1, 2))

    def arrays(self) -> dict[str, np.ndarray]:
        """Every recorded array under its stored name (`array_name`), as a store writes them."""
        out: dict[str, np.ndarray] = {}
        for source, rows in (("raw", self), ("corrected", self.corrected)):
            if rows is None:
                continue
            out.update({array_name("head", f, source): v for f, v in rows.head.items()})
            out.update({array_name("layer", f, source): v for f, v in rows.layer.items()})
            if rows.maps is not None:
                out[array_name("maps", source=source)] = rows.maps
            if rows.image_var is not None:
                out[array_name("per_image", "var", source)] = rows.image_var
        out[array_name("token_entropy")] = self.token_entropy
        out[array_name("logprob")] = self.logprob
        if self.scores is not None:
            out[array_name("scores")] = self.scores
        for kind in ("hidden", "image_hidden", "lens", "image_lens"):
            if getattr(self, kind) is not None:
                out[array_name(kind)] = getattr(self, kind)
        return out
