"""``koopscope calibrate``: fit P(diverge) on labelled runs (JSONL) and write the calibration as JSON.

The work is :class:`koopscope.gate.Calibrator` (see :mod:`koopscope.gate.calibration` for the runs format and
the methods); this module parses, checks the output path before any computation, writes the calibration
atomically and prints AUROC with its bootstrap interval, ECE and the number of runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from koopscope.cli._common import EXIT_OK, bounded, check_output_path, emit, emit_json, progress

NAME = "calibrate"
HELP = "fit a probability of divergence on labelled runs (JSONL) and write the calibration as JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", metavar="RUNS.jsonl",
                        help='one JSON object per run: {"features": {...}, "hyperparameters": {"lr": ...}, '
                             '"diverged": true|false}; flat rows are accepted too')
    parser.add_argument("--out", required=True, metavar="CALIBRATION.json", help="the calibration to write")
    parser.add_argument("--method", choices=("isotonic", "logistic"), default="isotonic",
                        help="isotonic regression on one score (default) or L2-regularised logistic regression")
    parser.add_argument("--features", type=_names, default=("risk",), metavar="NAME[,NAME...]",
                        help="comma-separated feature names, dotted for nested ones (default: risk)")
    parser.add_argument("--use-lr", action="store_true",
                        help="add log10 of the learning rate as a covariate, P non-decreasing in it (logistic only)")
    parser.add_argument("--C", type=_positive, default=1.0, metavar="C",
                        help="inverse L2 strength of the logistic fit (default: 1.0)")
    parser.add_argument("--n-boot", type=bounded(int, 0), default=1000, metavar="B",
                        help="stratified bootstrap replicates for the AUROC interval (default: 1000)")
    parser.add_argument("--n-bins", type=bounded(int, 1), default=10, metavar="K",
                        help="equal-width bins of ECE and the reliability data (default: 10)")
    parser.add_argument("--folds", type=bounded(int, 2), default=None, metavar="K",
                        help="also report cross-validated metrics over K folds (whole groups with --group-key)")
    parser.add_argument("--group-key", default=None, metavar="KEY",
                        help="cross-validate with the runs' KEY (such as 'group') as folds; without --folds, "
                             "one group is held out at a time")
    parser.add_argument("--seed", type=bounded(int, 0), default=0, help="seed of the bootstrap and folds (default: 0)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary as JSON")


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated feature names, got {text!r}")
    return names


def _positive(text: str) -> float:
    value = bounded(float, 0.0)(text)
    if value == 0.0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _line(name: str, metrics: dict[str, Any]) -> str:
    a = metrics["auroc"]
    interval = (f" ({a['level']:.0%} CI [{a['low']:.3f}, {a['high']:.3f}], {a['n_boot']} stratified bootstrap "
                "replicates)" if a["n_boot"] else "")
    return f"{name}: AUROC {a['estimate']:.3f}{interval}, ECE {metrics['ece']:.3f} ({metrics['n_bins']} bins)"


def run(args: argparse.Namespace) -> int:
    from koopscope.gate.calibration import Calibrator

    out = check_output_path(args.out, "--out")
    cal = Calibrator(args.method, args.features, use_lr=args.use_lr, C=args.C, n_bins=args.n_bins,
                     n_boot=args.n_boot, seed=args.seed)
    progress(f"calibrating {args.runs} ({args.method} on {', '.join(args.features)}"
             f"{' and log10 lr' if args.use_lr else ''}, {args.n_boot} bootstrap replicates)")
    cal.fit(args.runs, groups=args.group_key, n_folds=args.folds)
    cal.save(out)
    document = cal.to_dict()
    metrics, provenance = document["metrics"], document["provenance"]
    if args.json:
        emit_json({"method": cal.method, "features": list(cal.features), "use_lr": cal.use_lr,
                   "n_runs": provenance["n_runs"], "n_diverged": provenance["n_diverged"],
                   "in_sample": _headline(metrics["in_sample"]),
                   "cross_validated": None if metrics["cross_validated"] is None else
                   {**_headline(metrics["cross_validated"]), "n_folds": metrics["cross_validated"]["n_folds"]},
                   "covariate_auroc": metrics["covariate_auroc"], "written": [str(out)]})
        return EXIT_OK
    emit(f"{cal.method} calibration of P(diverge) on {provenance['n_runs']} runs ({provenance['n_diverged']} "
         f"diverged), covariates {', '.join(metrics['covariate_auroc'])}")
    emit(_line("in-sample", metrics["in_sample"]))
    cv = metrics["cross_validated"]
    if cv is not None:
        emit(_line(f"cross-validated ({cv['n_folds']} folds of {cv['folds']})", cv))
    emit(f"wrote {out}")
    return EXIT_OK


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"auroc": metrics["auroc"], "ece": metrics["ece"], "n_bins": metrics["n_bins"]}
