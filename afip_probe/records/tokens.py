"""Character spans of generated tokens, from the tokenizer's own decoding (works for any tokenizer).

Example:
    >>> from afip_probe.models.tiny import llama_style_tokenizer
    >>> tok = llama_style_tokenizer()
    >>> ids = tok("a dog and a frisbee", add_special_tokens=False).input_ids
    >>> text, spans = token_char_spans(tok, ids)
    >>> text[spans[1][0]:spans[1][1]]
    ' dog'
"""

from __future__ import annotations

from typing import Any, Sequence


def token_char_spans(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """Decode `ids` (special tokens skipped) and give each token its [start, end) span in the text.

    Token k covers the characters that decoding ids[:k+1] adds to decoding ids[:k]; special tokens
    and pieces that only complete a multi-byte character get empty or shared spans.
    """
    text = tokenizer.decode(list(ids), skip_special_tokens=True)
    spans: list[tuple[int, int]] = []
    prev = ""
    for k in range(len(ids)):
        cur = tokenizer.decode(list(ids[: k + 1]), skip_special_tokens=True)
        start = _common_prefix(prev, cur) if not cur.startswith(prev) else len(prev)
        start = min(start, len(text))
        end = min(max(len(cur), start), len(text))
        spans.append((start, end))
        prev = cur
    return text, spans


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
