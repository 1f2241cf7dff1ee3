"""Attention interceptor and recorder (DESIGN §3). Knows nothing of CHAIR or metrics."""

from .interceptor import IMPLEMENTATION, Intervention, RowContext, ScoreModifier, intercept, last_row_scores, register, trace
from .recorder import Recorder

__all__ = [
        "IMPLEMENTATION",
    "Intervention",
    "Recorder",
    "RowContext",
    "ScoreModifier",
    "intercept",
    "last_row_scores",
    "register",
    "trace",
]
