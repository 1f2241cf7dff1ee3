"""The documentation holds together: every citation of the design document points at a section it has, the
CLI reference lists every command and flag, the site's navigation has the pages other documents link to, and the
docstring examples render as code. (`make docs` builds the site itself with --strict: broken links, anchors and
API references fail there.)"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
#: where the design document is cited: code, help texts, tests, notebooks, benchmarks, scripts, docs, packaging, README
CITING = ["afip_probe", "tests", "notebooks", "benchmarks", "scripts", "docs", "pyproject.toml", "README.md"]
SUFFIXES = {".py", ".md", ".ipynb", ".toml", ".txt", ".yml", ".yaml", ".json"}
DOC = "design" + ".md"  # spelled in two parts so that this file cites nothing itself
#: "<doc> §3", "<doc> §3, §5", "<doc> §3/§5", "<doc> §3 and §8": every section number of one citation
CITATION = re.compile(re.escape(DOC) + r"\s*(§\s*\d+(?:\s*(?:,|/|and|&)\s*§\s*\d+)*)")
BARE = re.compile(r"\bDESIGN\s*" + "§")  # the old style, "DESIGN" then the section sign
HEADING = re.compile(r"^## §(\d+) \S", re.MULTILINE)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"afip_probe_docs_{name}", ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files() -> list[Path]:
    out = []
    for entry in CITING:
        path = ROOT / entry
        found = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES]
        out += [p for p in found if "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts]
    return sorted(out)


def citations(text: str) -> list[int]:
    """Every section number cited in `text`."""
    return [int(n) for match in CITATION.finditer(text) for n in re.findall(r"§\s*(\d+)", match.group(1))]


def sections(text: str) -> list[int]:
    """The section numbers of the design document's `## §N Title` headings, in order."""
    return [int(n) for n in HEADING.findall(text)]


def test_citation_patterns():
    assert citations(f"see docs/{DOC} §3, §5 and docs/{DOC} §10.") == [3, 5, 10]
    assert citations(f"({DOC} §3/§5) and {DOC} §7") == [3, 5, 7]
    old = "DESIGN" + " §4"  # the citation style that is gone
    assert citations(old) == [] and BARE.search(f"as {old} says")
    assert sections("# Design\n\n## §1 What\ntext\n## §2 Layout\n### §9 not a section\n## §x no") == [1, 2]


def test_design_sections_are_one_to_ten_in_order():
    assert sections(DESIGN.read_text()) == list(range(1, 11))


def test_every_design_citation_points_at_a_section():
    have = set(sections(DESIGN.read_text()))
    cited: dict[int, list[str]] = {}
    for path in _files():
        for n in citations(path.read_text(errors="replace")):
            cited.setdefault(n, []).append(str(path.relative_to(ROOT)))
    assert len(cited) >= 5, f"too few citations found ({sorted(cited)}): is the pattern still the one the code uses?"
    missing = {n: sorted(set(where)) for n, where in cited.items() if n not in have}
    assert not missing, f"cited sections that docs/{DOC} lacks: {missing}"


def test_no_bare_design_citation_remains():
    bare = [str(p.relative_to(ROOT)) for p in _files() if BARE.search(p.read_text(errors="replace"))]
    assert not bare, f"cite the design document as 'docs/{DOC} §N', not by the old 'DESIGN' + '§N': {bare}"


def _help_options(parser) -> set[str]:
    """The option strings of a parser's own --help text: its option lines (``  -o FILE, --output FILE  help``)."""
    lines = [line.strip() for line in parser.format_help().splitlines() if re.match(r"^ {2}-", line)]
    return {o for line in lines for o in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", re.split(r" {2,}", line)[0])}


def _subcommands(parser) -> dict:
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def test_cli_reference_lists_every_command_and_flag():
    """Every command and sub-command of the parser has its section, and each section names every option its
    `--help` shows (read from argparse's own help text, not from the generator's walk)."""
    from afip_probe.cli import build_parser

    markdown = _load("gen_cli").cli_markdown()
    parsers = {(): build_parser()}
    for path, parser in list(parsers.items()):
        for name, sub in _subcommands(parser).items():
            parsers[(*path, name)] = sub
            parsers.update({(*path, name, n): s for n, s in _subcommands(sub).items()})
    expected = {("trace",), ("figures",), ("explore",), ("detect", "train"), ("organism", "scenes"), ("demo",)}
    assert expected <= set(parsers)
    for path, parser in parsers.items():
        heading = "`" + " ".join(("afip-probe", *path)) + "`"
        assert re.search(rf"^#+ {re.escape(heading)} ", markdown, re.MULTILINE), f"no section for {heading}"
        section = markdown.split(heading + " ", 1)[1].split("\n#", 1)[0]
        missing = sorted(o for o in _help_options(parser) - {"-h", "--help"} if f"`{o}`" not in section)
        assert not missing, f"{heading}: flags missing from the CLI reference: {missing}"


def test_site_navigation_has_the_stable_pages():
    """Other documents (the README) link to these paths; each exists and is in mkdocs.yml's navigation."""
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in ["index.md", "getting-started.md", "python-api.md", "cli.md", "store.md", "families.md", "metrics.md",
                 "correctors.md", "detectors.md", "organism.md", "benchmarks.md", "multi_gpu.md", "bad_inputs.md",
                 "design.md"]:
        assert (ROOT / "docs" / page).is_file(), page
        assert re.search(rf":\s+{re.escape(page)}\s*$", nav, re.MULTILINE), f"{page} is not in mkdocs.yml's nav"
    for notebook in sorted((ROOT / "afip_probe" / "notebooks").glob("*.ipynb")):
        assert f"notebooks/{notebook.name}" in nav, f"{notebook.name} is not in mkdocs.yml's nav"


def _hello_world(text: str) -> str:
    return re.search(r"^## Hello world\n.*?^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL).group(1)


def test_getting_started_shows_the_readmes_hello_world():
    """The README's hello world is the one tests/test_api.py runs verbatim; the docs show the same lines."""
    readme = _hello_world((ROOT / "README.md").read_text())
    assert "ap.load(" in readme
    assert _hello_world((ROOT / "docs" / "getting-started.md").read_text()) == readme


def test_docstring_examples_are_fenced_as_code():
    fence = _load("griffe_doctest").fence_doctests
    text = ("Summary.\n\n"
            "Example:\n"
            "    >>> x = 1   # doctest: +SKIP\n"
            "    >>> print(x)\n"
            "    1\n"
            "    <BLANKLINE>\n"
            "\n"
            "Text right before\n"
            ">>> [x][0]\n"
            "1\n"
            "\n"
            "```python\n"
            ">>> kept as it is\n"
            "```")
    assert fence(text).split("\n") == [
        "Summary.", "",
        "Example:",                      # no blank line under a section title: it stays a section
        "    ```pycon",
        "    >>> x = 1",                 # doctest directives hidden
        "    >>> print(x)",
        "    1",
        "    ",                          # <BLANKLINE> shown as the blank line it stands for
        "    ```", "",
        "Text right before", "",         # a paragraph ends before the code
        "```pycon", ">>> [x][0]", "1", "```", "",
        "```python", ">>> kept as it is", "```"]
