"""CLI subcommands: each module defines `register(subparsers)` and a `run(args) -> int`."""

from . import demo, trace

COMMANDS = [trace, demo]
