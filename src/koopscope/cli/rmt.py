"""``koopscope rmt``: random-matrix readings of every weight matrix of a model, or the certification of an edit
against its baseline (exit 0 healthy, 1 flagged, 2 usage or input error).

MODEL and ``--baseline`` are resolved offline as by ``koopscope extract`` (a demo name, a local directory, a
cached hub id). ``--quantize int8`` (or ``int4``, with ``--group-size``) certifies the round-to-nearest
quantisation of MODEL against MODEL itself, with no second checkpoint. ``--correct`` clips the outlying singular
values of flagged matrices and writes the corrected model to ``--out-model`` (safetensors, atomically); the exit
code still reports the edit as it was given (1 when it was flagged), so a pipeline cannot mistake a repaired
edit for a clean one. The work is :class:`koopscope.rmt.RMTGuard`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from koopscope.cli._common import EXIT_GATE_FAIL, EXIT_OK, bounded, check_output_path, emit, emit_json, progress
from koopscope.errors import ParameterError

NAME = "rmt"
HELP = "random-matrix health of every weight matrix; certify an edit (quantisation, pruning) against its baseline"

POLICIES = ("conservative", "balanced", "aggressive")
QUANTIZE = {"int8": 8, "int4": 4}
TABLE_ROWS = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="the model to check (the edited one when --baseline is given)")
    parser.add_argument("--baseline", default=None, metavar="MODEL", help="the model the edit was made from")
    parser.add_argument("--quantize", choices=tuple(QUANTIZE), default=None,
                        help="certify the round-to-nearest quantisation of MODEL against MODEL")
    parser.add_argument("--group-size", type=bounded(int, 1), default=None, metavar="G",
                        help="with --quantize: one scale per G input columns (default: one per output channel)")
    parser.add_argument("--policy", choices=POLICIES, default="balanced", help="flagging policy (default: balanced)")
    parser.add_argument("--embeddings", action="store_true", help="also check embedding tables and tied heads")
    parser.add_argument("--esd", action="store_true",
                        help="full spectrum of every matrix (median noise level and alpha everywhere; slower)")
    parser.add_argument("--correct", action="store_true",
                        help="clip the outlying singular values of flagged matrices (needs --out-model)")
    parser.add_argument("--out-model", default=None, metavar="DIR", help="where --correct writes the corrected model")
    parser.add_argument("--out", default=None, metavar="RMT.json", help="write the report as JSON")
    parser.add_argument("--fingerprint", default=None, metavar="FP.json",
                        help="add the result as the 'weights' section of this KoopmanFingerprint (rewritten in place)")
    parser.add_argument("--html", default=None, metavar="REPORT.html",
                        help="with --fingerprint: write its HTML report, weight spectra included")
    parser.add_argument("--seed", type=bounded(int, 0), default=0, help="seed of the Lanczos start vectors")
    parser.add_argument("--all", action="store_true", help=f"print every matrix (default: the first {TABLE_ROWS})")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _check_options(args: argparse.Namespace) -> None:
    if args.baseline is not None and args.quantize is not None:
        raise ParameterError("--baseline and --quantize were both given; --quantize certifies MODEL's own "
                             "quantisation: drop one of them.")
    if args.group_size is not None and args.quantize is None:
        raise ParameterError(f"--group-size {args.group_size} needs --quantize; add --quantize int8 or int4.")
    if args.correct and args.out_model is None:
        raise ParameterError("--correct needs --out-model DIR to write the corrected model to; add it.")
    if args.out_model is not None and not args.correct:
        raise ParameterError("--out-model is only written by --correct; add --correct or drop --out-model.")
    if args.html is not None and args.fingerprint is None:
        raise ParameterError("--html renders the fingerprint given by --fingerprint FP.json; add it (e.g. a profile "
                             "written by koopscope profile --out).")
    if args.correct and args.baseline is None and args.quantize is None:
        raise ParameterError("--correct needs an edit to correct; give --baseline MODEL or --quantize.")


def _load(name: str) -> Any:
    from koopscope.capture.loading import load_model

    progress(f"rmt: loading {name}")
    return load_model(name)


def _save_atomically(loaded: Any, directory: str) -> Path:
    """save_pretrained into a temporary sibling directory, then rename it into place."""
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ParameterError(f"--out-model {directory!r} exists and is not an empty directory; choose a new path.")
    if not target.parent.is_dir():
        raise ParameterError(f"--out-model {directory!r} is in a directory that does not exist "
                             f"({str(target.parent)!r}); create it first or choose another path.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else "."))
    try:
        loaded.model.save_pretrained(tmp, safe_serialization=True)
        if getattr(loaded, "tokenizer", None) is not None and hasattr(loaded.tokenizer, "save_pretrained"):
            loaded.tokenizer.save_pretrained(tmp)
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def run(args: argparse.Namespace) -> int:
    from koopscope.rmt import RMTGuard, quantize_model, read_model

    _check_options(args)
    out = None if args.out is None else check_output_path(args.out, "--out")
    fingerprint = None if args.fingerprint is None else _read_fingerprint(args.fingerprint)
    html = None if args.html is None else check_output_path(args.html, "--html")
    guard = RMTGuard(args.policy, embeddings=args.embeddings, seed=args.seed)
    loaded = _load(args.model)
    if args.baseline is None and args.quantize is None:
        progress("rmt: reading every weight matrix")
        report = read_model(loaded.model, embeddings=args.embeddings, esd=args.esd, seed=args.seed, name=args.model)
        return _finish(report, None, out, args, fingerprint, html)
    if args.quantize is not None:
        baseline_model, edited = loaded.model, copy.deepcopy(loaded.model)
        progress(f"rmt: quantising {args.model} ({args.quantize}, "
                 f"{'per channel' if args.group_size is None else f'groups of {args.group_size}'})")
        quantize_model(edited, QUANTIZE[args.quantize], group_size=args.group_size, embeddings=args.embeddings)
        edited_loaded, baseline_name = dataclasses.replace(loaded, model=edited), args.model
        edited_name = f"{args.model} ({args.quantize} RTN)"
    else:
        baseline_model, edited_loaded = _load(args.baseline).model, loaded
        baseline_name, edited_name = args.baseline, args.model
    progress("rmt: reading the baseline")
    guard.prepare(baseline_model, name=baseline_name)
    progress("rmt: checking the edit")
    report = guard.check(edited_loaded.model, name=edited_name)
    corrected = None
    if args.correct:
        corrected = guard.correct(edited_loaded.model, report, name=edited_name) if report.flagged_matrices else None
        progress(f"rmt: writing the corrected model to {args.out_model}")
        _save_atomically(edited_loaded, args.out_model)
    return _finish(report, corrected, out, args, fingerprint, html)


def _read_fingerprint(path: str) -> Any:
    from koopscope.fingerprint import KoopmanFingerprint

    check_output_path(path, "--fingerprint")
    return KoopmanFingerprint.from_json(path)


def _finish(report: Any, corrected: Any, out: Path | None, args: argparse.Namespace, fingerprint: Any,
            html: Path | None) -> int:
    final = report if corrected is None else corrected.with_corrected(corrected.corrected)
    written = [] if out is None else [str(final.to_json(out) if corrected is None else _merged(report, final, out))]
    if fingerprint is not None:
        section = (report if corrected is None else report.with_corrected(corrected.corrected)).fingerprint_section()
        fingerprint = fingerprint.with_weights(section)
        fingerprint.to_json(args.fingerprint)
        written.append(args.fingerprint)
        if html is not None:
            written.append(str(fingerprint.to_html(html)))
    if args.json:
        emit_json({"before": report.summary(), "after": None if corrected is None else corrected.summary(),
                   "written": written})
    else:
        emit(report.table(limit=None if args.all else TABLE_ROWS))
        _emit_summary(report)
        if corrected is not None:
            emit(f"corrected {len(corrected.corrected)} matrices: {', '.join(corrected.corrected)}; "
                 f"after correction: {corrected.verdict}")
        if written:
            emit(f"wrote {', '.join(written)}")
    return EXIT_GATE_FAIL if report.flagged else EXIT_OK


def _merged(report: Any, corrected: Any, out: Path) -> Path:
    """Write the edit's report with the corrected model's check under "after_correction"."""
    from koopscope.rmt.report import write_document

    doc = report.to_dict()
    doc["corrected"] = list(corrected.corrected)
    doc["after_correction"] = {"verdict": corrected.verdict, "summary": corrected.summary(),
                               "checks": [c.to_dict() for c in corrected.checks]}
    return write_document(doc, out)


def _emit_summary(report: Any) -> None:
    s = report.summary()
    families = ", ".join(f"{name} {v['matrices']}" for name, v in s["by_family"].items())
    emit(f"{s['n_matrices']} matrices ({families})")
    if report.mode == "check":
        emit(f"policy {report.policy.name} (α = {report.policy.alpha:g}); {s['n_edited']} edited, "
             f"{s['n_flagged']} flagged; largest spike ratio {_fmt(s['max_spike_ratio'])}, "
             f"largest growth ratio {_fmt(s['max_growth_ratio'])}")
        for name in s["flagged"]:
            row = next(c for c in report.checks if c.name == name)
            emit(f"  FLAGGED {name} ({row.family}): {row.reason}")
    else:
        emit(f"spikes above the Tracy-Widom edge: {s['spikes_total']}; median stable rank "
             f"{_fmt(s['stable_rank_median'])}; median alpha {_fmt(s['alpha_median'])} ({s['n_alpha']} matrices "
             "with a full spectrum)")
    for name in s["non_finite"]:
        emit(f"  FLAGGED {name}: non-finite weights")
    emit(f"verdict: {report.verdict}")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"
