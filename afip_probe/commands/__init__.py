"""CLI subcommands: each module defines `register(subparsers)` and the `run` functions it points at. A `run` is
a thin wrapper over one library function (`afip_probe.api`'s public functions, or a pipeline such as the demo),
imported when the command runs: registering the parsers imports nothing heavy, so --help is instant.

Flags shared by the commands that generate are added by `flags.add_generation_flags`.
"""

from . import (chair, compare, demo, detect, evaluate, explore, figures, notebooks, organism, pope, store_tools, stream,
               sweep, trace)

COMMANDS = [trace, store_tools, chair, pope, figures, explore, detect, stream, compare, evaluate, sweep, organism, demo,
            notebooks]
