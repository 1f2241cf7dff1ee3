"""Attention interceptor and recorder (docs/design.md §3). Knows nothing of CHAIR or metrics."""

from .interceptor import (Intervention, RowContext, ScoreModifier, intercept, is_intercepted, last_row_allowed,
                          last_row_scores, trace)
from .recorder import Recorder

__all__ = [
    "Intervention",
    "Recorder",
    "RowContext",
    "ScoreModifier",
    "intercept",
    "is_intercepted",
    "last_row_allowed",
    "last_row_scores",
    "trace",
]
