"""Before/after comparisons: the same images with correctors off and on, traced into one store.

`compare()` traces a baseline and one condition per corrector spec (same images, same seed, same
decoding) into ``OUT/store``, then writes into ``OUT``:

- ``chair.csv``: CHAIRs / CHAIRi / Recall / Len per condition;
- ``paired.csv``: per-caption CHAIRi and CHAIRs differences (condition − baseline) with 2,000-resample
  bootstrap CIs and the Wilcoxon signed-rank p-value;
- ``figures/attention_before_after.png``: head-averaged image attention of one token, before/after;
- ``figures/var_vs_position.png``: VAR over token position per condition (AFIP with and without its
  history term, the AFIP paper's Appendix D.1);
- ``report.md`` with the tables.

Example:
    >>> from afip_probe.pipelines.comparison import compare
    >>> from afip_probe.pipelines.settings import GenerationSettings
    >>> res = compare(GenerationSettings("organism", level="maps"), None, "cmp/", ["afip"],
    ...               max_images=50)                                          # doctest: +SKIP
    >>> print(res.chair.to_string())                                          # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import matplotlib
import pandas as pd

from .. import store as st
from ..correctors import AFIP, parse_spec
from ..errors import AfipError, option
from ..images import ImageItem
from ..metrics.chair import Chair
from ..metrics.comparison import BASELINE, chair_tables, condition_var
from ..models import LoadedModel
from ..outputs import check_dir, claim_dir
from ..organism import default_images
from ..plots.comparison import attention_figure, var_position_figure
from ..plots.report import MarkdownReport, save
from .settings import GenerationSettings, resolve_model
from .tracing import Condition, as_items, check_conditions, trace_images


WRITTEN = ("store", "chair.csv", "captions_chair.csv", "paired.csv", "figures", "report.md")


@dataclass
class CompareResult:
    out: Path
    chair: pd.DataFrame
    paired: pd.DataFrame
    figures: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [self.chair.to_string(index=False), "", self.paired.to_string(index=False), "",
                f"report: {self.out / 'report.md'}"]


def conditions_for(specs: Sequence[str], history_ablation: bool = True) -> list[Condition]:
    """[(name, modifiers)]: the baseline, each spec, and each AFIP spec again without its history term."""
    conds: list[Condition] = [(BASELINE, [])]
    for spec in specs:
        if "/" in spec:
            raise AfipError(f"corrector spec {spec!r} may not contain '/'")
        mod = parse_spec(spec)
        conds.append((spec, [mod]))
        if history_ablation and isinstance(mod, AFIP) and mod.history:
            name = spec + ("," if ":" in spec else ":") + "history=off"
            conds.append((name, [parse_spec(name)]))
    names = [n for n, _ in conds]
    if len(set(names)) != len(names):
        raise AfipError(f"each {option('correct')} must differ: {names}")
    return conds


def compare(
    settings: GenerationSettings,
    images: Sequence[str | Path] | Sequence[ImageItem] | None,
    out: str | Path,
    specs: Sequence[str],
    *,
    annotations: str | Path | None = None,
    loaded: LoadedModel | None = None,
    history_ablation: bool = True,
    sample: str | None = None,
    max_images: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> CompareResult:
    """Trace baseline + corrected conditions into ``out/store`` and write the comparison (see module doc).

    `images` default to the organism's held-out scenes when the model is the organism. `out` must be
    new, empty or an earlier comparison (continued with `resume`, replaced with `overwrite`)."""
    if not specs:
        raise AfipError(f"give at least one corrector (e.g. {option('correct', ['afip'])})")
    conds = conditions_for(specs, history_ablation)
    check_dir(out, "compare", overwrite=overwrite, resume=resume)
    if images is not None:
        items = as_items(images)[:max_images]
    loaded = resolve_model(settings, loaded, progress)
    check_conditions(conds, loaded)
    if images is None:
        items = as_items(default_images(loaded.name, progress))[:max_images]
    out = claim_dir(out, "compare", writes=WRITTEN, overwrite=overwrite, resume=resume)
    summary = trace_images(settings, items, out / "store", loaded=loaded, conditions=conds, resume=resume,
                           progress=progress)
    store = st.open(out / "store")
    chair = Chair.load(annotations) if annotations else Chair.for_images(store.samples().image)
    overall, caps, paired = chair_tables(store.samples(), chair, [c for c, _ in conds])
    overall.to_csv(out / "chair.csv", index=False)
    caps.to_csv(out / "captions_chair.csv", index=False)
    paired.to_csv(out / "paired.csv", index=False)
    figdir = out / "figures"
    figdir.mkdir(exist_ok=True)
    num_layers = loaded.adapter.num_layers
    first = conds[1][1][0]
    layers = sorted(first.layer_set(num_layers) & set(range(num_layers))) if hasattr(first, "layer_set") else []
    layers = layers or list(range(num_layers))
    matplotlib.use("Agg")
    figures = save(var_position_figure(condition_var(store, [c for c, _ in conds], layers), layers),
                   figdir / "var_vs_position", ("png",), dpi=120)
    if settings.level != "stats":
        fig, _ = attention_figure(store, conds[1][0], sample, layers)
        figures += save(fig, figdir / "attention_before_after", ("png",), dpi=120)
    report = MarkdownReport(f"Before/after comparison: {loaded.name}")
    report.para(f"{len(items)} images, {summary.line()}")
    report.section("CHAIR per condition (percent)")
    report.table(overall)
    report.section("Paired per-caption differences (condition − baseline, bootstrap 95 % CI)")
    report.table(paired)
    report.section("Figures")
    report.figures(figures, out)
    report.write(out / "report.md")
    return CompareResult(out=out, chair=overall, paired=paired, figures=figures)
