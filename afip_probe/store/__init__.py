"""The trace store (docs/design.md §8): Parquet tables + per-sample safetensors + manifest.

Example:
    >>> import afip_probe.store as st
    >>> store = st.open("out/store")        # doctest: +SKIP
    >>> store.tokens().columns[:4].tolist() # doctest: +SKIP
    ['sample_id', 'step', 'position', 'token_id']
"""

from .reader import LazyArrays, TraceStore, open
from .schema import SCHEMA_VERSION
from .writer import StoreWriter, read_manifest

__all__ = ["SCHEMA_VERSION", "LazyArrays", "StoreWriter", "TraceStore", "open", "read_manifest"]
