"""Planted spectra: noise-free recovery to 1e-10, randomized top-r, invariances, agreement with PyDMD."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import koopscope as ks
from tests.dmd.systems import ANGLES, MODULI, match_error, planted_operator


def planted_pairs(kappa: float, seed: int = 0, n: int = 400):
    A, lam = planted_operator(MODULI, ANGLES, kappa, seed)
    X = np.random.default_rng(seed + 1).standard_normal((n, A.shape[0]))  # (N, D)
    return X, X @ A.T, lam


@pytest.mark.parametrize("kappa", [1.0, 1e1, 1e2, 1e3])
@pytest.mark.parametrize("kernel", ["exact", "whitened", "tls"])
def test_noise_free_recovery(kernel, kappa):
    X, Y, lam = planted_pairs(kappa)
    spec = ks.dmd.VARIANTS[kernel](X, Y)
    assert spec.eigenvalues.size == lam.size
    # eigenvalue perturbation ≲ κ(V) · eps · ||A|| · (data conditioning): 1e-10 holds up to κ(V) = 1e3
    assert match_error(spec.eigenvalues, lam) < 1e-10


@pytest.mark.parametrize("svd", ["svd", "gram", "randomized"])
def test_exact_recovery_every_solver(svd):
    X, Y, lam = planted_pairs(1e2)
    rank = lam.size if svd == "randomized" else None
    spec = ks.dmd.exact(X, Y, svd=svd, rank=rank, oversampling=0)
    assert spec.options["svd"] == svd
    assert match_error(spec.eigenvalues, lam) < 1e-10


@pytest.mark.parametrize("kappa", [1.0, 1e3])
def test_streaming_recovery(kappa):
    X, Y, lam = planted_pairs(kappa)
    online = ks.dmd.StreamingDMD(X.shape[1])
    online.update_many(X, Y)
    assert match_error(online.spectrum().eigenvalues, lam) < 1e-10


def test_planted_trajectory_recovery():
    # a driven trajectory x_{t+1} = A x_t + w_t is full rank; regress on the noise-free successor
    A, lam = planted_operator(MODULI[1:], ANGLES[1:], 10.0, 3)  # drop the 1.2 so the run stays bounded
    rng = np.random.default_rng(4)
    X = np.empty((300, A.shape[0]))
    X[0] = rng.standard_normal(A.shape[0])
    for t in range(299):
        X[t + 1] = A @ X[t] + rng.standard_normal(A.shape[0])
    spec = ks.dmd.exact(X, X @ A.T)
    assert match_error(spec.eigenvalues, lam) < 1e-10


def test_randomized_recovers_top_r_of_rank_r_system():
    rng = np.random.default_rng(0)
    r, D, N = 8, 120, 600
    Ar, lam = planted_operator([0.99, 0.9, 0.8, 0.6], [0.3, 0.0, 1.0, 0.0], 10.0, 5)
    Ar, lam = Ar[:6, :6], lam  # 2 + 1 + 2 + 1 = 6 dims
    r = Ar.shape[0]
    B = np.linalg.qr(rng.standard_normal((D, r)))[0] * np.logspace(0, 1, r)  # (D, r) embedding
    Z = rng.standard_normal((N, r))
    X, Y = Z @ B.T, Z @ Ar.T @ B.T  # (N, D) states in an r-dimensional subspace
    spec = ks.dmd.randomized(X, Y, rank=r)
    assert spec.rank == r
    assert match_error(spec.eigenvalues, lam) < 1e-10


def test_whitened_invariant_under_change_of_coordinates():
    rng = np.random.default_rng(7)
    A, _ = planted_operator(MODULI, ANGLES, 10.0, 1)
    D = A.shape[0]
    X = rng.standard_normal((500, D))
    Y = X @ A.T + 0.3 * np.tanh(X) + 0.05 * rng.standard_normal((500, D))  # nonlinear, noisy: no planted truth
    T = rng.standard_normal((D, D)) + 3 * np.eye(D)  # invertible change of coordinates x -> T x
    base = ks.dmd.whitened(X, Y).eigenvalues
    moved = ks.dmd.whitened(X @ T.T + 5.0, Y @ T.T + 5.0).eigenvalues  # also shifted: centring removes it
    assert match_error(moved, base) < 1e-10
    # the invariance is what whitening buys: plain exact DMD is not shift-invariant
    assert match_error(ks.dmd.exact(X @ T.T + 5.0, Y @ T.T + 5.0).eigenvalues, ks.dmd.exact(X, Y).eigenvalues) > 1e-3


def test_whitened_matches_textbook_pseudoinverse():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12))
    Y = np.tanh(X @ rng.standard_normal((12, 12)) * 0.3)
    Xc, Yc = (X - X.mean(0)).T, (Y - Y.mean(0)).T  # (D, N) column form, as in RKSP Eq. 7-9
    w, U = np.linalg.eigh(Xc @ Xc.T / (X.shape[0] - 1) + 1e-5 * np.eye(12))
    W = U @ np.diag(w**-0.5) @ U.T
    textbook = np.linalg.eigvals((W @ Yc) @ np.linalg.pinv(W @ Xc))
    assert match_error(ks.dmd.whitened(X, Y).eigenvalues, textbook) < 1e-9
    assert match_error(ks.dmd.whitened(X, Y, modes=None, residuals=False).eigenvalues, textbook) < 1e-9


def test_whitened_rank_r_is_randomized_dmd_of_whitened_data():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 20))
    Y = X @ (0.5 * rng.standard_normal((20, 20)) / np.sqrt(20)).T
    spec = ks.dmd.whitened(X, Y, rank=5)
    assert spec.rank == 5 and spec.eigenvalues.size == 5 and spec.modes.shape == (20, 5)


def test_exact_modes_and_amplitudes_reconstruct_first_snapshot():
    X, Y, lam = planted_pairs(10.0)
    spec = ks.dmd.exact(X, Y, modes="projected")
    x0 = spec.modes @ spec.amplitudes  # modes are unit-norm projected modes: x0 = Φ b
    np.testing.assert_allclose(x0.real, X[0], atol=1e-9)
    np.testing.assert_allclose(x0.imag, 0, atol=1e-9)
    A = Y.T @ np.linalg.pinv(X.T)  # (D, D) operator
    for j in range(lam.size):  # exact modes are eigenvectors of the full operator
        v = ks.dmd.exact(X, Y).modes[:, j]
        np.testing.assert_allclose(A @ v, spec.eigenvalues[j] * v, atol=1e-9)


def test_agrees_with_pydmd():
    pydmd = pytest.importorskip("pydmd")
    rng = np.random.default_rng(11)
    A, _ = planted_operator(MODULI[2:], ANGLES[2:], 5.0, 2)  # stable, so the driven trajectory is well conditioned
    traj = np.empty((600, A.shape[0]))
    traj[0] = rng.standard_normal(A.shape[0])
    for t in range(599):
        traj[t + 1] = A @ traj[t] + 0.5 * rng.standard_normal(A.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pydmd.DMD(svd_rank=-1).fit(traj.T).eigs  # PyDMD: columns are snapshots
    ours = ks.dmd.exact(traj).eigenvalues
    assert ours.size == ref.size
    assert match_error(ours, ref) < 1e-8 * np.abs(ref).max()
