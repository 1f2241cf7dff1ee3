"""CLI subcommands: each module defines `register(subparsers)` and a `run(args) -> int`."""

from . import chair, compare, demo, evaluate, figures, organism, pope, store_tools, trace

COMMANDS = [trace, store_tools, chair, pope, figures, compare, evaluate, organism, demo]
