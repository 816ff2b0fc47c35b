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

from koopscope.errors import KoopscopeError

__all__ = [
    "EXIT_OK", "EXIT_GATE_FAIL", "EXIT_USAGE", "EXIT_ABSTAIN", "EXIT_INTERNAL",
    "ArgumentParser", "UsageError", "bounded", "emit", "emit_json", "progress",
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
