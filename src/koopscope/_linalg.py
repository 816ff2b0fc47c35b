"""Dense linear-algebra building blocks shared by the kernels.

- :func:`sort_spectrum`: descending modulus, complex-conjugate pairs adjacent (positive imaginary first).
- :func:`mp_median`, :func:`svht_threshold`: the Gavish-Donoho optimal hard threshold with the exact
  Marchenko-Pastur median (not the cubic fit).
- :func:`truncation_rank`: full / int / energy / "svht" rank selection on a vector of singular values.
- :func:`eig_left_right`: eigenvalues with right and left eigenvectors of a small dense operator.
- :func:`lower_triangular_inverse`: L⁻¹ of a lower-triangular matrix by blocks, in numpy's BLAS.
"""

from __future__ import annotations

import numbers
from functools import lru_cache

import numpy as np
import scipy.integrate as sint
import scipy.linalg as sla
import scipy.optimize as sopt

from koopscope._validation import check_rank_limit
from koopscope.errors import NumericalError, ParameterError

__all__ = [
    "real_matmul",
    "eig_left_right",
    "lower_triangular_inverse",
    "mp_median",
    "numerical_rank",
    "sort_spectrum",
    "svht_threshold",
    "truncation_rank",
]


def real_matmul(R: np.ndarray, C: np.ndarray) -> np.ndarray:
    """R @ C for real R (m, n) and complex C (n, k) with one real GEMM instead of a 4x complex one."""
    if not np.iscomplexobj(C):
        return R @ C
    k = C.shape[1]
    RC = R @ np.hstack([C.real, C.imag])  # (m, 2k)
    return RC[:, :k] + 1j * RC[:, k:]


#: Blocks up to this size are inverted by ``np.linalg.inv``; larger ones are split in two.
TRIANGULAR_LEAF = 128


def lower_triangular_inverse(L: np.ndarray) -> np.ndarray:
    """L⁻¹ (D, D) of a non-singular lower-triangular L (D, D), by the block identity

        [[A, 0], [B, C]]⁻¹ = [[A⁻¹, 0], [−C⁻¹ B A⁻¹, C⁻¹]],

    recursively: D³/3 flops, all in matrix products, against the 2D³ of a general inverse (768: 4 against 26 ms),
    and in numpy's BLAS pool (LAPACK's ``trtri`` through scipy would run on scipy's, which contends with numpy's
    threads). Exactly lower triangular (the upper part is zero).
    """
    D = L.shape[0]
    if D <= TRIANGULAR_LEAF:
        return np.tril(np.linalg.inv(L))
    h = D // 2
    A_inv = lower_triangular_inverse(L[:h, :h])                   # (h, h)
    C_inv = lower_triangular_inverse(L[h:, h:])                   # (D − h, D − h)
    out = np.zeros_like(L)
    out[:h, :h], out[h:, h:] = A_inv, C_inv
    out[h:, :h] = -C_inv @ (L[h:, :h] @ A_inv)                     # (D − h, h)
    return out


def sort_spectrum(eigenvalues: np.ndarray) -> np.ndarray:
    """Permutation that orders eigenvalues by descending modulus with conjugate pairs adjacent.

    Conjugates of a real operator have bitwise-equal modulus, real part and |imag|, so a lexicographic
    sort on (-|λ|, -Re λ, -|Im λ|, -Im λ) keeps each pair together, positive imaginary part first.
    """
    lam = np.asarray(eigenvalues, dtype=np.complex128)
    return np.lexsort((-lam.imag, -np.abs(lam.imag), -lam.real, -np.abs(lam)))


EIGENVALUE_CONDITION_LIMIT = 1e8  # above this κ(λ_j), left eigenvectors come from LAPACK's own (dgeev) solve


def _eig_biorthogonal(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues, left and right eigenvectors with numpy alone.

    The rows of V^{-1} are the left eigenvectors scaled so that u_j^H v_j = 1; with unit-norm v_j their norms
    are the eigenvalue condition numbers κ(λ_j). When one exceeds 1e8 the matrix is near-defective and the
    inverse is unreliable, so LAPACK's dgeev computes the left vectors directly (scipy). numpy is preferred
    otherwise: scipy's separate OpenBLAS pool contends with numpy's (measured: dgeev 1.7x slower right after a
    numpy product on 2 cores).
    """
    lam, vr = np.linalg.eig(A)  # (k,), (k, k) unit-norm columns
    W = np.linalg.inv(vr)  # (k, k): W A = Λ W
    kappa = np.linalg.norm(W, axis=1)  # (k,) eigenvalue condition numbers
    if not np.isfinite(W).all() or kappa.max() > EIGENVALUE_CONDITION_LIMIT:
        return sla.eig(A, left=True, right=True, check_finite=False)
    return lam, W.conj().T / kappa, vr  # columns u_j with u_j^H A = λ_j u_j^H, unit norm


def eig_left_right(operator: np.ndarray, *, left: bool = True, right: bool = True
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Sorted eigenvalues (k,), left (k, k) and right (k, k) eigenvectors of a square matrix, float64/complex128.

    Left eigenvectors u satisfy u^H A = λ u^H; columns are unit-norm and aligned with the eigenvalues.
    """
    A = np.asarray(operator)
    A = A.astype(np.complex128 if np.iscomplexobj(A) else np.float64, copy=False)
    if not np.isfinite(A).all():
        raise NumericalError("The reduced DMD operator has non-finite entries; the data are too ill-conditioned "
                             "for this rank: lower the rank or use rank='svht'.")
    try:
        if left:
            lam, vl, vr = _eig_biorthogonal(A)
        elif right:
            (lam, vr), vl = np.linalg.eig(A), None
        else:
            lam, vl, vr = np.linalg.eigvals(A), None, None
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise NumericalError(f"The eigensolver failed on the {A.shape[0]}x{A.shape[0]} reduced operator ({exc}); "
                             "lower the rank.") from None
    if not right:
        vr = None
    order = sort_spectrum(lam)
    lam = lam[order].astype(np.complex128)
    vl = None if vl is None else vl[:, order].astype(np.complex128)
    vr = None if vr is None else vr[:, order].astype(np.complex128)
    return lam, vl, vr


def _mp_cdf(x: float, beta: float) -> float:
    """CDF of the Marchenko-Pastur law with ratio beta in (0, 1] and unit variance, on [(1-√β)², (1+√β)²]."""
    lo, hi = (1 - np.sqrt(beta)) ** 2, (1 + np.sqrt(beta)) ** 2
    if x <= lo:
        return 0.0
    density = lambda t: np.sqrt(max((hi - t) * (t - lo), 0.0)) / (2 * np.pi * beta * t)  # noqa: E731
    return float(sint.quad(density, lo, min(x, hi), limit=200, epsabs=1e-13, epsrel=1e-12)[0])


@lru_cache(maxsize=256)
def mp_median(beta: float) -> float:
    """Median of the Marchenko-Pastur distribution with aspect ratio beta in (0, 1] (exact, by root-finding)."""
    if not 0.0 < beta <= 1.0:
        raise ParameterError(f"The 'beta' aspect ratio must be in (0, 1]; got {beta!r}: use min(m, n) / max(m, n).")
    lo, hi = (1 - np.sqrt(beta)) ** 2, (1 + np.sqrt(beta)) ** 2
    return float(sopt.brentq(lambda x: _mp_cdf(x, beta) - 0.5, lo, hi, xtol=1e-14, rtol=1e-14))


def svht_threshold(singular_values: np.ndarray, shape: tuple[int, int]) -> float:
    """Gavish-Donoho (2014) optimal hard threshold for unknown noise level.

    τ = ω(β) · median(σ), ω(β) = λ*(β) / sqrt(μ_β), with λ*(β) the known-noise coefficient and μ_β the
    exact Marchenko-Pastur median. For β = 1 this gives ω = 2.858.
    """
    m, n = shape
    beta = min(m, n) / max(m, n)
    lam_star = np.sqrt(2 * (beta + 1) + 8 * beta / ((beta + 1) + np.sqrt(beta**2 + 14 * beta + 1)))
    omega = lam_star / np.sqrt(mp_median(beta))
    return float(omega * np.median(np.asarray(singular_values)[: min(m, n)]))


def numerical_rank(singular_values: np.ndarray, shape: tuple[int, int]) -> int:
    """Count of singular values above max(m, n) · eps · σ_max (the LAPACK/numpy convention)."""
    s = np.asarray(singular_values)
    if s.size == 0 or s[0] <= 0:
        return 0
    return int((s > max(shape) * np.finfo(np.float64).eps * s[0]).sum())


def truncation_rank(singular_values: np.ndarray, shape: tuple[int, int], rank: int | str | None,
                    energy: float | None, caller: str) -> int:
    """The number of leading singular values to keep (descending ``singular_values`` of an m x n matrix).

    ``rank=None`` or ``"full"`` keeps the numerical rank; an int keeps that many; ``"svht"`` applies the
    Gavish-Donoho threshold; ``energy`` keeps the fewest values whose squared sum reaches that fraction.
    The result is at least 1 and never above the numerical rank.
    """
    s = np.asarray(singular_values, dtype=np.float64)
    if isinstance(rank, numbers.Integral) and not isinstance(rank, bool):
        rank = int(rank)  # numpy integers too
    full = numerical_rank(s, shape)
    if full == 0:
        raise NumericalError(f"The snapshot matrix passed to {caller} has numerical rank 0; there are no dynamics "
                             "to fit: check the input.")
    if isinstance(rank, int):
        check_rank_limit(rank, shape, caller)
        return min(rank, full)
    if energy is not None:
        cumulative = np.cumsum(s[:full] ** 2) / np.sum(s[:full] ** 2)
        return int(min(np.searchsorted(cumulative, energy * (1 - 1e-12)) + 1, full))
    if rank == "svht":
        return int(max(1, min(full, (s > svht_threshold(s, shape)).sum())))
    return full
