"""Proper orthogonal decomposition of the snapshots and the reduced (projected) DMD problem.

Every projection kernel (exact, tls, hankel, randomized, edmd) works in the coordinates z = Q^T x of a
rank-r orthonormal basis Q (D, r) of the snapshots' row space, X ≈ P S Q^T. Three solvers give Q:

- ``"svd"``: LAPACK's economy SVD of X (N, D). Most accurate (singular values to eps · σ_1).
- ``"gram"``: eigendecomposition of the smaller Gram matrix (X^T X, or X X^T for wide data: the method
  of snapshots). About 3x fewer flops; squares the condition number, so ``"auto"`` only keeps it when
  the retained σ_r / σ_1 > 1e-5 (relative error of σ_r below 1e-5) and otherwise recomputes by SVD.
  For tall data kept at full rank (r = D) no rotation is needed at all: with ``identity_ok`` the basis
  is the identity (``Q = None``) and the operator is the least-squares (C_xx^{-1} C_xy)^T by one
  Cholesky solve, which skips the eigenvectors of C_xx and four D³ products.
- ``"randomized"``: randomized range finder (Halko, Martinsson & Tropp 2011) with ``oversampling``
  extra columns and ``power_iterations`` subspace iterations, seeded; O(N D r) for an int rank r.

``"auto"`` picks ``randomized`` for an int rank with r + oversampling ≤ min(N, D) / 2, ``gram`` when one
side is at least twice the other, and ``svd`` otherwise.

The reduced operator Ã (r, r), with z' ≈ Ã z in the least-squares sense, is Ã = (S^-1 P^T Y Q)^T.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from koopscope._backend import Array, backend_of, is_shifted_view
from koopscope._linalg import numerical_rank, truncation_rank
from koopscope._validation import Interval, Options, check_param, check_rank, check_seed
from koopscope.dmd.resdmd import Galerkin

__all__ = ["Projection", "pod", "reduce", "Reduced", "SOLVERS"]

SOLVERS = ("auto", "svd", "gram", "randomized")
GRAM_FLOOR = 1e-5  # smallest σ_r / σ_1 the Gram solver is trusted with


@dataclass(frozen=True)
class Projection:
    """A rank-r POD basis of the snapshots X (N, D) ≈ P S Q^T."""

    Q: Array | None  # (D, r) orthonormal, on the data's device; None is the identity (r = D, state coordinates)
    s: np.ndarray  # (r,) retained singular values, descending
    s_all: np.ndarray  # all singular values computed (for rank diagnostics)
    P: Array | None  # (N, r) left singular vectors when the solver formed them
    solver: str
    gram: Array | None = None  # (D, D) X^T X when the Gram solver formed it (tall data)

    def coords(self, X: Array) -> Array:
        """Reduced coordinates X Q (N, r) of snapshot rows X (N, D)."""
        return X if self.Q is None else X @ self.Q

    def basis(self) -> np.ndarray | None:
        """Q as a numpy array (None for the identity)."""
        return None if self.Q is None else backend_of(self.Q).to_numpy(self.Q)

    def solve_gram(self, M: np.ndarray) -> np.ndarray:
        """(Z_X^T Z_X)^{-1} M for the fit's reduced snapshots: S^-2 M, or a Cholesky solve in state coordinates."""
        if self.Q is None:
            return np.linalg.solve(backend_of(self.gram).to_numpy(self.gram), M)
        return M / (self.s**2)[:, None]


def check_solver_options(solver: object, oversampling: object, power_iterations: object, caller: str) -> None:
    check_param("svd", solver, Options(SOLVERS), caller=caller, fix="choose how the POD basis is computed")
    check_param("oversampling", oversampling, Interval(int, 0, None), caller=caller, fix="a typical value is 10")
    check_param("power_iterations", power_iterations, Interval(int, 0, None), caller=caller,
                fix="a typical value is 2")


def _choose_solver(shape: tuple[int, int], rank: object, oversampling: int) -> str:
    N, D = shape
    if isinstance(rank, int) and rank + oversampling <= min(N, D) // 2:
        return "randomized"
    return "gram" if max(N, D) >= 2 * min(N, D) else "svd"


def _pod_svd(X: Array) -> tuple[Array, np.ndarray, Array]:
    xp = backend_of(X)
    P, s, Vh = xp.svd(X)  # (N, m), (m,), (m, D)
    return Vh.T, xp.to_numpy(s), P


def _pod_snapshots(X: Array) -> tuple[Array, np.ndarray, Array]:
    """Wide data (N < D): the method of snapshots, eigendecomposition of X X^T (N, N); returns (Q, s, P)."""
    xp = backend_of(X)
    w, P = xp.eigh(X @ X.T)  # (N,), (N, N): method of snapshots
    w, P = xp.to_numpy(w)[::-1], P.flip(1) if xp.name == "torch" else P[:, ::-1]
    s = np.sqrt(np.clip(w, 0.0, None))
    inv = xp.like(np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0), X)
    return (X.T @ P) * inv, s, P  # Q = X^T P S^-1 (D, N)


def _pod_moments(X: Array, full: bool) -> tuple[Array | None, np.ndarray, Array]:
    """Tall data: eigendecomposition of C = X^T X (D, D); returns (Q, s, C).

    With ``full`` (full rank wanted, identity basis allowed) the eigenvalues come first, and when X has
    full column rank with σ_D / σ_1 ≥ GRAM_FLOOR no eigenvectors are computed: Q = None (identity).
    """
    xp = backend_of(X)
    C = X.T @ X  # (D, D)
    if full:
        s = np.sqrt(np.clip(xp.eigvalsh(C)[::-1], 0.0, None))  # (D,) descending
        if s[-1] >= GRAM_FLOOR * s[0] and numerical_rank(s, tuple(X.shape)) == s.size:
            return None, s, C
    w, Q = xp.eigh(C)  # ascending
    w, Q = xp.to_numpy(w)[::-1], Q.flip(1) if xp.name == "torch" else Q[:, ::-1]
    return Q, np.sqrt(np.clip(w, 0.0, None)), C


def _pod_randomized(X: Array, width: int, power_iterations: int, seed: int) -> tuple[Array, np.ndarray, Array]:
    xp = backend_of(X)
    N, D = X.shape
    omega = xp.like(np.random.default_rng(seed).standard_normal((N, width)), X)  # (N, l) same on every device
    Qb = xp.qr(X.T @ omega)  # (D, l) range of X^T
    for _ in range(power_iterations):
        Qb = xp.qr(X.T @ xp.qr(X @ Qb))  # subspace iteration, re-orthonormalised each half-step
    P, s, Vh = xp.svd(X @ Qb)  # (N, l), (l,), (l, l)
    return Qb @ Vh.T, xp.to_numpy(s), P


def pod(X: Array, *, rank: int | str | None = None, energy: float | None = None, solver: str = "auto",
        seed: int = 0, oversampling: int = 10, power_iterations: int = 2, identity_ok: bool = False,
        caller: str = "pod") -> Projection:
    """Rank-r POD basis of the snapshot rows of X (N, D); see the module docstring for the solvers.

    ``identity_ok`` lets a full-rank tall fit stay in state coordinates (``Projection.Q is None``).
    """
    check_rank(rank, energy, caller)
    if isinstance(rank, numbers.Integral):
        rank = int(rank)  # numpy integers behave as ints from here on
    check_solver_options(solver, oversampling, power_iterations, caller)
    seed = check_seed(seed, caller)
    shape = tuple(X.shape)
    chosen = _choose_solver(shape, rank, oversampling) if solver == "auto" else solver
    C = None
    if chosen == "randomized":
        if not isinstance(rank, int):
            check_param("rank", rank, Interval(int, 1, None), caller=caller,
                        fix="the randomized solver needs an int rank, e.g. rank=32")
        width = min(rank + oversampling, *shape)  # type: ignore[operator]
        Q, s_all, P = _pod_randomized(X, width, power_iterations, seed)
    elif chosen == "gram" and shape[0] >= shape[1]:
        Q, s_all, C = _pod_moments(X, full=identity_ok and rank in (None, "full") and energy is None)
        P = None
    elif chosen == "gram":
        Q, s_all, P = _pod_snapshots(X)
    else:
        Q, s_all, P = _pod_svd(X)
    r = truncation_rank(s_all, shape, rank, energy, caller)
    if chosen == "gram" and solver == "auto" and s_all[r - 1] < GRAM_FLOOR * s_all[0]:
        Q, s_all, P = _pod_svd(X)
        chosen, C = "svd", None
        r = truncation_rank(s_all, shape, rank, energy, caller)
    return Projection(None if Q is None else Q[:, :r], s_all[:r], s_all, None if P is None else P[:, :r], chosen, C)


@dataclass(frozen=True)
class Reduced:
    """The DMD problem in POD coordinates z = Q^T x."""

    operator: np.ndarray  # (r, r) Ã with z' ≈ Ã z
    gal: Galerkin  # reduced Galerkin matrices for ResDMD
    lift: np.ndarray | None  # (D, r) Y^T P S^-1, for exact modes
    z0: np.ndarray  # (r,) first snapshot in POD coordinates


def reduce(X: Array, Y: Array, proj: Projection, *, exact_modes: bool = True,
           holdout: tuple[Array, Array] | None = None) -> Reduced:
    """Project the pairs on the basis: Ã, the Galerkin matrices (on ``holdout`` pairs if given), the lift."""
    if proj.gram is not None and holdout is None:
        return _reduce_moments(X, Y, proj, exact_modes)
    xp = backend_of(X)
    s = proj.s
    N = X.shape[0]
    ZY = proj.coords(Y)  # (N, r)
    if proj.P is not None:
        ZX = proj.P * xp.like(s, X)  # (N, r) = P S, exact for the SVD solvers
        M = xp.to_numpy(proj.P.T @ ZY) * s[:, None]  # (r, r) = S P^T Y Q = Z_X^T Z_Y
    else:
        ZX = proj.coords(X)  # (N, r)
        M = xp.to_numpy(ZX.T @ ZY)  # (r, r)
    op = proj.solve_gram(M).T  # Ã = ((Z_X^T Z_X)^-1 Z_X^T Z_Y)^T
    if holdout is None:
        G = np.diag(s**2) if proj.Q is not None else xp.to_numpy(proj.gram)
        gal = Galerkin(G / N, M / N, xp.to_numpy(ZY.T @ ZY) / N)
    else:
        HX, HY = proj.coords(holdout[0]), proj.coords(holdout[1])  # (M, r)
        m = HX.shape[0]
        gal = Galerkin(*(xp.to_numpy(a.T @ b) / m for a, b in ((HX, HX), (HX, HY), (HY, HY))))
    lift = None  # identity basis: the eigenvectors are the exact modes
    if exact_modes and proj.Q is not None:
        lift = xp.to_numpy(Y.T @ ZX) / (s**2)[None, :]  # (D, r) = Y^T P S^-1
    return Reduced(op, gal, lift, xp.to_numpy(ZX[0]))


def _reduce_moments(X: Array, Y: Array, proj: Projection, exact_modes: bool) -> Reduced:
    """Tall data (N >= D): everything from the D x D moments, so only two passes touch the N rows."""
    xp = backend_of(X)
    Q, s, N = proj.Q, proj.s, X.shape[0]
    Cxy = X.T @ Y  # (D, D)
    if is_shifted_view(X, Y):  # one trajectory: Y^T Y = X^T X - x_0 x_0^T + y_last y_last^T
        Cyy = proj.gram - X[:1].T @ X[:1] + Y[-1:].T @ Y[-1:]  # (D, D)
    else:
        Cyy = Y.T @ Y  # (D, D)
    if Q is None:  # full rank in state coordinates
        M, L, G = xp.to_numpy(Cxy), xp.to_numpy(Cyy), xp.to_numpy(proj.gram)  # (D, D) each
        return Reduced(proj.solve_gram(M).T, Galerkin(G / N, M / N, L / N), None, xp.to_numpy(X[0]))
    M = xp.to_numpy(Q.T @ (Cxy @ Q))  # (r, r) = Z_X^T Z_Y
    L = xp.to_numpy(Q.T @ (Cyy @ Q))  # (r, r) = Z_Y^T Z_Y
    op = proj.solve_gram(M).T  # Ã = (S^-2 Z_X^T Z_Y)^T
    lift = xp.to_numpy(Cxy.T @ Q) / (s**2)[None, :] if exact_modes else None  # (D, r) = Y^T X Q S^-2
    return Reduced(op, Galerkin(np.diag(s**2) / N, M / N, L / N), lift, xp.to_numpy(X[0] @ Q))
