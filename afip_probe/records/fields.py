"""Record levels and the names of the recorded statistics (docs/design.md §3, §5).

Per head, stacked in `HEAD_FIELDS` order (each [T, L, H] in a store):
    var              Σ_{i∈I} A_i                           (Eq. 2, VAR)
    img_max_score    V = max_{i∈I} B_i                     (gating signal)
    txt_max_score    T = max over allowed non-image keys, the query's own key excluded
    img_mean_score   mean_{i∈I} B_i
    txt_mean_score   mean over the same text keys as T
    img_mean_prob    mean_{i∈I} A_i
    txt_mean_prob    mean of A over the text keys
    lse              log Σ_j exp B_j (so A_j = exp(B_j - lse))
    img_entropy      entropy of P = A_I / Σ A_I (renormalised over image keys)
    kl_to_mean       Σ_i P_i (log P_i - log P̄_i), P̄ the head mean of P (Eq. 3 before the head mean)
Per layer, in `LAYER_FIELDS` order (each [T, L]):
    attn_entropy         -Σ_i Ā_i log(Ā_i + ε), Ā = head mean of A_I, not renormalised (Eq. 1)
    attn_entropy_renorm  the same with Ā renormalised to sum 1
    kl                   mean over heads of kl_to_mean (D_kl^l of Eq. 3)

Example:
    >>> RecordConfig("maps").level
    'maps'
    >>> RecordConfig("everything")
    Traceback (most recent call last):
    ...
    afip_probe.errors.AfipError: unknown record level 'everything': use one of stats, maps, full
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AfipError

#: the CHAIR-evaluation prompt of OPERA / HGAI / AFIP, and the organism's training prompt
DEFAULT_PROMPT = "Please describe this image in detail."
#: new tokens per reply, everywhere a setting does not say otherwise (Python and the command line)
DEFAULT_MAX_NEW_TOKENS = 64

#: what is kept per generated token: per-head scalars; + head-mean image maps; + per-head image rows
LEVELS = ("stats", "maps", "full")

HEAD_FIELDS = (
    "var",
    "img_max_score",
    "txt_max_score",
    "img_mean_score",
    "txt_mean_score",
    "img_mean_prob",
    "txt_mean_prob",
    "lse",
    "img_entropy",
    "kl_to_mean",
)
LAYER_FIELDS = ("attn_entropy", "attn_entropy_renorm", "kl")
#: split per image of a prompt that shows several (each [T, L, H, I]): var, Σ over that image's keys of A
PER_IMAGE_FIELDS = ("var",)
ARRAY_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class RecordConfig:
    """What to keep per generated token (docs/design.md §3).

    level: ``stats`` (per-head scalars), ``maps`` (+ head-averaged image attention per layer) or
    ``full`` (+ per-head pre-softmax image rows). Arrays of the larger levels are kept in
    `array_dtype` (float16 by default, float32 for exact comparisons).
    """

    level: str = "stats"
    array_dtype: str = "float16"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise AfipError(f"unknown record level {self.level!r}: use one of {', '.join(LEVELS)}")
        if self.array_dtype not in ARRAY_DTYPES:
            raise AfipError(f"array_dtype must be float16 or float32, not {self.array_dtype!r}")
