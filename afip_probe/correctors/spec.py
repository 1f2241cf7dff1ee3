"""Corrector specs as the CLI takes them: ``afip:alpha=0.2,gamma=0.05,layers=2-``, ``pai:alpha=0.5``.

Keys are the corrector's fields; booleans take on/off/true/false/1/0; ``layers=a-b`` is layers a to
b inclusive and ``layers=a-`` runs from layer a to the last one, as ``--layers`` everywhere
(`afip_probe.records.Layers`); a layer the model does not have is an error when generation starts.

Example:
    >>> parse_spec("pai:alpha=0.3,layers=1-")
    PAI(alpha=0.3, layers=Layers('1-'))
    >>> parse_spec("afip:gate=off").gate
    False
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import AfipError
from ..records import Layers
from .afip import AFIP
from .baselines import HGAI, PAI

CORRECTORS: dict[str, type] = {"afip": AFIP, "pai": PAI, "hgai": HGAI}
BOOLS = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}


def parse_spec(spec: str) -> Any:
    """A corrector from ``name[:key=value,...]``."""
    name, _, rest = spec.partition(":")
    cls = CORRECTORS.get(name.strip().lower())
    if cls is None:
        raise AfipError(f"unknown corrector {name!r} in {spec!r}: use one of {', '.join(CORRECTORS)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in fields:
            raise AfipError(f"{spec!r}: {part!r} is not key=value with a key of {name} "
                            f"({', '.join(fields)})")
        default = fields[key].default
        if key == "layers":
            kwargs[key] = Layers(value)
        elif isinstance(default, bool):
            if value.lower() not in BOOLS:
                raise AfipError(f"{spec!r}: {key} takes on or off, not {value!r}")
            kwargs[key] = BOOLS[value.lower()]
        else:
            try:
                kwargs[key] = type(default)(value)
            except ValueError:
                raise AfipError(f"{spec!r}: {key}={value!r} is not a {type(default).__name__}") from None
    return cls(**kwargs)
