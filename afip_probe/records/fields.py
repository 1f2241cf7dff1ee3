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
    prompt_mass      Σ A over the prompt's text (non-image) keys, the query's own key when it is a prompt
                     token (prefill); with var and generated_mass it sums to 1
    generated_mass   Σ A over the generated keys, the query's own key included from step 1 on (Lookback
                     Lens' "new tokens", PAS's "prelim" tokens)
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
    "prompt_mass",
    "generated_mass",
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

    hidden: the decoder hidden states to keep (opt-in, any level), as indices 0..L of the model's
    ``output_hidden_states`` (0: the input of layer 0, i: the input of layer i, L: the final normed
    state): per generated token the state of the row that chose it, the image tokens' states from
    prefill, and the logit-lens log-probabilities those states give the chosen token (`afip_probe.hooks.hidden`).
    They are kept in `array_dtype`.
    """

    level: str = "stats"
    array_dtype: str = "float16"
    hidden: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise AfipError(f"unknown record level {self.level!r}: use one of {', '.join(LEVELS)}")
        if self.array_dtype not in ARRAY_DTYPES:
            raise AfipError(f"array_dtype must be float16 or float32, not {self.array_dtype!r}")
        if any(int(i) != i or i < 0 for i in self.hidden) or len(set(self.hidden)) != len(self.hidden):
            raise AfipError(f"hidden states are distinct indices 0..L (output_hidden_states), not {self.hidden!r}")
