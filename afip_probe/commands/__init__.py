"""CLI subcommands: each module defines `register(subparsers)` and the `run` functions it points at;
the work itself is a library function in `afip_probe.pipelines` (or `store`, `metrics`, `plots`).

Flags shared by the commands that generate are added by `flags.add_generation_flags`.
"""

from . import chair, compare, demo, detect, evaluate, explore, figures, organism, pope, store_tools, stream, sweep, trace

COMMANDS = [trace, store_tools, chair, pope, figures, explore, detect, stream, compare, evaluate, sweep, organism, demo]
