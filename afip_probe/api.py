"""The public Python API: one function per job. `afip_probe` exports these names at the top level, and every
`afip-probe` command is a thin wrapper over one of them, so the command line and Python give the same result.

A model is what `load` returns (a `LoadedModel`: module, processor, adapter, name), or a model name where a
function loads it itself. A store is a trace store folder or an opened `TraceStore`. Outputs follow one rule
(`afip_probe.outputs`): a new or empty folder, or an earlier output of the same kind replaced with
``overwrite=True``; inputs are checked before anything is written.

Example (the README's hello-world, on the bundled model organism):
    >>> import afip_probe as ap
    >>> m = ap.load("organism", progress=False)
    >>> scenes = ap.organism_scenes(4, progress=False)
    >>> with ap.trace(m, level="maps") as rec:
    ...     caption = m.generate(scenes.images[0], max_new_tokens=12)
    >>> rec.traces[0].var.shape                               # [T]: VAR per token, mean over layers, heads
    (12,)
    >>> import tempfile, os; os.chdir(tempfile.mkdtemp())
    >>> store = ap.trace_images(m, scenes.images, "store", level="maps", max_new_tokens=12, progress=False)
    >>> len(store.sample_ids), store.settings["model"]
    (4, 'organism')
    >>> fig = ap.heatmap(store, store.sample_ids[0], step=2, out="heatmap.png")
    >>> table = ap.token_table(store)                        # one row per token, labelled with CHAIR
    >>> "real" in set(table.label.astype(str)), len(table) == 4 * 12
    (True, True)
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import AfipError, AfipWarning, option, require_positive
from .records import DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT

StoreLike = Any  # a trace store folder (str / Path) or an opened `TraceStore`
LoadedModel = Any  # what `load` returns (`afip_probe.models.LoadedModel`); imported when used: torch loads then


def load(model: str = "organism", *, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
         progress: bool = True) -> LoadedModel:
    """Load a model to trace: ``"organism"`` (the bundled one), a hub id, or a local ``save_pretrained``
    folder. `device` ``auto`` takes the GPU when there is one; `dtype` ``auto``: float16 on a GPU, float32
    on the CPU. The model keeps its own attention implementation.

    Example:
        >>> m = load("organism", progress=False)
        >>> m.name, m.adapter.num_layers
        ('organism', 4)
    """
    from .models import load as load_model

    return load_model(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code, progress=progress)


def _is_loaded(model: Any) -> bool:
    return hasattr(model, "adapter") and hasattr(model, "processor") and hasattr(model, "model")


@dataclass(frozen=True)
class Scenes:
    """Scenes of the model organism's held-out split: a COCO-format dataset (images and annotations)."""

    root: Path  # the dataset folder (images/val, annotations/)
    images: list[Path]  # the image files, in order
    annotations: Path  # the COCO-format annotation folder (instances, captions, questions)


def organism_scenes(n: int | None = None, *, progress: bool = True) -> Scenes:
    """The first `n` (default: all 500) held-out organism scenes, drawn into the cache on first use
    (``$AFIP_PROBE_CACHE`` or ``~/.cache/afip-probe``); their ground truth is found from the images.

    Example:
        >>> scenes = organism_scenes(3, progress=False)
        >>> len(scenes.images), scenes.annotations.name
        (3, 'annotations')
    """
    from .organism import dataset

    if n is not None:
        require_positive(n, "n")
    root = dataset.ensure_split("val", progress=progress)
    return Scenes(root=root, images=dataset.image_paths(root, "val")[:n], annotations=root / "annotations")


def trace_images(model: Any, images: Any, out: str | os.PathLike, *, level: str = "stats",
                 prompt: str = DEFAULT_PROMPT, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, batch_size: int = 8,
                 exact: bool = True, do_sample: bool = False, seed: int = 0, annotations: str | None = None,
                 detector: Any = None, hidden: str = "", max_images: int | None = None,
                 shard: tuple[int, int] | None = None, resume: bool = False, device: str = "auto",
                 dtype: str = "auto", trust_remote_code: bool = False, progress: bool = True) -> Any:
    """Generate a reply for every image with tracing on and write a trace store at `out`; returns it opened
    (its `run` holds the run's summary: samples done, failed, tokens, seconds).

    `images`: image files, folders (searched with their subfolders), ``.txt`` lists of paths, ``.jsonl``
    manifests (``{"images": [...], "prompt": ...}`` per line, for prompts with several images), or the
    `organism_scenes` result. `annotations` (a COCO-format folder) is recorded in the store and used for its
    CHAIR labels from then on. `hidden` also records decoder hidden states (``"all"``, ``"last"``, ``"2-"``,
    ``"0,4"``: what the hidden-state signals and the probe read; docs/signals.md). `detector` (a
    `train_detector` result, its JSON file, or a signal column such as ``"pas_layer0"``) gives every token
    its hallucination risk as it is traced. A failed image becomes a failed sample and the run goes on;
    `resume` finishes an interrupted store.

    Example:
        >>> import tempfile
        >>> store = trace_images("organism", organism_scenes(2, progress=False).images,
        ...                      tempfile.mkdtemp() + "/s", max_new_tokens=6, progress=False)
        >>> store.run.ok, store.run.tokens
        (2, 12)
    """
    from . import store as st
    from .images import collect_images
    from .pipelines.settings import GenerationSettings
    from .pipelines.tracing import trace_images as trace_settings

    items = collect_images(_image_specs(images))
    if max_images is not None:
        require_positive(max_images, "max_images")
        items = items[:max_images]
    if annotations is not None and not Path(annotations).is_dir():
        raise AfipError(f"{option('annotations')} {annotations}: no such folder (give the COCO-format annotation "
                        "folder of the images)")
    name = model.name if _is_loaded(model) else str(model)
    settings = GenerationSettings(model=name, prompt=prompt, level=level, max_new_tokens=max_new_tokens,
                                  batch_size=batch_size, dtype=dtype, device=device, seed=seed, do_sample=do_sample,
                                  trust_remote_code=trust_remote_code, exact=exact, hidden=hidden)
    if detector is not None:
        from .metrics.detect import load_detector

        detector = load_detector(detector)
    summary = trace_settings(settings, items, out, loaded=model if _is_loaded(model) else None,
                             resume=resume, progress=progress, shard=shard, detector=detector,
                             annotations=annotations)
    opened = st.open(out)
    opened.run = summary
    return opened


def _image_specs(images: Any) -> list[Any]:
    if isinstance(images, Scenes):
        return list(images.images)
    return [images] if isinstance(images, (str, os.PathLike)) else list(images)


def open_store(path: str | os.PathLike) -> Any:
    """Open a trace store for reading (pandas tables and lazy numpy arrays; no torch needed).

    Example:
        >>> open_store("no/such/store")
        Traceback (most recent call last):
        ...
        afip_probe.errors.StoreError: no trace store at no/such/store
    """
    from . import store as st

    return st.open(path)


def _opened(store: StoreLike) -> Any:
    return store if hasattr(store, "samples") else open_store(store)


def token_table(store: StoreLike, *, annotations: str | None = None, layers: dict[str, Sequence[int]] | None = None,
                progress: bool = False, warn: bool = True) -> Any:
    """One row per generated token: CHAIR label (none / real / hallucinated), token entropy, log-probability,
    and every metric (VAR, attention entropy, cross-head KL, the text-visual gaps) per layer range.

    Ground truth: `annotations` if given, else the annotations the store was traced against, else the
    COCO-format dataset the images belong to, else the packaged COCO 2014 objects. When no traced image
    has ground truth, every token stays unlabelled and an `AfipWarning` says how to give it.

    Example:
        >>> table = token_table("no/such/store")
        Traceback (most recent call last):
        ...
        afip_probe.errors.StoreError: no trace store at no/such/store
    """
    from .metrics.table import labelled_table

    return labelled_table(_opened(store), annotations, layer_ranges=layers, progress=progress, warn=warn)


def figures(stores: StoreLike | Sequence[StoreLike], out: str | os.PathLike = "figures", *, layers: str = "all",
            annotations: str | None = None, resamples: int = 2000, tokens: str | os.PathLike | None = None,
            overwrite: bool = False, progress: bool = True) -> Any:
    """The AFIP paper's Findings 1–2 of one or more stores: statistics (``findings.json``) and figures (PNG,
    SVG and one ``index.html``) written into `out`; with several stores, figures that compare them draw each
    one. `tokens` also writes the labelled token table (Parquet). Returns the `FiguresReport`.

    Example:
        >>> figures(["no/such/store"], "figs")
        Traceback (most recent call last):
        ...
        afip_probe.errors.StoreError: no trace store at no/such/store
    """
    import pandas as pd

    from .metrics.table import check_layer_range, default_layer_ranges
    from .outputs import check_dir, check_file, claim_file
    from .plots.report import figures_report

    require_positive(resamples, "resamples")
    if tokens is not None:
        check_file(tokens, overwrite=overwrite, name="tokens")
    check_dir(out, "figures", overwrite=overwrite)
    opened = [_opened(s) for s in _many(stores)]
    for s in opened:  # before the token tables are built
        check_layer_range(layers, list(default_layer_ranges(int(s.settings.get("num_layers", 0)))) or [layers])
    # a store without labels is refused with an error that says how to give them: no warning besides it
    tables = [token_table(s, annotations=annotations, progress=progress, warn=False) for s in opened]
    report = figures_report(opened, out, layers, n_resamples=resamples, tables=tables, overwrite=overwrite)
    if tokens is not None:
        pd.concat(tables, ignore_index=True).to_parquet(claim_file(tokens, overwrite=overwrite, name="tokens"))
    return report


def _many(stores: Any) -> list[Any]:
    return [stores] if isinstance(stores, (str, os.PathLike)) or hasattr(stores, "samples") else list(stores)


#: the ROC figure `evaluate_detectors` draws per group of the comparison (`afip_probe.metrics.detect.suite.GROUPS`)
DETECTOR_FIGURES = {group: f"roc_{group.replace(' ', '-')}" for group in
                    ("single signals", "published detectors", "hidden-state probe", "combination")}
BEST_DETECTOR = "best-detector.json"  # the chosen combination, trained on all training scenes


@contextlib.contextmanager
def _warnings_held() -> Iterator[None]:
    """The warnings raised inside are said when the block ends normally, never beside the error that ends it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _common_signals(stores: list[Any]) -> list[str]:
    """The signals every store's recorded arrays allow (each store warns of those it cannot give)."""
    from .metrics import detect
    from .metrics.signals import SIGNALS

    names = [detect.store_signals(s) for s in stores]
    return [n for n in SIGNALS if all(n in found for found in names)]


def _detection_table(stores: list[Any], annotations: str | None, signals: list[str]) -> Any:
    """The object-token detection table of one or more stores, with the columns of `signals`."""
    import pandas as pd

    from .metrics import detect
    from .metrics.table import chair_for

    tables = [detect.detection_table(s, chair_for(s, annotations), signals, objects_only=True) for s in stores]
    return pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]


def _trained_on(stores: list[Any], df: Any, **extra: Any) -> dict[str, Any]:
    settings = stores[0].settings
    return {"stores": [str(s.root) for s in stores], "model": str(df.model.iloc[0]),
            "record_level": settings.get("record_level"),
            "hidden_layers": list(settings.get("hidden_layers") or []), **extra}


def train_detector(stores: StoreLike | Sequence[StoreLike], output: str | os.PathLike | None = None, *,
                   features: str = "all", kind: str = "logistic", strength: float = 1.0, token_prior: bool = True,
                   folds: int = 5, resamples: int = 1000, annotations: str | None = None,
                   overwrite: bool = False) -> Any:
    """Fit a hallucination detector on the object tokens of one or more stores (labels: CHAIR) and, with
    `output`, save it as JSON (what ``trace(detector=)``, `stream` and ``afip-probe stream --detector`` read).
    Returns the `Detector`; its ``cv`` is the `features`/`kind` cross-validation on these stores (folds grouped
    by image, AUROC with a 95 % CI), a figure for the same scenes the detector is fitted on: measure new scenes
    with `evaluate_detectors`.

    `features`: feature sets joined by commas (``all``, ``ranges``, ``live``, ``afip``, ``lookback-lens``,
    ``lookback-split``, ``ads-cgc``, ``probe``; docs/signals.md). `token_prior` adds the learned per-token-id
    hallucination rate (the model's own token ids: leave it out to carry a detector to another model).

    Example:
        >>> train_detector("no/such/store")
        Traceback (most recent call last):
        ...
        afip_probe.errors.StoreError: no trace store at no/such/store
    """
    from .metrics import detect
    from .outputs import check_file, claim_file

    require_positive(folds, "folds")
    require_positive(resamples, "resamples")
    if kind not in detect.KINDS:
        raise AfipError(f"{option('kind', kind)}: use one of {', '.join(detect.KINDS)}")
    if output is not None:
        check_file(output, overwrite=overwrite, name="output")
    opened = [_opened(s) for s in _many(stores)]
    with _warnings_held():
        df = _detection_table(opened, annotations, _common_signals(opened))
    columns = detect.feature_names(df, features, prior=token_prior)
    cv = detect.cross_validate(df, columns, kind, folds, resamples, strength=strength)
    det = detect.train(df, columns, kind, strength=strength)
    det.trained_on.update(_trained_on(opened, df, feature_set=features, strength=strength,
                                      cv_auroc=round(cv.auroc, 4)))
    det.cv = cv  # not saved: the trained_on's cv_auroc is
    if output is not None:
        det.save(claim_file(output, overwrite=overwrite, name="output"))
    return det


@dataclass
class DetectorReport:
    """What `evaluate_detectors` measured. `table`: one row per detector and setting (group, setting, AUROC
    and AUPRC with 95 % CIs resampled by image, Brier score, tokens, hallucinated, images); `evaluations`: the
    `Evaluation` behind each row (scores, labels, reliability); `best`: the combination chosen by
    cross-validation on the training scenes, trained on all of them (None when a saved detector was scored);
    `out`: the folder written (None: nothing written)."""

    table: Any  # pandas.DataFrame
    evaluations: list[Any]
    best: Any = None  # a `Detector`
    choice: Any = None  # the `suite.Choice` behind `best`: features, strength, token prior, CV AUROC
    out: Path | None = None

    def _repr_html_(self) -> str:  # a notebook shows the table
        return self.table.to_html(index=False)


def evaluate_detectors(stores: StoreLike | Sequence[StoreLike], transfer: StoreLike | Sequence[StoreLike] | None = None,
                       out: str | os.PathLike | None = None, *, detector: Any = None, folds: int = 5,
                       resamples: int = 1000, token_prior: bool = True, annotations: str | None = None,
                       overwrite: bool = False) -> DetectorReport:
    """Every published per-token hallucination signal, the published detectors, the hidden-state probe and the
    best combination, side by side on the object tokens of `stores` (cross-validated, folds grouped by image)
    and, trained on all of them, on the new scenes of `transfer` (docs/signals.md). With `detector` (a
    `Detector`, its JSON file or a signal column such as ``"pas_layer0"``), that detector alone is scored on
    `stores`. With `out`, the table (``detectors.csv``, ``detectors.md``), one ROC figure per group and the
    chosen combination (``best-detector.json``) are written there.

    Example:
        >>> evaluate_detectors("no/such/store")
        Traceback (most recent call last):
        ...
        afip_probe.errors.StoreError: no trace store at no/such/store
    """
    from .metrics import detect
    from .metrics.detect import suite
    from .outputs import check_dir

    require_positive(folds, "folds")
    require_positive(resamples, "resamples")
    if out is not None:
        check_dir(out, "detect-eval", overwrite=overwrite)
    opened = [_opened(s) for s in _many(stores)]  # inputs first: a bad one leaves nothing behind
    new = [_opened(s) for s in _many(transfer)] if transfer is not None else []
    with _warnings_held():  # the signals a store cannot give, a prior of another model: said once measured
        if detector is not None:
            report, figures = _score_saved(opened, detector, annotations, resamples), {"detectors": None}
        else:
            signals = _common_signals(opened + new)
            train_df = _detection_table(opened, annotations, signals)
            test_df = _detection_table(new, annotations, signals) if new else None
            result = suite.compare(train_df, test_df, suite.SuiteConfig(folds=folds, resamples=resamples,
                                                                         prior=token_prior))
            choice = result.choice
            best = detect.train(train_df, choice.columns(train_df), choice.kind, strength=choice.strength)
            best.trained_on.update(_trained_on(opened, train_df, feature_set=choice.features,
                                               strength=choice.strength, cv_auroc=round(choice.cv_auroc, 4)))
            report = DetectorReport(detect.table(result.evaluations), result.evaluations, best, choice)
            figures = {name: group for group, name in DETECTOR_FIGURES.items()
                       if any(e.group == group for e in result.evaluations)}
    if out is not None:
        report.out = _write_detectors(out, report, figures, overwrite)
    return report


def _score_saved(stores: list[Any], detector: Any, annotations: str | None, resamples: int) -> DetectorReport:
    """One saved detector (a `Detector`, its JSON file or a signal column) scored on the stores' object tokens."""
    from .metrics import detect
    from .metrics.findings import is_hallucinated

    det = detect.load_detector(detector)
    obj = _detection_table(stores, annotations, _common_signals(stores))
    for model in obj.model.unique():
        if (warning := det.model_mismatch(model)) is not None:
            warnings.warn(warning, AfipWarning, stacklevel=2)
    name = f"{det.kind} from {detector}" if det is not detector else det.kind
    evaluations = [detect.evaluate_scores(name, det.predict(obj).to_numpy(), is_hallucinated(obj),
                                          detect.groups_of(obj), resamples, probabilities=det.kind != "signal")]
    return DetectorReport(detect.table(evaluations), evaluations)


def _write_detectors(out: str | os.PathLike, report: DetectorReport, figures: dict[str, str | None],
                     overwrite: bool) -> Path:
    import matplotlib

    from .outputs import claim_dir
    from .plots.detect import detector_figure, roc_figure
    from .plots.report import markdown_table, save

    writes = ["detectors.csv", "detectors.md", *(f"{n}.png" for n in figures)]
    if report.best is not None:
        writes.append(BEST_DETECTOR)
    root = claim_dir(out, "detect-eval", writes=writes, overwrite=overwrite)
    report.table.to_csv(root / "detectors.csv", index=False)
    (root / "detectors.md").write_text("Folds and 95 % CIs are grouped by image (`images`: how many).\n\n"
                                       + markdown_table(report.table) + "\n")
    matplotlib.use("Agg")
    for name, group in figures.items():
        rows = [e for e in report.evaluations if group is None or e.group == group]
        save(detector_figure(rows) if group is None else roc_figure(rows, group), root / name, ("png",))
    if report.best is not None:
        report.best.save(root / BEST_DETECTOR)
    return root


def heatmap(store: StoreLike, sample: str, *, step: int | None = None, word: str | None = None,
            layers: str | None = None, per_head: bool = False, corrected: bool = False,
            out: str | os.PathLike | None = None, overwrite: bool = False) -> Any:
    """The attention of one generated token (`step`, or the first token of `word`; default the first token)
    drawn over each of its images: the head mean over `layers` (e.g. ``"16-31"``; default all traced
    layers), or one map per head (`per_head`, a ``full`` store). Needs a store traced at level ``maps`` or
    ``full``. Returns the matplotlib figure, also saved to `out` when given.

    Example:
        >>> heatmap("no/such/store", "img_001")
        Traceback (most recent call last):
        ...
        afip_probe.errors.StoreError: no trace store at no/such/store
    """
    from .metrics.table import store_layers
    from .outputs import check_file, claim_file
    from .plots.store_maps import token_heatmap

    opened = _opened(store)
    chosen = store_layers(layers, opened.settings) if layers else None  # decoder layers
    if out is not None:
        check_file(out, overwrite=overwrite)
    fig = token_heatmap(opened, sample, step=step, word=word, layers=chosen, per_head=per_head,
                        source="corrected" if corrected else "raw")
    if out is not None:
        fig.savefig(claim_file(out, overwrite=overwrite), dpi=150)
    return fig


def explore(stores: StoreLike | Sequence[StoreLike], out: str | os.PathLike | None = None, *,
            max_samples: int | None = None, annotations: str | None = None, overwrite: bool = False,
            progress: bool = False) -> Any:
    """The interactive explorer of one or more stores: captions as tokens coloured by CHAIR label, each
    token's attention over its images, metric charts, a compare store's conditions side by side.

    Without `out`: an object Jupyter shows inline (at most `max_samples`, default 50, samples per store: the
    page travels inside the notebook). With `out`: the page written into that folder (default 200 samples per
    store) to open in a browser from disk; returns the path of its ``index.html``.

    Example:
        >>> explore("no/such/store", out="explorer")
        Traceback (most recent call last):
        ...
        afip_probe.errors.StoreError: no trace store at no/such/store
    """
    from .plots.explorer import DEFAULT_MAX_SAMPLES, INLINE_MAX_SAMPLES, Explorer, write_explorer

    if max_samples is not None:
        require_positive(max_samples, "max_samples")
    opened = [_opened(s) for s in _many(stores)]
    if out is None:
        return Explorer(opened, max_samples=max_samples or INLINE_MAX_SAMPLES, annotations=annotations)
    return write_explorer(opened, out, max_samples=max_samples or DEFAULT_MAX_SAMPLES, progress=progress,
                          overwrite=overwrite, annotations=annotations)


def chair(captions: str | os.PathLike | StoreLike, *, annotations: str | None = None, image_id_key: str = "image_id",
          caption_key: str = "caption", output: str | os.PathLike | None = None,
          labels: str | os.PathLike | None = None, overwrite: bool = False, progress: bool = False) -> Any:
    """CHAIR of captions, exactly as the reference implementation: CHAIRs, CHAIRi, Recall, Len, per caption and
    overall. `captions` is a ``.jsonl`` / ``.json`` file of ``{image_id, caption}`` rows or a trace store.
    `output` writes the result as JSON; `labels` (a store only) writes its token table with CHAIR labels
    (Parquet). Returns the `ChairResult` (its `warnings` list skipped lines and unknown image ids).

    Example:
        >>> import json, tempfile
        >>> path = tempfile.mkdtemp() + "/caps.jsonl"
        >>> _ = open(path, "w").write(json.dumps({"image_id": 499775, "caption": "A bus and a dog."}) + "\\n")
        >>> result = chair(path)
        >>> result.overall["CHAIRs"], [(m.word, m.hallucinated) for m in result.sentences[0].mentions]
        (1.0, [('bus', False), ('dog', True)])
    """
    from .metrics.chair import Chair, load_captions
    from .metrics.labels import label_store
    from .metrics.table import chair_for
    from .outputs import check_file, claim_file

    if output is not None:
        check_file(output, overwrite=overwrite, name="output")
    if labels is not None:
        check_file(labels, overwrite=overwrite, name="labels")
    source = Path(captions) if not hasattr(captions, "samples") else None
    if source is not None and not source.exists():
        raise AfipError(f"{source}: no such caption file or trace store")
    store = captions if source is None else (open_store(source) if source.is_dir() else None)
    if store is not None:
        ok = store.samples(status="ok")
        if ok.empty:
            raise AfipError(f"{store.root} holds no finished samples")
        evaluator = chair_for(store, annotations)
        pairs, skipped = list(zip(ok["image_id"].tolist(), ok["output_text"].tolist())), []
    else:
        if labels is not None:
            raise AfipError(f"{option('labels')} needs a trace store as input")
        evaluator = Chair.load(annotations)
        pairs, skipped = load_captions(source, image_id_key, caption_key)
        if not pairs:
            raise AfipError(f"{source}: no usable captions ({len(skipped)} lines skipped)")
    result = evaluator.compute(pairs, progress=progress)
    if not result.sentences:
        raise AfipError(f"none of the {len(pairs)} captions has ground truth (unknown image ids, e.g. "
                        f"{pairs[0][0]!r}); give {option('annotations')} with your dataset's COCO-format files")
    result.warnings[:0] = skipped
    if output is not None:
        import json

        claim_file(output, overwrite=overwrite, name="output").write_text(
            json.dumps(result.to_json(), indent=1, ensure_ascii=False))
    if labels is not None:
        labelled = label_store(store, evaluator)
        labelled.to_parquet(claim_file(labels, overwrite=overwrite, name="labels"), index=False)
        result.warnings.extend(labelled.attrs.get("warnings", []))
        result.labels = labelled
    return result


def compare(model: Any, images: Any, out: str | os.PathLike, correct: Sequence[str] = ("afip",), *,
            level: str = "maps", prompt: str = DEFAULT_PROMPT, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
            batch_size: int = 8, do_sample: bool = False, seed: int = 0, annotations: str | None = None,
            history_ablation: bool = True, sample: str | None = None, max_images: int | None = None,
            resume: bool = False, overwrite: bool = False, exact: bool = True, device: str = "auto",
            dtype: str = "auto", trust_remote_code: bool = False, progress: bool = True) -> Any:
    """The same images with correctors off and on (`correct`: corrector specs such as ``"afip"``,
    ``"afip:alpha=0.2,layers=2-"``, ``"pai:alpha=0.5"``, ``"hgai"``), traced into ``out/store`` with the same
    seed and decoding; writes CHAIR per condition, paired per-caption differences with bootstrap CIs, the
    before/after attention of one token and VAR along the caption per condition into `out`. An AFIP spec
    is also run without its history term unless `history_ablation=False`. `images` may be None for the
    organism (its held-out scenes). Returns the `CompareResult`.

    Example:
        >>> compare("organism", None, "cmp", correct=[])
        Traceback (most recent call last):
        ...
        afip_probe.errors.AfipError: give at least one corrector (e.g. correct=['afip'])
    """
    from .pipelines.comparison import compare as compare_settings
    from .pipelines.settings import GenerationSettings

    if not correct:
        raise AfipError(f"give at least one corrector (e.g. {option('correct', ['afip'])})")
    name = model.name if _is_loaded(model) else str(model)
    settings = GenerationSettings(model=name, prompt=prompt, level=level, max_new_tokens=max_new_tokens,
                                  batch_size=batch_size, dtype=dtype, device=device, seed=seed, do_sample=do_sample,
                                  trust_remote_code=trust_remote_code, exact=exact)
    return compare_settings(settings, None if images is None else _image_specs(images), out, list(correct),
                            annotations=annotations, loaded=model if _is_loaded(model) else None,
                            history_ablation=history_ablation, sample=sample, max_images=max_images, resume=resume,
                            overwrite=overwrite, progress=progress)


def copy_notebooks(out: str | os.PathLike = "notebooks", *, overwrite: bool = False) -> list[Path]:
    """Copy the packaged notebooks (Findings 1 and 2, heatmaps and correction) into `out`; they use only the
    top-level API and the bundled organism, so they run against this installation. Returns their paths.

    Example:
        >>> import tempfile
        >>> [p.name for p in copy_notebooks(tempfile.mkdtemp() + "/nb")][0]
        '01_finding1_spatial_inconsistency.ipynb'
    """
    import shutil
    from importlib import resources

    from .outputs import claim_dir

    packaged = sorted((p for p in resources.files("afip_probe").joinpath("notebooks").iterdir()
                       if p.name.endswith(".ipynb")), key=lambda p: p.name)
    if not packaged:
        raise AfipError("no notebooks in this installation of afip-probe; reinstall it")
    root = claim_dir(out, "notebooks", writes=[p.name for p in packaged], overwrite=overwrite)
    copied = []
    for p in packaged:
        with resources.as_file(p) as src:
            copied.append(Path(shutil.copyfile(src, root / p.name)))
    return copied
