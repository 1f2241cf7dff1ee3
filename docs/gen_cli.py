"""The CLI reference (docs/cli.md) written from `afip-probe`'s own argparse parser, so it never goes stale.

`cli_markdown()` walks `afip_probe.cli.build_parser()`: every command and sub-command gets a heading, its
description, its usage line and a table of its arguments (flags, default, help text). The site build inserts
it into docs/cli.md (`docs/hooks.py`); run this file to print it:

    python docs/gen_cli.py > /tmp/cli.md
"""

from __future__ import annotations

import argparse
import html
from typing import Iterator

#: the line in docs/cli.md that the generated reference replaces
MARKER = "<!-- afip-probe-cli-reference -->"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of each sub-command of `parser`, in the order they were registered."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                       argparse.ArgumentParser]]:
    """Every (command path, parser) below `parser`, depth first, registration order; the root is ``()``."""
    yield path, parser
    for name, sub in _subcommands(parser):
        yield from walk(sub, (*path, name))


def _cell(text: str) -> str:
    """Text for a Markdown table cell: escaped, one line, pipes kept literal."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


def _default(action: argparse.Action) -> str:
    if action.required or action.default in (None, argparse.SUPPRESS) or isinstance(
            action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
                     argparse._VersionAction)):
        return ""
    return f"`{action.default!r}`" if not isinstance(action.default, str) else f"`{action.default}`"


def _argument(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(f"`{o}`" for o in action.option_strings)
        if action.nargs != 0 and action.metavar != argparse.SUPPRESS:
            metavar = action.metavar or action.dest.upper()
            if action.choices is not None and action.metavar is None:
                metavar = "{" + ",".join(map(str, action.choices)) + "}"
            names += f" `{metavar}`"
        return names
    return f"`{action.metavar or action.dest}`"


def _help(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    text = action.help or ""
    if "%" in text:  # argparse's own expansion (%(default)s, %(prog)s)
        text = parser._get_formatter()._expand_help(action)
    if action.choices is not None and action.metavar is not None:  # else the argument column shows them
        text += f" (one of: {', '.join(map(str, action.choices))})"
    if action.required and action.option_strings:
        text = "**required.** " + text
    return text


def _anchor(path: tuple[str, ...]) -> str:
    return "cli-" + "-".join(path) if path else "cli"


def command_markdown(path: tuple[str, ...], parser: argparse.ArgumentParser) -> str:
    """One command's section: heading, description, usage and arguments."""
    level = "###" if len(path) < 2 else "####"  # under docs/cli.md's "## Reference"
    title = "afip-probe " + " ".join(path) if path else "afip-probe"
    lines = [f"{level} `{title}` {{#{_anchor(path)}}}", ""]
    if parser.description:
        lines += [parser.description.strip(), ""]
    usage = " ".join(parser.format_usage().split())
    lines += ["```text", usage.removeprefix("usage: "), "```", ""]
    subs = _subcommands(parser)
    if subs:
        lines += ["| command | what it does |", "|---|---|"]
        helps = {a.dest: a.help for a in _choices_actions(parser)}
        lines += [f"| [`{name}`](#{_anchor((*path, name))}) | {_cell(helps.get(name) or '')} |" for name, _ in subs]
        lines.append("")
    arguments = [a for a in parser._actions
                 if not isinstance(a, (argparse._SubParsersAction, argparse._HelpAction))]
    if arguments:
        lines += ["| argument | default | what it does |", "|---|---|---|"]
        lines += [f"| {_argument(a)} | {_default(a)} | {_cell(_help(a, parser))} |" for a in arguments]
        lines.append("")
    return "\n".join(lines)


def _choices_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action._choices_actions)
    return []


def cli_markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole CLI reference as Markdown, from `parser` (default: afip-probe's own)."""
    if parser is None:
        from afip_probe.cli import build_parser

        parser = build_parser()
    return "\n".join(command_markdown(path, p) for path, p in walk(parser))


if __name__ == "__main__":
    print(cli_markdown())
