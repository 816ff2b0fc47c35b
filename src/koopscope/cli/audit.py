"""``koopscope audit``: fit a trajectory (``.npy``) or an extraction store and write its fingerprint.

The work is :func:`koopscope.fingerprint.audit_path`; this module parses, checks the output paths before any
computation (so a bad path costs nothing and leaves nothing behind), writes the fingerprint (and the HTML
report) atomically, and prints a summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from koopscope.cli._common import EXIT_OK, bounded, check_output_path, emit, emit_json, progress, summary
from koopscope.dmd import VARIANTS

NAME = "audit"
HELP = "fit a trajectory (.npy) or an extraction store (.zarr) and write its KoopmanFingerprint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("traj", metavar="TRAJ", help="a (T, D) .npy trajectory, or a store from koopscope extract")
    parser.add_argument("--out", required=True, metavar="FINGERPRINT.json", help="the fingerprint to write")
    parser.add_argument("--kernel", default="auto", choices=("auto", *VARIANTS),
                        help="DMD kernel (default: auto, chosen by koopscope.dmd.select with its reason recorded)")
    parser.add_argument("--rank", type=_rank, default=None, metavar="R",
                        help="retained rank: an integer, 'full' or 'svht' (default: the kernel's)")
    parser.add_argument("--html", default=None, metavar="REPORT.html", help="also write the HTML report")
    parser.add_argument("--name", default=None, help="what is audited, shown in the report (default: the file name "
                                                     "or the store's model id)")
    parser.add_argument("--n-boot", type=bounded(int, 0), default=200, metavar="B",
                        help="bootstrap replicates for the intervals (default: 200)")
    parser.add_argument("--seed", type=bounded(int, 0), default=0, help="seed of every random choice (default: 0)")
    parser.add_argument("--json", action="store_true", help="print the fingerprint's summary as JSON")


def _rank(text: str) -> int | str:
    if text in ("full", "svht"):
        return text
    try:
        return bounded(int, 1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, 'full' or 'svht', got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from koopscope.fingerprint import audit_path

    out = check_output_path(args.out, "--out")
    html = None if args.html is None else check_output_path(args.html, "--html")
    progress(f"auditing {args.traj} (kernel {args.kernel}, {args.n_boot} bootstrap replicates)")
    fp = audit_path(Path(args.traj), kernel=args.kernel, rank=args.rank, name=args.name, n_boot=args.n_boot,
                    seed=args.seed)
    fp.to_json(out)
    if html is not None:
        fp.to_html(html)
    info = summary(fp)
    info["written"] = [str(out)] + ([] if html is None else [str(html)])
    if args.json:
        emit_json(info)
    else:
        emit(f"{fp.kind} fingerprint of {fp.name!r}: kernel {info['kernel']}, spectral radius {fp.spectral_radius:.6g} "
             f"(interval [{info['interval'][0]:.4g}, {info['interval'][1]:.4g}]), {fp.stability_label}")
        for flag in fp.trust_flags:
            emit(f"  {flag['severity']}: {flag['message']}")
        emit(f"wrote {', '.join(info['written'])}")
    return EXIT_OK
