"""`afip-probe detect train|eval`: hallucination detectors from the recorded statistics."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import require_positive

FEATURE_SETS = {
    "all": "every metric per layer range and per layer, token entropy, log-probability, relative position",
    "ranges": "every metric per layer range (no single layers), token entropy, log-probability, position",
    "live": "as all, without the relative position (unknown while generating): for streaming",
}


def _features(tables: list[Any], which: str, prior: bool) -> list[str]:
    from ..metrics import detect

    return detect.feature_names(tables[0], ranges=None, per_layer=which != "ranges", position=which != "live",
                                prior=prior)


def _tables(args: argparse.Namespace) -> Any:
    import pandas as pd

    from .. import store as st
    from ..metrics import detect
    from ..metrics.table import chair_for

    stores = [st.open(s) for s in args.stores]
    tables = [detect.detection_table(s, chair_for(s, args.annotations)) for s in stores]
    return pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="train and evaluate hallucination detectors on trace stores")
    dsub = p.add_subparsers(dest="detect_command", metavar="ACTION", required=True, help="train or eval")
    for name in ("train", "eval"):
        d = dsub.add_parser(name, help="fit a detector on stores' object tokens and save it as JSON" if name == "train"
                            else "single signals and cross-validated detectors, or a saved detector on new stores")
        d.add_argument("stores", nargs="+", help="trace store folders")
        d.add_argument("--annotations", help="COCO-format annotation folder for the CHAIR labels (default: the "
                       "dataset the traced images belong to, else the packaged COCO 2014 ground truth)")
        d.add_argument("--features", default="all", choices=sorted(FEATURE_SETS),
                       help="; ".join(f"{k}: {v}" for k, v in FEATURE_SETS.items()) + " (default: %(default)s)")
        d.add_argument("--token-prior", action=argparse.BooleanOptionalAction, default=True,
                       help="add the learned token prior (how often training mentions starting with the token "
                       "were hallucinated; token ids are the model's own, so leave it out to transfer a detector "
                       "to another model) (default: on)")
        d.add_argument("--folds", type=int, default=5, help="grouped cross-validation folds (default: %(default)s)")
        d.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of captions (default: "
                       "%(default)s)")
        d.add_argument("--overwrite", action="store_true", help="replace an earlier output")
    t = dsub.choices["train"]
    t.add_argument("-o", "--output", required=True, help="detector JSON to write")
    t.add_argument("--kind", default="logistic", choices=("logistic", "mlp"), help="the model: logistic "
                   "regression or a small multilayer perceptron (default: %(default)s)")
    t.set_defaults(func=run_train)
    e = dsub.choices["eval"]
    e.add_argument("--detector", help="a saved detector: evaluate it on these stores (transfer) instead of "
                   "cross-validating new ones")
    e.add_argument("--out", default="detect", help="folder for the table and figures (default: %(default)s)")
    e.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from ..metrics import detect
    from ..outputs import check_file, claim_file
    from ..plots.report import markdown_table

    require_positive(args.folds, "folds")
    check_file(args.output, overwrite=args.overwrite, name="output")
    df = _tables(args)
    features = _features([df], args.features, args.token_prior)
    cv = detect.cross_validate(df, features, args.kind, args.folds, args.resamples)
    det = detect.train(df, features, args.kind)
    det.trained_on.update(stores=list(args.stores), feature_set=args.features, cv_auroc=round(cv.auroc, 4),
                          model=str(df.model.iloc[0]))
    output = claim_file(args.output, overwrite=args.overwrite, name="output")
    det.save(output)
    print(markdown_table(detect.table([cv])))
    print(f"detector ({args.kind}, {len(features)} features, trained on {det.trained_on['tokens']} object tokens) "
          f"-> {output}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import matplotlib

    from ..metrics import detect
    from ..metrics.findings import is_hallucinated
    from ..outputs import check_dir, claim_dir
    from ..plots.detect import detector_figure
    from ..plots.report import markdown_table, save

    require_positive(args.folds, "folds")
    written = ["detectors.csv", "detectors.md", "detectors.png"]
    check_dir(args.out, "detect-eval", overwrite=args.overwrite)
    df = _tables(args)
    if args.detector:
        det = detect.Detector.load(args.detector)
        for model in df.model.unique():
            if (warning := det.model_mismatch(model)) is not None:
                print(f"warning: {warning}", file=sys.stderr)
        obj = detect.object_tokens(df)
        evaluations = [detect.evaluate_scores(f"{det.kind} from {args.detector}", det.predict(obj).to_numpy(),
                                              is_hallucinated(obj),
                                              obj.sample_id.to_numpy(), args.resamples, probabilities=True)]
        singles = []
    else:
        features = _features([df], args.features, args.token_prior)
        evaluations = [detect.cross_validate(df, features, kind, args.folds, args.resamples) for kind in detect.KINDS]
        singles = sorted(detect.single_signals(df, features, args.resamples), key=lambda e: -abs(e.auroc - 0.5))
    frame = detect.table(evaluations + singles)
    out = claim_dir(args.out, "detect-eval", writes=written, overwrite=args.overwrite)
    frame.to_csv(out / "detectors.csv", index=False)
    (out / "detectors.md").write_text(markdown_table(frame) + "\n")
    matplotlib.use("Agg")
    save(detector_figure(evaluations + singles[:3]), out / "detectors", ("png",))
    print(markdown_table(frame.head(12)))
    if len(frame) > 12:
        print(f"... {len(frame) - 12} more single signals in {out / 'detectors.md'}", file=sys.stderr)
    print(f"wrote {out / 'detectors.md'}, {out / 'detectors.png'}")
    return 0
