"""The one function that names every array a trace store holds (docs/design.md §8).

    head/<field>            [T, L, H]     per-head statistics (`HEAD_FIELDS`)
    layer/<field>           [T, L]        per-layer statistics (`LAYER_FIELDS`)
    per_image/var           [T, L, H, I]  VAR of each of a prompt's I images (prompts of several images only;
                                          the I values add up to head/var)
    maps                    [T, L, n]     head-mean post-softmax image attention (levels maps, full)
    scores                  [T, L, H, n]  per-head pre-softmax image scores (level full)
    token_entropy, logprob  [T]           Eq. 4 and the chosen token's log-probability (raw logits)
    hidden                  [T, K, d]     decoder hidden states of the row that chose each token (opt-in)
    image_hidden            [K, n, d]     the image tokens' hidden states at prefill (opt-in; not per step)
    lens                    [T, K]        log-probability of the chosen token under the logit lens of `hidden`
    image_lens              [T, K]        the same, best over the image tokens' states (`image_hidden`)
    corrected/<any of head, layer, maps, per_image>  the same rows after a corrector changed them

Every reader and writer goes through `array_name`; no other module spells these strings.

Example:
    >>> array_name("layer", "kl")
    'layer/kl'
    >>> array_name("head", "var", source="corrected")
    'corrected/head/var'
    >>> parse_array_name("corrected/head/var")
    ('head', 'var', 'corrected')
    >>> array_name("per_image", "var")
    'per_image/var'
"""

from __future__ import annotations

from ..errors import AfipError
from .fields import HEAD_FIELDS, LAYER_FIELDS, PER_IMAGE_FIELDS

#: kind -> the fields it has (None: the kind is one array)
ARRAY_KINDS: dict[str, tuple[str, ...] | None] = {
    "head": HEAD_FIELDS,
    "layer": LAYER_FIELDS,
    "per_image": PER_IMAGE_FIELDS,
    "maps": None,
    "scores": None,
    "token_entropy": None,
    "logprob": None,
    "hidden": None,
    "image_hidden": None,
    "lens": None,
    "image_lens": None,
}
#: kinds whose first axis is not the generated tokens (checked per step by `afip-probe verify`)
PER_SAMPLE_KINDS = ("image_hidden",)
SOURCES = ("raw", "corrected")
_CORRECTED_KINDS = ("head", "layer", "maps", "per_image")


def array_name(kind: str, field: str | None = None, source: str = "raw") -> str:
    """The stored name of one array: `kind` of `ARRAY_KINDS`, its `field` where it has fields, and
    `source` ``raw`` (the model's own rows) or ``corrected`` (after a corrector)."""
    if kind not in ARRAY_KINDS:
        raise AfipError(f"unknown array kind {kind!r}: use one of {', '.join(ARRAY_KINDS)}")
    if source not in SOURCES:
        raise AfipError(f"source must be 'raw' or 'corrected', not {source!r}")
    fields = ARRAY_KINDS[kind]
    if fields is None:
        if field is not None:
            raise AfipError(f"array kind {kind!r} has no fields (got {field!r})")
        name = kind
    else:
        if field not in fields:
            raise AfipError(f"unknown {kind} field {field!r}: use one of {', '.join(fields)}")
        name = f"{kind}/{field}"
    if source == "corrected":
        if kind not in _CORRECTED_KINDS:
            raise AfipError(f"corrected rows keep only {', '.join(_CORRECTED_KINDS)}, not {kind!r}")
        return f"corrected/{name}"
    return name


def parse_array_name(name: str) -> tuple[str, str | None, str]:
    """(kind, field, source) of a stored name; the inverse of `array_name`."""
    source = "raw"
    rest = name
    if rest.startswith("corrected/"):
        source, rest = "corrected", rest[len("corrected/"):]
    kind, _, field = rest.partition("/")
    parsed = (kind, field or None, source)
    if array_name(*parsed) != name:  # validates kind, field and source
        raise AfipError(f"{name!r} is not a trace-store array name")
    return parsed
