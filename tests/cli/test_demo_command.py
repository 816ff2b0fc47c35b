"""The built-in demo: a seeded planted system, and what ``koopscope demo`` reports about it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from koopscope.cli import main
from koopscope.demo import PLANTED_EIGENVALUES, demo_trajectory, match_eigenvalues, run_demo
from koopscope.dmd import VARIANTS
from koopscope.errors import ParameterError


def test_trajectory_is_seeded_and_pure() -> None:
    a, lam_a = demo_trajectory(T=50, D=9, seed=3)
    b, lam_b = demo_trajectory(T=50, D=9, seed=3)
    c, _ = demo_trajectory(T=50, D=9, seed=4)
    assert a.shape == (50, 9) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(lam_a, lam_b)
    assert not np.allclose(a, c)
    lam_a[0] = 0  # the returned eigenvalues are a copy
    assert PLANTED_EIGENVALUES[0] != 0


def test_planted_eigenvalues() -> None:
    lam = PLANTED_EIGENVALUES
    assert lam.dtype == np.complex128 and lam.size == 8
    mod = np.abs(lam)
    assert np.all(np.diff(mod) <= 0)  # descending modulus
    assert mod.max() == pytest.approx(0.99) and mod.min() == pytest.approx(0.6)
    assert np.sum(lam.imag > 0) == 3  # three conjugate pairs, adjacent
    np.testing.assert_allclose(np.sort_complex(lam), np.sort_complex(lam.conj()))


def test_noiseless_trajectory_follows_the_planted_linear_map() -> None:
    traj, lam = demo_trajectory(T=60, D=12, noise=0.0, seed=1)
    A, *_ = np.linalg.lstsq(traj[:-1], traj[1:], rcond=None)  # rows: traj[t+1] = traj[t] A
    np.testing.assert_allclose(traj[:-1] @ A, traj[1:], atol=1e-10)
    eigs = np.linalg.eigvals(A)
    _, err = match_eigenvalues(lam, eigs)
    assert err.max() < 1e-6


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"T": 2}, "'T'"), ({"D": 7}, "'D'"), ({"noise": -1.0}, "'noise'"), ({"seed": -1}, "'seed'"),
])
def test_bad_arguments_raise_parameter_error(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ParameterError, match=name):
        demo_trajectory(**kwargs)


def test_match_eigenvalues_handles_fewer_recovered() -> None:
    planted = np.array([0.9 + 0.1j, 0.9 - 0.1j, 0.5])
    matched, err = match_eigenvalues(planted, np.array([0.5 + 1e-3j]))
    assert list(matched) == [-1, -1, 0]
    assert err[2] == pytest.approx(1e-3) and np.isinf(err[:2]).all()


def test_run_demo_recovers_the_planted_spectrum() -> None:
    result = run_demo()
    assert (result.matched >= 0).all()
    assert result.max_error < 0.02
    assert result.spectrum.spectral_radius == pytest.approx(0.99, abs=0.01)
    doc = result.to_dict()
    json.dumps(doc, allow_nan=False)
    assert doc["max_error"] == pytest.approx(result.max_error)


def test_demo_table_has_one_row_per_eigenvalue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    k = len(doc["eigenvalues"])
    rows = [line for line in out.splitlines() if line[:3].strip().isdigit()]
    assert len(rows) == k
    assert f"kernel           {doc['method']}" in out
    assert f"rank             {doc['rank']}" in out


@pytest.mark.parametrize("method", ["auto", *VARIANTS])
def test_every_method_choice_ends_in_a_result_or_a_usage_error(
        method: str, capsys: pytest.CaptureFixture[str]) -> None:
    # A kernel may refuse the demo's shape (exit 2, one sentence); it must never crash (exit 4).
    code = main(["demo", "--method", method, "--steps", "120", "--dim", "10", "--json"])
    out, err = capsys.readouterr()
    assert code in (0, 2), err
    if code == 0:
        doc = json.loads(out)
        assert doc["method"] == method or method == "auto"
    else:
        assert err.strip().splitlines()[-1].startswith("koopscope: error: ")
