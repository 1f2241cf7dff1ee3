"""Batched greedy generation over images without recording: captions and yes/no answers.

This is the engine of CHAIR/POPE evaluation runs. Score modifiers (a corrector) can be switched on;
with none it is plain ``generate()``. Results are appended to a JSONL file one line per image as they
come, so a killed run keeps what it finished and a rerun with the same file skips those images.

Example:
    >>> from afip_probe.pipelines.generation import caption_images
    >>> from afip_probe.pipelines.settings import GenerationSettings
    >>> rows = caption_images(GenerationSettings("organism"), ["scenes/val/"], "captions.jsonl")  # doctest: +SKIP
    >>> rows[0].keys()                                                       # doctest: +SKIP
    dict_keys(['image_id', 'image', 'caption'])
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from PIL import Image
from tqdm import tqdm  # text bars: tqdm.auto warns in a notebook without ipywidgets

from ..errors import AfipError
from ..hooks import intercept
from ..images import ImageItem, load_image
from ..models import LoadedModel
from ..outputs import check_jsonl, claim_jsonl
from .settings import GenerationSettings, resolve_model
from .tracing import as_items

#: keys every row `generate_jobs` writes has: a JSONL file is resumed only when each of its lines has them
ROW_KEYS = ("sample_id", "prompt")


@dataclass(frozen=True)
class Job:
    """One generation: an image and the prompt to ask about it; `extra` is copied to the output row."""

    item: ImageItem
    prompt: str
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.item.sample_id}\t{self.prompt}"


def _done_keys(path: Path) -> set[str]:
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill: that job is redone
        keys.add(f"{row.get('sample_id')}\t{row.get('prompt')}")
    return keys


def check_images(paths: set[Path]) -> None:
    """Raise one AfipError naming every missing or unreadable image, before any generation."""
    bad = []
    for p in sorted(paths):
        try:
            with Image.open(p) as img:
                img.verify()
        except Exception as e:  # missing, not an image, truncated header
            bad.append(f"{p} ({type(e).__name__})")
    if bad:
        raise AfipError(f"{len(bad)} image(s) cannot be read, e.g. {bad[0]}; remove or replace them and run again")


def generate_jobs(
    settings: GenerationSettings,
    jobs: Sequence[Job],
    out: str | Path | None,
    *,
    loaded: LoadedModel | None = None,
    output_key: str = "caption",
    modifiers: Sequence[Any] = (),
    progress: bool = True,
    desc: str = "generate",
) -> list[dict[str, Any]]:
    """Run every job (batched, left-padded; greedy unless `settings` sample) and return one row per job.

    With `out`, rows are appended to that JSONL file as they finish and jobs already in it are
    skipped (resume); a file that holds other lines than these rows is refused (`afip_probe.outputs`).
    Unreadable images raise `AfipError` before any generation starts, and nothing is written before the
    model is loaded and the images are checked. The job's own prompt is used, not `settings.prompt`.
    """
    if out is not None:
        check_jsonl(out, ROW_KEYS)
    loaded = resolve_model(settings, loaded, progress)
    batch_size = settings.batch_size
    out_path = Path(out) if out is not None else None
    done = _done_keys(out_path) if out_path is not None else set()
    todo = [j for j in jobs if j.key not in done]
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    dev = next(loaded.model.parameters()).device
    check_images({path for j in todo for path in j.item.all_paths})
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not progress)
    sink = claim_jsonl(out_path, ROW_KEYS).open("a") if out_path is not None else None
    try:
        with intercept(loaded.model, modifiers, adapter=loaded.adapter) if modifiers else contextlib.nullcontext():
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                opened = {p: load_image(p) for j in batch for p in j.item.all_paths}
                imgs = [[opened[p] for p in j.item.all_paths] for j in batch]  # a manifest line: several
                inputs = loaded.adapter.build_inputs(imgs, [j.prompt for j in batch], device=dev)
                width = inputs["input_ids"].shape[1]
                torch.manual_seed(settings.seed + start // batch_size)
                seqs = loaded.model.generate(**inputs, **settings.generate_kwargs())
                texts = tokenizer.batch_decode(seqs[:, width:], skip_special_tokens=True)
                for j, text in zip(batch, texts):
                    row = {"image_id": j.item.image_id, "image": j.item.path.name, "sample_id": j.item.sample_id,
                           "prompt": j.prompt, output_key: text.strip(), **dict(j.extra)}
                    rows.append(row)
                    if sink is not None:
                        sink.write(json.dumps(row) + "\n")
                        sink.flush()
                bar.update(len(batch))
    finally:
        bar.close()
        if sink is not None:
            sink.close()
    return rows


def caption_images(
    settings: GenerationSettings,
    images: Sequence[str | Path] | Sequence[ImageItem],
    out: str | Path | None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Caption every image with `settings.prompt`; rows are ``{image_id, image, sample_id, prompt, caption}``
    (OPERA's CHAIR format). `kwargs` go to `generate_jobs`."""
    jobs = [Job(it, it.prompt if it.prompt is not None else settings.prompt) for it in as_items(images)]
    return generate_jobs(settings, jobs, out, output_key="caption", desc=kwargs.pop("desc", "caption"), **kwargs)


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    for line in Path(path).read_text().splitlines():
        if line.strip():
            yield json.loads(line)
