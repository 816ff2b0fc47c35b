"""Residual DMD (Colbrook & Townsend, CPAM 2024): a residual for every eigenpair, flagging spurious ones.

For a dictionary ψ evaluated on snapshot pairs, Ψ_X, Ψ_Y (M, n), the Galerkin matrices are

    G = Ψ_X^H W Ψ_X,    A = Ψ_X^H W Ψ_Y,    L = Ψ_Y^H W Ψ_Y          (W = I / M)

and a candidate eigenpair (λ, g), with eigenfunction φ = Ψ g, has residual

    res(λ, g)^2 = g^H (L - λ A^H - conj(λ) A + |λ|^2 G) g / (g^H G g) = ||Ψ_Y g - λ Ψ_X g||^2 / ||Ψ_X g||^2.

For a linear system and a true eigenpair this is 0; eigenvalues that noise or truncation add have large
residuals. Evaluated on held-out pairs, it is an out-of-sample test of each eigenfunction.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from koopscope._backend import Array, backend_of
from koopscope._linalg import real_matmul
from koopscope.errors import DataError

__all__ = ["Galerkin", "galerkin", "holdout_split", "residuals", "pseudospectrum"]


class Galerkin(NamedTuple):
    """The three Galerkin matrices of a dictionary on snapshot pairs, each (n, n); G may be given as its
    diagonal (n,) when the dictionary is orthogonal on the data (whitened coordinates)."""

    G: np.ndarray  # Ψ_X^H Ψ_X / M, or its diagonal
    A: np.ndarray  # Ψ_X^H Ψ_Y / M
    L: np.ndarray  # Ψ_Y^H Ψ_Y / M


def galerkin(psi_x: np.ndarray, psi_y: np.ndarray) -> Galerkin:
    """Galerkin matrices from dictionary evaluations Ψ_X, Ψ_Y of shape (M, n), uniform weights 1/M."""
    M = psi_x.shape[0]
    return Galerkin(psi_x.conj().T @ psi_x / M, psi_x.conj().T @ psi_y / M, psi_y.conj().T @ psi_y / M)


def residuals(eigenvalues: np.ndarray, coefficients: np.ndarray, gal: Galerkin) -> np.ndarray:
    """ResDMD residual (k,) of each eigenpair (λ_j, g_j); ``coefficients`` is (n, k) with columns g_j.

    Rounding in the quadratic form limits the smallest resolvable residual to about sqrt(machine eps)
    relative, i.e. ~1e-8: far below any filtering threshold.
    """
    lam = np.asarray(eigenvalues, dtype=np.complex128)  # (k,)
    g = np.asarray(coefficients, dtype=np.complex128)    # (n, k)
    Gg, Ag, Lg = (M[:, None] * g if M.ndim == 1 else real_matmul(M, g) if not np.iscomplexobj(M) else M @ g
                  for M in gal)  # (n, k) each
    gGg = np.einsum("ik,ik->k", g.conj(), Gg).real       # (k,)
    gAg = np.einsum("ik,ik->k", g.conj(), Ag)            # (k,)  g^H A g
    gLg = np.einsum("ik,ik->k", g.conj(), Lg).real       # (k,)
    # g^H A^H g = conj(g^H A g)
    num = gLg - 2.0 * (np.conj(lam) * gAg).real + np.abs(lam) ** 2 * gGg
    with np.errstate(divide="ignore", invalid="ignore"):
        res = np.sqrt(np.clip(num, 0.0, None) / gGg)
    return np.where(gGg > 0, res, np.inf)


def pseudospectrum(grid: np.ndarray, gal: Galerkin) -> np.ndarray:
    """τ(z) = min_g res(z, g) on a grid of complex points z (any shape); the ε-pseudospectrum is {τ < ε}.

    Computed as sqrt(λ_min(G^{-1/2} (L - z A^H - conj(z) A + |z|^2 G) G^{-1/2})), with G regularised by
    ||G|| 1e-14 as in the reference MATLAB code.
    """
    z = np.asarray(grid, dtype=np.complex128)
    n = gal.G.shape[0]
    G = (gal.G + gal.G.conj().T) / 2 + np.linalg.norm(gal.G, 2) * 1e-14 * np.eye(n)
    L = (gal.L + gal.L.conj().T) / 2
    w, V = np.linalg.eigh(G)
    Ginv_half = (V / np.sqrt(w)) @ V.conj().T  # (n, n)
    out = np.empty(z.shape)
    for idx, zi in np.ndenumerate(z):
        H = Ginv_half @ (L - zi * gal.A.conj().T - np.conj(zi) * gal.A + abs(zi) ** 2 * G) @ Ginv_half
        out[idx] = np.sqrt(max(np.linalg.eigvalsh((H + H.conj().T) / 2)[0], 0.0))
    return out


def holdout_split(X: Array, Y: Array, fraction: float, seed: int) -> tuple[Array, Array, Array, Array]:
    """Split pairs into a fit set and a held-out set of ``round(fraction · N)`` pairs (seeded, without replacement)."""
    xp = backend_of(X)
    N = X.shape[0]
    n_hold = int(round(fraction * N))
    if n_hold < 1 or N - n_hold < 2:
        raise DataError(f"holdout={fraction} leaves {N - n_hold} fit pair(s) and {n_hold} held-out pair(s) of N = {N}; "
                        "each side needs pairs (at least 2 to fit, 1 held out): pass more snapshots or change holdout.")
    perm = np.random.default_rng(seed).permutation(N)
    fit, hold = np.sort(perm[n_hold:]), np.sort(perm[:n_hold])
    return xp.rows(X, fit), xp.rows(Y, fit), xp.rows(X, hold), xp.rows(Y, hold)
