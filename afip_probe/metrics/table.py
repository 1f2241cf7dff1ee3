"""A labelled trace store as one tidy per-token DataFrame: the input of every Findings figure.

One row per generated token: ``model``, ``condition``, ``sample_id``, ``image_id``, ``step``,
``relative_position`` ((step + ½) / caption length), ``token_text``, ``label`` (none / real /
hallucinated, CHAIR, on the first token of each object word), ``object``, ``mention`` (the word as
written), ``word_label`` (the label on every token of that word), ``token_entropy`` (Eq. 4), ``logprob``,
and for every layer range R
(default ``all``, ``early``, ``middle``, ``late``: thirds of the decoder):

=====================  =============================================================
``attn_entropy_R``     Eq. 1, Ā not renormalised, mean over the layers of R
``attn_entropy_renorm_R``  Eq. 1 with Ā renormalised over the image keys
``var_R``              Eq. 2, mean over the layers of R and heads
``kl_R``               Eq. 3, D_kl^l averaged over the layers of R
``peak_gap_R``         T − V (max text − max image pre-softmax score), mean over R and heads
``mean_gap_R``         mean text − mean image pre-softmax score, mean over R and heads
``mean_gap_prob_R``    mean text − mean image post-softmax attention, mean over R and heads
=====================  =============================================================

All of it comes from the ``stats`` arrays every record level keeps, so it needs numpy and pandas only.

Example:
    >>> import afip_probe                                                  # doctest: +SKIP
    >>> df = afip_probe.metrics.token_table(afip_probe.store.open("runs/s"))  # doctest: +SKIP
    >>> df.groupby("label", observed=True).attn_entropy_all.mean()          # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..errors import AfipError, AfipWarning, option
from ..records import LAYER_FIELDS, Layers, array_name, model_name, sample_images
from .chair import Chair
from .labels import label_tokens

METRICS = ("attn_entropy", "attn_entropy_renorm", "var", "kl", "peak_gap", "mean_gap", "mean_gap_prob")
#: the recorded statistics (`afip_probe.records.fields`) the metrics are computed from
HEAD_INPUTS = ("var", "img_max_score", "txt_max_score", "img_mean_score", "txt_mean_score",
               "img_mean_prob", "txt_mean_prob")
LAYER_INPUTS = LAYER_FIELDS


def default_layer_ranges(num_layers: int) -> dict[str, list[int]]:
    """``all`` layers and the decoder's thirds ``early`` / ``middle`` / ``late``.

    >>> default_layer_ranges(4)
    {'all': [0, 1, 2, 3], 'early': [0, 1], 'middle': [2], 'late': [3]}
    """
    thirds = np.array_split(np.arange(num_layers), 3)
    ranges = {"all": list(range(num_layers))}
    for name, part in zip(("early", "middle", "late"), thirds):
        if len(part):
            ranges[name] = [int(i) for i in part]
    return ranges


def check_layer_range(name: str, ranges: Sequence[str]) -> None:
    """Raise unless `name` is one of a token table's layer `ranges` (``all``, ``early``, ...)."""
    if name not in ranges:
        raise AfipError(f"layer range {name!r} is not in the token table; choose one of {sorted(ranges)}")


def parse_layers(text: str, num_layers: int) -> list[int]:
    """``"16-31"`` (inclusive), ``"16-"``, ``"3"``, ``"0,2,5"`` -> layer indices (checked against
    `num_layers`), the one convention of `afip_probe.records.Layers`.

    >>> parse_layers("2-", 4)
    [2, 3]
    """
    return sorted(Layers(str(text)).resolve(num_layers))


def store_layers(text: str, settings: Mapping[str, Any]) -> list[int]:
    """The traced-layer indices (into a store's [T, L, ...] arrays) of a ``--layers`` spec, which names
    decoder layers. They are the same unless the manifest's ``decoder_layers`` says only some decoder
    layers were traced (a hybrid decoder such as LFM2-VL); the spec's other layers are then skipped.

    >>> store_layers("2-", {"num_layers": 4})
    [2, 3]
    >>> store_layers("2-", {"num_layers": 2, "decoder_layers": [1, 3]})
    [1]
    """
    numbers = [int(n) for n in settings.get("decoder_layers") or range(int(settings.get("num_layers", 0)))]
    if not numbers:
        raise AfipError("the store's manifest names no layers (num_layers); was it written by afip-probe trace?")
    wanted = set(parse_layers(text, max(numbers) + 1))
    picked = [i for i, number in enumerate(numbers) if number in wanted]
    if not picked:
        raise AfipError(f"{option('layers')} {text} names no traced layer: the traced decoder layers are {numbers}")
    return picked


def layer_metrics(arrays: Mapping[str, np.ndarray], source: str = "raw") -> dict[str, np.ndarray]:
    """Every metric of `METRICS` per token and layer, [T, L] float64, from a sample's recorded arrays.

    `source="corrected"` reads the rows after a corrector (``corrected/...``) instead of the raw ones."""
    try:
        head = {f: np.asarray(arrays[array_name("head", f, source)]).mean(axis=2, dtype=np.float64)
                for f in HEAD_INPUTS}  # [T, L]
        layer = {f: np.asarray(arrays[array_name("layer", f, source)], dtype=np.float64) for f in LAYER_INPUTS}  # [T, L]
    except KeyError as e:
        what = "corrected rows (trace with a corrector on)" if source == "corrected" else "stats arrays"
        raise AfipError(f"this store has no {what}: {e.args[0]}") from None
    return {
        "attn_entropy": layer["attn_entropy"],
        "attn_entropy_renorm": layer["attn_entropy_renorm"],
        "var": head["var"],
        "kl": layer["kl"],
        "peak_gap": head["txt_max_score"] - head["img_max_score"],
        "mean_gap": head["txt_mean_score"] - head["img_mean_score"],
        "mean_gap_prob": head["txt_mean_prob"] - head["img_mean_prob"],
    }


def sample_metrics(arrays: Mapping[str, np.ndarray], ranges: Mapping[str, Sequence[int]],
                   source: str = "raw") -> dict[str, np.ndarray]:
    """The per-token metric columns of one sample from its recorded arrays; each value is [T]:
    `layer_metrics` averaged over the layers of each range."""
    per_layer = layer_metrics(arrays, source)
    out = {}
    for rname, layers in ranges.items():
        idx = list(layers)
        for m in METRICS:
            out[f"{m}_{rname}"] = per_layer[m][:, idx].mean(axis=1)
    return out


def chair_for(store: Any, annotations: str | None = None) -> Chair:
    """The CHAIR evaluator that fits a store's images (`Chair.for_images`): `annotations` if given, else the
    annotations the store was traced against (its manifest's ``annotations``), else the dataset the traced
    images belong to, else the packaged COCO 2014 ground truth."""
    samples = store.samples()
    paths = [im.path for _, row in samples.iterrows() for im in sample_images(row)] if "images" in samples \
        else list(samples["image"])  # every image of every sample
    return Chair.for_images(paths, annotations or store.settings.get("annotations"))


def labelled_table(store: Any, annotations: str | None = None, layer_ranges: Mapping[str, Sequence[int]] | None = None,
                   progress: bool = False, warn: bool = True) -> pd.DataFrame:
    """`token_table` with the ground truth of `chair_for(store, annotations)`; when no traced image has ground
    truth (every token unlabelled), an `AfipWarning` says so and how to give it (unless `warn` is off: for a
    caller that refuses such a table with its own error)."""
    table = token_table(store, chair=chair_for(store, annotations), layer_ranges=layer_ranges, progress=progress)
    unlabelled = [w for w in table.attrs.get("warnings", []) if "has no ground truth" in w]
    if warn and unlabelled and len(unlabelled) == table.sample_id.nunique():
        warnings.warn(f"{store.root}: none of the {len(unlabelled)} traced samples' images has ground truth, so "
                      "no token is labelled real or hallucinated; give the images' COCO-format annotation folder "
                      f"({option('annotations')}), or trace COCO images under their COCO file names",
                      AfipWarning, stacklevel=2)
    return table


#: a sample's per-token columns [T] from its arrays and its samples-table row (`token_table`'s `columns`)
SampleColumns = Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], Mapping[str, np.ndarray]]


def token_table(store: Any, chair: Chair | None = None, gt: Mapping[Any, set[str]] | None = None,
                layer_ranges: Mapping[str, Sequence[int]] | None = None, source: str = "raw",
                progress: bool = False, columns: SampleColumns | None = None,
                rows: Callable[[pd.DataFrame], np.ndarray] | None = None) -> pd.DataFrame:
    """The tidy per-token table of a trace store, labelled with CHAIR (see the module doc).

    `chair` defaults to `chair_for(store)` (ground truth chosen from the traced images); `gt` overrides
    ground truth per image id. Labelling
    warnings are kept in ``result.attrs["warnings"]``.

    `columns` replaces the metric columns by its own (the detectors' signals: `afip_probe.metrics.detect`);
    `rows` keeps only the labelled token rows it marks (e.g. object mentions) before any is computed."""
    samples = store.samples(status="ok")
    if samples.empty:
        raise AfipError(f"{store.root}: no finished samples to analyse")
    tokens = store.tokens()
    if tokens.empty:
        raise AfipError(f"{store.root}: the finished samples generated no tokens")
    num_layers = int(store.settings.get("num_layers") or np.asarray(store.arrays(samples.sample_id[0])[array_name("layer", "kl")]).shape[1])
    ranges = dict(layer_ranges) if layer_ranges is not None else default_layer_ranges(num_layers)
    chair = chair if chair is not None else chair_for(store)
    labelled = label_tokens(tokens, samples, chair, gt)
    kept = np.ones(len(labelled), bool) if rows is None else np.asarray(rows(labelled), bool)

    computed: dict[str, list[np.ndarray]] = {}
    positions = labelled.groupby("sample_id", sort=False).indices
    meta = samples.set_index("sample_id")
    order = []
    for sid in tqdm(samples.sample_id, desc="token table", unit="sample", disable=not progress):
        idx = positions.get(sid)
        if idx is None:
            continue
        arrays = store.arrays(sid)
        cols = sample_metrics(arrays, ranges, source) if columns is None else columns(arrays, meta.loc[sid])
        if not cols:
            raise AfipError(f"sample {sid!r}: no column to compute from its arrays")
        length = len(next(iter(cols.values())))
        if length != len(idx):
            raise AfipError(f"sample {sid!r}: {len(idx)} token rows but {length} recorded steps; run `afip-probe verify`")
        idx = idx[kept[idx]]
        if not len(idx):
            continue
        steps = labelled.step.to_numpy()[idx]
        order.append(idx)
        for k, v in cols.items():
            computed.setdefault(k, []).append(np.asarray(v)[steps])
    if not order:
        raise AfipError(f"{store.root}: no labelled object tokens to tabulate (real or hallucinated): no object was "
                        "mentioned, or no traced image has ground truth (give the images' COCO-format annotation "
                        f"folder, {option('annotations')})")
    order_idx = np.concatenate(order)
    frame = labelled.iloc[order_idx].reset_index(drop=True)
    frame.insert(0, "model", model_name(store.settings.get("model", "")))  # never a path
    frame.insert(1, "condition", frame.sample_id.map(meta["condition"]) if "condition" in meta else "")
    frame.insert(3, "image_id", frame.sample_id.map(meta["image_id"]))
    added = pd.DataFrame({k: np.concatenate(parts).astype(np.float32) for k, parts in computed.items()},
                         index=frame.index)
    frame = pd.concat([frame.drop(columns=[c for c in added if c in frame]), added], axis=1)
    frame.attrs["warnings"] = labelled.attrs.get("warnings", [])
    frame.attrs["layer_ranges"] = ranges
    keep = ["model", "condition", "sample_id", "image_id", "step", "relative_position", "token_id", "token_text",
            "label", "object", "mention", "word_label"] + [c for c in ("token_entropy", "logprob") if c not in added] \
        + (["risk"] if "risk" in frame else []) + list(added)
    return frame[keep]
