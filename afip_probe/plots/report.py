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
from ..records import model_name
from .findings import all_figures

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


def store_labels(roots: Sequence[Path], models: Sequence[str]) -> list[str]:
    """How figures and reports label each store: one store by its model (`model_name`), several by their
    folder names (with the parent folder, then the position, where two folders share a name).

    >>> store_labels([Path("runs/a")], ["organism"])
    ['organism']
    >>> store_labels([Path("x/store"), Path("y/store"), Path("runs/b")], ["organism"] * 3)
    ['x/store', 'y/store', 'b']
    """
    if len(roots) == 1:
        return [models[0] or roots[0].name]
    names = [r.name for r in roots]
    if len(set(names)) < len(names):
        names = [f"{r.parent.name}/{r.name}" if names.count(r.name) > 1 else r.name for r in roots]
    if len(set(names)) < len(names):
        names = [f"{n} [{i}]" for i, n in enumerate(names)]
    return names


def figures_title(roots: Sequence[Path], models: Sequence[str]) -> str:
    """The line heading every figure: the model(s) and the store(s) drawn.

    >>> figures_title([Path("runs/a"), Path("runs/b")], ["organism", "organism"])
    'model: organism · stores: a, b'
    """
    unique = list(dict.fromkeys(m for m in models if m))
    stores = ", ".join(r.name for r in roots)
    return (f"model{'s' if len(unique) > 1 else ''}: {', '.join(unique) or '?'} · "
            f"store{'s' if len(roots) > 1 else ''}: {stores}")


def figures_report(stores: Sequence[str | Path] | Sequence[Any], out: str | Path, layer_range: str = "all",
                   n_resamples: int = 2000, tables: Sequence[pd.DataFrame] | None = None,
                   formats: Sequence[str] = FORMATS, progress: bool = False, overwrite: bool = False) -> FiguresReport:
    """Token tables of `stores` (or the given `tables`, one per store), the Findings statistics of each,
    and every Findings figure drawing every store, written into `out`. One store is labelled by its model
    (``organism``), several by their store (folder) names; every figure's title names the model and stores.

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
    models = [model_name(t.model.iloc[0]) if len(t) else "" for t in tables]
    roots = [Path(s.root if hasattr(s, "root") else s) for s in stores] if stores else \
        [Path(m or f"table{i}") for i, m in enumerate(models)]
    if len(roots) != len(tables):
        raise AfipError(f"{len(tables)} token tables for {len(roots)} stores: give one table per store")
    names = store_labels(roots, models)
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
    figs = all_figures(dict(zip(names, tables)), layer_range, n_resamples=n_resamples,
                       title=figures_title(roots, models))
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
    page = _html(stats, svgs, figures_title(roots, models))
    (out / "index.html").write_text(page)
    files.append(out / "index.html")
    record_written(out, [f.name for f in files])
    return FiguresReport(out=out, findings=stats, files=files, seconds=seconds)


def _html(stats: dict[str, Findings], svgs: dict[str, str], title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>afip-probe findings: {html.escape(title)}"
             "</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}figure{margin:1em 0}</style></head><body>",
             f"<h1>Findings 1–2</h1><p>{html.escape(title)}</p>"]
    for name, f in stats.items():
        parts.append(f"<h2>{html.escape(name)} (layers: {html.escape(f.layer_range)})</h2><table>")
        parts += [f"<tr><td>{html.escape(k.strip())}</td><td>{html.escape(v)}</td></tr>" for k, v in f.rows()]
        parts.append("</table>")
    for stem, svg in svgs.items():
        body = svg[svg.find("<svg"):] if svg else f"<img src='{html.escape(stem)}.png'>"
        parts.append(f"<figure>{body}<figcaption>{html.escape(stem)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
