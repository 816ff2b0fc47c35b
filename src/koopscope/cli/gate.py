"""``koopscope gate``: pass (0), fail (1) or abstain (3, fail-closed) on a fingerprint's bootstrap interval.

The decision is :class:`koopscope.gate.AbstainGate`'s; see its module for the rules.
"""

from __future__ import annotations

import argparse

from koopscope.cli._common import emit, emit_json, finite_float

NAME = "gate"
HELP = "pass, fail or abstain on a fingerprint statistic's bootstrap interval (exit 0 / 1 / 3)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fingerprint", required=True, metavar="FINGERPRINT.json", help="a fingerprint file")
    parser.add_argument("--threshold", required=True, type=finite_float, metavar="X",
                        help="pass when the whole interval is under X, fail when it is over X")
    parser.add_argument("--statistic", default="spectral_radius",
                        help="spectral_radius (default), near_unit_mass, or risk (model fingerprints)")
    parser.add_argument("--on-abstain", choices=("fail", "pass"), default="fail",
                        help="exit code of an abstention: fail (3, the default: fail-closed) or pass (0)")
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")


def run(args: argparse.Namespace) -> int:
    from koopscope.fingerprint import KoopmanFingerprint
    from koopscope.gate import AbstainGate

    fp = KoopmanFingerprint.from_json(args.fingerprint)
    decision = AbstainGate(args.threshold, statistic=args.statistic, on_abstain=args.on_abstain).decide(fp)
    if args.json:
        emit_json({**decision.as_dict(), "exit_code": decision.exit_code, "name": fp.name})
    else:
        emit(f"{decision.verdict.upper()}: {fp.name}: {decision.reason}")
    return decision.exit_code
