"""Every hallucination signal afip-probe computes, each one function over a sample's recorded arrays, in
one registry (`SIGNALS`): the token table, the detectors, `trace --detector` and the live streamer all
read signals through `signal_columns`, so a new signal is one `Signal` entry here.

A signal gives one or more per-token columns (e.g. ``pas_layer0``: PAS at layer 0; ``ads_late``: ADS
averaged over the late layers). A *scalar* signal's columns are each a training-free detector; the others
(per-head lookback ratios, hidden states) are feature blocks for learned detectors. Definitions,
equations, papers and costs: docs/signals.md; the functions: `lookback`, `spatial`, `hidden`, and
`afip_probe.metrics.table.layer_metrics` for afip-probe's own statistics.

Example:
    >>> import numpy as np
    >>> from afip_probe.records import HEAD_FIELDS, LAYER_FIELDS, Tile, array_name
    >>> T, L, H = 3, 2, 2
    >>> arrays = {array_name("head", f): np.full((T, L, H), 0.25) for f in HEAD_FIELDS}
    >>> arrays |= {array_name("layer", f): np.zeros((T, L)) for f in LAYER_FIELDS}
    >>> arrays[array_name("head", "generated_mass")][:] = 0.5
    >>> ctx = SampleContext(prompt_tokens=8, image_tokens=4, tiles=(Tile("image", (2, 2), (0, 1, 2, 3),
    ...                     (0, 0, 1, 1)),), num_layers=L)
    >>> cols = signal_columns(arrays, ctx, ["pas", "svar"])
    >>> cols["pas_layer0"].tolist(), cols["svar_all"].tolist()
    ([0.5, 0.5, 0.5], [1.0, 1.0, 1.0])
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ...errors import AfipError
from ...records import SampleTrace, Tile, array_name, read_tiles
from ...records.layout import single_tile
from ..table import METRICS, default_layer_ranges, layer_metrics
from .hidden import grounding_consistency, internal_confidence, token_states
from .lookback import lookback_ratio, lookback_split, prelim_attention, summed_visual_attention
from .spatial import attention_dispersion

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class SampleContext:
    """What a sample's signals need besides its arrays."""

    prompt_tokens: int  # the prompt's tokens (unpadded), image tokens included
    image_tokens: int
    tiles: tuple[Tile, ...]  # the patch grids (`afip_probe.records.Tile`)
    num_layers: int  # traced (attention) layers
    hidden_layers: tuple[int, ...] = ()  # `output_hidden_states` indices of the recorded hidden arrays
    first_step: int = 0  # the step of row 0 (a streamer's burst starts later)

    def steps(self, n: int) -> np.ndarray:
        return np.arange(self.first_step, self.first_step + n)

    def ranges(self) -> dict[str, list[int]]:
        """Layer ranges signals are averaged over: ``all``, ``early``, ``middle``, ``late`` and ``layer<i>``."""
        return default_layer_ranges(self.num_layers) | {f"layer{i}": [i] for i in range(self.num_layers)}

    @classmethod
    def from_trace(cls, trace: SampleTrace, tiles: Sequence[Tile], num_layers: int,
                   hidden_layers: Sequence[int] = ()) -> "SampleContext":
        """The context of a sample just traced (`SampleTrace`, its tiles from the model's adapter)."""
        tiles = tuple(tiles) or tuple(single_tile(len(trace.layout.positions), trace.layout.grid, (0.0, 0.0, 1.0, 1.0)))
        return cls(prompt_tokens=len(trace.prompt_ids), image_tokens=len(trace.layout.positions), tiles=tiles,
                   num_layers=num_layers, hidden_layers=tuple(int(i) for i in hidden_layers))

    @classmethod
    def from_sample(cls, row: Mapping[str, Any], settings: Mapping[str, Any]) -> "SampleContext":
        """The context of a store's sample from its samples-table row and the store's manifest settings."""
        positions = list(row.get("image_positions") if row.get("image_positions") is not None else [])
        tiles = read_tiles(row.get("tiles"))
        if not tiles and positions:
            grid = (int(row.get("grid_rows") or 1), int(row.get("grid_cols") or len(positions)))
            if grid[0] * grid[1] != len(positions):
                grid = (1, len(positions))
            tiles = single_tile(len(positions), grid, (0.0, 0.0, 1.0, 1.0))
        prompt = row.get("prompt_ids")
        return cls(prompt_tokens=len(prompt) if prompt is not None else 0, image_tokens=len(positions),
                   tiles=tuple(tiles), num_layers=int(settings.get("num_layers") or 0),
                   hidden_layers=tuple(int(i) for i in settings.get("hidden_layers") or ()))


@dataclass(frozen=True)
class Signal:
    """One signal: its columns, the arrays it reads and how it is computed from them."""

    name: str
    title: str
    source: str  # the paper, or afip-probe's design doc
    needs: tuple[str, ...]  # stored array names (`array_name`) it reads
    compute: Callable[[Mapping[str, np.ndarray], SampleContext], Columns]
    scalar: bool = True  # each column is a training-free detector (else: a learned detector's feature block)
    hallucinated_when: str = ""  # "high" or "low": the paper's orientation ("" when it states none)
    needs_next_step: Callable[[str], bool] = field(default=lambda column: False)  # column known a token late

    def available(self, arrays: Iterable[str]) -> bool:
        return set(self.needs) <= set(arrays)


def _head(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    return np.asarray(arrays[array_name("head", name)], np.float64)


def _by_range(per_layer: np.ndarray, ctx: SampleContext, prefix: str) -> Columns:
    """Columns ``<prefix>_<range>`` of a [T, L, ...] array, averaged over each range's layers and the rest, NaN
    left out (a range whose values are all NaN, e.g. ADS with no image in sight, is NaN)."""
    return {f"{prefix}_{name}": np.nanmean(per_layer[:, layers].reshape(len(per_layer), -1), -1)
            for name, layers in ctx.ranges().items()}


def _metric(metric: str) -> Callable[[Mapping[str, np.ndarray], SampleContext], Columns]:
    """afip-probe's statistics as the token table has always averaged them (`sample_metrics`: a NaN layer
    makes its ranges NaN)."""
    def compute(arrays: Mapping[str, np.ndarray], ctx: SampleContext) -> Columns:
        per_layer = layer_metrics(arrays)[metric]  # [T, L]
        return {f"{metric}_{name}": per_layer[:, layers].mean(axis=1) for name, layers in ctx.ranges().items()}
    return compute


def _lookback_heads(arrays: Mapping[str, np.ndarray], ctx: SampleContext) -> np.ndarray:
    var, prompt, gen = (_head(arrays, f) for f in ("var", "prompt_mass", "generated_mass"))
    return lookback_ratio(var, prompt, gen, ctx.prompt_tokens, ctx.steps(len(var)))  # [T, L, H]


def _split_heads(arrays: Mapping[str, np.ndarray], ctx: SampleContext) -> np.ndarray:
    var, prompt, gen = (_head(arrays, f) for f in ("var", "prompt_mass", "generated_mass"))
    return lookback_split(var, prompt, gen, ctx.prompt_tokens, ctx.image_tokens, ctx.steps(len(var)))  # [T, L, H, 3]


SPLIT_PARTS = ("image", "text", "generated")


def _split(part: int) -> Callable[[Mapping[str, np.ndarray], SampleContext], Columns]:
    return lambda arrays, ctx: _by_range(_split_heads(arrays, ctx)[..., part], ctx, f"lookback_{SPLIT_PARTS[part]}")


def _head_block(prefix: str, values: np.ndarray) -> Columns:
    """Columns ``<prefix>_l<i>_h<j>`` of a [T, L, H] array."""
    return {f"{prefix}_l{i}_h{j}": values[:, i, j] for i in range(values.shape[1]) for j in range(values.shape[2])}


def _ads(arrays: Mapping[str, np.ndarray], ctx: SampleContext) -> Columns:
    maps = np.asarray(arrays[array_name("maps")], np.float64)  # [T, L, n]
    return _by_range(attention_dispersion(maps, ctx.tiles)[..., None], ctx, "ads")


def _cgc(arrays: Mapping[str, np.ndarray], ctx: SampleContext) -> Columns:
    hidden, image = arrays[array_name("hidden")], arrays[array_name("image_hidden")]
    out = {}
    for pos in ("row", "own"):
        scores = grounding_consistency(hidden, image, k=CGC_TOP_K, position=pos)  # [T, K]
        out |= {f"cgc_{pos}_h{k}": scores[:, j] for j, k in enumerate(ctx.hidden_layers)}
    return out


def _hidden_block(pos: str) -> Callable[[Mapping[str, np.ndarray], SampleContext], Columns]:
    def compute(arrays: Mapping[str, np.ndarray], ctx: SampleContext) -> Columns:
        states = token_states(arrays[array_name("hidden")], pos)  # [T, K, d]
        return {f"hidden_{pos}_h{k}_{i}": states[:, j, i] for j, k in enumerate(ctx.hidden_layers)
                for i in range(states.shape[-1])}
    return compute


CGC_TOP_K = 10  # patches averaged by CGC
HEAD = [array_name("head", f) for f in ("var", "prompt_mass", "generated_mass")]
HIDDEN = [array_name("hidden"), array_name("image_hidden")]
AFIP = "afip-probe (docs/design.md §5)"
LOOKBACK = "Chuang et al. 2024, Lookback Lens, arXiv 2407.07071"
NGUYEN = "Nguyen et al. 2026 (CVPR), Beyond the Global Scores, arXiv 2604.04863"
_METRIC_TITLES = {
    "attn_entropy": "attention entropy over the image (Eq. 1)",
    "attn_entropy_renorm": "attention entropy, renormalised over the image",
    "var": "visual attention ratio, VAR (Eq. 2)",
    "kl": "cross-head KL (Eq. 3)",
    "peak_gap": "AFIP gap: max text − max image score",
    "mean_gap": "mean text − mean image score",
    "mean_gap_prob": "mean text − mean image attention",
}
#: the AFIP paper's hypotheses (docs/design.md §5): diffuse, inconsistent image attention and a text-dominated row
_METRIC_WAY = {"attn_entropy": "high", "attn_entropy_renorm": "high", "var": "low", "kl": "high", "peak_gap": "high",
               "mean_gap": "high", "mean_gap_prob": "high"}
_STATS = [array_name("head", f) for f in ("var", "img_max_score", "txt_max_score", "img_mean_score", "txt_mean_score",
                                            "img_mean_prob", "txt_mean_prob")] + [
    array_name("layer", f) for f in ("attn_entropy", "attn_entropy_renorm", "kl")]

SIGNALS: dict[str, Signal] = {
    **{m: Signal(m, _METRIC_TITLES[m], AFIP, tuple(_STATS), _metric(m), hallucinated_when=_METRIC_WAY[m])
       for m in METRICS},
    "token_entropy": Signal("token_entropy", "token entropy (Eq. 4)", AFIP, (array_name("token_entropy"),),
                            lambda arrays, ctx: {"token_entropy": np.asarray(arrays[array_name("token_entropy")],
                                                                             np.float64)}, hallucinated_when="high"),
    "logprob": Signal("logprob", "log-probability of the chosen token (NLL's negative)", AFIP, (array_name("logprob"),),
                      lambda arrays, ctx: {"logprob": np.asarray(arrays[array_name("logprob")], np.float64)},
                      hallucinated_when="low"),
    "svar": Signal("svar", "summed visual attention, SVAR", "the global baseline of PAS and of Nguyen et al.",
                   (array_name("head", "var"),),
                   lambda arrays, ctx: {f"svar_{name}": summed_visual_attention(_head(arrays, "var"), layers)
                                        for name, layers in ctx.ranges().items()},
                   hallucinated_when="low"),
    "lookback": Signal("lookback", "lookback ratio (mean over heads)", LOOKBACK, tuple(HEAD),
                       lambda arrays, ctx: _by_range(_lookback_heads(arrays, ctx), ctx, "lookback"),
                       hallucinated_when="low"),
    **{f"lookback_{part}": Signal(f"lookback_{part}", f"lookback split: {part} share of the per-key means",
                                  LOOKBACK + " (split for a VLM)", tuple(HEAD), _split(i)) for i, part in enumerate(SPLIT_PARTS)},
    "pas": Signal("pas", "prelim attention score, PAS", "Hoang-Xuan et al. 2025, PAS, arXiv 2511.11502",
                  (array_name("head", "generated_mass"),),
                  lambda arrays, ctx: {f"pas_layer{i}": prelim_attention(_head(arrays, "generated_mass"), i)
                                       for i in range(ctx.num_layers)}, hallucinated_when="high"),
    "ads": Signal("ads", "attention dispersion, ADS", NGUYEN, (array_name("maps"),), _ads,
                  hallucinated_when="high"),
    "cgc": Signal("cgc", "cross-modal grounding consistency, CGC", NGUYEN, tuple(HIDDEN), _cgc,
                  hallucinated_when="low", needs_next_step=lambda column: column.startswith("cgc_own")),
    "ic": Signal("ic", "internal confidence, IC (the choosing row's states)", "Jiang et al. 2025, as PAS's baseline",
                 (array_name("lens"),),
                 lambda arrays, ctx: {"ic": internal_confidence(arrays[array_name("lens")])}, hallucinated_when="low"),
    "image_ic": Signal("image_ic", "internal confidence, IC (the image tokens' states)",
                       "Jiang et al. 2025, Interpreting and editing vision-language representations",
                       (array_name("image_lens"),),
                       lambda arrays, ctx: {"image_ic": internal_confidence(arrays[array_name("image_lens")])},
                       hallucinated_when="low"),
    "lookback_heads": Signal("lookback_heads", "lookback ratio per head (Lookback Lens' features)", LOOKBACK,
                             tuple(HEAD),
                             lambda arrays, ctx: _head_block("lookback", _lookback_heads(arrays, ctx)), scalar=False),
    "lookback_split_heads": Signal(
        "lookback_split_heads", "lookback split per head: image and prompt-text shares", LOOKBACK + " (split)",
        tuple(HEAD),
        lambda arrays, ctx: _head_block("lookback_image", _split_heads(arrays, ctx)[..., 0])
        | _head_block("lookback_text", _split_heads(arrays, ctx)[..., 1]), scalar=False),
    "hidden_row": Signal("hidden_row", "hidden state of the row that chose the token (the probe's input)",
                         "the internal-states probe", (array_name("hidden"),),
                         _hidden_block("row"), scalar=False),
    "hidden_own": Signal("hidden_own", "hidden state at the token's own position (the probe's input)",
                         "the internal-states probe", (array_name("hidden"),),
                         _hidden_block("own"), scalar=False, needs_next_step=lambda column: True),
}


def family_of(column: str) -> str:
    """The signal a column belongs to (its longest registered name prefix), or "" (token columns such as
    ``relative_position``, and the learned token prior).

    >>> family_of("pas_layer0"), family_of("lookback_image_l1_h2"), family_of("var_late"), family_of("x")
    ('pas', 'lookback_split_heads', 'var', '')
    """
    if column in SIGNALS:
        return column
    if column.startswith("hidden_"):
        return "hidden_" + column.split("_")[1]
    if "_l" in column and column.rsplit("_", 1)[-1].startswith("h") and column.startswith("lookback"):
        return "lookback_split_heads" if column.startswith(("lookback_image_l", "lookback_text_l")) else "lookback_heads"
    best = ""
    for name in SIGNALS:
        if column.startswith(name + "_") and len(name) > len(best):
            best = name
    return best


def available(arrays: Iterable[str]) -> list[str]:
    """The signals a sample's arrays allow."""
    names = set(arrays)
    return [name for name, sig in SIGNALS.items() if sig.available(names)]


def signal_columns(arrays: Mapping[str, np.ndarray], ctx: SampleContext, signals: Sequence[str] | None = None,
                   columns: Iterable[str] | None = None) -> Columns:
    """Per-token columns [T] of `signals` (default: every one the arrays allow), restricted to `columns` when
    given (the signals are then those the columns belong to)."""
    wanted = None if columns is None else set(columns)
    if signals is None:
        signals = sorted({family_of(c) for c in wanted} - {""}) if wanted is not None else available(arrays)
    out: Columns = {}
    for name in signals:
        sig = SIGNALS.get(name)
        if sig is None:
            raise AfipError(f"unknown signal {name!r}: use one of {', '.join(SIGNALS)}")
        if not sig.available(arrays):
            missing = sorted(set(sig.needs) - set(arrays))
            raise AfipError(f"signal {name} needs the recorded arrays {', '.join(missing)}: " + _how_to_record(missing))
        with warnings.catch_warnings():  # all-NaN means (a layer range with no image in sight) are NaN, quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            cols = sig.compute(arrays, ctx)
        out.update(cols if wanted is None else {k: v for k, v in cols.items() if k in wanted})
    return out


def _how_to_record(missing: Sequence[str]) -> str:
    if any(m in (array_name("hidden"), array_name("image_hidden"), array_name("lens"), array_name("image_lens"))
           for m in missing):
        return "trace with --hidden (e.g. --hidden all)"
    if array_name("maps") in missing:
        return "trace with --record maps"
    return "trace again with this afip-probe (the store was written before these statistics were recorded)"


def scalar_columns(frame_columns: Iterable[str]) -> dict[str, list[str]]:
    """The training-free signal columns among `frame_columns`, by signal (every layer and range variant)."""
    out: dict[str, list[str]] = {}
    for column in frame_columns:
        name = family_of(column)
        if name and SIGNALS[name].scalar:
            out.setdefault(name, []).append(column)
    return out


def recording_needs(columns: Iterable[str], hidden_layers: Sequence[int] = ()) -> tuple[str, tuple[int, ...]]:
    """(record level, hidden-state indices) a trace needs to give `columns`: ``maps`` for ADS, the hidden
    indices the columns name (``cgc_row_h3``: 3), and all of `hidden_layers` (those a detector was trained
    with) for internal confidence, which is a maximum over the recorded layers.

    >>> recording_needs(["var_all", "ads_late", "cgc_row_h3"]), recording_needs(["ic"], [0, 4])
    (('maps', (3,)), ('stats', (0, 4)))
    """
    level, hidden = "stats", set()
    for column in columns:
        family = family_of(column)
        if not family:
            continue
        needs = set(SIGNALS[family].needs)
        if array_name("maps") in needs:
            level = "maps"
        if family in ("ic", "image_ic"):
            hidden |= set(hidden_layers)
        elif needs & {array_name("hidden"), array_name("image_hidden")}:
            hidden.add(int(re.search(r"_h(\d+)", column).group(1)))  # type: ignore[union-attr]
    return level, tuple(sorted(hidden))
