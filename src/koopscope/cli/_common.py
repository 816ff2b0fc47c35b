"""What every command shares: exit codes, the argument parser, and where output goes.

Results go to stdout (``emit``, ``emit_json``), progress and diagnostics to stderr (``progress``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from koopscope._atomic import check_output_path
from koopscope.errors import KoopscopeError

__all__ = [
    "EXIT_OK", "EXIT_GATE_FAIL", "EXIT_USAGE", "EXIT_ABSTAIN", "EXIT_INTERNAL",
    "ArgumentParser", "UsageError", "bounded", "check_output_path", "emit", "emit_json", "finite_float", "progress",
    "summary",
]

# Exit codes, the same for every command (DESIGN.md, "Command line").
EXIT_OK = 0          # success / gate pass
EXIT_GATE_FAIL = 1   # gate fail
EXIT_USAGE = 2       # usage or input error: bad option, unreadable or invalid file
EXIT_ABSTAIN = 3     # gate abstain under the fail-closed policy
EXIT_INTERNAL = 4    # internal error (a bug)


class UsageError(KoopscopeError):
    """A command line that cannot be parsed (exit code 2)."""


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser that raises :class:`UsageError` instead of printing usage and exiting.

    ``main`` turns the error into one line on stderr, ``koopscope: error: <message>``, and exit
    code 2.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def bounded(kind: type[int] | type[float], lo: float) -> Callable[[str], Any]:
    """An argparse ``type`` that parses ``kind`` and requires a value >= ``lo``."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun} >= {lo:g}, got {text!r}") from None
        if not (value >= lo and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected {noun} >= {lo:g}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def finite_float(text: str) -> float:
    """An argparse ``type`` for any finite number (NaN and ±inf refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def summary(fp: Any) -> dict[str, Any]:
    """The headline of a KoopmanFingerprint as a JSON-ready dict (what the commands print)."""
    _, low, high = fp.interval("spectral_radius")
    document = fp.document
    return {"kind": fp.kind, "name": fp.name, "kernel": document["kernel"]["method"],
            "spectral_radius": fp.spectral_radius, "interval": [low, high], "stability_label": fp.stability_label,
            "risk": fp.risk, "trust_flags": [f["code"] for f in document["trust"]["flags"]]}


def emit(text: str = "") -> None:
    """Write a result line to stdout."""
    sys.stdout.write(text + "\n")


def emit_json(obj: Any) -> None:
    """Write a JSON document to stdout (strict JSON: NaN/inf are not allowed)."""
    sys.stdout.write(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def progress(message: str) -> None:
    """Write a progress line to stderr."""
    sys.stderr.write(f"koopscope: {message}\n")
    sys.stderr.flush()
