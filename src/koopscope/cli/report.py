"""``koopscope report``: render a fingerprint file as one self-contained HTML page (no network, no scripts)."""

from __future__ import annotations

import argparse

from koopscope.cli._common import EXIT_OK, check_output_path, emit

NAME = "report"
HELP = "render a fingerprint as a self-contained HTML report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fingerprint", metavar="FILE.json", help="a fingerprint file")
    parser.add_argument("--html", required=True, metavar="REPORT.html", help="the HTML file to write")


def run(args: argparse.Namespace) -> int:
    from koopscope.fingerprint import KoopmanFingerprint

    out = check_output_path(args.html, "--html")
    fp = KoopmanFingerprint.from_json(args.fingerprint)
    fp.to_html(out)
    emit(f"wrote {out}")
    return EXIT_OK
