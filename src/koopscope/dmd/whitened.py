"""Whitened DMD as in RKSP (Kim et al. 2026, §3.2.2, Eqs. 6-9): ZCA whitening by the pre-snapshot covariance.

Both sides are centred by their own means and whitened by the same matrix built from X alone,

    X̃ = (X - x̄) W,  Ỹ = (Y - ȳ) W,   W = Σ^{-1/2},  Σ = (X - x̄)^T (X - x̄) / (N - 1) + ε I,  ε = 1e-5,

and the operator is Â = argmin ||Ỹ - X̃ Â^T||, i.e. Â = Ỹ^T X̃^{+T} in column form. Nothing N x D is
pseudo-inverted: with C_xx = U diag(s) U^T and the r directions of numerical support, the whitened PCA
coordinates z = diag((s + ε)^{-1/2}) U_r^T (x - x̄) have Galerkin matrices G = diag(s / (s + ε)),
A = W_r U_r^T C_xy U_r W_r and L = W_r U_r^T C_yy U_r W_r, and Ã = (G^{-1} A)^T. Modes are reported
in the ZCA-whitened coordinates (U_r v).

Because the same W acts on both sides, Â = W C_yx C_xx^{-1} W^{-1} when C_xx is invertible: a similarity, so
the eigenvalues do not depend on ε and are invariant under any invertible change of coordinates of
the states. The eigenvalue-only path uses exactly that (a Cholesky solve, no eigendecomposition of Σ).

Rank r (RKSP App. D: rank 32) runs randomized DMD on the whitened snapshots.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from koopscope._backend import Array, backend_of
from koopscope._linalg import eig_left_right, lower_triangular_inverse
from koopscope._validation import Interval, Options, check_pairs, check_param, check_rank_limit, check_seed
from koopscope.dmd.exact import check_common, fit_projected
from koopscope.dmd.resdmd import Galerkin, holdout_split
from koopscope.dmd.spectrum import RESIDUAL_THRESHOLD, Spectrum, decompose

__all__ = ["WHITENING_EPS", "WhitenedGalerkin", "whitened", "whitened_galerkin", "whitened_moments",
           "whitened_sketch"]

WHITENING_EPS = 1e-5  # RKSP App. D: Σ̂ = (1/(N-1)) X_c X_c^T + ε I with ε = 1e-5
CHOLESKY_FLOOR = 1e-10  # smallest s_min / s_max for which the eigenvalue-only Cholesky path is used


def whitened_moments(X: Array, Y: Array, need_yy: bool, need_xy: bool = True
                     ) -> tuple[Array, Array, Array, Array | None, Array | None]:
    """x̄, ȳ (D,) and the covariances C_xx, C_xy, C_yy (D, D) (divided by N - 1; C_xy, C_yy None unless needed)."""
    xp = backend_of(X)
    xbar, ybar = xp.mean0(X), xp.mean0(Y)  # (D,)
    Xc, Yc = X - xbar, Y - ybar  # (N, D)
    n = X.shape[0] - 1
    Cxx = (Xc.T @ Xc) / n  # (D, D)
    Cxy = (Xc.T @ Yc) / n if need_xy else None  # (D, D)
    Cyy = (Yc.T @ Yc) / n if need_yy else None  # (D, D)
    return xbar, ybar, Cxx, Cxy, Cyy


def _eigenvalues_by_cholesky(Cxx: np.ndarray, Cxy: np.ndarray) -> np.ndarray | None:
    """eig(C_yx C_xx^{-1}) = eig(Â) when C_xx is well conditioned; None otherwise."""
    try:
        c = np.linalg.cholesky(Cxx)  # (D, D) lower
    except np.linalg.LinAlgError:
        return None
    d = np.abs(np.diag(c))
    if d.min() ** 2 < CHOLESKY_FLOOR * d.max() ** 2:
        return None
    Mt = np.linalg.solve(Cxx, Cxy)  # (D, D) = C_xx^{-1} C_xy = (C_yx C_xx^{-1})^T (numpy: one OpenBLAS pool)
    return eig_left_right(Mt, left=False, right=False)[0]


class WhitenedGalerkin(NamedTuple):
    """Full-rank whitened DMD in the whitened PCA coordinates z = diag(w) U^T (x - x̄) of the support of C_xx.

    With n = N - 1: G = Z_x^T Z_x / n = diag(s / (s + ε)), A = Z_x^T Z_y / n, L = Z_y^T Z_y / n (None when not
    asked for), and the operator Ã = (G^-1 A)^T (r, r) with z_y ≈ Ã z_x. ``basis`` U (D, r) is orthonormal, so
    ZCA coordinates are U z: every unitarily invariant quantity (eigenvalues, κ(V), norms, the Kreiss constant)
    is the same in both.
    """

    s: np.ndarray  # (r,) eigenvalues of C_xx on its numerical support, descending
    basis: np.ndarray  # (D, r) U_r
    scale: np.ndarray  # (r,) w = (s + ε)^-1/2
    G: np.ndarray  # (r,)
    A: np.ndarray  # (r, r)
    L: np.ndarray | None  # (r, r)
    operator: np.ndarray  # (r, r) Ã


def whitened_galerkin(Cxx: np.ndarray, Cxy: np.ndarray | None, Cyy: np.ndarray | None, *, N: int, D: int,
                      eps: float = WHITENING_EPS) -> WhitenedGalerkin:
    """The whitened Galerkin matrices and operator from the covariances C_xx, C_xy (and C_yy) (D, D).

    Without C_xy only the whitening (``s``, ``basis``, ``scale``, ``G``) is computed; A and the operator are None.
    """
    s, U = np.linalg.eigh(Cxx)  # ascending
    s, U = s[::-1], U[:, ::-1]
    r = int((s > max(N, D) * np.finfo(np.float64).eps * max(s[0], 0.0)).sum())
    s, U = s[:r], np.ascontiguousarray(U[:, :r])  # (r,), (D, r) numerical support of C_xx
    w = 1.0 / np.sqrt(s + eps)  # (r,) diagonal of W_r in PCA coordinates
    Wr = U * w  # (D, r): z = W_r^T (x - x̄)
    G = s * w**2  # (r,) = s / (s + ε)
    if Cxy is None:
        return WhitenedGalerkin(s, U, w, G, None, None, None)  # type: ignore[arg-type]
    A = Wr.T @ Cxy @ Wr  # (r, r)
    L = None if Cyy is None else Wr.T @ Cyy @ Wr  # (r, r)
    return WhitenedGalerkin(s, U, w, G, A, L, (A / G[:, None]).T)


def whitened(X: Array, Y: Array | None = None, *, rank: int | str | None = None, eps: float = WHITENING_EPS,
             modes: str | None = "projected", residuals: bool = True, holdout: float | None = None,
             residual_threshold: float = RESIDUAL_THRESHOLD, seed: int = 0, orientation: str = "check",
             reason: str = "method='whitened' requested") -> Spectrum:
    """ZCA-whitened DMD (RKSP) of a trajectory X (T, D) or pairs X, Y (N, D).

    Parameters
    ----------
    rank : None, "full" or int, default=None
        Full rank by covariance algebra, or rank r: whitened DMD on the r leading principal directions of the
        pre-snapshots. Those are the whitened snapshots' own leading POD directions (in PCA coordinates their
        covariance is diag(s / (s + ε)), increasing in s), taken exactly from the eigendecomposition of C_xx that
        the whitening needs anyway; a randomized sketch of the whitened snapshots could not find them, because that
        spectrum is flat up to ε / s. (:func:`whitened_sketch` is the O(N·D² + D²·r) route to the same subspace.)
    eps : float, default=1e-5
        Ridge ε added to the pre-snapshot covariance before the inverse square root.
    modes : {"projected"} or None, default="projected"
        Modes in whitened (ZCA) coordinates; None skips them (with ``residuals=False``: eigenvalues only).

    The other parameters are those of :func:`koopscope.dmd.exact`.
    """
    check_param("rank", rank, Interval(int, 1, None), Options(("full",)), None, caller="whitened",
                fix="use None/'full' for full rank or an int r for randomized rank-r whitened DMD")
    check_param("eps", eps, Interval(float, 0.0, None), caller="whitened", fix="RKSP uses eps=1e-5")
    check_param("modes", modes, Options(("projected", "exact")), None, caller="whitened",
                fix="whitened modes are projected modes in ZCA coordinates; None skips them")
    check_common("projected", holdout, residual_threshold, "whitened")
    seed = check_seed(seed, "whitened")
    X, Y = check_pairs(X, Y, caller="whitened", orientation=orientation)
    check_rank_limit(rank, tuple(X.shape), "whitened")
    if isinstance(rank, numbers.Integral):
        rank = int(rank)  # numpy integers too
    held = None
    if holdout is not None:
        X, Y, *held = holdout_split(X, Y, holdout, seed)
    xp = backend_of(X)
    N, D = X.shape
    full = not isinstance(rank, int)  # rank r whitens the snapshots and fits them: C_xy, C_yy are not needed
    xbar, ybar, Cxx, Cxy, Cyy = whitened_moments(X, Y, need_yy=full and residuals and held is None, need_xy=full)
    Cxx_np, Cxy_np = xp.to_numpy(Cxx), None if Cxy is None else xp.to_numpy(Cxy)
    if rank in (None, "full") and modes is None and not residuals:
        lam = _eigenvalues_by_cholesky(Cxx_np, Cxy_np)
        if lam is not None:
            return Spectrum(lam, None, None, None, method="whitened", rank=D, reason=reason, n_pairs=N,
                            residual_threshold=residual_threshold, options={"eps": eps, "path": "cholesky"})
    wg = whitened_galerkin(Cxx_np, Cxy_np, None, N=N, D=D, eps=eps)
    s, U, r, Wr = wg.s, wg.basis, wg.s.size, wg.basis * wg.scale
    if isinstance(rank, int):
        k = min(rank, r)
        Wd = xp.like(np.ascontiguousarray(Wr[:, :k]), X)  # (D, k): the k leading principal directions, whitened
        Xw, Yw = (X - xbar) @ Wd, (Y - ybar) @ Wd  # (N, k) whitened snapshots
        hw = None if held is None else ((held[0] - xbar) @ Wd, (held[1] - ybar) @ Wd)
        spec = fit_projected(Xw, Yw, method="whitened", reason=reason, rank=k, energy=None,
                             modes=modes and "projected", residuals=residuals, holdout=None, held=hw,
                             residual_threshold=residual_threshold, svd="svd", seed=seed, oversampling=0,
                             power_iterations=0, eps=eps, orientation="rows")
        from dataclasses import replace

        lift = lambda V: None if V is None else U[:, :k] @ V  # noqa: E731  PCA-whitened -> ZCA coordinates
        return replace(spec, modes=lift(spec.modes), eigenfunctions=lift(spec.eigenfunctions))
    gal = None
    if residuals and held is None:
        gal = Galerkin(np.diag(wg.G), wg.A, Wr.T @ xp.to_numpy(Cyy) @ Wr)
    elif residuals:
        Wd = xp.like(Wr, X)
        HX, HY = xp.to_numpy((held[0] - xbar) @ Wd), xp.to_numpy((held[1] - ybar) @ Wd)  # (M, r)
        m = HX.shape[0]
        gal = Galerkin(HX.T @ HX / m, HX.T @ HY / m, HY.T @ HY / m)
    z0 = Wr.T @ xp.to_numpy(X[0] - xbar)  # (r,)
    return decompose(wg.operator, method="whitened", reason=reason, basis=U, z0=z0, gal=gal, modes=modes is not None,
                     rank=r, singular_values=np.sqrt(s * (N - 1)), n_pairs=N,
                     residual_split="in-sample" if held is None else "held-out",
                     residual_threshold=residual_threshold, options={"eps": eps, "path": "eigh"})


def whitened_sketch(X: np.ndarray, Y: np.ndarray, *, rank: int, eps: float = WHITENING_EPS, seed: int = 0,
                    oversampling: int = 10, power_iterations: int = 2,
                    residual_threshold: float = RESIDUAL_THRESHOLD,
                    reason: str = "rank-r whitened DMD by Cholesky whitening and a randomized sketch") -> Spectrum:
    """Rank-r whitened DMD of pairs X, Y (N, D) in O(N·D² + D²·r), with no D × D eigendecomposition.

    Any two whitenings differ by an orthogonal matrix (Kessy et al. 2018), so whitening by the Cholesky factor C of
    Σ = C_xx + εI (z = C⁻¹(x − x̄)) instead of Σ^{-1/2} changes no eigenvalue, residual, norm or κ(V). The
    whitened snapshots X̃ = X_c C⁻ᵀ are never formed, and neither is their POD by a sketch of X̃: since
    X_cᵀX_c = (N − 1)(CCᵀ − εI),

        X̃ᵀX̃ = (N − 1)(I − ε (CᵀC)⁻¹),

    so X̃'s right singular vectors are the eigenvectors of CᵀC (whose eigenvalues μ are Σ's) and its singular values
    √((N − 1)(1 − ε/μ)). A sketch of X̃ itself would have to separate values that differ only by ε/μ (a nearly
    flat spectrum, from which a randomized range finder returns a nearly random subspace); the eigenvectors of CᵀC
    are separated by μ itself. They come from a seeded randomized subspace iteration (``oversampling``,
    ``power_iterations``) with products Cᵀ(C Q), O(D²·r) each, and a Rayleigh–Ritz step. The r leading directions
    V (D, r) give coordinates Z_x = X̃ V, Z_y = Ỹ V (N, r), and the operator is the least-squares
    Ã = (Z_xᵀZ_x)⁻¹ Z_xᵀZ_y transposed, with the ResDMD residuals of its eigenpairs from the same Galerkin matrices.
    Modes and eigenfunctions are in those r POD coordinates (``options["coordinates"]``), which is what unitarily
    invariant features need; use :func:`whitened` for modes in ZCA coordinates. Numpy input only.
    """
    N, D = X.shape
    r = min(int(rank), N - 1, D)
    # Centred in float64 straight from the input's precision (float32 states need no float64 copy first).
    Xc = np.subtract(X, X.mean(axis=0, dtype=np.float64), dtype=np.float64)  # (N, D)
    C = np.linalg.cholesky(Xc.T @ Xc / (N - 1) + eps * np.eye(D))  # (D, D) lower, C Cᵀ = Σ
    width = min(r + oversampling, D)
    Q = np.random.default_rng(seed).standard_normal((D, width))  # (D, l)
    for _ in range(power_iterations + 1):
        Q = np.linalg.qr(C.T @ (C @ Q))[0]  # (D, l): subspace iteration on CᵀC
    CQ = C @ Q  # (D, l)
    mu, W = np.linalg.eigh(CQ.T @ CQ)  # Rayleigh–Ritz on QᵀCᵀCQ, ascending
    mu, V = mu[::-1][:r], Q @ W[:, ::-1][:, :r]  # (r,), (D, r) leading eigenpairs of CᵀC
    s = np.sqrt((N - 1) * np.clip(1.0 - eps / mu, 0.0, None))  # (r,) singular values of X̃
    # P = C⁻ᵀ V maps centred states to the r POD coordinates. One triangular inverse (D³/3) in numpy's BLAS pool:
    # scipy's triangular solve (D²·r) runs on scipy's own pool, whose spinning threads then slow every numpy product
    # that follows (measured: the rank-32 GPT-2 profile 0.6 → 1.3 s).
    P = lower_triangular_inverse(C).T @ V  # (D, r)
    Zx = Xc @ P  # (N, r)
    Zy = Y @ P - Y.mean(axis=0, dtype=np.float64) @ P  # (N, r): centred after the projection, no (N, D) copy of Y
    n = N - 1
    G, A, L = Zx.T @ Zx / n, Zx.T @ Zy / n, Zy.T @ Zy / n  # (r, r) each
    operator = np.linalg.solve(G, A).T  # (r, r): z_y ≈ Ã z_x
    return decompose(operator, method="whitened", reason=reason, gal=Galerkin(G, A, L), modes=True, rank=r,
                     singular_values=s, n_pairs=N, residual_threshold=residual_threshold,
                     options={"eps": eps, "path": "cholesky-sketch", "coordinates": "POD of the whitened snapshots"})
