"""Before/after comparisons: the same images with correctors off and on, traced into one store.

`compare()` traces a baseline and one condition per corrector spec (same images, same seed, same
greedy decoding) into ``OUT/store``, then writes into ``OUT``:

- ``chair.csv``: CHAIRs / CHAIRi / Recall / Len per condition;
- ``paired.csv``: per-caption CHAIRi and CHAIRs differences (condition − baseline) with 2,000-resample
  bootstrap CIs and the Wilcoxon signed-rank p-value;
- ``figures/attention_before_after.png``: head-averaged image attention of one token, before/after;
- ``figures/var_vs_position.png``: VAR over token position per condition (AFIP with and without its
  history term, DESIGN Appendix D.1);
- ``report.md`` with the tables.

Example:
    >>> from afip_probe.compare import compare
    >>> res = compare("organism", None, "cmp/", ["afip"], max_images=50)   # doctest: +SKIP
    >>> print(res.chair.to_string())                                      # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import AfipError
from .metrics.stats import bootstrap_ci

BASELINE = "baseline"


@dataclass
class CompareResult:
    out: Path
    chair: pd.DataFrame
    paired: pd.DataFrame
    figures: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [self.chair.to_string(index=False), "", self.paired.to_string(index=False), "",
                f"report: {self.out / 'report.md'}"]


def conditions_for(specs: Sequence[str], history_ablation: bool = True) -> list[tuple[str, list[Any]]]:
    """[(name, modifiers)]: the baseline, each spec, and each AFIP spec again without its history term."""
    from .correct import AFIP, parse_spec

    conds: list[tuple[str, list[Any]]] = [(BASELINE, [])]
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
        raise AfipError(f"each --correct must differ: {names}")
    return conds


def chair_tables(samples: pd.DataFrame, chair: Any, order: Sequence[str] | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(overall per condition, per-caption metrics, paired differences against the baseline).

    Conditions come in `order` (default: as they appear in `samples`)."""
    from scipy import stats

    ok = samples[samples.status == "ok"]
    per_caption, overall = [], []
    for cond in order if order is not None else ok.condition.unique():
        group = ok[ok.condition == cond]
        res = chair.compute(list(zip(group.image_id.tolist(), group.output_text.tolist())))
        overall.append({"condition": cond, "n": len(res.sentences),
                        **{k: round(v * 100, 2) for k, v in res.overall.items()}})
        for sid, s in zip(group.sample_id, res.sentences):
            per_caption.append({"condition": cond, "image": sid.split("/", 1)[-1], "image_id": s.image_id,
                                "CHAIRs": s.metrics["CHAIRs"], "CHAIRi": s.metrics["CHAIRi"],
                                "hallucinated": len(s.hallucinated), "mentions": len(s.generated)})
    caps = pd.DataFrame(per_caption)
    rows = []
    if len(caps):
        base = caps[caps.condition == BASELINE].set_index("image")
        for cond in caps.condition.unique():
            if cond == BASELINE:
                continue
            other = caps[caps.condition == cond].set_index("image")
            common = base.index.intersection(other.index)
            for metric in ("CHAIRi", "CHAIRs"):
                diff = (other.loc[common, metric] - base.loc[common, metric]).to_numpy(dtype=np.float64)
                mean, lo, hi = bootstrap_ci(diff)
                p = float(stats.wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
                rows.append({"condition": cond, "metric": metric, "n": len(common),
                             "mean_diff_pct": round(mean * 100, 2), "ci_low_pct": round(lo * 100, 2),
                             "ci_high_pct": round(hi * 100, 2), "wilcoxon_p": p})
    return pd.DataFrame(overall), caps, pd.DataFrame(rows)


def _layer_mean_var(arrays: Any, key: str, layers: list[int]) -> np.ndarray:
    return np.asarray(arrays[key])[:, layers, :].mean(axis=(1, 2))  # [T]


def var_position_figure(store: Any, conds: list[str], layers: list[int]) -> Any:
    """Mean ± std of VAR (mean over `layers` and heads) at each token position, one curve per condition.

    For corrected conditions the VAR is that of the corrected rows (what the model attended to)."""
    import matplotlib.pyplot as plt

    samples = store.samples("ok")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for cond in conds:
        ids = samples[samples.condition == cond].sample_id.tolist()
        curves = []
        for sid in ids:
            arr = store.arrays(sid)
            key = "corrected/head/var" if cond != BASELINE and "corrected/head/var" in arr else "head/var"
            curves.append(_layer_mean_var(arr, key, layers))
        if not curves:
            continue
        t = max(len(c) for c in curves)
        m = np.full((len(curves), t), np.nan)
        for i, c in enumerate(curves):
            m[i, : len(c)] = c
        mean, std = np.nanmean(m, 0), np.nanstd(m, 0)
        x = np.arange(t)
        ax.plot(x, mean, label=cond)
        ax.fill_between(x, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("generated token position")
    ax.set_ylabel(f"VAR (layers {layers[0]}–{layers[-1]}, head mean)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _by_image(samples: pd.DataFrame, cond: str) -> pd.DataFrame:
    """One condition's samples indexed by image (the sample id without its ``<condition>/`` prefix)."""
    group = samples[samples.condition == cond]
    return group.set_index(group.sample_id.str.split("/", n=1).str[1])


def markdown_table(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def attention_figure(store: Any, cond: str, sample: str | None, layers: list[int]) -> tuple[Any, str]:
    """Before/after heatmap for one image: baseline maps vs the condition's corrected maps, same step."""
    from .plots.store_maps import before_after_heatmap

    samples = store.samples("ok")
    base, other = _by_image(samples, BASELINE), _by_image(samples, cond)
    common = [i for i in base.index if i in other.index]
    if not common:
        raise AfipError("no image was traced in both conditions; nothing to compare")
    image = sample if sample is not None else common[0]
    if image not in common:
        raise AfipError(f"--sample {image!r} is not among the compared images (e.g. {common[0]!r})")
    fig = before_after_heatmap(store, base.loc[image].sample_id, other.loc[image].sample_id, 0, layers,
                               titles=(BASELINE, cond),
                               suptitle=f"{image}: first generated token, layers {layers[0]}–{layers[-1]}")
    return fig, image


def compare(
    model: Any,
    images: Sequence[str | Path] | None,
    out: str | Path,
    specs: Sequence[str],
    annotations: str | Path | None = None,
    max_new_tokens: int = 96,
    batch_size: int = 16,
    level: str = "maps",
    history_ablation: bool = True,
    sample: str | None = None,
    max_images: int | None = None,
    resume: bool = False,
    seed: int = 0,
    progress: bool = True,
    device: str = "auto",
) -> CompareResult:
    """Trace baseline + corrected conditions into ``out/store`` and write the comparison (see module doc)."""
    from . import store as st
    from .models import load
    from .run import collect_images, trace_images

    if not specs:
        raise AfipError("give at least one --correct (e.g. --correct afip)")
    conds = conditions_for(specs, history_ablation)
    loaded = load(str(model), device=device) if not hasattr(model, "adapter") else model
    if images is None:
        from .organism import is_organism

        if is_organism(loaded.name):
            from .organism.scenes import heldout_dirs

            image_dir, default_annotations = heldout_dirs(progress)
            images, annotations = [image_dir], annotations or default_annotations
        else:
            raise AfipError("give --images (a COCO-format image folder) for this model")
    items = collect_images(images)
    if max_images is not None:
        items = items[:max_images]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from .metrics.chair import Chair

    chair = Chair.load(annotations)
    summary = trace_images(loaded, items, "Please describe this image in detail.", out / "store", level=level,
                           max_new_tokens=max_new_tokens, batch_size=batch_size, resume=resume, conditions=conds,
                           seed=seed, progress=progress)
    store = st.open(out / "store")
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
    figures = []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = var_position_figure(store, [c for c, _ in conds], layers)
    figures.append(figdir / "var_vs_position.png")
    fig.savefig(figures[-1], dpi=120)
    plt.close(fig)
    if level != "stats":
        fig, image = attention_figure(store, conds[1][0], sample, layers)
        figures.append(figdir / "attention_before_after.png")
        fig.savefig(figures[-1], dpi=120)
        plt.close(fig)
    report = [f"# Before/after comparison: {loaded.name}", "",
              f"{len(items)} images, {summary.line()}", "", "## CHAIR per condition (percent)", "",
              markdown_table(overall), "", "## Paired per-caption differences (condition − baseline, bootstrap 95 % CI)",
              "", markdown_table(paired), "", "## Figures", ""] + [f"![{f.stem}](figures/{f.name})" for f in figures]
    (out / "report.md").write_text("\n".join(report) + "\n")
    return CompareResult(out=out, chair=overall, paired=paired, figures=figures)
