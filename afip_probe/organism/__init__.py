"""The model organism (docs/design.md §9): a small trained LLaVA that hallucinates for the reasons real ones do.

- `catalog`: the categories, scene types, co-occurrence priors and the sampling of a scene's contents;
- `drawing`: each scene drawn as an image;
- `captions`: captions and yes/no questions in COCO vocabulary;
- `dataset`: scenes written as a COCO-format dataset, cached (held-out split drawn on demand).

Its training (`afip_probe.pipelines.organism_training`) and CHAIR evaluation
(`afip_probe.pipelines.organism_eval`) are pipelines; this package is data and needs no torch.

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
from .dataset import heldout_dirs

NAME = "organism"


def checkpoint_dir() -> Path:
    """The bundled checkpoint folder (``save_pretrained`` layout)."""
    path = Path(__file__).resolve().parent / "checkpoint"
    if not (path / "config.json").exists() or not (path / "model.safetensors").exists():
        raise AfipError(
            f"the organism checkpoint is missing from {path}; rebuild it with "
            "`python -m afip_probe.pipelines.organism_training --out afip_probe/organism/checkpoint --overwrite`"
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


def default_images(model_name: str, progress: bool = True) -> list[str]:
    """The images a job runs on when none are given: the held-out scenes for the organism (drawn into
    the cache on first use); any other model needs ``--images``."""
    if not is_organism(model_name):
        raise AfipError("give --images (a COCO-format image folder) for this model")
    return [str(heldout_dirs(progress)[0])]
