"""`afip-probe` command line. Errors in the user's input print one line and exit with code 2; warnings print
one ``warning:`` line each.

Example:
    $ afip-probe trace --model organism --images scenes/ --out store/ --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings

from ._version import __version__
from .commands import COMMANDS
from .errors import AfipError, AfipWarning, command_line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="afip-probe", description="Record, measure and correct the attention "
                                     "of vision-language models to study object hallucination. Docs: "
                                     "docs/index.md; each COMMAND --help lists its flags.")
    parser.add_argument("--version", action="version", version=f"afip-probe {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help="what to do (COMMAND --help: its flags)")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    name = args.command
    with command_line(), warnings.catch_warnings():
        warnings.showwarning = _one_line(name)
        warnings.simplefilter("always", AfipWarning)
        try:
            return int(args.func(args) or 0)
        except AfipError as e:
            if args.debug:
                traceback.print_exc()
            print(f"afip-probe {name}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"afip-probe {name}: interrupted", file=sys.stderr)
            return 130


def _one_line(command: str):  # noqa: ANN202 - the signature of warnings.showwarning
    """Warnings as one line on stderr: ``afip-probe COMMAND: warning: ...`` (ours and any other's)."""
    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        print(f"afip-probe {command}: warning: {message}", file=sys.stderr)
    return show


if __name__ == "__main__":
    sys.exit(main())
