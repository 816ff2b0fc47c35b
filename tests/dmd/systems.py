"""Planted linear systems with known spectra, shared by the kernel tests."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def planted_operator(
    moduli: list[float], angles: list[float], kappa: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A = S B S^-1 (D, D) with B block-diagonal (2x2 rotation-scalings for angle != 0, else 1x1).

    Returns (A, λ): eigenvalues r e^{±iθ} for each (r, θ) with θ ≠ 0, r for θ = 0; κ(S) = kappa, so the
    eigenvector matrix has condition number of order kappa.
    """
    blocks, lam = [], []
    for r, th in zip(moduli, angles, strict=True):
        if th == 0:
            blocks.append(np.array([[r]]))
            lam.append(r)
        else:
            a, b = r * np.cos(th), r * np.sin(th)
            blocks.append(np.array([[a, -b], [b, a]]))
            lam += [complex(a, b), complex(a, -b)]
    from scipy.linalg import block_diag

    B = block_diag(*blocks)
    D = B.shape[0]
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((D, D)))[0]
    W = np.linalg.qr(rng.standard_normal((D, D)))[0]
    S = U @ np.diag(np.logspace(0, np.log10(kappa), D)) @ W.T  # κ(S) = kappa
    return S @ B @ np.linalg.inv(S), np.array(lam, dtype=complex)


def match_error(estimated: np.ndarray, truth: np.ndarray) -> float:
    """Largest |λ̂ - λ| after an optimal one-to-one matching."""
    cost = np.abs(np.asarray(estimated)[:, None] - np.asarray(truth)[None, :])
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].max())


# |λ| from 0.5 to 1.2 with three complex pairs: D = 9
MODULI = [1.2, 1.05, 0.97, 0.9, 0.8, 0.7, 0.5]
ANGLES = [0.0, 0.4, 0.0, 1.1, 0.0, 2.0, 0.0]
