"""afip-probe: record, measure and correct VLM attention to study object hallucination.

Example:
    >>> import afip_probe
    >>> from afip_probe.models import tiny, adapter_for
    >>> model, processor = tiny.tiny_llava()
    >>> inputs = adapter_for(model, processor).build_inputs(tiny.random_images(1), "describe")
    >>> with afip_probe.trace(model, processor) as rec:
    ...     _ = model.generate(**inputs, max_new_tokens=2)
    >>> rec.traces[0].head["var"].shape
    (2, 2, 4)
"""

from . import correct
from .errors import AfipError
from .hooks import RecordConfig, SampleTrace, intercept, trace

__version__ = "0.1.0"

__all__ = ["correct", "AfipError", "RecordConfig", "SampleTrace", "__version__", "intercept", "trace"]
