"""The command line: exit codes and one-line error messages (DESIGN.md, "Command line")."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import koopscope
from koopscope.cli import main
from koopscope.errors import DataError

DEMO_FAST = ["demo", "--steps", "120", "--dim", "10"]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KOOPSCOPE_DEBUG", raising=False)


def _one_line_error(err: str) -> str:
    """The error line: stderr ends with one line after any progress lines, and no traceback."""
    lines = [line for line in err.strip().splitlines() if not line.startswith("koopscope: demo:")]
    assert len(lines) == 1, f"expected one error line on stderr, got {err!r}"
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == lines[0]
    return lines[0]


def test_demo_exits_0_and_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(DEMO_FAST) == 0
    out, err = capsys.readouterr()
    assert "spectral radius" in out
    assert "planted vs recovered" in out
    assert "Traceback" not in out + err
    assert err.startswith("koopscope: demo:")  # progress goes to stderr, results to stdout


def test_demo_json_parses_and_has_the_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*DEMO_FAST, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    keys = ("eigenvalues", "spectral_radius", "method", "rank", "reason", "residuals", "n_spurious")
    for key in keys:
        assert key in doc, key
    assert doc["eigenvalues"] and all(set(z) == {"re", "im"} for z in doc["eigenvalues"])
    assert isinstance(doc["spectral_radius"], float)
    moduli = [abs(complex(z["re"], z["im"])) for z in doc["eigenvalues"]]
    assert doc["spectral_radius"] == pytest.approx(max(moduli))
    assert isinstance(doc["rank"], int) and doc["rank"] >= 1
    assert isinstance(doc["method"], str) and doc["method"]
    assert isinstance(doc["reason"], str) and doc["reason"]
    assert doc["residuals"] is None or len(doc["residuals"]) == len(doc["eigenvalues"])
    assert isinstance(doc["n_spurious"], int)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
        (["demo", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["--no-such-option", "demo"], "unrecognized arguments: --no-such-option"),
        (["demo", "--steps", "many"], "argument -T/--steps: expected an integer >= 3, got 'many'"),
        (["demo", "--dim", "4"], "argument -D/--dim: expected an integer >= 8, got '4'"),
        (["demo", "--noise", "nan"], "argument --noise: expected a number >= 0, got 'nan'"),
        (["demo", "--method", "nope"], "argument --method: invalid choice: 'nope'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    line = _one_line_error(err)
    assert line.startswith(f"koopscope: error: {message}"), line
    assert line.endswith("--help')")


def test_library_error_exits_2_with_its_sentence(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    def bad(**kwargs: object) -> None:
        raise DataError("The trajectory has 2 rows;\nDMD needs at least 3.")

    monkeypatch.setattr("koopscope.cli.demo.run_demo", bad)
    assert main(["demo"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line == "koopscope: error: The trajectory has 2 rows; DMD needs at least 3."


def test_unreadable_file_exits_2(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    def missing(**kwargs: object) -> None:
        open("/nonexistent/koopscope/traj.npy")  # noqa: SIM115

    monkeypatch.setattr("koopscope.cli.demo.run_demo", missing)
    assert main(["demo"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line == ("koopscope: error: cannot access '/nonexistent/koopscope/traj.npy': "
                    "No such file or directory.")


def test_internal_error_exits_4_with_hint(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    def boom(**kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("koopscope.cli.demo.run_demo", boom)
    assert main(["demo"]) == 4
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith("koopscope: internal error: ZeroDivisionError: division by zero")
    assert "set KOOPSCOPE_DEBUG=1 for the full traceback" in line


def test_debug_shows_the_traceback_and_keeps_the_exit_code(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def boom(**kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("koopscope.cli.demo.run_demo", boom)
    monkeypatch.setenv("KOOPSCOPE_DEBUG", "1")
    assert main(["demo"]) == 4
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("koopscope: internal error: ZeroDivisionError")


def test_version_and_help_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"koopscope {koopscope.__version__}"
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert main(["demo", "--help"]) == 0
    assert "--json" in capsys.readouterr().out


def test_openmp_threads_wait_passively_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["--version"]) == 0 and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert main(["--version"]) == 0 and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "KOOPSCOPE_DEBUG"} | env
    return subprocess.run([sys.executable, "-m", "koopscope.cli", *args], capture_output=True,
                          text=True, env=environ, timeout=120, check=False)


def test_module_entry_point_in_a_subprocess() -> None:
    ok = _run(*DEMO_FAST, "--json")
    assert ok.returncode == 0, ok.stderr
    assert "eigenvalues" in json.loads(ok.stdout)

    bad = _run("frobnicate")
    assert bad.returncode == 2
    assert bad.stdout == ""
    line = _one_line_error(bad.stderr)
    assert line.startswith("koopscope: error: argument COMMAND: invalid choice")
