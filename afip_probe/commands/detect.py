"""`afip-probe detect train|eval`: hallucination detectors from the recorded signals (`afip_probe.train_detector`,
`afip_probe.evaluate_detectors`).

``detect eval TRAIN_STORES --transfer NEW_STORES`` compares every signal alone, the published detectors,
the hidden-state probe and the best combination, in-domain (cross-validated, folds grouped by image) and
on the new scenes (docs/signals.md); ``detect eval STORES --detector det.json`` scores a saved detector.
"""

from __future__ import annotations

import argparse

# heavy libraries (pandas, sklearn, matplotlib) are imported where a command runs: `afip-probe --help` stays fast
SETS_HELP = ("feature sets joined by commas: all (every training-free signal per layer range and layer, token "
             "entropy, log-probability, relative position), ranges (the same per range only), live (all without "
             "what is unknown when the token is chosen: for streaming), afip (afip-probe's own statistics), "
             "lookback-lens, lookback-split, ads-cgc (the papers' detectors' inputs), probe or probe=K (the hidden "
             "states, at hidden index K); docs/signals.md (default: %(default)s)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="train and evaluate hallucination detectors on trace stores")
    dsub = p.add_subparsers(dest="detect_command", metavar="ACTION", required=True, help="train or eval")
    for name in ("train", "eval"):
        d = dsub.add_parser(name, help="fit a detector on stores' object tokens and save it as JSON" if name == "train"
                            else "every signal, the published detectors, the probe and the best combination, "
                            "in-domain and on new scenes; or a saved detector on new stores")
        d.add_argument("stores", nargs="+", help="trace store folders (the training scenes)")
        d.add_argument("--annotations", help="COCO-format annotation folder for the CHAIR labels (default: the "
                       "dataset the traced images belong to, else the packaged COCO 2014 ground truth)")
        d.add_argument("--token-prior", action=argparse.BooleanOptionalAction, default=True,
                       help="add the learned token prior (how often training mentions starting with the token "
                       "were hallucinated; token ids are the model's own, so leave it out to transfer a detector "
                       "to another model) (default: on)")
        d.add_argument("--folds", type=int, default=5, help="cross-validation folds, grouped by image (default: "
                       "%(default)s)")
        d.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of images for the 95 %% "
                       "CIs (default: %(default)s)")
        d.add_argument("--overwrite", action="store_true", help="replace an earlier output")
    t = dsub.choices["train"]
    t.add_argument("-o", "--output", required=True, help="detector JSON to write")
    t.add_argument("--features", default="all", help=SETS_HELP)
    t.add_argument("--kind", default="logistic", choices=("logistic", "mlp"), help="the model: logistic regression "
                   "or a small multilayer perceptron (default: %(default)s)")
    t.add_argument("--strength", type=float, default=1.0, help="the logistic's inverse L2 penalty C (default: "
                   "%(default)s; `detect eval` says which its best combination chose)")
    t.set_defaults(func=run_train)
    e = dsub.choices["eval"]
    e.add_argument("--transfer", nargs="+", metavar="STORE", help="stores of new scenes: every detector is also "
                   "trained on all the training stores and scored on these (never looked at before)")
    e.add_argument("--detector", help="a saved detector (or a signal column, e.g. pas_layer0): score it on the "
                   "stores instead of comparing")
    e.add_argument("--out", default="detect", help="folder for the table and figures (default: %(default)s)")
    e.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from .. import api
    from ..metrics import detect
    from ..plots.report import markdown_table

    det = api.train_detector(args.stores, args.output, features=args.features, kind=args.kind,
                             strength=args.strength, token_prior=args.token_prior, folds=args.folds,
                             resamples=args.resamples, annotations=args.annotations, overwrite=args.overwrite)
    print(markdown_table(detect.table([det.cv])))
    print(f"detector ({args.kind}, {len(det.features)} features, trained on {det.trained_on['tokens']} object "
          f"tokens) -> {args.output}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .. import api
    from ..plots.report import markdown_table

    report = api.evaluate_detectors(args.stores, args.transfer, args.out, detector=args.detector, folds=args.folds,
                                    resamples=args.resamples, token_prior=args.token_prior,
                                    annotations=args.annotations, overwrite=args.overwrite)
    print(markdown_table(report.table))
    out = report.out
    if report.best is None:
        print(f"wrote {out / 'detectors.md'}, {out / 'detectors.png'}")
        return 0
    choice = report.choice
    print(f"best combination (by {args.folds}-fold CV on the training scenes): --features {choice.features} "
          f"--strength {choice.strength:g}{'' if choice.prior else ' --no-token-prior'}; trained on all training "
          f"scenes -> {out / api.BEST_DETECTOR}")
    figures = sorted(p.name for p in out.glob("roc_*.png"))
    print(f"wrote {out / 'detectors.md'} and the ROC figures {', '.join(figures)}")
    return 0
