"""Check a whole trace store: every finished sample's row, tokens and tensors read back and agree.

Problems are reported per sample id: a damaged or truncated row, tokens or tensors file, a token
table or an array whose length differs from the sample's `num_tokens`, missing files. Files left by
a killed run (tensors or tokens with no row yet, temporary files) are listed as leftovers: `--resume`
redoes those samples. With ``fix=True`` the rows of damaged samples are removed so that `--resume`
redoes them too.

Example:
    >>> from afip_probe.store.verify import verify
    >>> report = verify("out/store")     # doctest: +SKIP
    >>> report.ok, report.problems[:1]   # doctest: +SKIP
    (True, [])
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from safetensors import safe_open

from ..errors import StoreError
from ..records import PER_SAMPLE_KINDS, array_name
from .schema import SAMPLES_DIR, TENSORS_DIR, TOKENS_DIR

PER_SAMPLE_ARRAYS = {array_name(kind) for kind in PER_SAMPLE_KINDS}
from .writer import read_manifest


@dataclass
class VerifyReport:
    root: Path
    samples_ok: int = 0
    samples_failed: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (sample id, what is wrong)
    leftovers: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"{self.root}: {self.samples_ok} finished samples, {self.samples_failed} failed, "
               f"{len(self.problems)} damaged, {len(self.leftovers)} leftover files of unfinished samples"]
        out += [f"damaged: {sid}: {why}" for sid, why in self.problems]
        if self.fixed:
            out.append(f"removed the rows of {len(self.fixed)} damaged samples; run the same trace with --resume "
                       "to redo them")
        elif self.problems:
            out.append("run `afip-probe verify STORE --fix` then the same trace with --resume to redo them")
        return out


def _check_sample(root: Path, row: dict, sid_file: str) -> str | None:
    """What is wrong with one finished sample, or None."""
    n = int(row.get("num_tokens") or 0)
    tok = root / TOKENS_DIR / f"{sid_file}.parquet"
    ten = root / TENSORS_DIR / f"{sid_file}.safetensors"
    if not tok.exists():
        return "tokens file missing"
    if not ten.exists():
        return "tensors file missing"
    try:
        rows = pq.read_table(tok).num_rows
    except Exception as e:
        return f"tokens file damaged or truncated ({type(e).__name__})"
    if rows != n:
        return f"tokens table has {rows} rows, the sample has {n} tokens"
    try:
        with safe_open(str(ten), framework="numpy") as f:
            for key in f.keys():
                if key in PER_SAMPLE_ARRAYS:  # not one row per generated token
                    continue
                arr = f.get_tensor(key)
                if arr.shape[0] != n:
                    return f"array {key} has {arr.shape[0]} steps, the sample has {n} tokens"
    except Exception as e:
        return f"tensors file damaged or truncated ({type(e).__name__}: {str(e)[:80]})"
    return None


def verify(path: str | os.PathLike, fix: bool = False) -> VerifyReport:
    """Check every sample of the store at `path` (see the module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise StoreError(f"no trace store at {root}")
    read_manifest(root)  # schema version and readable manifest
    report = VerifyReport(root)
    rows_seen = set()
    for f in sorted((root / SAMPLES_DIR).glob("*.parquet")):
        rows_seen.add(f.stem)
        try:
            row = pq.read_table(f).to_pylist()[0]
        except Exception as e:
            report.problems.append((f.stem, f"sample row damaged or truncated ({type(e).__name__})"))
            if fix:
                f.unlink()
                report.fixed.append(f.stem)
            continue
        if row.get("status") != "ok":
            report.samples_failed += 1
            continue
        problem = _check_sample(root, row, f.stem)
        if problem is None:
            report.samples_ok += 1
            continue
        report.problems.append((str(row.get("sample_id", f.stem)), problem))
        if fix:
            f.unlink()
            report.fixed.append(f.stem)
    for sub, suffix in ((TOKENS_DIR, ".parquet"), (TENSORS_DIR, ".safetensors")):
        for f in sorted((root / sub).iterdir()) if (root / sub).is_dir() else []:
            if f.name.endswith(".tmp") or (f.suffix == suffix and f.stem not in rows_seen):
                report.leftovers.append(str(f.relative_to(root)))
    return report
