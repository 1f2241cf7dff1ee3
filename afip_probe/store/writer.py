"""Writing a trace store: one sample at a time, atomically, resumable."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import save_file

from .._version import __version__
from ..errors import StoreError, option
from ..jsonio import read_json
from ..records import SampleRow, SampleTrace, model_name
from .schema import MANIFEST, RESUME_KEYS, SAMPLES_DIR, SCHEMA_VERSION, TENSORS_DIR, TOKENS_DIR, safe_id


def _atomic_write(path: Path, write: Any) -> None:
    """Call write(tmp_path), fsync, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_table(path: Path, frame: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp))


#: test-only pause point, ``WHERE:K``: the process stops itself (SIGSTOP) when the K-th sample it writes
#: reaches WHERE (``tensors`` written, ``tokens`` written, or ``commit``ted), so a test can kill it exactly there
PAUSE_ENV = "AFIP_PROBE_TEST_PAUSE_AT"


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.exists():
        raise StoreError(f"{root} is not a trace store (no {MANIFEST}); create one with `afip-probe trace`")
    manifest = read_json(path, "store manifest", StoreError)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{root} has store schema version {version}, this afip-probe reads version {SCHEMA_VERSION}; "
            "re-run the trace or use the afip-probe release that wrote it"
        )
    return manifest


class StoreWriter:
    """Creates (or resumes) a store and writes finished samples into it.

    Example:
        >>> import tempfile
        >>> w = StoreWriter(tempfile.mkdtemp() + "/s", {"model": "tiny", "record_level": "stats"})
        >>> sorted(w.finished())
        []
    """

    @staticmethod
    def check(path: str | os.PathLike, resume: bool = False) -> None:
        """Raise now if a store cannot be created (or resumed) at `path`, writing nothing: a command checks
        this before it loads a model."""
        root = Path(path)
        if (root / MANIFEST).exists():
            read_manifest(root)
            if not resume:
                raise StoreError(f"{root} already holds a trace store; pass {option('resume')} to finish it, or "
                                 f"choose a new {option('out')}")
        elif root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise StoreError(f"{root} exists and is not an empty folder nor a trace store; choose a new "
                             f"{option('out')}")

    def __init__(self, path: str | os.PathLike, settings: dict[str, Any], resume: bool = False):
        self.root = Path(path)
        self.settings = dict(settings)
        manifest_path = self.root / MANIFEST
        self.check(self.root, resume)
        if manifest_path.exists():
            manifest = read_manifest(self.root)
            old = manifest.get("settings", {})
            # a store written before model names were shortened holds the model's path: compare names
            diff = [k for k in RESUME_KEYS if k in old and k in self.settings and old[k] != self.settings[k]
                    and not (k == "model" and model_name(old[k]) == model_name(self.settings[k]))]
            if diff:
                detail = ", ".join(f"{k}: store has {old[k]!r}, now {self.settings[k]!r}" for k in diff)
                raise StoreError(f"cannot resume {self.root} with different settings ({detail})")
        for sub in (SAMPLES_DIR, TOKENS_DIR, TENSORS_DIR):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
            for stale in (self.root / sub).glob(".*.tmp"):  # files a killed run was writing
                stale.unlink(missing_ok=True)
        self._written = 0
        where, _, k = os.environ.get(PAUSE_ENV, "").partition(":")
        self._pause_at = (where, int(k)) if where and k.isdigit() else None
        if not manifest_path.exists():
            manifest = {
                "schema_version": SCHEMA_VERSION,
                "afip_probe_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "settings": self.settings,
            }
            text = json.dumps(manifest, indent=2, default=str)
            _atomic_write(manifest_path, lambda tmp: Path(tmp).write_text(text))

    def finished(self) -> set[str]:
        """Sample ids whose row says `ok` (failed samples are retried on resume)."""
        done = set()
        for f in (self.root / SAMPLES_DIR).glob("*.parquet"):
            try:
                row = pq.read_table(f, columns=["sample_id", "status"]).to_pylist()[0]
            except Exception:  # a damaged row file: the sample is redone
                continue
            if row["status"] == "ok":
                done.add(row["sample_id"])
        return done

    def write_failure(self, row: SampleRow, error: str) -> None:
        """Record a sample that could not be traced (retried on resume)."""
        self._write_row(row.failed(error))

    def write_sample(self, row: SampleRow, trace: SampleTrace, tokens: pd.DataFrame) -> None:
        """Write one finished sample: tensors, then tokens, then its row (the commit)."""
        sid = safe_id(row.sample_id)
        tensors = {k: np.ascontiguousarray(v) for k, v in trace.arrays().items()}
        meta = {"sample_id": str(row.sample_id), "schema_version": str(SCHEMA_VERSION)}
        _atomic_write(self.root / TENSORS_DIR / f"{sid}.safetensors", lambda tmp: save_file(tensors, tmp, metadata=meta))
        self._pause_point("tensors")
        _write_table(self.root / TOKENS_DIR / f"{sid}.parquet", tokens)
        self._pause_point("tokens")
        self._write_row(row)
        self._pause_point("commit")
        self._written += 1

    def _pause_point(self, where: str) -> None:
        if self._pause_at == (where, self._written + 1):
            os.kill(os.getpid(), signal.SIGSTOP)  # a test kills the process here (see PAUSE_ENV)

    def _write_row(self, row: SampleRow) -> None:
        _write_table(self.root / SAMPLES_DIR / f"{safe_id(row.sample_id)}.parquet", pd.DataFrame([row.to_dict()]))
