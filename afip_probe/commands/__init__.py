"""CLI subcommands: each module defines `register(subparsers)` and a `run(args) -> int`."""

from . import chair, compare, demo, evaluate, organism, pope, trace

COMMANDS = [trace, chair, pope, compare, evaluate, organism, demo]
