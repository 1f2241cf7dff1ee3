"""`afip-probe stream`: write a caption live, marking risky object words as they appear."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ..errors import AfipWarning
from .flags import add_generation_flags, generation_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stream", help="caption one image live, flagging risky object words as they appear",
                       description="Generate for one image and print the text as it comes; object words whose "
                       "hallucination risk (from a detector trained with --features live) reaches --threshold are "
                       "marked [word!risk].")
    p.add_argument("image", help="image file")
    p.add_argument("--detector", required=True, help="detector JSON from `afip-probe detect train --features live`, "
                   "or a training-free signal column (e.g. pas_layer0: no training file; docs/signals.md)")
    p.add_argument("--threshold", type=float, default=0.5, help="risk that marks a word: a probability for a trained "
                   "detector, the signal's own value (negated where lower means hallucinated) for a signal "
                   "(default: %(default)s)")
    p.add_argument("--latency", type=float, default=0.05,
                   help="seconds a chosen token may wait to be printed with the next ones (scored together, "
                   "cheaper); 0 prints every token on its own (default: %(default)s)")
    add_generation_flags(p, single_read=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..images import load_image
    from ..metrics.chair import Chair
    from ..metrics.detect import load_detector
    from ..pipelines.streaming import risky_words, stream

    settings = generation_settings(args)
    detector = load_detector(args.detector)
    image = load_image(Path(args.image))
    loaded = settings.load()
    if (warning := detector.model_mismatch(loaded.name)) is not None:
        warnings.warn(warning, AfipWarning, stacklevel=1)  # one line, as every command's warnings
    vocabulary = set(Chair({}).inverse_synonym_dict)
    tokens = flagged = 0
    torch.manual_seed(settings.seed)
    for piece in stream(loaded.model, loaded.processor, image, settings.prompt, detector, adapter=loaded.adapter,
                        latency=args.latency, exact=settings.exact, **settings.generate_kwargs()):
        tokens += 1
        text = piece.text
        if risky_words([piece], vocabulary, args.threshold):
            flagged += 1
            word = text.strip()
            text = text.replace(word, f"[{word}!{piece.risk:.2f}]", 1)
        sys.stdout.write(text)
        sys.stdout.flush()
    print(f"\n{tokens} tokens, {flagged} object words flagged at risk >= {args.threshold}")
    return 0
