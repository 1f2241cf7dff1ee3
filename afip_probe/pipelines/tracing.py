"""Trace a model over a set of images into a store: the engine behind `afip-probe trace`.

Example:
    >>> from afip_probe.pipelines.settings import GenerationSettings
    >>> from afip_probe.pipelines.tracing import trace_images
    >>> summary = trace_images(GenerationSettings("organism", max_new_tokens=64), ["scenes/"],
    ...                        "out/store")                        # doctest: +SKIP
    >>> print(summary.line())                                        # doctest: +SKIP
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm  # text bars: tqdm.auto warns in a notebook without ipywidgets

from ..errors import AfipError, AfipWarning, option
from ..hooks import trace
from ..images import ImageItem, collect_images, load_image
from ..metrics.detect import Detector, trace_features
from ..metrics.signals import SampleContext, recording_needs
from ..models import LoadedModel
from ..records import SampleImage, SampleRow, token_rows
from ..store import StoreWriter
from .settings import GenerationSettings, resolve_model

#: one traced condition: (name, score modifiers), e.g. ("baseline", []) or ("afip", [AFIP()])
Condition = tuple[str, Sequence[Any]]


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


def _batches(items: list[ImageItem], size: int) -> Iterable[list[ImageItem]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def as_items(images: Sequence[str | Path] | Sequence[ImageItem]) -> list[ImageItem]:
    """Samples from folders / files / .txt lists / .jsonl manifests (`afip_probe.images.collect_images`), or
    the items themselves."""
    if images and isinstance(images[0], ImageItem):
        return list(images)  # type: ignore[arg-type]
    return collect_images(images)  # type: ignore[arg-type]


def trace_images(
    settings: GenerationSettings,
    images: Sequence[str | Path] | Sequence[ImageItem],
    out: str | Path,
    *,
    loaded: LoadedModel | None = None,
    conditions: Sequence[Condition] = (("", ()),),
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    detector: Detector | None = None,
    annotations: str | Path | None = None,
    progress: bool = True,
) -> TraceSummary:
    """Generate for every sample (an image, or the images of a manifest line) with the interceptor on and
    stream the records into a store.

    `loaded` is a model already in memory (else `settings.model` is loaded). Failed samples
    (unreadable images, errors during generation) are recorded with their error and the run goes on.

    `conditions` traces the same images several times into one store, once per ``(name, modifiers)``
    (e.g. no corrector, then AFIP); with more than one, sample ids become ``<name>/<image>`` and rows
    carry `condition`. Every batch starts from ``torch.manual_seed(settings.seed + batch)``, so
    sampling is paired too.

    ``shard=(i, n)`` traces only images i, i+n, i+2n, ... (of the sorted list), for data-parallel runs
    whose shard stores `afip_probe.store.merge` joins into one.

    With a `detector` (`afip_probe.metrics.detect`), every token row gets its ``risk`` as each sample is
    written: the same value the detector gives the stored statistics afterwards. `annotations` (a
    COCO-format folder) is recorded in the manifest: later commands label the store's tokens with it.
    """
    items = as_items(images)
    if shard is not None:
        index, count = shard
        if not (count >= 1 and 0 <= index < count):
            raise AfipError(f"{option('shard')} {index}/{count}: write i/N with 0 <= i < N")
        items = items[index::count]
    conds = list(conditions)
    if not conds or len({name for name, _ in conds}) != len(conds):
        raise AfipError(f"condition names must differ: {[name for name, _ in conds]}")
    groups = [(name, mods, [it.renamed(f"{name}/{it.sample_id}") for it in items]
               if len(conds) > 1 else items) for name, mods in conds]
    StoreWriter.check(out, resume)  # before the model loads (a hub download can take minutes)
    loaded = resolve_model(settings, loaded, progress)
    check_conditions(conds, loaded)
    manifest = settings.manifest(loaded)
    manifest.update(condition=" | ".join(name for name, _ in conds), conditions=[name for name, _ in conds])
    if any(mods for _, mods in conds):
        manifest["corrected_outputs"] = ("rows a corrector changed: softmax(B̃)·V in float32 (afip-probe's "
                                         "arithmetic); every other row: " + manifest["outputs"])
    if shard is not None:
        manifest["shard"] = f"{shard[0]}/{shard[1]}"
    if detector is not None:
        if (warning := detector.model_mismatch(loaded.name)) is not None:
            warnings.warn(warning, AfipWarning, stacklevel=2)
        check_recording(detector, settings.level, manifest["hidden_layers"])
        manifest["detector"] = {"kind": detector.kind, "features": len(detector.features), **detector.trained_on}
    if annotations is not None:  # the ground truth later commands label this store's tokens with
        manifest["annotations"] = str(Path(annotations).resolve())
    writer = StoreWriter(out, manifest, resume=resume)
    done = writer.finished() if resume else set()
    total = sum(len(g) for _, _, g in groups)
    todo = [(name, mods, [it for it in g if it.sample_id not in done]) for name, mods, g in groups]
    left = sum(len(g) for _, _, g in todo)
    tracer = _Tracer(loaded, writer, TraceSummary(store=str(out), total=total, skipped=total - left), settings,
                     detector)
    start = time.perf_counter()
    tracer.bar = tqdm(total=left, desc="trace", unit="img", disable=not progress)
    for name, mods, group in todo:
        if group:
            tracer.run_group(name, mods, group)
    tracer.bar.close()
    tracer.summary.seconds = time.perf_counter() - start
    return tracer.summary


def check_conditions(conditions: Sequence[Condition], loaded: LoadedModel) -> None:
    """Raise now if a condition's score modifier names layers the model lacks (a corrector's ``layers=``),
    before anything is traced or written."""
    for _, modifiers in conditions:
        for modifier in modifiers:
            if hasattr(modifier, "layer_set"):
                modifier.layer_set(loaded.adapter.decoder_depth)


def check_recording(detector: Detector, level: str, hidden: list[int]) -> None:
    """Refuse a trace that does not record what `detector` reads (before anything is traced)."""
    trained = [int(i) for i in detector.trained_on.get("hidden_layers") or []]
    need_level, need_hidden = recording_needs(detector.features, trained)
    if need_level == "maps" and level == "stats":
        raise AfipError("this detector reads ADS, from the attention maps: trace with --record maps")
    missing = sorted(set(need_hidden) - set(hidden))
    if missing:
        raise AfipError(f"this detector reads hidden states {missing}: trace with --hidden "
                        f"{','.join(str(i) for i in need_hidden)}")
    if any(f in ("ic", "image_ic") for f in detector.features):
        if not hidden:
            raise AfipError("this detector reads internal confidence, from the hidden states: trace with --hidden "
                            "(e.g. --hidden all)")
        if "hidden_layers" in detector.trained_on and sorted(hidden) != sorted(trained):
            raise AfipError(f"this detector's internal confidence is a maximum over hidden states {trained}: trace "
                            f"with --hidden {','.join(str(i) for i in trained)}")


class _Tracer:
    """The loop of `trace_images`: batches of one condition through generate() into the store."""

    def __init__(self, loaded: LoadedModel, writer: StoreWriter, summary: TraceSummary, settings: GenerationSettings,
                 detector: Detector | None = None):
        self.loaded, self.writer, self.summary, self.settings = loaded, writer, summary, settings
        self.detector = detector
        self.tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
        self.device = next(loaded.model.parameters()).device
        self.bar: Any = None

    def base_row(self, item: ImageItem, condition: str) -> SampleRow:
        return SampleRow(sample_id=item.sample_id, image=str(item.path), prompt=self.prompt(item),
                         model=self.loaded.name, image_id=item.image_id if item.image_id is not None else -1,
                         condition=condition, image_ids=item.image_ids)

    def prompt(self, item: ImageItem) -> str:
        return item.prompt if item.prompt is not None else self.settings.prompt

    def images(self, item: ImageItem, opened: Sequence[Any]) -> list[SampleImage]:
        """Each image of a sample with its size and the box the adapter's grid covers."""
        adapter = self.loaded.adapter
        return [SampleImage(str(path), img.width, img.height, adapter.image_region(img.width, img.height), number)
                for path, img, number in zip(item.all_paths, opened, item.image_ids)]

    def fail(self, item: ImageItem, condition: str, error: str) -> None:
        self.writer.write_failure(self.base_row(item, condition), error)
        self.summary.failed += 1
        self.summary.errors.append(f"{item.sample_id}: {error}")

    def run_group(self, condition: str, modifiers: Sequence[Any], todo: list[ImageItem]) -> None:
        loaded, summary, settings = self.loaded, self.summary, self.settings
        with trace(loaded.model, loaded.processor, level=settings.level, modifiers=modifiers,
                   adapter=loaded.adapter, exact=settings.exact, hidden=settings.hidden) as rec:
            for number, batch in enumerate(_batches(todo, settings.batch_size)):
                ready: list[tuple[ImageItem, list[Any]]] = []
                for item in batch:
                    try:
                        ready.append((item, [load_image(path) for path in item.all_paths]))
                    except AfipError as e:
                        self.fail(item, condition, str(e))
                if ready:
                    rec.traces.clear()
                    try:
                        inputs = loaded.adapter.build_inputs([imgs for _, imgs in ready],
                                                             [self.prompt(item) for item, _ in ready],
                                                             device=self.device)
                        torch.manual_seed(settings.seed + number)
                        loaded.model.generate(**inputs, **settings.generate_kwargs())
                    except AfipError:
                        raise
                    except Exception as e:  # e.g. out of memory: lose only this batch
                        for item, _ in ready:
                            self.fail(item, condition, f"{type(e).__name__}: {e}")
                        self.bar.update(len(batch))
                        continue
                    for (item, imgs), tr in zip(ready, rec.traces):
                        text, tokens = token_rows(item.sample_id, tr, self.tokenizer)
                        images = self.images(item, imgs)
                        tiles = loaded.adapter.sample_tiles(tr.layout, tr.prompt_ids,
                                                            [(im.width, im.height) for im in images])
                        if self.detector is not None:  # risk per token, from the statistics just recorded
                            context = SampleContext.from_trace(tr, tiles, loaded.adapter.num_layers,
                                                               self.writer.settings["hidden_layers"])
                            features = trace_features(tr.arrays(), tokens, self.detector.features, context)
                            tokens["risk"] = self.detector.predict(features).to_numpy(np.float32)
                        row = self.base_row(item, condition).with_trace(tr, text, images, tiles)
                        self.writer.write_sample(row, tr, tokens)
                        summary.ok += 1
                        summary.tokens += tr.num_tokens
                self.bar.update(len(batch))
