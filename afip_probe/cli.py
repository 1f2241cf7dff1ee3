"""`afip-probe` command line. Errors in the user's input print one line and exit with code 2.

Example:
    $ afip-probe trace --model organism --images scenes/ --out store/ --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from ._version import __version__
from .commands import COMMANDS
from .errors import AfipError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="afip-probe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"afip-probe {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    try:
        return int(args.func(args) or 0)
    except AfipError as e:
        if args.debug:
            traceback.print_exc()
        print(f"afip-probe {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"afip-probe {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
