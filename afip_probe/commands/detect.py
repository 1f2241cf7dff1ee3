"""`afip-probe detect train|eval`: hallucination detectors from the recorded signals.

``detect eval TRAIN_STORES --transfer NEW_STORES`` compares every signal alone, the published detectors,
the hidden-state probe and the best combination, in-domain (cross-validated, folds grouped by image) and
on the new scenes (docs/signals.md); ``detect eval STORES --detector det.json`` scores a saved detector.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import require_positive

# heavy libraries (pandas, sklearn, matplotlib) are imported where a command runs: `afip-probe --help` stays fast
GROUP_FIGURES = ("single signals", "published detectors", "hidden-state probe", "combination")  # suite.GROUPS
FIGURES = {group: f"roc_{group.replace(' ', '-')}" for group in GROUP_FIGURES}
BEST = "best-detector.json"
SETS_HELP = ("feature sets joined by commas: all (every training-free signal per layer range and layer, token "
             "entropy, log-probability, relative position), ranges (the same per range only), live (all without "
             "what is unknown when the token is chosen: for streaming), afip (afip-probe's own statistics), "
             "lookback-lens, lookback-split, ads-cgc (the papers' detectors' inputs), probe or probe=K (the hidden "
             "states, at hidden index K); docs/signals.md (default: %(default)s)")


def _open(paths: list[str]) -> list[Any]:
    from .. import store as st

    return [st.open(p) for p in paths]


def _table(stores: list[Any], annotations: str | None, signals: list[str] | None = None) -> Any:
    """The object-token detection table of one or more stores (the signals all of them allow)."""
    import pandas as pd

    from ..metrics import detect
    from ..metrics.signals import SIGNALS
    from ..metrics.table import chair_for

    if signals is None:
        names = [detect.store_signals(s) for s in stores]
        signals = [n for n in SIGNALS if all(n in found for found in names)]
    tables = [detect.detection_table(s, chair_for(s, annotations), signals, objects_only=True) for s in stores]
    return pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]


def _trained_on(stores: list[Any], paths: list[str], df: Any, **extra: Any) -> dict[str, Any]:
    settings = stores[0].settings
    return {"stores": list(paths), "model": str(df.model.iloc[0]), "record_level": settings.get("record_level"),
            "hidden_layers": list(settings.get("hidden_layers") or []), **extra}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="train and evaluate hallucination detectors on trace stores")
    dsub = p.add_subparsers(dest="detect_command", metavar="ACTION", required=True)
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
    from ..metrics import detect
    from ..outputs import claim_file
    from ..plots.report import markdown_table

    require_positive(args.folds, "--folds")
    stores = _open(args.stores)
    output = claim_file(args.output, overwrite=args.overwrite, flag="-o")
    df = _table(stores, args.annotations)
    features = detect.feature_names(df, args.features, prior=args.token_prior)
    cv = detect.cross_validate(df, features, args.kind, args.folds, args.resamples, strength=args.strength)
    det = detect.train(df, features, args.kind, strength=args.strength)
    det.trained_on.update(_trained_on(stores, args.stores, df, feature_set=args.features, strength=args.strength,
                                      cv_auroc=round(cv.auroc, 4)))
    det.save(output)
    print(markdown_table(detect.table([cv])))
    print(f"detector ({args.kind}, {len(features)} features, trained on {det.trained_on['tokens']} object tokens) "
          f"-> {output}")
    return 0


def _saved(args: argparse.Namespace, stores: list[Any]) -> list[Any]:
    from ..metrics import detect
    from ..metrics.findings import is_hallucinated

    det = detect.load_detector(args.detector)
    df = _table(stores, args.annotations)
    for model in df.model.unique():
        if (warning := det.model_mismatch(model)) is not None:
            print(f"warning: {warning}", file=sys.stderr)
    obj = detect.object_tokens(df)
    return [detect.evaluate_scores(f"{det.kind} from {args.detector}", det.predict(obj).to_numpy(), is_hallucinated(obj),
                                   detect.groups_of(obj), args.resamples, probabilities=det.kind != "signal")]


def run_eval(args: argparse.Namespace) -> int:
    import matplotlib

    from ..metrics import detect
    from ..metrics.detect import suite
    from ..metrics.signals import SIGNALS
    from ..outputs import claim_dir
    from ..plots.detect import detector_figure, roc_figure
    from ..plots.report import save

    require_positive(args.folds, "--folds")
    stores = _open(args.stores)  # inputs first: a bad one leaves nothing behind
    transfer = _open(args.transfer) if args.transfer else []
    if args.detector:
        detect.load_detector(args.detector)
        out = claim_dir(args.out, "detect-eval", writes=["detectors.csv", "detectors.md", "detectors.png"],
                        overwrite=args.overwrite)
        evaluations = _saved(args, stores)
        _write(out, evaluations)
        matplotlib.use("Agg")
        save(detector_figure(evaluations), out / "detectors", ("png",))
        print(f"wrote {out / 'detectors.md'}, {out / 'detectors.png'}")
        return 0
    out = claim_dir(args.out, "detect-eval", writes=["detectors.csv", "detectors.md", BEST,
                                                     *(f"{name}.png" for name in FIGURES.values())],
                    overwrite=args.overwrite)
    names = [detect.store_signals(s) for s in stores + transfer]
    signals = [n for n in SIGNALS if all(n in found for found in names)]
    train_df = _table(stores, args.annotations, signals)
    test_df = _table(transfer, args.annotations, signals) if transfer else None
    config = suite.SuiteConfig(folds=args.folds, resamples=args.resamples, prior=args.token_prior)
    result = suite.compare(train_df, test_df, config)
    _write(out, result.evaluations)
    matplotlib.use("Agg")
    for group, name in FIGURES.items():
        rows = [e for e in result.evaluations if e.group == group]
        if rows:
            save(roc_figure(rows, group), out / name, ("png",))
    choice = result.choice
    best = detect.train(train_df, choice.columns(train_df), choice.kind, strength=choice.strength)
    best.trained_on.update(_trained_on(stores, args.stores, train_df, feature_set=choice.features,
                                       strength=choice.strength, cv_auroc=round(choice.cv_auroc, 4)))
    best.save(out / BEST)
    print(f"best combination (by {args.folds}-fold CV on the training scenes): --features {choice.features} "
          f"--strength {choice.strength:g}{'' if choice.prior else ' --no-token-prior'}; trained on all training "
          f"scenes -> {out / BEST}")
    print(f"wrote {out / 'detectors.md'} and the ROC figures {', '.join(f'{n}.png' for n in FIGURES.values())}")
    return 0


def _write(out: Any, evaluations: list[Any]) -> None:
    from ..metrics import detect
    from ..plots.report import markdown_table

    frame = detect.table(evaluations)
    frame.to_csv(out / "detectors.csv", index=False)
    (out / "detectors.md").write_text("Folds and 95 % CIs are grouped by image (`images`: how many).\n\n"
                                      + markdown_table(frame) + "\n")
    print(markdown_table(frame))

