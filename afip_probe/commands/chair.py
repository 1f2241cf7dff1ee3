"""`afip-probe chair`: CHAIR of a caption file or a trace store, exact to the reference (`afip_probe.chair`)."""

from __future__ import annotations

import argparse
import sys

from .figures import ANNOTATIONS_HELP


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chair", help="CHAIR hallucination metrics of captions (file or trace store)",
                       description="CHAIRs / CHAIRi / Recall / Len of generated captions, as the reference CHAIR code.")
    p.add_argument("captions", help=".jsonl/.json caption file ({image_id, caption} per line) or a trace store folder")
    p.add_argument("--annotations", help=ANNOTATIONS_HELP.replace("the one the store was traced with, else ", "for a "
                                                                  "store, the one it was traced with, else "))
    p.add_argument("--image-id-key", default="image_id", help="the image id's key in a caption file's rows "
                   "(default: %(default)s)")
    p.add_argument("--caption-key", default="caption", help="the caption's key in a caption file's rows "
                   "(default: %(default)s)")
    p.add_argument("-o", "--output", help="write per-caption results and overall metrics as JSON here")
    p.add_argument("--labels", help="with a trace store: write its token table with CHAIR labels (Parquet)")
    p.add_argument("--overwrite", action="store_true", help="replace -o / --labels files that exist")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import api

    result = api.chair(args.captions, annotations=args.annotations, image_id_key=args.image_id_key,
                       caption_key=args.caption_key, output=args.output, labels=args.labels, overwrite=args.overwrite,
                       progress=sys.stderr.isatty())
    if result.labels is not None:
        counts = result.labels["label"].value_counts()
        print(f"token labels: {counts.get('real', 0)} real, {counts.get('hallucinated', 0)} hallucinated -> "
              f"{args.labels}")
    for w in result.warnings[:5]:
        print(f"warning: {w}", file=sys.stderr)
    if len(result.warnings) > 5:
        print(f"warning: ... {len(result.warnings) - 5} more", file=sys.stderr)
    print(f"captions: {len(result.sentences)} scored, {len(result.warnings)} warnings")
    print(result.table())
    return 0
