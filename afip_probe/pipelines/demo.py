"""The demo: the main job end to end on the bundled model organism, written as a short report.

Draws the organism's held-out scenes (cached), traces the organism over them at the ``maps`` level,
labels every generated token with CHAIR against the ground truth of the traced images (the scenes'
own COCO-format annotations), and writes into the output folder the CHAIR table, the Findings 1–2
statistics and figures of the token table, and heatmaps of hallucinated tokens over their images.

The output folder follows `afip_probe.outputs`: a folder that holds anything else is refused, and
``overwrite=True`` replaces only what an earlier demo wrote there.

Example:
    >>> from afip_probe.pipelines.demo import run_demo
    >>> result = run_demo("demo-out", n=120)              # doctest: +SKIP
    >>> result.report                                      # doctest: +SKIP
    PosixPath('demo-out/report.md')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

from .. import store as st
from ..metrics.table import chair_for, token_table
from ..organism import dataset
from ..outputs import claim_dir
from ..plots.explorer import write_explorer
from ..plots.report import MarkdownReport, figures_report, save
from ..plots.store_maps import token_heatmap
from .settings import GenerationSettings
from .tracing import TraceSummary, trace_images

WRITTEN = ("store", "figures", "tokens_labelled.parquet", "report.md", "explorer")
FINDINGS_FIGURES = ("fig2b_entropy", "fig3_left_var_position", "fig3_right_var_caption", "fig4_left_kl_entropy",
                    "fig5_gap_roc")


@dataclass
class DemoResult:
    out: Path
    report: Path
    summary: TraceSummary
    lines: list[str]


def run_demo(out: str | Path = "demo-out", n: int = 120, settings: GenerationSettings | None = None,
             overwrite: bool = False, progress: bool = True) -> DemoResult:
    """Trace `n` held-out scenes with the organism into ``out/store`` and write ``out/report.md``."""
    settings = settings or GenerationSettings("organism", level="maps", max_new_tokens=80, device="cpu")
    out = Path(out)
    claim_dir(out, "demo", writes=WRITTEN, overwrite=overwrite)  # never a folder holding a user's files
    matplotlib.use("Agg")
    root = dataset.ensure_split("val", progress=progress)
    images = dataset.image_paths(root, "val")[:n]
    loaded = settings.load(progress)
    summary = trace_images(settings, images, out / "store", loaded=loaded, progress=progress)
    store = st.open(out / "store")
    chair = chair_for(store)  # ground truth from the traced images: the scenes' own annotations
    samples = store.samples("ok")
    result = chair.compute(list(zip(samples.image_id.tolist(), samples.output_text.tolist())))
    tokens = token_table(store, chair)
    warnings = tokens.attrs.pop("warnings", [])
    tokens.attrs.clear()
    tokens.to_parquet(out / "tokens_labelled.parquet")
    figdir = out / "figures"
    stats = next(iter(figures_report([store], figdir, tables=[tokens]).findings.values()))
    hall = tokens[tokens.label == "hallucinated"].drop_duplicates("sample_id").head(4)
    layers = list(range(loaded.adapter.num_layers // 2, loaded.adapter.num_layers))
    heatmaps = []
    for row in hall.itertuples():
        fig = token_heatmap(store, row.sample_id, step=int(row.step), layers=layers)
        fig.axes[0].set_title(f"{row.sample_id}: '{row.token_text.strip()}' (hallucinated {row.object})", fontsize=9)
        heatmaps += save(fig, figdir / f"{row.sample_id}_step{row.step}", ("png",), dpi=150)

    example = samples.iloc[0]
    report = MarkdownReport("afip-probe demo: the model organism on its held-out scenes")
    report.para(f"Model: `{loaded.name}`, the bundled model organism (LLaVA architecture, "
                f"{loaded.adapter.num_layers} layers x {loaded.adapter.num_heads} heads).",
                f"Scenes: the first {len(images)} held-out scenes, drawn once and cached in `{root}` "
                "(set `AFIP_PROBE_CACHE` to cache them elsewhere).", "",
                summary.line().rsplit(" -> ", 1)[0] + " into `store/`.")
    report.section("CHAIR (ground truth: the scenes' own COCO-format annotations)")
    report.code(result.table())
    report.section("What the organism shows, and what it does not")
    report.para(stats.claims_summary(), "", stats.claims_markdown())
    report.section("Findings 1-2 on real vs hallucinated object tokens")
    report.para(stats.markdown(), "Figures (PNG, SVG, and all of them in `figures/index.html`):")
    report.figures([figdir / f"{name}.png" for name in FINDINGS_FIGURES], out)
    report.section("Example caption")
    report.para(f"`{example.sample_id}`: {example.output_text}")
    report.section("Heatmaps of hallucinated tokens (upper-half layers, head mean)")
    report.figures(heatmaps, out)
    explorer = write_explorer([store], out / "explorer")
    report.section("Explore every caption")
    report.para(f"Open `{explorer.relative_to(out).as_posix()}` in a browser: each token's attention over its "
                "image, CHAIR labels, metric charts (a static page, no server).")
    if warnings:
        report.para(f"{len(warnings)} labelling warnings, e.g. {warnings[0]}")
    path = report.write(out / "report.md")
    lines = [f"model: {loaded.name} (the bundled model organism); {len(images)} held-out scenes cached in {root}",
             summary.line(), result.table(), stats.claims_summary(), stats.markdown(),
             f"report: {path}   store: {out / 'store'}   explorer: {explorer} (open it in a browser)"]
    return DemoResult(out=out, report=path, summary=summary, lines=lines)
