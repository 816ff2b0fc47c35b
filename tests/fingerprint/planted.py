"""Planted systems for fingerprint and gate tests: a trajectory with known ρ, and residual-stream-like layers."""

from __future__ import annotations

import numpy as np

import koopscope as ks

# A damped rotation (|λ| = 0.922) and a decaying mode (0.5): ρ(A) = 0.922, contractive but near-unit band edge.
A_PLANTED = np.array([[0.9, -0.2, 0.0], [0.2, 0.9, 0.0], [0.0, 0.0, 0.5]])
RHO_PLANTED = float(np.abs(np.linalg.eigvals(A_PLANTED)).max())


def planted_trajectory(T: int = 200, noise: float = 1e-3, seed: int = 0, A: np.ndarray = A_PLANTED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    traj = np.empty((T, A.shape[0]))
    traj[0] = 1.0
    for t in range(T - 1):
        traj[t + 1] = A @ traj[t] + noise * rng.standard_normal(A.shape[0])
    return traj


def planted_layers(n_layers: int = 3, N: int = 120, D: int = 4, seed: int = 0) -> list[tuple]:
    """Residual-stream-like pairs: state ℓ+1 = state ℓ · A_ℓᵀ + noise, the same N token rows in every layer."""
    rng = np.random.default_rng(seed)
    states = [rng.standard_normal((N, D))]
    scales = np.linspace(0.6, 1.1, n_layers)
    for s in scales:
        A = s * np.linalg.qr(rng.standard_normal((D, D)))[0]  # (D, D), every |λ| = s
        states.append(states[-1] @ A.T + 1e-3 * rng.standard_normal((N, D)))
    return [(ks.dmd.exact(X, Y), X, Y) for X, Y in zip(states[:-1], states[1:], strict=True)]


