"""On-disk layout of a trace store (docs/design.md §8) and its manifest.

    STORE/manifest.json                 schema version, settings, afip-probe version
    STORE/samples/<sample_id>.parquet   one row: ids, image, prompt, output, spans, grid, status
    STORE/tokens/<sample_id>.parquet    one row per generated token
    STORE/tensors/<sample_id>.safetensors   head/<field> [T, L, H], layer/<field> [T, L],
                                        maps [T, L, n], scores [T, L, H, n], token_entropy [T], logprob [T]

Every file is written to a temporary name and renamed; the sample's row in samples/ is written
last, so a sample is finished exactly when that file exists. No pickle anywhere.
"""

from __future__ import annotations

import re

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SAMPLES_DIR = "samples"
TOKENS_DIR = "tokens"
TENSORS_DIR = "tensors"

#: settings that must match for --resume to append to a store
RESUME_KEYS = ("model", "record_level", "array_dtype", "prompt", "max_new_tokens", "dtype", "condition", "shard",
               "hidden_layers")


def safe_id(sample_id: str) -> str:
    """A file-name-safe version of a sample id."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", str(sample_id))[:200] or "_"
