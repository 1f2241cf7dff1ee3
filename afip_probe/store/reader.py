"""Reading a trace store with pandas and numpy alone (no torch, no model)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import safe_open

from ..errors import StoreError, option
from .schema import SAMPLES_DIR, TENSORS_DIR, TOKENS_DIR, safe_id
from .writer import read_manifest


class LazyArrays(Mapping[str, np.ndarray]):
    """One sample's tensors; each array is read from disk only when indexed.

    Keys: ``head/<field>`` [T, L, H], ``layer/<field>`` [T, L], ``token_entropy`` [T], ``logprob`` [T],
    and at the larger record levels ``maps`` [T, L, n] and ``scores`` [T, L, H, n].
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            with safe_open(str(path), framework="numpy") as f:
                self._keys = list(f.keys())
                self.metadata = f.metadata() or {}
        except Exception as e:  # truncated or damaged file
            raise StoreError(f"{path} is damaged or truncated ({e}); re-run that sample with {option('resume')}"
                             ) from e

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._keys:
            raise KeyError(f"{key!r} not recorded here; available: {', '.join(self._keys)}")
        with safe_open(str(self.path), framework="numpy") as f:
            return f.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class TraceStore:
    """A trace store opened for reading.

    Example:
        >>> store = open("path/to/store")          # doctest: +SKIP
        >>> store.samples().head()                  # doctest: +SKIP
        >>> store.arrays("img_001")["head/var"].shape   # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        self.root = Path(path)
        if not self.root.is_dir():
            raise StoreError(f"no trace store at {self.root}")
        self.manifest = read_manifest(self.root)
        #: the summary of the run that just wrote this store (`afip_probe.trace_images`), else None
        self.run: Any = None

    @property
    def sample_ids(self) -> list[str]:
        """The ids of the finished samples, in the store's order."""
        ok = self.samples(status="ok")
        return [] if ok.empty else [str(s) for s in ok["sample_id"]]

    @property
    def settings(self) -> dict[str, Any]:
        return self.manifest.get("settings", {})

    def _table(self, sub: str, ids: list[str] | None = None) -> pd.DataFrame:
        files = sorted((self.root / sub).glob("*.parquet"))
        if ids is not None:
            wanted = {safe_id(i) for i in ids}
            files = [f for f in files if f.stem in wanted]
        tables = []
        for f in files:
            try:
                tables.append(pq.read_table(f))
            except Exception as e:
                raise StoreError(f"{f} is damaged or truncated ({e}); re-run that sample with "
                                 f"{option('resume')}") from e
        if not tables:
            return pd.DataFrame()
        return pa.concat_tables(tables, promote_options="default").to_pandas()

    def samples(self, status: str | None = None) -> pd.DataFrame:
        """One row per sample (finished or failed); `status="ok"` keeps the finished ones."""
        frame = self._table(SAMPLES_DIR)
        if status is not None and not frame.empty:
            frame = frame[frame["status"] == status].reset_index(drop=True)
        return frame

    def tokens(self, sample_ids: list[str] | None = None) -> pd.DataFrame:
        """One row per generated token of the finished samples (optionally only `sample_ids`)."""
        ok = self.samples(status="ok")
        ids = list(ok["sample_id"]) if not ok.empty else []
        if sample_ids is not None:
            wanted = set(sample_ids)
            ids = [i for i in ids if i in wanted]
        frame = self._table(TOKENS_DIR, ids)
        if not frame.empty:
            frame = frame.sort_values(["sample_id", "step"], kind="stable").reset_index(drop=True)
        return frame

    def arrays(self, sample_id: str) -> LazyArrays:
        path = self.root / TENSORS_DIR / f"{safe_id(sample_id)}.safetensors"
        if not path.exists():
            raise StoreError(f"sample {sample_id!r} has no tensors in {self.root} (failed or not traced)")
        return LazyArrays(path)

    def __len__(self) -> int:
        return len(self.samples(status="ok"))

    def __repr__(self) -> str:
        return f"TraceStore({str(self.root)!r}, samples={len(self)}, level={self.settings.get('record_level')!r})"


def open(path: str | os.PathLike) -> TraceStore:  # noqa: A001 - mirrors the built-in on purpose
    """Open a trace store for reading."""
    return TraceStore(path)
