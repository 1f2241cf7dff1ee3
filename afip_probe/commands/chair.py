"""`afip-probe chair`: CHAIR of a caption file or a trace store, exact to the reference."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import store as st
from ..errors import AfipError
from ..metrics.chair import Chair, load_captions
from ..metrics.labels import label_store
from ..outputs import check_file, claim_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chair", help="CHAIR hallucination metrics of captions (file or trace store)",
                       description="CHAIRs / CHAIRi / Recall / Len of generated captions, as the reference CHAIR code.")
    p.add_argument("captions", help=".jsonl/.json caption file ({image_id, caption} per line) or a trace store folder")
    p.add_argument("--annotations", help="folder of COCO-format instances_*.json + captions_*.json "
                   "(default: for a store, the dataset its images belong to; else the packaged COCO 2014 "
                   "ground truth)")
    p.add_argument("--image-id-key", default="image_id")
    p.add_argument("--caption-key", default="caption")
    p.add_argument("-o", "--output", help="write per-caption results and overall metrics as JSON here")
    p.add_argument("--labels", help="with a trace store: write its token table with CHAIR labels (Parquet)")
    p.add_argument("--overwrite", action="store_true", help="replace -o / --labels files that exist")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output = check_file(args.output, overwrite=args.overwrite, flag="-o") if args.output else None
    labels = check_file(args.labels, overwrite=args.overwrite, flag="--labels") if args.labels else None
    source = Path(args.captions)
    if not source.exists():
        raise AfipError(f"{source}: no such caption file or trace store")
    store = None
    if source.is_dir():
        store = st.open(source)
        ok = store.samples(status="ok")
        if ok.empty:
            raise AfipError(f"{source} holds no finished samples")
        chair = Chair.for_images(ok["image"], args.annotations)
        captions, warnings = list(zip(ok["image_id"].tolist(), ok["output_text"].tolist())), []
    else:
        if labels is not None:
            raise AfipError("--labels needs a trace store as input")
        chair = Chair.load(args.annotations)
        captions, warnings = load_captions(source, args.image_id_key, args.caption_key)
        if not captions:
            raise AfipError(f"{source}: no usable captions ({len(warnings)} lines skipped)")
    result = chair.compute(captions, progress=sys.stderr.isatty())
    if not result.sentences:
        raise AfipError(f"none of the {len(captions)} captions has ground truth (unknown image ids, e.g. "
                        f"{captions[0][0]!r}); give --annotations with your dataset's COCO-format files")
    warnings += result.warnings
    if output is not None:
        claim_file(output, overwrite=args.overwrite, flag="-o").write_text(json.dumps(result.to_json(), indent=1, ensure_ascii=False))
    if labels is not None:
        labelled = label_store(store, chair)
        labelled.to_parquet(claim_file(labels, overwrite=args.overwrite, flag="--labels"), index=False)
        warnings += labelled.attrs.get("warnings", [])
        counts = labelled["label"].value_counts()
        print(f"token labels: {counts.get('real', 0)} real, {counts.get('hallucinated', 0)} hallucinated -> {labels}")
    for w in warnings[:5]:
        print(f"warning: {w}", file=sys.stderr)
    if len(warnings) > 5:
        print(f"warning: ... {len(warnings) - 5} more", file=sys.stderr)
    print(f"captions: {len(result.sentences)} scored, {len(warnings)} warnings")
    print(result.table())
    return 0
