"""Percentile bootstrap of spectral statistics: coverage on a planted system, determinism, kernels, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import koopscope as ks
from koopscope.errors import DataError, ParameterError
from koopscope.spectral import bootstrap, bootstrap_layers, near_unit_mass, spectral_radius

A = np.array([[0.9, -0.2, 0.0], [0.2, 0.9, 0.0], [0.0, 0.0, 0.5]])
RHO = float(np.abs(np.linalg.eigvals(A)).max())  # 0.92195


def ar_trajectory(T: int, noise: float, seed: int) -> np.ndarray:
    """x_{t+1} = A x_t + noise·ε_t from a stationary-scale start: a regression with iid errors."""
    rng = np.random.default_rng(seed)
    traj = np.empty((T, 3))
    traj[0] = rng.standard_normal(3)
    for t in range(T - 1):
        traj[t + 1] = A @ traj[t] + noise * rng.standard_normal(3)
    return traj


def test_interval_covers_the_true_spectral_radius_at_its_level() -> None:
    # 60 independent trajectories, nominal 90 % intervals. Pairs bootstrap of a least-squares regression is
    # consistent; with N = 300 the coverage should be near 0.90. Binomial(60, 0.9) puts coverage below 0.75
    # with probability < 1e-3, so 0.75 is the bar that can fail only if the intervals are too narrow or biased.
    covered = 0
    for seed in range(60):
        traj = ar_trajectory(301, noise=0.3, seed=seed)
        spec = ks.dmd.exact(traj, residuals=False, modes=None)
        ci = bootstrap(spec, traj[:-1], traj[1:], {"rho": spectral_radius}, n_boot=100, level=0.90, seed=seed)
        covered += ci["rho"].low <= RHO <= ci["rho"].high
    assert covered / 60 >= 0.75


def test_interval_shrinks_with_more_data() -> None:
    widths = []
    for T in (100, 1600):
        traj = ar_trajectory(T, noise=0.3, seed=1)
        spec = ks.dmd.exact(traj)
        ci = bootstrap(spec, traj[:-1], traj[1:], {"rho": spectral_radius}, n_boot=100)["rho"]
        widths.append(ci.high - ci.low)
    assert widths[1] < widths[0] / 2.5  # ∝ 1/√N: a 16× larger sample gives a ~4× narrower interval


def test_same_seed_same_interval_and_n_boot_zero() -> None:
    traj = ar_trajectory(200, noise=0.1, seed=2)
    spec = ks.dmd.exact(traj)
    stats = {"rho": spectral_radius, "m": near_unit_mass}
    a = bootstrap(spec, traj[:-1], traj[1:], stats, n_boot=40, seed=7)
    b = bootstrap(spec, traj[:-1], traj[1:], stats, n_boot=40, seed=7)
    c = bootstrap(spec, traj[:-1], traj[1:], stats, n_boot=40, seed=8)
    assert a == b and a != c
    zero = bootstrap(spec, traj[:-1], traj[1:], stats, n_boot=0)
    assert zero["rho"].low == zero["rho"].high == zero["rho"].estimate == spec.spectral_radius


@pytest.mark.parametrize("method", ["exact", "tls", "randomized", "whitened", "hankel", "edmd"])
def test_every_kernel_bootstraps_around_its_estimate(method: str) -> None:
    traj = ar_trajectory(240, noise=0.05, seed=3)
    options = {"n_centers": 10} if method == "edmd" else {"delays": 2} if method == "hankel" else {}
    if method == "randomized":
        options = {"rank": 3}
    spec = ks.dmd.fit(traj, method=method, **options)
    ci = bootstrap(spec, traj[:-1], traj[1:], {"rho": spectral_radius}, n_boot=20)["rho"]
    assert ci.estimate == pytest.approx(spec.spectral_radius)
    assert ci.low <= ci.high and ci.low - 0.05 <= ci.estimate <= ci.high + 0.05
    if method != "edmd":  # the linear kernels see the planted A (edmd's lifted operator has other eigenvalues)
        assert ci.low - 0.02 < RHO < ci.high + 0.02


def test_joint_layer_bootstrap_reuses_token_rows() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 3))
    Y1 = X @ (0.5 * np.eye(3)).T + 0.05 * rng.standard_normal((150, 3))
    Y2 = Y1 @ (1.2 * np.eye(3)).T + 0.05 * rng.standard_normal((150, 3))
    layers = [(ks.dmd.exact(X, Y1), X, Y1), (ks.dmd.exact(Y1, Y2), Y1, Y2)]
    ci = bootstrap_layers(layers, {"max_rho": lambda lams: max(spectral_radius(lam) for lam in lams)}, n_boot=30)
    # max over three noisy copies of 1.2 is biased upward by a few noise widths, never down to layer 1's 0.5
    assert ci["max_rho"].low <= ci["max_rho"].estimate <= ci["max_rho"].high
    assert 1.19 < ci["max_rho"].low and ci["max_rho"].high < 1.26
    short = [(layers[0][0], X[:100], Y1[:100]), layers[1]]
    with pytest.raises(DataError, match=r"different numbers of pairs \[100, 150\]"):
        bootstrap_layers(short, {"r": lambda lams: 0.0})


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_boot": -1}, "n_boot"), ({"level": 1.0}, "level"), ({"level": 0.0}, "level"), ({"seed": -3}, "seed"),
])
def test_bad_settings(kwargs: dict, match: str) -> None:
    traj = ar_trajectory(50, noise=0.1, seed=0)
    spec = ks.dmd.exact(traj)
    with pytest.raises(ParameterError, match=match):
        bootstrap(spec, traj[:-1], traj[1:], {"rho": spectral_radius}, **kwargs)


def test_streaming_spectrum_has_no_refit() -> None:
    traj = ar_trajectory(60, noise=0.1, seed=0)
    online = ks.dmd.StreamingDMD(3)
    online.update_many(traj[:-1], traj[1:])
    with pytest.raises(DataError, match="has no pair-resampling refit"):
        bootstrap(online.spectrum(), traj[:-1], traj[1:], {"rho": spectral_radius})
