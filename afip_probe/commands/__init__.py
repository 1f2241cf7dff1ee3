"""CLI subcommands: each module defines `register(subparsers)` and a `run(args) -> int`."""

from . import chair, demo, organism, pope, trace

COMMANDS = [trace, chair, pope, organism, demo]
