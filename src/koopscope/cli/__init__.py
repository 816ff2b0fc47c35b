"""The ``koopscope`` command line.

One module per command, each thin (parse, call the library, print) and each defining

    NAME : str                                  the sub-command, e.g. "demo"
    HELP : str                                  one line for ``koopscope --help``
    add_arguments(parser) -> None               its options
    run(args: argparse.Namespace) -> int        the work; returns an exit code

To add a command (extract, audit, profile, calibrate, gate, rmt, report, upload), write
``koopscope/cli/<name>.py`` and list it in :data:`COMMANDS`. Command modules are imported on
every invocation, so they import optional extras (torch, transformers, zarr, ...) inside ``run``,
never at the top of the module.

Exit codes (DESIGN.md): 0 success / gate pass, 1 gate fail, 2 usage or input error, 3 gate abstain,
4 internal error. ``KOOPSCOPE_DEBUG=1`` prints the traceback of an error before its one-line
message.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from koopscope import __version__
from koopscope.cli import audit, calibrate, demo, extract, gate, profile, report, rmt, upload
from koopscope.cli._common import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, ArgumentParser, UsageError
from koopscope.errors import KoopscopeError

__all__ = ["COMMANDS", "UsageError", "build_parser", "main"]

#: The command modules, in the order ``koopscope --help`` lists them.
COMMANDS = (demo, extract, profile, audit, gate, calibrate, rmt, report, upload)

EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), the shell convention
EXIT_BROKEN_PIPE = 141  # stdout closed by its reader, e.g. `koopscope demo | head` (128 + SIGPIPE)


def build_parser() -> ArgumentParser:
    """The top-level parser with one sub-parser per command in :data:`COMMANDS`."""
    parser = ArgumentParser(
        prog="koopscope",
        description="Koopman operator spectra of sequence models.",
        epilog="Exit codes: 0 success, 1 gate fail, 2 usage or input error, 3 gate abstain, "
               "4 internal error. Set KOOPSCOPE_DEBUG=1 for tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"koopscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _debug() -> bool:
    value = os.environ.get("KOOPSCOPE_DEBUG", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _fail(message: str) -> None:
    sys.stderr.write(f"koopscope: {message}\n")
    sys.stderr.flush()


def _silence_stdout() -> None:
    # After a broken pipe, point stdout at /dev/null so the final flush at exit does not fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _passive_openmp() -> None:
    """Let torch's OpenMP threads sleep when idle, unless the user chose a policy (read when torch loads).

    By default they spin after every torch operation, and in a profile the numpy linear algebra that follows the
    forward pass then shares both cores with them: the GPT-2-small rank-32 profile took 3.07 s end to end against
    2.78 s with passive waiting (BENCHMARKS.md, issue 5); the forward pass itself is unchanged (2.24 against 2.20 s).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``koopscope`` with ``argv`` (default ``sys.argv[1:]``) and return its exit code."""
    _passive_openmp()
    debug = _debug()
    try:
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit as exc:  # --help and --version print and exit 0
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        if extra:  # name the sub-command's help, which lists its options
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} "
                             f"(see 'koopscope {args.command} --help')")
        code = args._run(args)
        sys.stdout.flush()
        return EXIT_OK if code is None else int(code)
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (KoopscopeError, OSError) as exc:
        # Usage and input errors: one sentence, no traceback. An OSError here is a file the user
        # named that cannot be read or written (missing, a directory, no permission, disk full).
        if debug:
            traceback.print_exc()
        if isinstance(exc, OSError) and not isinstance(exc, KoopscopeError) and exc.strerror:
            where = f" {exc.filename!r}" if exc.filename is not None else ""
            _fail(f"error: cannot access{where}: {exc.strerror}.")
        else:
            _fail(f"error: {_one_line(exc)}")
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        hint = "" if debug else "; set KOOPSCOPE_DEBUG=1 for the full traceback"
        _fail(f"internal error: {type(exc).__name__}: {_one_line(exc)} "
              f"(this is a bug in koopscope{hint})")
        return EXIT_INTERNAL

