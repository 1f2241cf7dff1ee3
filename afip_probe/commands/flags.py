"""Flags shared by the commands that generate: one helper adds them, with the defaults of
`GenerationSettings` (written once, there), and one turns them back into that record.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_generation_flags(p, record=True, max_new_tokens=96)
    >>> s = generation_settings(p.parse_args(["--batch-size", "4"]))
    >>> (s.model, s.batch_size, s.max_new_tokens, s.level)
    ('organism', 4, 96, 'stats')
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..pipelines.settings import DTYPE_CHOICES, GenerationSettings
from ..records import LEVELS

DEFAULTS = {f.name: f.default for f in dataclasses.fields(GenerationSettings)}


def add_generation_flags(parser: argparse.ArgumentParser, *, record: bool = False, model_required: bool = False,
                         prompt: bool = True, single_read: bool | None = None, why: str | None = None,
                         **defaults: Any) -> None:
    """Add --model, --prompt, --max-new-tokens, --batch-size, --dtype, --device, --seed,
    --trust-remote-code, --do-sample (and --record when the command writes a trace store, --single-read when
    it traces: by default with --record). `defaults` overrides a default where a command's job needs another
    one (e.g. POPE answers need few new tokens); `why` says why, in the help of the flags it changes."""
    d = {**DEFAULTS, **defaults}
    because = f"; {why}" if why else ""

    def shown(name: str) -> str:  # a default this command changed says so, with its reason
        return f"(default: %(default)s{because if name in defaults else ''})"

    g = parser.add_argument_group("generation")
    if model_required:
        g.add_argument("--model", required=True, help="hub id, local save_pretrained folder, or 'organism' (the "
                       "bundled model)")
    else:
        g.add_argument("--model", default=d["model"], help="hub id, local save_pretrained folder, or 'organism' "
                       "(the bundled model) (default: %(default)s)")
    if prompt:
        g.add_argument("--prompt", default=d["prompt"], help="user prompt (default: %(default)s)")
    if record:
        g.add_argument("--record", dest="level", default=d["level"], choices=LEVELS,
                       help="record level: stats (per-head statistics), maps (+ head-mean attention over the image "
                       f"keys, for heatmaps), full (+ per-head image score rows) {shown('level')}")
        g.add_argument("--hidden", default=d["hidden"], metavar="LAYERS",
                       help="also record decoder hidden states (float16): 'all', 'last', or indices 0..L of "
                       "output_hidden_states like 2- or 0,4 (hidden-state signals: CGC, internal confidence, "
                       "the probe; docs/signals.md) (default: none)")
    if record if single_read is None else single_read:
        g.add_argument("--single-read", dest="exact", action="store_false",
                       help="decoding steps take their output from the recorded score row (softmax(B)·V in "
                       "float32) instead of the model's own attention function: faster, but it changes the "
                       "arithmetic (outputs equal up to float rounding, tokens may differ in half precision); "
                       "off by default")
    g.add_argument("--max-new-tokens", type=int, default=d["max_new_tokens"],
                   help=f"tokens to generate per image {shown('max_new_tokens')}")
    g.add_argument("--batch-size", type=int, default=d["batch_size"],
                   help="images per generate() call, left-padded; greedy results equal batch size 1 "
                   f"{shown('batch_size')}")
    g.add_argument("--dtype", default=d["dtype"], choices=DTYPE_CHOICES,
                   help="model dtype; auto: float16 on a GPU, float32 on the CPU (default: %(default)s)")
    g.add_argument("--device", default=d["device"], help=f"cpu, cuda, cuda:N or auto (the GPU when there is one) "
                   f"{shown('device')}")
    g.add_argument("--seed", type=int, default=d["seed"],
                   help="batch i starts from torch.manual_seed(seed + i) (default: %(default)s)")
    g.add_argument("--do-sample", dest="do_sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow the checkpoint's own modelling code to run (off unless asked)")


def generation_settings(args: argparse.Namespace, **changes: Any) -> GenerationSettings:
    """The `GenerationSettings` the flags of `add_generation_flags` describe (plus `changes`)."""
    values = {name: getattr(args, name) for name in DEFAULTS if hasattr(args, name)}
    return GenerationSettings(**{**values, **changes})


def progress_flag(parser: argparse.ArgumentParser) -> None:
    """--no-progress: no progress bar at all (weight loading included)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (weight loading included)")
