"""The model organism (DESIGN §9): a small trained LLaVA that hallucinates for the reasons real ones do.

- `scenes`: synthetic COCO-format scenes with co-occurrence priors (held-out split drawn on demand);
- `train`: the deterministic CPU training script that made the bundled checkpoint;
- `evaluate`: CHAIR of the organism on its held-out scenes.

Load it by name anywhere a model id is accepted (``--model organism``), or with plain transformers:

Example:
    >>> from transformers import LlavaForConditionalGeneration
    >>> from afip_probe.organism import checkpoint_dir
    >>> model = LlavaForConditionalGeneration.from_pretrained(checkpoint_dir())
    >>> model.config.text_config.num_hidden_layers
    4
"""

from __future__ import annotations

from pathlib import Path

from ..errors import AfipError

NAME = "organism"


def checkpoint_dir() -> Path:
    """The bundled checkpoint folder (``save_pretrained`` layout)."""
    path = Path(__file__).resolve().parent / "checkpoint"
    if not (path / "config.json").exists() or not (path / "model.safetensors").exists():
        raise AfipError(
            f"the organism checkpoint is missing from {path}; rebuild it with "
            "`python -m afip_probe.organism.train --out afip_probe/organism/checkpoint`"
        )
    return path


def is_organism(model_name: str) -> bool:
    """Whether a model name (``"organism"`` or a loaded model's path) is the bundled organism."""
    if str(model_name) == NAME:
        return True
    try:
        return Path(str(model_name)).resolve() == checkpoint_dir()
    except AfipError:
        return False
