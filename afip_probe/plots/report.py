"""Reports: every Findings figure of one or more stores (PNG + SVG + one self-contained HTML page),
and `MarkdownReport`, the one writer of the Markdown reports of the demo and of comparisons.

Example:
    >>> import pandas as pd
    >>> rep = MarkdownReport("Demo")
    >>> rep.section("CHAIR")
    >>> rep.table(pd.DataFrame({"condition": ["baseline"], "CHAIRi": [12.5]}))
    >>> print(rep.text())
    # Demo
    <BLANKLINE>
    ## CHAIR
    <BLANKLINE>
    | condition | CHAIRi |
    |---|---|
    | baseline | 12.5 |
    <BLANKLINE>
    >>> out = figures_report(["runs/organism"], "figs/")                # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .. import store as st
from ..errors import AfipError, option
from ..metrics.findings import Findings, findings
from ..metrics.table import check_layer_range, token_table
from ..outputs import check_dir, claim_dir, record_written
from .findings import all_figures, var_by_position

FORMATS = ("png", "svg")


@dataclass
class FiguresReport:
    """What `figures_report` wrote and the statistics it computed."""

    out: Path
    findings: dict[str, Findings]
    files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (floats to 4 significant digits)."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


class MarkdownReport:
    """A Markdown report built section by section; `write` puts it next to its figures."""

    def __init__(self, title: str):
        self.lines: list[str] = [f"# {title}", ""]

    def section(self, heading: str) -> None:
        self.lines += [f"## {heading}", ""]

    def para(self, *text: str) -> None:
        self.lines += [*text, ""]

    def code(self, text: str) -> None:
        self.lines += ["```", text, "```", ""]

    def table(self, frame: pd.DataFrame) -> None:
        self.lines += [markdown_table(frame), ""]

    def figures(self, paths: Sequence[Path], base: Path) -> None:
        """Image links to `paths`, relative to the folder `base` the report is written in."""
        self.lines += [f"![{p.stem}]({p.relative_to(base).as_posix()})" for p in paths] + [""]

    def text(self) -> str:
        return "\n".join(self.lines)

    def write(self, path: Path) -> Path:
        path.write_text(self.text().rstrip("\n") + "\n")
        return path


def save(fig: Any, stem: Path, formats: Sequence[str] = FORMATS, dpi: int = 130) -> list[Path]:
    """Save a figure under `stem` in each format and close it."""
    import matplotlib.pyplot as plt

    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=dpi)
        paths.append(path)
    plt.close(fig)
    return paths


def figures_report(stores: Sequence[str | Path] | Sequence[Any], out: str | Path, layer_range: str = "all",
                   n_resamples: int = 2000, tables: Sequence[pd.DataFrame] | None = None,
                   formats: Sequence[str] = FORMATS, progress: bool = False, overwrite: bool = False) -> FiguresReport:
    """Token tables of `stores` (or the given `tables`), the Findings statistics of each, and the
    figures of the first store, plus Fig. 3 left over all stores, written into `out`.

    `out` follows the output rule (`afip_probe.outputs`): a new or empty folder, or an earlier figures
    output replaced with `overwrite`; it is created only once the inputs are known to be good."""
    import matplotlib

    matplotlib.use("Agg")

    check_dir(out, "figures", overwrite=overwrite)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if tables is None:
        if not stores:
            raise AfipError("give at least one trace store")
        tables = [token_table(s if hasattr(s, "samples") else st.open(s), progress=progress) for s in stores]
    seconds["token_table"] = time.perf_counter() - t0
    names = [str(t.model.iloc[0]) if len(t) else f"store{i}" for i, t in enumerate(tables)]
    if len(set(names)) < len(names):  # two runs of one model: tell them apart by position
        names = [f"{n} [{i}]" for i, n in enumerate(names)]
    for name, t in zip(names, tables):
        check_layer_range(layer_range, sorted({c.split("_")[-1] for c in t.columns if c.startswith("var_")}))
        if not t.label.isin(["real", "hallucinated"]).any():
            raise AfipError(f"{name}: no object tokens were labelled real or hallucinated; check that the images' "
                            f"ids have CHAIR ground truth (COCO file names, or {option('annotations')} for your dataset)")
    t1 = time.perf_counter()
    stats = {name: findings(t, layer_range) for name, t in zip(names, tables)}
    seconds["statistics"] = time.perf_counter() - t1
    out = claim_dir(out, "figures", overwrite=overwrite)
    t2 = time.perf_counter()
    figs = all_figures(tables[0], layer_range, n_resamples=n_resamples)
    if len(tables) > 1:
        figs["fig3_left_var_position"] = var_by_position(dict(zip(names, tables)), f"var_{layer_range}")
    files: list[Path] = []
    svgs: dict[str, str] = {}
    for stem, fig in figs.items():
        paths = save(fig, out / stem, formats)
        files += paths
        svg = next((p for p in paths if p.suffix == ".svg"), None)
        svgs[stem] = svg.read_text() if svg else ""
    seconds["figures"] = time.perf_counter() - t2
    (out / "findings.json").write_text(json.dumps({n: f.as_dict() for n, f in stats.items()}, indent=2, default=float))
    files.append(out / "findings.json")
    page = _html(stats, svgs, [p.name for p in files if p.suffix == ".png"])
    (out / "index.html").write_text(page)
    files.append(out / "index.html")
    record_written(out, [f.name for f in files])
    return FiguresReport(out=out, findings=stats, files=files, seconds=seconds)


def _html(stats: dict[str, Findings], svgs: dict[str, str], pngs: list[str]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>afip-probe findings</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}figure{margin:1em 0}</style></head><body>",
             "<h1>Findings 1–2</h1>"]
    for name, f in stats.items():
        parts.append(f"<h2>{html.escape(name)} (layers: {html.escape(f.layer_range)})</h2><table>")
        parts += [f"<tr><td>{html.escape(k.strip())}</td><td>{html.escape(v)}</td></tr>" for k, v in f.rows()]
        parts.append("</table>")
    for stem, svg in svgs.items():
        body = svg[svg.find("<svg"):] if svg else f"<img src='{html.escape(stem)}.png'>"
        parts.append(f"<figure>{body}<figcaption>{html.escape(stem)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
