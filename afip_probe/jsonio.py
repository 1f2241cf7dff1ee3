"""Reading JSON files with errors that name the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import AfipError


def read_json(path: str | Path, what: str, error: type[AfipError] = AfipError) -> Any:
    """Parse a JSON file; a missing or malformed file raises `error` with one clear line."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{what} not found: {p}")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{what} {p} is not valid JSON ({e})") from e
