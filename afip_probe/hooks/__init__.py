"""Attention interceptor and recorder (DESIGN §3). Knows nothing of CHAIR or metrics."""

from .interceptor import IMPLEMENTATION, RowContext, ScoreModifier, intercept, last_row_scores, register, trace
from .recorder import LEVELS, RecordConfig, Recorder, SampleTrace
from .rowstats import HEAD_FIELDS, LAYER_FIELDS

__all__ = [
    "HEAD_FIELDS",
    "IMPLEMENTATION",
    "LAYER_FIELDS",
    "LEVELS",
    "RecordConfig",
    "Recorder",
    "RowContext",
    "SampleTrace",
    "ScoreModifier",
    "intercept",
    "last_row_scores",
    "register",
    "trace",
]
