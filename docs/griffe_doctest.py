"""A griffe extension (mkdocs.yml: mkdocstrings ``extensions``) that shows docstring examples as code.

afip-probe's docstrings carry runnable doctest examples (tests/test_docstrings.py runs them) under
``Example:`` headings, inside descriptions, or under ``Example (what it shows):``. Google-style parsing turns
only an ``Examples:`` section's ``>>>`` lines into code; everywhere else Markdown would read ``>>>`` as nested
quotes. This extension fences every doctest block (a ``>>>`` line up to the next blank line) as ``pycon`` code
at its own indentation and hides doctest directives (``# doctest: +SKIP``) and ``<BLANKLINE>`` markers, as
Python's documentation does. The docstrings themselves are not changed.
"""

from __future__ import annotations

import re
from typing import Any

try:
    import griffe
except ImportError:  # the docs extra is not installed: `fence_doctests` still works (tests/test_docs.py)
    griffe = None  # type: ignore[assignment]

_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")


def fence_doctests(text: str) -> str:
    """`text` with each doctest block wrapped in a ```` ```pycon ```` fence (blocks already in a fence stay)."""
    out: list[str] = []
    in_fence = in_doctest = False
    indent = ""
    for line in text.split("\n"):
        stripped = line.lstrip()
        if in_doctest:
            if not stripped:
                out += [f"{indent}```", line]
                in_doctest = False
                continue
            out.append(_DIRECTIVE.sub("", line).replace("<BLANKLINE>", ""))
            continue
        if stripped.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            previous = out[-1] if out else ""
            if previous.strip() and previous.startswith(indent) and not previous[len(indent):].startswith(" ") \
                    and not previous.rstrip().endswith(":"):  # text right above: a paragraph ends first
                out.append("")
            out += [f"{indent}```pycon", _DIRECTIVE.sub("", line)]
            in_doctest = True
            continue
        out.append(line)
    if in_doctest:
        out.append(f"{indent}```")
    return "\n".join(out)


if griffe is not None:
    class DoctestFences(griffe.Extension):
        """Fence the doctest blocks of every docstring before it is parsed."""

        def on_object(self, *, obj: Any, loader: Any = None, **kwargs: Any) -> None:
            if obj.docstring is not None and ">>>" in obj.docstring.value:
                obj.docstring.value = fence_doctests(obj.docstring.value)

        def on_package(self, *, pkg: Any, loader: Any = None, **kwargs: Any) -> None:
            """The top package itself (griffe fires `on_object` for its members only)."""
            self.on_object(obj=pkg, loader=loader)
