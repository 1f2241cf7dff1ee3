"""CLI subcommands: each module defines `register(subparsers)` and a `run(args) -> int`."""

from . import chair, demo, pope, trace

COMMANDS = [trace, chair, pope, demo]
