"""`model_name`: the one name every output gives a model (manifests, token tables, figures, reports).

The bundled organism is ``organism`` (asked for by name or by its checkpoint folder), a model loaded from
a local folder is that folder's name, and a hub model is its id. A store written before names were
shortened holds a path: it is named the same way when read, so no install path reaches an output.

Example:
    >>> model_name("organism"), model_name("llava-hf/llava-1.5-7b-hf")
    ('organism', 'llava-hf/llava-1.5-7b-hf')
    >>> model_name("/venv/lib/python3.12/site-packages/afip_probe/organism/checkpoint")
    'organism'
    >>> model_name("/data/models/my-llava/")
    'my-llava'
"""

from __future__ import annotations

import re
from pathlib import Path, PurePath

#: the name of the bundled model organism
ORGANISM = "organism"
#: the last parts of the organism checkpoint's path inside the package
_ORGANISM_PARTS = ("afip_probe", "organism", "checkpoint")


def model_name(name_or_path: str | Path) -> str:
    """The name outputs give the model `name_or_path` was loaded from (see the module doc)."""
    text = str(name_or_path).strip()
    if text in ("", ORGANISM):
        return text
    parts = [p for p in re.split(r"[\\/]+", text) if p]  # POSIX or Windows separators
    if tuple(parts[-len(_ORGANISM_PARTS):]) == _ORGANISM_PARTS:
        return ORGANISM
    local = Path(text)
    if local.is_dir():  # a local save_pretrained folder: its own name
        return local.resolve().name
    if PurePath(text).is_absolute() or text.startswith(("./", "../", "~")) or "\\" in text or ":" in text:
        return parts[-1] if parts else text  # a folder that is gone (a store from another machine)
    return text  # a hub id
