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
                         prompt: bool = True, **defaults: Any) -> None:
    """Add --model, --prompt, --max-new-tokens, --batch-size, --dtype, --device, --seed,
    --trust-remote-code, --do-sample (and --record, --single-read when the command traces). `defaults` overrides a default where a
    command's job needs another one (e.g. POPE answers need few new tokens)."""
    d = {**DEFAULTS, **defaults}
    g = parser.add_argument_group("generation")
    if model_required:
        g.add_argument("--model", required=True, help="hub id, local save_pretrained directory, or 'organism'")
    else:
        g.add_argument("--model", default=d["model"], help="hub id, local checkpoint, or 'organism' (default)")
    if prompt:
        g.add_argument("--prompt", default=d["prompt"], help="user prompt (default: %(default)s)")
    if record:
        g.add_argument("--record", dest="level", default=d["level"], choices=LEVELS,
                       help="record level (default: %(default)s)")
        g.add_argument("--hidden", default=d["hidden"], metavar="LAYERS",
                       help="also record decoder hidden states (float16): 'all', 'last', or indices 0..L of "
                       "output_hidden_states like 2- or 0,4 (hidden-state signals: CGC, internal confidence, "
                       "the probe; docs/signals.md) (default: none)")
        g.add_argument("--single-read", dest="exact", action="store_false",
                       help="decoding steps take their output from the recorded score row instead of SDPA: "
                       "faster, outputs equal up to float rounding (README: what tracing costs)")
    g.add_argument("--max-new-tokens", type=int, default=d["max_new_tokens"],
                   help="tokens to generate per image (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=d["batch_size"],
                   help="images per generate() call, left-padded; greedy results equal batch size 1 "
                   "(default: %(default)s)")
    g.add_argument("--dtype", default=d["dtype"], choices=DTYPE_CHOICES,
                   help="model dtype (default: float16 on GPU, float32 on CPU)")
    g.add_argument("--device", default=d["device"], help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    g.add_argument("--seed", type=int, default=d["seed"],
                   help="batch i starts from torch.manual_seed(seed + i) (default: %(default)s)")
    g.add_argument("--do-sample", dest="do_sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow the checkpoint's own modelling code to run (off unless asked)")


def generation_settings(args: argparse.Namespace, **changes: Any) -> GenerationSettings:
    """The `GenerationSettings` the flags of `add_generation_flags` describe (plus `changes`)."""
    values = {name: getattr(args, name) for name in DEFAULTS if hasattr(args, name)}
    return GenerationSettings(**{**values, **changes})
