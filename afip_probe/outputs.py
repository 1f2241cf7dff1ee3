"""The rule for everything afip-probe writes: never delete or overwrite what afip-probe did not write.

- An output folder must be new, empty, or an afip-probe output of the same kind: a marker file,
  `MARKER`, names its kind and the entries afip-probe wrote there. A folder holding anything else is
  refused. Reusing an earlier output needs ``resume`` (continue it) or ``overwrite`` (start again:
  only the entries the marker lists are removed; anything else in the folder stays).
- An output file must not exist, unless ``overwrite`` names it on purpose.
- A resumable JSONL output (captions, answers) may be appended to only when its lines are afip-probe's
  own rows.

Trace stores follow the same rule with their manifest as the marker (`afip_probe.store.StoreWriter`).

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> out = claim_dir(root / "cmp", "compare", writes=["chair.csv"])
    >>> (root / "mine.txt").write_text("x") and None
    >>> claim_dir(root, "compare")
    Traceback (most recent call last):
    ...
    afip_probe.errors.AfipError: --out ... is not empty and is not an afip-probe compare output; give a new folder (afip-probe never deletes or overwrites files it did not write)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable, Sequence

from .errors import AfipError, option

MARKER = ".afip-probe.json"
RESUMABLE = ("compare", "organism-scenes")  # kinds whose earlier output a run may continue
KEEP = "(afip-probe never deletes or overwrites files it did not write)"


def output_kind(path: Path) -> str | None:
    """The kind of afip-probe output `path` holds (from its marker), or None."""
    try:
        return str(json.loads((path / MARKER).read_text()).get("kind"))
    except (OSError, ValueError, AttributeError):
        return None


def check_dir(path: str | Path, kind: str, *, overwrite: bool = False, resume: bool = False,
              name: str = "out") -> Path:
    """Refuse `path` now if `claim_dir` would refuse it, writing nothing: commands check their outputs first,
    then their inputs, and claim the output only when they are about to write into it."""
    root, flag = Path(path), option(name)
    if root.exists() and not root.is_dir():
        raise AfipError(f"{flag} {root} is a file; give a new folder")
    if root.is_dir() and any(root.iterdir()):
        found = output_kind(root)
        if found != kind:
            what = f"an afip-probe {found} output, not a {kind} one" if found else \
                f"not an afip-probe {kind} output"
            raise AfipError(f"{flag} {root} is not empty and is {what}; give a new folder {KEEP}")
        if not overwrite and not resume:
            again = f", or {option('resume')} to continue it" if kind in RESUMABLE else ""
            raise AfipError(f"{flag} {root} holds an earlier {kind} output; pass {option('overwrite')} to replace it"
                            f"{again}, or give a new folder")
    return root


def claim_dir(path: str | Path, kind: str, *, writes: Sequence[str] = (), overwrite: bool = False,
              resume: bool = False, name: str = "out") -> Path:
    """Make `path` ready to receive a `kind` output whose top-level entries are `writes`; see the module doc.

    With `overwrite`, the entries an earlier output of this kind wrote are removed first."""
    root = check_dir(path, kind, overwrite=overwrite, resume=resume, name=name)
    if overwrite and output_kind(root) == kind:
        remove_entries(root, json.loads((root / MARKER).read_text()).get("written", []))
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(json.dumps({"kind": kind, "written": sorted(set(writes))}) + "\n")
    return root


def record_written(path: str | Path, names: Iterable[str]) -> None:
    """Add `names` (entries written under `path`) to its marker, so a later --overwrite removes them."""
    root = Path(path)
    marker = json.loads((root / MARKER).read_text())
    marker["written"] = sorted(set(marker.get("written", [])) | set(names))
    (root / MARKER).write_text(json.dumps(marker) + "\n")


def remove_entries(root: Path, names: Iterable[str]) -> None:
    """Remove the entries `names` (files or folders afip-probe wrote) directly under `root`."""
    for name in names:
        entry = root / name
        if Path(name).name != name or name in ("", ".", ".."):
            continue  # only direct children: a damaged marker never reaches outside the folder
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()


def check_file(path: str | Path, *, overwrite: bool = False, name: str = "out") -> Path:
    """Refuse `path` now if `claim_file` would refuse it, writing nothing (see `check_dir`)."""
    p, flag = Path(path), option(name)
    if p.is_dir():
        raise AfipError(f"{flag} {p} is a folder; give a file name")
    if p.exists() and not overwrite:
        raise AfipError(f"{flag} {p} exists; pass {option('overwrite')} to replace it, or give a new file name")
    return p


def claim_file(path: str | Path, *, overwrite: bool = False, name: str = "out") -> Path:
    """`path` for a new output file: refused when it exists, unless `overwrite` (the user named it); its
    folder is created."""
    p = check_file(path, overwrite=overwrite, name=name)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def check_jsonl(path: str | Path, keys: Sequence[str], *, name: str = "out") -> Path:
    """Refuse `path` now if `claim_jsonl` would refuse it, writing nothing (see `check_dir`)."""
    p, flag = Path(path), option(name)
    if p.is_dir():
        raise AfipError(f"{flag} {p} is a folder; give a .jsonl file name")
    if p.exists() and p.stat().st_size:
        lines = p.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            try:
                row = json.loads(line)
                ours = isinstance(row, dict) and all(k in row for k in keys)
            except ValueError:
                ours = 0 < i == len(lines) - 1  # a last line cut by a kill (after rows of ours): redone
            if not ours:
                raise AfipError(f"{flag} {p} exists and is not an afip-probe output (line {i + 1}); give a new "
                                f"file name {KEEP}")
    return p


def claim_jsonl(path: str | Path, keys: Sequence[str], *, name: str = "out") -> Path:
    """`path` for an appendable JSONL output: new, empty, or every line an afip-probe row with `keys`
    (then the run resumes it). A line cut by a kill is allowed as the last one, after at least one row."""
    p = check_jsonl(path, keys, name=name)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p
