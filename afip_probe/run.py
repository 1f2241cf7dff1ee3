"""Trace a model over a set of images into a store: the engine behind `afip-probe trace`.

Example:
    >>> from afip_probe.run import trace_images
    >>> summary = trace_images("organism", ["scenes/"], "Please describe this image in detail.",
    ...                        "out/store", max_new_tokens=64)        # doctest: +SKIP
    >>> print(summary.line())                                           # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import AfipError, require_positive
from .hooks import trace
from .hooks.recorder import SampleTrace
from .store import StoreWriter
from .tokens import token_char_spans

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ImageItem:
    sample_id: str
    path: Path
    image_id: int | None


@dataclass
class TraceSummary:
    store: str
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    tokens: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"traced {self.total} samples: {self.ok} ok, {self.failed} failed, {self.skipped} already done; "
            f"{self.tokens} tokens in {self.seconds:.1f} s -> {self.store}"
        )


def _coco_image_id(stem: str) -> int | None:
    match = re.search(r"(\d+)$", stem)
    return int(match.group(1)) if match else None


def collect_images(specs: Sequence[str | Path]) -> list[ImageItem]:
    """Images from folders (their image files, sorted), image files, and .txt lists of paths.

    Paths named directly must exist; paths inside a list file that are missing become failed samples.
    """
    paths: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if not p.exists():
            raise AfipError(f"--images {spec}: no such file or folder")
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise AfipError(f"--images {spec}: the folder holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            paths.extend(found)
        elif p.suffix.lower() not in IMAGE_EXTENSIONS | {".txt"}:
            raise AfipError(f"--images {spec}: not an image file nor a .txt list of paths "
                            f"(image types: {', '.join(sorted(IMAGE_EXTENSIONS))})")
        elif p.suffix.lower() == ".txt":
            lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            paths.extend((p.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines)
        else:
            paths.append(p)
    if not paths:
        raise AfipError("no images given: pass --images with a folder, image files or a .txt list of paths")
    items, seen = [], {}
    for path in paths:
        stem = path.stem
        count = seen.get(stem, 0) + 1
        seen[stem] = count
        sid = stem if count == 1 else f"{stem}_{count}"
        items.append(ImageItem(sample_id=sid, path=path, image_id=_coco_image_id(stem)))
    return items


def load_image(path: Path) -> Any:
    """Open an image as RGB, raising AfipError with the cause for missing or corrupt files."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise AfipError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise AfipError(f"cannot read image {path}: {e}") from e


def token_table(sample_id: str, trace_: SampleTrace, tokenizer: Any) -> tuple[str, pd.DataFrame]:
    """The output text and one row per generated token with its char span and per-token summaries."""
    ids = trace_.generated_ids
    text, spans = token_char_spans(tokenizer, ids)
    pieces = [text[s:e] for s, e in spans]
    head, layer = trace_.head, trace_.layer
    frame = pd.DataFrame(
        {
            "sample_id": sample_id,
            "step": np.arange(len(ids), dtype=np.int32),
            "position": np.arange(len(ids), dtype=np.int64) + len(trace_.prompt_ids),
            "token_id": np.asarray(ids, dtype=np.int64),
            "token_text": pieces,
            "token_raw": tokenizer.convert_ids_to_tokens(list(ids)),
            "char_start": np.asarray([s for s, _ in spans], dtype=np.int32),
            "char_end": np.asarray([e for _, e in spans], dtype=np.int32),
            "relative_position": (np.arange(len(ids)) + 0.5) / max(len(ids), 1),
            "token_entropy": trace_.token_entropy,
            "logprob": trace_.logprob,
            "var_mean": head["var"].mean(axis=(1, 2)),
            "peak_gap_mean": (head["txt_max_score"] - head["img_max_score"]).mean(axis=(1, 2)),
            "attn_entropy_mean": layer["attn_entropy"].mean(axis=1),
            "kl_mean": layer["kl"].mean(axis=1),
        }
    )
    return text, frame


def _batches(items: list[ImageItem], size: int) -> Iterable[list[ImageItem]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def trace_images(
    model: Any,
    images: Sequence[str | Path] | list[ImageItem],
    prompt: str,
    out: str | Path,
    level: str = "stats",
    max_new_tokens: int = 64,
    batch_size: int = 1,
    resume: bool = False,
    device: str = "auto",
    dtype: str = "auto",
    condition: str = "",
    modifiers: Sequence[Any] = (),
    progress: bool = True,
    generate_kwargs: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    conditions: Sequence[tuple[str, Sequence[Any]]] | None = None,
    seed: int = 0,
    shard: tuple[int, int] | None = None,
) -> TraceSummary:
    """Generate for every image with the interceptor on and stream the records into a store.

    `model` is a name/path for `afip_probe.models.load` or a `LoadedModel`. Failed samples (unreadable
    images, errors during generation) are recorded with their error and the run goes on.

    `conditions` traces the same images several times into one store, once per ``(name, modifiers)``
    (e.g. no corrector, then AFIP); sample ids become ``<name>/<image>`` and rows carry `condition`.
    Every batch starts from ``torch.manual_seed(seed + batch)``, so sampling is paired too.

    ``shard=(i, n)`` traces only images i, i+n, i+2n, ... (of the sorted list), for data-parallel runs
    whose shard stores `afip_probe.store.merge` joins into one.
    """
    from tqdm.auto import tqdm

    from .hooks.recorder import RecordConfig
    from .models import LoadedModel, load

    require_positive(max_new_tokens, "--max-new-tokens")
    require_positive(batch_size, "--batch-size")
    RecordConfig(level)  # validates the level before anything is loaded
    items = images if images and isinstance(images[0], ImageItem) else collect_images(images)  # type: ignore[arg-type]
    if shard is not None:
        index, count = shard
        if not (count >= 1 and 0 <= index < count):
            raise AfipError(f"--shard {index}/{count}: write i/N with 0 <= i < N")
        items = items[index::count]
    conds = list(conditions) if conditions else [(condition, list(modifiers))]
    if len({name for name, _ in conds}) != len(conds):
        raise AfipError(f"condition names must differ: {[name for name, _ in conds]}")
    groups = [(name, mods, [ImageItem(f"{name}/{it.sample_id}", it.path, it.image_id) for it in items]
               if len(conds) > 1 else items) for name, mods in conds]
    loaded = model if isinstance(model, LoadedModel) else load(
        str(model), device=device, dtype=dtype, trust_remote_code=trust_remote_code
    )
    settings = {
        "model": loaded.name,
        "family": loaded.adapter.family,
        "record_level": level,
        "array_dtype": "float16",
        "prompt": prompt,
        "max_new_tokens": max_new_tokens,
        "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch."),
        "condition": " | ".join(name for name, _ in conds),
        "conditions": [name for name, _ in conds],
        "num_layers": loaded.adapter.num_layers,
        "num_heads": loaded.adapter.num_heads,
        "decoding": "greedy" if not (generate_kwargs or {}).get("do_sample") else "sample",
    }
    if shard is not None:
        settings["shard"] = f"{shard[0]}/{shard[1]}"
    writer = StoreWriter(out, settings, resume=resume)
    done = writer.finished() if resume else set()
    total = sum(len(g) for _, _, g in groups)
    todo = [(name, mods, [it for it in g if it.sample_id not in done]) for name, mods, g in groups]
    left = sum(len(g) for _, _, g in todo)
    gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False)
    gen_kwargs.update(generate_kwargs or {})
    tracer = _Tracer(loaded, writer, TraceSummary(store=str(out), total=total, skipped=total - left), prompt,
                     level, batch_size, gen_kwargs, seed)
    start = time.perf_counter()
    tracer.bar = tqdm(total=left, desc="trace", unit="img", disable=not progress)
    for name, mods, group in todo:
        if group:
            tracer.run_group(name, mods, group)
    tracer.bar.close()
    tracer.summary.seconds = time.perf_counter() - start
    return tracer.summary


class _Tracer:
    """The loop of `trace_images`: batches of one condition through generate() into the store."""

    def __init__(self, loaded: Any, writer: StoreWriter, summary: TraceSummary, prompt: str, level: str,
                 batch_size: int, gen_kwargs: dict[str, Any], seed: int):
        self.loaded, self.writer, self.summary = loaded, writer, summary
        self.prompt, self.level, self.batch_size = prompt, level, batch_size
        self.gen_kwargs, self.seed = gen_kwargs, seed
        self.tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
        self.device = next(loaded.model.parameters()).device
        self.bar: Any = None

    def base_row(self, item: ImageItem, condition: str) -> dict[str, Any]:
        return {
            "sample_id": item.sample_id,
            "image_id": item.image_id if item.image_id is not None else -1,
            "image": str(item.path),
            "prompt": self.prompt,
            "model": self.loaded.name,
            "condition": condition,
        }

    def fail(self, item: ImageItem, condition: str, error: str) -> None:
        self.writer.write_failure(self.base_row(item, condition), error)
        self.summary.failed += 1
        self.summary.errors.append(f"{item.sample_id}: {error}")

    def run_group(self, condition: str, modifiers: Sequence[Any], todo: list[ImageItem]) -> None:
        import torch

        loaded, summary = self.loaded, self.summary
        with trace(loaded.model, loaded.processor, level=self.level, modifiers=modifiers,
                   adapter=loaded.adapter) as rec:
            for number, batch in enumerate(_batches(todo, self.batch_size)):
                ready: list[tuple[ImageItem, Any]] = []
                for item in batch:
                    try:
                        ready.append((item, load_image(item.path)))
                    except AfipError as e:
                        self.fail(item, condition, str(e))
                if ready:
                    rec.traces.clear()
                    try:
                        inputs = loaded.adapter.build_inputs([img for _, img in ready], self.prompt, device=self.device)
                        torch.manual_seed(self.seed + number)
                        loaded.model.generate(**inputs, **self.gen_kwargs)
                    except AfipError:
                        raise
                    except Exception as e:  # e.g. out of memory: lose only this batch
                        for item, _ in ready:
                            self.fail(item, condition, f"{type(e).__name__}: {e}")
                        self.bar.update(len(batch))
                        continue
                    for (item, img), tr in zip(ready, rec.traces):
                        text, tokens = token_table(item.sample_id, tr, self.tokenizer)
                        row = self.base_row(item, condition)
                        row.update(
                            output_text=text,
                            prompt_ids=tr.prompt_ids,
                            generated_ids=tr.generated_ids,
                            num_tokens=tr.num_tokens,
                            image_positions=tr.layout.positions,
                            image_spans=[list(s) for s in tr.layout.spans],
                            grid_rows=tr.layout.grid[0],
                            grid_cols=tr.layout.grid[1],
                            image_width=img.width,
                            image_height=img.height,
                            grid_region=list(loaded.adapter.image_region(img.width, img.height)),
                        )
                        self.writer.write_sample(row, tr, tokens)
                        summary.ok += 1
                        summary.tokens += tr.num_tokens
                self.bar.update(len(batch))
