"""A module of afip-probe as a past git revision wrote it, loaded beside this tree's (for benchmarks that time
both in one process).

    >>> past = past_module("main", "afip_probe/hooks/rowstats.py")     # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def past_module(rev: str, path: str) -> Any:
    """`path` (e.g. ``afip_probe/hooks/rowstats.py``) at `rev`, loaded as a sibling module of its package
    (``_<name>_past``), so its relative imports resolve to this tree's package."""
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    package = ".".join(Path(path).with_suffix("").parts[:-1])
    spec = importlib.util.spec_from_loader(f"{package}._{Path(path).stem}_past", loader=None)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    module.__package__ = package
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    exec(compile(source, f"{rev}:{Path(path).name}", "exec"), module.__dict__)  # noqa: S102 - our own past source
    return module
