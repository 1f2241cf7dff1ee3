"""Merge shard stores (``afip-probe trace --shard i/N``) into one store.

The shards must have been traced with the same settings (model, level, prompt, ...) apart from the
shard itself, and must not share sample ids. Only finished and failed samples are taken (leftovers
of a killed shard are not); each file is copied (hard-linked when possible) and every shard is
verified first, so a damaged shard stops the merge with its sample ids. The result holds the same
samples, tokens and arrays as one single-process run over all images.

Example:
    >>> from afip_probe.store.merge import merge
    >>> merge("runs/all", ["runs/shard0", "runs/shard1"])     # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import pyarrow.parquet as pq

from .._version import __version__
from ..errors import StoreError
from .schema import MANIFEST, SAMPLES_DIR, SCHEMA_VERSION, TENSORS_DIR, TOKENS_DIR
from .verify import verify
from .writer import _atomic_write, read_manifest

SHARD_KEYS = ("shard",)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def merge(out: str | os.PathLike, shards: Sequence[str | os.PathLike]) -> int:
    """Merge `shards` into a new store at `out`; returns the number of samples."""
    if not shards:
        raise StoreError("give the shard stores to merge")
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise StoreError(f"{root} exists and is not empty; merge into a new folder")
    settings = None
    seen: dict[str, Path] = {}
    plan: list[tuple[Path, str, bool]] = []  # (shard root, file stem, finished)
    for shard in map(Path, shards):
        manifest = read_manifest(shard)
        s = {k: v for k, v in manifest.get("settings", {}).items() if k not in SHARD_KEYS}
        if settings is None:
            settings = s
        elif s != settings:
            diff = sorted(k for k in set(s) | set(settings) if s.get(k) != settings.get(k))
            raise StoreError(f"{shard} was traced with other settings than {shards[0]} ({', '.join(diff)}); "
                             "only shards of one run can be merged")
        report = verify(shard)
        if not report.ok:
            sid, why = report.problems[0]
            raise StoreError(f"shard {shard} has {len(report.problems)} damaged samples (e.g. {sid}: {why}); "
                             "run `afip-probe verify SHARD --fix` and resume that shard first")
        for f in sorted((shard / SAMPLES_DIR).glob("*.parquet")):
            row = pq.read_table(f, columns=["sample_id", "status"]).to_pylist()[0]
            if row["sample_id"] in seen:
                raise StoreError(f"sample {row['sample_id']!r} is in both {seen[row['sample_id']]} and {shard}; "
                                 "shards must split the images (use --shard i/N with the same N)")
            seen[row["sample_id"]] = shard
            plan.append((shard, f.stem, row["status"] == "ok"))
    for sub in (SAMPLES_DIR, TOKENS_DIR, TENSORS_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for shard, stem, finished in plan:  # data first, rows last: an interrupted merge is a valid store
        if finished:
            _link_or_copy(shard / TENSORS_DIR / f"{stem}.safetensors", root / TENSORS_DIR / f"{stem}.safetensors")
            _link_or_copy(shard / TOKENS_DIR / f"{stem}.parquet", root / TOKENS_DIR / f"{stem}.parquet")
    manifest = {"schema_version": SCHEMA_VERSION, "afip_probe_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": settings,
                "merged_from": [str(Path(s)) for s in shards]}
    text = json.dumps(manifest, indent=2, default=str)
    _atomic_write(root / MANIFEST, lambda tmp: Path(tmp).write_text(text))
    for shard, stem, _ in plan:
        _link_or_copy(shard / SAMPLES_DIR / f"{stem}.parquet", root / SAMPLES_DIR / f"{stem}.parquet")
    return len(plan)
