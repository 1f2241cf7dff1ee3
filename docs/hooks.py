"""mkdocs hooks of the afip-probe site (mkdocs.yml ``hooks:``), run by ``make docs``.

- The notebooks in ``afip_probe/notebooks/`` (packaged: `afip-probe notebooks` copies them) become pages under ``notebooks/`` (rendered by mkdocs-jupyter from the
  outputs saved in them, never executed): one copy of each notebook, the one the tests run.
- docs/cli.md gets the CLI reference generated from afip-probe's argparse parser (`docs/gen_cli.py`) in
  place of its marker line, so every command and flag is listed as the installed code defines it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTEBOOKS = ROOT / "afip_probe" / "notebooks"


def _gen_cli() -> Any:
    spec = importlib.util.spec_from_file_location("afip_probe_docs_gen_cli", HERE / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files: Any, config: Any) -> Any:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        files.append(File(f"notebooks/{path.name}", src_dir=str(NOTEBOOKS.parent), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != "cli.md":
        return markdown
    gen = _gen_cli()
    if gen.MARKER not in markdown:
        raise RuntimeError(f"docs/cli.md lost its marker line {gen.MARKER!r}: the CLI reference has nowhere to go")
    return markdown.replace(gen.MARKER, gen.cli_markdown())
