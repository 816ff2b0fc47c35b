"""StreamingDMD: agreement with batch least squares, forgetting, window, residuals, validation."""

from __future__ import annotations

import numpy as np
import pytest

import koopscope as ks
from koopscope._linalg import sort_spectrum
from koopscope.dmd.streaming import StreamingDMD
from koopscope.errors import DataError, NotFittedError, ParameterError
from tests.dmd.systems import planted_operator

D = 8


def planted(seed: int, moduli: tuple[float, ...] = (1.2, 1.0, 0.9, 0.8, 0.5),
            angles: tuple[float, ...] = (0.3, 0.0, 1.1, 2.0, 0.0)
            ) -> tuple[np.ndarray, np.ndarray]:
    """The shared planted operator (κ(V) ≈ 30), eigenvalues sorted like a Spectrum: the default is D = 8 with
    three complex pairs (|λ| = 1.2, 0.9, 0.8) and two real eigenvalues (1.0, 0.5)."""
    A, lam = planted_operator(list(moduli), list(angles), 30.0, seed)
    return A, lam[sort_spectrum(lam)]


def pairs(A: np.ndarray, n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random states X (n, D) and successors Y = X A^T + noise (rows are snapshots)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, A.shape[0]))
    return X, X @ A.T + noise * rng.standard_normal(X.shape)


def weighted_lstsq(X: np.ndarray, Y: np.ndarray, rho: float) -> np.ndarray:
    """The operator (D, D) minimising Σ ρ^(N-1-i) ||y_i - A x_i||^2."""
    w = np.sqrt(rho ** np.arange(X.shape[0])[::-1])[:, None]  # (N, 1)
    return np.linalg.lstsq(w * X, w * Y, rcond=None)[0].T


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def sorted_eigs(lam: np.ndarray) -> np.ndarray:
    return lam[sort_spectrum(lam)]


@pytest.fixture(scope="module")
def system() -> tuple[np.ndarray, np.ndarray]:
    A, lam = planted(0)
    assert A.shape == (D, D)
    return A, lam


# --------------------------------------------------------------------------------------------------
# 1-2. Agreement with batch least squares and exact DMD; planted spectra


def test_matches_batch_least_squares_and_exact_dmd(system):
    A, _ = system
    X, Y = pairs(A, 300, noise=0.1, seed=1)
    online = StreamingDMD(D)
    for x, y in zip(X, Y, strict=True):
        online.update(x, y)
    batch = np.linalg.lstsq(X, Y, rcond=None)[0].T  # (D, D) = Y^T X (X^T X)^-1
    assert rel(online.operator, batch) < 1e-8
    spec, ref = online.spectrum(), ks.dmd.exact(X, Y)
    assert ref.rank == D
    np.testing.assert_allclose(sorted_eigs(spec.eigenvalues), sorted_eigs(ref.eigenvalues),
                               rtol=0, atol=1e-8)
    np.testing.assert_allclose(spec.residuals, ref.residuals, rtol=1e-6, atol=1e-8)
    assert spec.method == "streaming" and spec.rank == D and spec.n_pairs == 300
    assert spec.residuals.max() > 0.01  # noisy data: a genuine least-squares problem


def test_noise_free_planted_eigenvalues(system):
    A, lam = system
    X, Y = pairs(A, 200, noise=0.0, seed=2)
    online = StreamingDMD(D)
    online.update_many(X, Y)
    eigs = online.spectrum().eigenvalues
    np.testing.assert_allclose(eigs, lam, rtol=0, atol=1e-10)
    assert np.all(np.diff(np.abs(eigs)) <= 1e-12)  # descending modulus
    for k in np.flatnonzero(eigs.imag > 0):  # conjugates adjacent, positive imaginary first
        assert eigs[k + 1] == np.conj(eigs[k])


def test_update_many_trajectory_equals_pairwise_updates(system):
    A, _ = system
    rng = np.random.default_rng(3)
    traj = np.empty((120, D))
    traj[0] = rng.standard_normal(D)
    for t in range(119):  # stable process with noise keeps every direction excited
        traj[t + 1] = 0.7 * A @ traj[t] + rng.standard_normal(D)
    a, b = StreamingDMD(D), StreamingDMD(D)
    a.update_many(traj)
    for t in range(119):
        b.update(traj[t], traj[t + 1])
    assert a.n_pairs == b.n_pairs == 119
    np.testing.assert_array_equal(a.operator, b.operator)
    assert rel(a.operator, np.linalg.lstsq(traj[:-1], traj[1:], rcond=None)[0].T) < 1e-8


def test_amplitudes_reconstruct_first_state(system):
    A, _ = system
    X, Y = pairs(A, 50, noise=0.0, seed=4)
    online = StreamingDMD(D)
    online.update_many(X, Y)
    s = online.spectrum()
    np.testing.assert_allclose(s.modes @ s.amplitudes, X[0], atol=1e-10)


def test_identity_init_approximates_batch(system):
    A, _ = system
    X, Y = pairs(A, 200, noise=0.1, seed=5)
    online = StreamingDMD(D, init="identity", alpha=1e8)
    online.update(X[0], Y[0])
    online.spectrum()  # available from the first pair
    online.update_many(X[1:], Y[1:])
    assert rel(online.operator, np.linalg.lstsq(X, Y, rcond=None)[0].T) < 1e-6


# --------------------------------------------------------------------------------------------------
# 3. Forgetting


def test_forgetting_tracks_a_switch_and_equals_weighted_least_squares():
    A1, lam1 = planted(10)
    A2, lam2 = planted(11, moduli=(1.1, 0.95, 0.85, 0.7, 0.55),
                       angles=(0.5, 0.0, 1.4, 2.5, 0.0))
    X1, Y1 = pairs(A1, 200, noise=1e-3, seed=12)
    X2, Y2 = pairs(A2, 300, noise=1e-3, seed=13)
    X, Y = np.vstack([X1, X2]), np.vstack([Y1, Y2])
    rho = 0.95
    online, static = StreamingDMD(D, forgetting=rho), StreamingDMD(D)
    online.update_many(X, Y)
    static.update_many(X, Y)
    assert rel(online.operator, weighted_lstsq(X, Y, rho)) < 1e-8
    eigs = online.spectrum().eigenvalues
    np.testing.assert_allclose(eigs, lam2, rtol=0, atol=1e-2)
    assert np.abs(static.spectrum().eigenvalues - lam2).max() > 0.05  # ρ = 1 cannot follow


def test_forgetting_exact_from_initialisation(system):
    """The weights ρ^(N-1-i) also apply to the pairs buffered before the batch initialisation."""
    A, _ = system
    X, Y = pairs(A, D + 1, noise=0.1, seed=14)
    online = StreamingDMD(D, forgetting=0.8)
    online.update_many(X, Y)
    assert rel(online.operator, weighted_lstsq(X, Y, 0.8)) < 1e-10


# --------------------------------------------------------------------------------------------------
# 4. Window


@pytest.mark.parametrize("rho", [1.0, 0.9])
def test_window_equals_least_squares_on_last_pairs(system, rho):
    A, _ = system
    X, Y = pairs(A, 300, noise=0.1, seed=20)
    w = 30
    online = StreamingDMD(D, window=w, forgetting=rho)
    online.update_many(X, Y)
    assert rel(online.operator, weighted_lstsq(X[-w:], Y[-w:], rho)) < 1e-8
    spec = online.spectrum()
    assert spec.n_pairs == w and online.n_pairs == 300
    ref = StreamingDMD(D, forgetting=rho)
    ref.update_many(X[-w:], Y[-w:])  # the same w pairs, fed fresh: same moments, same residuals
    np.testing.assert_allclose(spec.residuals, ref.spectrum().residuals, rtol=1e-6, atol=1e-8)


def test_window_tracks_a_switch():
    A1, _ = planted(30)
    A2, lam2 = planted(31, moduli=(1.1, 0.95, 0.85, 0.7, 0.55),
                       angles=(0.5, 0.0, 1.4, 2.5, 0.0))
    X1, Y1 = pairs(A1, 100, noise=0.0, seed=32)
    X2, Y2 = pairs(A2, 40, noise=0.0, seed=33)
    online = StreamingDMD(D, window=40)
    online.update_many(np.vstack([X1, X2]), np.vstack([Y1, Y2]))
    np.testing.assert_allclose(online.spectrum().eigenvalues, lam2, rtol=0, atol=1e-8)


def test_window_with_underflowing_weight():
    """ρ^w underflows to 0: the oldest pair weighs nothing and the update falls back to rank 1."""
    rng = np.random.default_rng(40)
    A = np.array([[0.9, -0.3], [0.3, 0.9]])
    X = rng.standard_normal((1200, 2))
    Y = X @ A.T + 0.01 * rng.standard_normal(X.shape)
    online = StreamingDMD(2, forgetting=0.5, window=1100)
    online.update_many(X, Y)
    assert 0.5**1100 == 0.0
    assert rel(online.operator, weighted_lstsq(X[-1100:], Y[-1100:], 0.5)) < 1e-8


# --------------------------------------------------------------------------------------------------
# 5. Residuals


@pytest.mark.parametrize("options", [{}, {"forgetting": 0.9}, {"window": 20}])
def test_residuals_vanish_on_noise_free_linear_data(system, options):
    A, _ = system
    X, Y = pairs(A, 100, noise=0.0, seed=50)
    online = StreamingDMD(D, **options)
    online.update_many(X, Y)
    spec = online.spectrum()
    assert spec.residuals.shape == (D,) and spec.residuals.max() < 1e-6
    assert spec.n_spurious == 0


# --------------------------------------------------------------------------------------------------
# Initialisation and state


def test_not_fitted_names_the_missing_pairs(system):
    A, _ = system
    X, Y = pairs(A, D + 1, noise=0.1, seed=60)
    online = StreamingDMD(D)
    with pytest.raises(NotFittedError, match=r"spectrum\(\) needs at least 9 .* got 0: .* 9 more"):
        online.spectrum()
    online.update_many(X[:3], Y[:3])
    with pytest.raises(NotFittedError, match=r"got 3: call update\(\) with 6 more pair"):
        online.spectrum()
    with pytest.raises(NotFittedError, match=r"StreamingDMD.operator"):
        online.operator  # noqa: B018
    online.update_many(X[3:], Y[3:])
    assert online.spectrum().eigenvalues.shape == (D,)
    with pytest.raises(NotFittedError, match=r"needs at least 1 snapshot pair"):
        StreamingDMD(D, init="identity").spectrum()


def test_ill_conditioned_pairs_delay_initialisation(system):
    A, _ = system
    X, Y = pairs(A, 100, noise=0.1, seed=61)
    X[:40, -1] = 0.0  # the first 40 states never excite the last direction
    online = StreamingDMD(D)
    online.update_many(X[:40], Y[:40])
    with pytest.raises(NotFittedError, match=r"condition number .* init='identity'"):
        online.spectrum()
    online.update(X[40], Y[40])  # the next check in update() is deferred by dim + 1 pairs ...
    assert online.spectrum().eigenvalues.shape == (D,)  # ... but spectrum() forces it
    online.update_many(X[41:], Y[41:])
    assert rel(online.operator, np.linalg.lstsq(X, Y, rcond=None)[0].T) < 1e-8
    polled_never = StreamingDMD(D)  # initialised by a deferred check inside update()
    polled_never.update_many(X, Y)
    assert rel(polled_never.operator, np.linalg.lstsq(X, Y, rcond=None)[0].T) < 1e-8


def test_operator_is_a_copy_and_rejected_pairs_change_nothing(system):
    A, _ = system
    X, Y = pairs(A, 20, noise=0.1, seed=62)
    online = StreamingDMD(D)
    online.update_many(X, Y)
    before = online.operator
    before[:] = 0.0
    Xbad = X.copy()
    Xbad[5, 2] = np.nan
    with pytest.raises(DataError):
        online.update_many(Xbad, Y)
    assert online.n_pairs == 20
    assert rel(online.operator, np.linalg.lstsq(X, Y, rcond=None)[0].T) < 1e-8
    assert "n_pairs=20" in repr(online)


# --------------------------------------------------------------------------------------------------
# 6. Validation


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"dim": 0}, "dim"), ({"dim": -1}, "dim"), ({"dim": 2.5}, "dim"), ({"dim": True}, "dim"),
    ({"dim": "8"}, "dim"), ({"dim": None}, "dim"),
    ({"forgetting": 0.0}, "forgetting"), ({"forgetting": 1.5}, "forgetting"),
    ({"forgetting": -0.1}, "forgetting"), ({"forgetting": float("nan")}, "forgetting"),
    ({"window": D}, "window"), ({"window": 0}, "window"), ({"window": 20.0}, "window"),
    ({"init": "zeros"}, "init"), ({"alpha": 0.0}, "alpha"), ({"alpha": float("inf")}, "alpha"),
])
def test_bad_parameters(kwargs, name):
    kwargs = {"dim": D, **kwargs}
    with pytest.raises(ParameterError, match=rf"^The '{name}' parameter of StreamingDMD must be"):
        StreamingDMD(kwargs.pop("dim"), **kwargs)


def test_window_message_names_the_minimum():
    with pytest.raises(ParameterError, match=r"int in \[9, inf\) or None; got 8; .*dim \+ 1 = 9"):
        StreamingDMD(D, window=D)


GOOD = np.ones(D)


@pytest.mark.parametrize(("x", "y", "pattern"), [
    (np.ones(D - 1), GOOD,
     r"^x passed to StreamingDMD.update must be .* shape \(8,\); got shape \(7,\)"),
    (GOOD, np.ones(D + 1), r"^y passed to StreamingDMD.update .* \(8,\); got shape \(9,\)"),
    (np.ones((1, D)), GOOD, r"^x passed .* got shape \(1, 8\): for several pairs call update_many"),
    (3.0, GOOD, r"^x passed .* got shape \(\)"),
    (np.r_[np.nan, GOOD[1:]], GOOD, r"^x passed .* 1 NaN/Inf value\(s\), the first at index 0"),
    (GOOD, np.r_[GOOD[:-1], np.inf], r"^y passed .* NaN/Inf .* index 7"),
    (GOOD.astype(bool), GOOD, r"^x passed .* dtype bool"),
    (GOOD.astype(complex), GOOD, r"^x passed .* dtype complex128"),
    (["a"] * D, GOOD, r"^x passed .* dtype <U1"),
])
def test_bad_update(x, y, pattern):
    online = StreamingDMD(D)
    with pytest.raises(DataError, match=pattern):
        online.update(x, y)
    assert online.n_pairs == 0


@pytest.mark.parametrize(("X", "Y", "pattern"), [
    (np.ones((5, D - 1)), np.ones((5, D - 1)),
     r"^X passed .* shape \(N, 8\) .* got shape \(5, 7\)"),
    (np.ones((D, 30)), None, r"^X passed .* got shape \(8, 30\), which looks transposed .* X.T"),
    (np.ones((5, D)), np.ones((6, D)), r"^X and Y passed .* got X \(5, 8\) and Y \(6, 8\)"),
    (np.ones((5, D)), np.full((5, D), np.nan), r"^Y passed .* NaN/Inf .* row 0, column 0"),
    (np.ones((2, 5, D)), None, r"^X passed .* 2-D array .* got a 3-D array"),
    (np.ones((1, D)), None, r"^X passed .* trajectory of 1 snapshot\(s\)"),
])
def test_bad_update_many(X, Y, pattern):
    online = StreamingDMD(D)
    with pytest.raises(DataError, match=pattern):
        online.update_many(X, Y)
    assert online.n_pairs == 0


def test_update_many_accepts_a_single_or_constant_pair():
    online = StreamingDMD(2)
    online.update_many(np.ones((1, 2)), np.ones((1, 2)))
    online.update_many(np.zeros((3, 2)), np.zeros((3, 2)))
    assert online.n_pairs == 4
