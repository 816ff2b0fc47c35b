"""The result type of every kernel, and the one routine that turns a reduced operator into it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from koopscope._backend import frozen_array
from koopscope._linalg import eig_left_right, real_matmul
from koopscope.dmd.resdmd import Galerkin, residuals

__all__ = ["Spectrum", "RESIDUAL_THRESHOLD"]

# Colbrook & Townsend (2024); RKSP App. D: modes with residual > 0.1 are flagged as spurious.
RESIDUAL_THRESHOLD = 0.1


@dataclass(frozen=True, eq=False)
class Spectrum:
    """Discrete-time spectrum of a fitted DMD / Koopman operator.

    Attributes
    ----------
    eigenvalues : ndarray of shape (k,), complex128
        One-step eigenvalues, descending modulus, complex-conjugate pairs adjacent (positive imaginary first).
    modes : ndarray of shape (D, k), complex128, or None
        DMD (Koopman) modes in the input coordinates (whitened coordinates for ``whitened``), unit norm;
        ``edmd`` modes are scaled so that x ≈ Σ_j φ_j(x) v_j instead (see :mod:`koopscope.dmd.edmd`).
    amplitudes : ndarray of shape (k,), complex128, or None
        Mode amplitudes b with x_0 ≈ Σ_j b_j φ_j (the first snapshot, in the kernel's coordinates).
    eigenfunctions : ndarray of shape (n, k), complex128, or None
        Coefficients of each Koopman eigenfunction in the kernel's dictionary: for the linear kernels
        φ_j(x) = c_j · x (centred x for ``whitened``), for ``edmd`` φ_j(x) = ψ(x) · c_j.
    residuals : ndarray of shape (k,), float64, or None
        ResDMD residual of each eigenpair; above ``residual_threshold`` an eigenvalue is flagged spurious.
    method, rank, reason : str, int, str
        The kernel, the number of retained directions, and why this kernel was chosen.
    singular_values : ndarray or None
        Singular values of the (lifted) snapshot matrix, all of them, for rank diagnostics.
    n_pairs : int
        Snapshot pairs used to fit the operator.
    residual_split : str
        "in-sample" or "held-out" (residuals evaluated on pairs that were not used in the fit).
    """

    eigenvalues: np.ndarray
    modes: np.ndarray | None
    amplitudes: np.ndarray | None
    residuals: np.ndarray | None
    method: str
    rank: int
    reason: str = ""
    eigenfunctions: np.ndarray | None = None
    singular_values: np.ndarray | None = None
    n_pairs: int = 0
    residual_split: str = "in-sample"
    residual_threshold: float = RESIDUAL_THRESHOLD
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("eigenvalues", "modes", "amplitudes", "residuals", "eigenfunctions", "singular_values"):
            object.__setattr__(self, name, frozen_array(getattr(self, name)))

    @property
    def spectral_radius(self) -> float:
        """max |λ| (0.0 for an empty spectrum)."""
        return float(np.abs(self.eigenvalues).max()) if self.eigenvalues.size else 0.0

    @property
    def spurious(self) -> np.ndarray:
        """Boolean mask (k,): residual above the threshold (all False without residuals)."""
        if self.residuals is None:
            return np.zeros(self.eigenvalues.shape, dtype=bool)
        return self.residuals > self.residual_threshold

    @property
    def n_spurious(self) -> int:
        """Number of eigenvalues flagged spurious by ResDMD."""
        return int(self.spurious.sum())

    def filtered(self, threshold: float | None = None) -> Spectrum:
        """The spectrum without the eigenpairs whose residual exceeds ``threshold`` (default: the spectrum's)."""
        thr = self.residual_threshold if threshold is None else float(threshold)
        if self.residuals is None:
            return self
        keep = self.residuals <= thr

        def take(a: np.ndarray | None, axis: int) -> np.ndarray | None:
            return None if a is None else np.compress(keep, a, axis=axis)

        return replace(
            self, eigenvalues=self.eigenvalues[keep], modes=take(self.modes, 1),
            amplitudes=take(self.amplitudes, 0), residuals=self.residuals[keep],
            eigenfunctions=take(self.eigenfunctions, 1), residual_threshold=thr,
            reason=f"{self.reason}; ResDMD filter removed {int((~keep).sum())} eigenvalue(s) with residual > {thr:g}",
        )

    def __repr__(self) -> str:
        flagged = "" if self.residuals is None else f", spurious={self.n_spurious}"
        return (f"Spectrum(method={self.method!r}, rank={self.rank}, k={self.eigenvalues.size}, "
                f"spectral_radius={self.spectral_radius:.6g}{flagged})")


def _unit_columns(V: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(V, axis=0)
    return V / np.where(norms > 0, norms, 1.0)


def _conjugate_partners(lam: np.ndarray) -> np.ndarray:
    """Indices i (into the sorted eigenvalues) whose eigenvalue is the conjugate of eigenvalue i - 1."""
    second = np.zeros(lam.shape, dtype=bool)
    second[1:] = (lam.imag[:-1] > 0) & (lam[1:] == lam[:-1].conj())
    return np.flatnonzero(second)


def _pair_residuals(lam: np.ndarray, g: np.ndarray, gal: Galerkin) -> np.ndarray:
    """ResDMD residuals, evaluated once per complex-conjugate pair of a real operator (the pair shares the value,
    so filtering never splits it, and the quadratic forms cost half as much)."""
    partner = _conjugate_partners(lam) if not any(np.iscomplexobj(M) for M in gal) else np.empty(0, dtype=int)
    first = np.setdiff1d(np.arange(lam.size), partner)
    res = np.empty(lam.size)
    res[first] = residuals(lam[first], g[:, first], gal)
    res[partner] = res[partner - 1]
    return res


def decompose(operator: np.ndarray, *, method: str, reason: str, basis: np.ndarray | None = None,
              lift: np.ndarray | None = None, z0: np.ndarray | None = None, gal: Galerkin | None = None,
              modes: bool = True, **fields: Any) -> Spectrum:
    """Eigendecompose a reduced state operator Ã (r, r) with z' ≈ Ã z and assemble a :class:`Spectrum`.

    basis : (D, r) maps reduced coordinates to the input coordinates (x ≈ basis z); modes are basis · v.
        None is the identity (the operator acts on the input coordinates themselves).
    lift : (D, r), optional; exact DMD modes lift · v / λ (Tu et al. 2014) instead of projected modes.
    z0 : (r,) reduced first snapshot, for the amplitudes b = (u^H z0) / (u^H v) (bi-orthogonality).
    gal : reduced Galerkin matrices for the ResDMD residual of each left eigenvector (eigenfunction);
        None skips the residuals (and the left eigenvectors when ``modes`` is False too).
    modes : False skips the right eigenvectors, modes and amplitudes.
    """
    lam, U, V = eig_left_right(operator, left=gal is not None or modes, right=modes)  # (k,), (r, k), (r, k)
    g = None if U is None else U.conj()  # eigenfunction coefficients in reduced coordinates: φ_j(z) = g_j · z
    res = None if gal is None else _pair_residuals(lam, g, gal)
    amplitudes = Phi = eigenfunctions = None
    if V is not None and z0 is not None:
        denom = np.einsum("ik,ik->k", U.conj(), V)  # u_j^H v_j
        amplitudes = (U.conj().T @ z0) / np.where(denom != 0, denom, np.nan)
    if g is not None:
        eigenfunctions = g if basis is None else real_matmul(basis, g)  # (D, k), orthonormal basis; kernels override
    if V is not None:
        Phi = V if basis is None else real_matmul(basis, V)  # (D, k) projected modes
        if lift is not None:
            nonzero = np.abs(lam) > 1e-12 * max(1.0, np.abs(lam).max(initial=0.0))
            Phi = np.where(nonzero, real_matmul(lift, V) / np.where(nonzero, lam, 1.0), Phi)
        Phi = _unit_columns(Phi)
    fields.setdefault("eigenfunctions", eigenfunctions)
    return Spectrum(lam, Phi, amplitudes, res, method=method, reason=reason, **fields)
