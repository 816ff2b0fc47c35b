"""The top singular triplets of a batch of weight matrices by Golub–Kahan–Lanczos bidiagonalisation.

A weight check needs σ_max and a few leading singular values of every matrix, not the full spectrum: a full
``svdvals`` of a 4096 × 4096 matrix takes about a minute on two CPU cores, where a Krylov method needs a few
dozen products with the matrix and its transpose. Matrices of one shape are stacked and processed together
(batched ``bmm``), on whatever device they live (CPU or CUDA).

Method (Golub & Kahan 1965; Golub & Van Loan, *Matrix Computations* §10.4). From a unit start vector v₁,

    α_j u_j = A v_j − β_{j−1} u_{j−1},        β_j v_{j+1} = Aᵀ u_j − α_j v_j,

builds orthonormal bases U_j (m, j), V_j (n, j) with A V_j = U_j B_j, B_j upper bidiagonal (α on the diagonal,
β above it). The singular values of B_j (Ritz values) converge to A's extreme singular values from below,
the largest first. Both bases are re-orthogonalised in full (twice, "twice is enough"), which keeps the
recurrence exact to rounding at the cost of O((m + n) j) per step. Ritz pair i has the residual bound
‖Aᵀ ũ_i − σ̃_i ṽ_i‖ = β_j |p_{j,i}| (p_i the left singular vector of B_j), and the iteration stops when
every requested pair has β_j |p_{j,i}| ≤ tol · σ̃_1. The error of the value itself is of second order in that
residual (at most residual² / gap, and never above the residual).

A warm start (``start``, e.g. the baseline's top right singular vector when checking an edited matrix) makes
a small edit converge in a handful of steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from koopscope._validation import Interval, check_param, check_seed
from koopscope.capture._deps import require_torch
from koopscope.errors import DataError, NumericalError

__all__ = ["TopSingular", "top_singular", "singular_values", "gram_singular_values", "largest_singular", "GRAM_MAX"]

#: Relative residual at which Ritz pairs are accepted: σ̃ is then within tol·σ₁ of σ for sure and, in practice, within
#: about tol² (module doc). float32 products cannot reach residuals much below 1e-5; use float64 matrices for that.
TOL = 1e-4
#: The most Lanczos steps before giving up on convergence and falling back to a dense SVD.
MAX_STEPS = 300
#: Short sides up to this get a dense SVD, which is then cheaper than the recurrence.
DENSE_MAX = 64


@dataclass(frozen=True)
class TopSingular:
    """Leading singular triplets of a batch of B matrices of shape (m, n), descending.

    values (B, k), left (B, m, k), right (B, n, k) are float64 torch tensors on the matrices' device;
    ``steps`` is the number of Lanczos steps taken (0 when a dense SVD was used).
    """

    values: Any
    left: Any
    right: Any
    steps: int


def _orthogonalise(X: Any, basis: Any, j: int) -> Any:
    """Rows of X (B, b, d) minus their projection on the first j rows of basis (B, J, d).

    One classical Gram–Schmidt pass; the QR that follows orthonormalises the block itself. In float32 this keeps
    the bases orthogonal to about 1e-6, far below the accepted residuals.
    """
    if j == 0:
        return X
    Q = basis[:, :j]                                                 # (B, j, d), contiguous rows
    return X - (X @ Q.transpose(1, 2)) @ Q


def _orthonormal(X: Any) -> tuple[Any, Any]:
    """Orthonormal rows: X (B, b, d) = Rᵀ Q with Q (B, b, d) orthonormal rows and R (B, b, b) upper triangular."""
    torch = require_torch("rmt")
    Q, R = torch.linalg.qr(X.transpose(1, 2))
    return Q.transpose(1, 2).contiguous(), R


def _dense(A: Any, k: int) -> TopSingular:
    torch = require_torch("rmt")
    U, s, Vh = torch.linalg.svd(A.to(torch.float64), full_matrices=False)
    return TopSingular(s[:, :k], U[:, :, :k], Vh[:, :k, :].transpose(1, 2), 0)


def _start_block(batch: int, n: int, b: int, start: Any, seed: int, like: Any) -> Any:
    """Orthonormal start blocks (B, b, n), one vector per row: the warm start (if given) first, seeded Gaussian
    vectors for the rest."""
    torch = require_torch("rmt")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    G = torch.randn(batch, b, n, generator=gen, dtype=torch.float64).to(like.device, like.dtype)
    if start is not None:
        G[:, 0] = start.to(like.device, like.dtype).reshape(batch, n) + 1e-3 * G[:, 0] / n**0.5
    return _orthonormal(G)[0]


def _work_dtype(A: Any) -> Any:
    torch = require_torch("rmt")
    return A.dtype if A.dtype in (torch.float32, torch.float64) else torch.float32


def _check_input(A: Any, k: int, caller: str, *, finite: bool = True) -> None:
    torch = require_torch(caller)
    if not isinstance(A, torch.Tensor) or A.ndim != 3:
        raise DataError(f"The matrices passed to {caller} must be a torch tensor of shape (B, m, n); got "
                        f"{type(A).__name__} of shape {tuple(getattr(A, 'shape', ()))}: stack 2-D weights with "
                        "torch.stack.")
    if min(A.shape) < 1:
        raise DataError(f"The matrices passed to {caller} are empty (shape {tuple(A.shape)}); pass at least one "
                        "matrix with m, n >= 1.")
    if finite and not bool(torch.isfinite(A).all()):
        raise DataError(f"The matrices passed to {caller} contain NaN or Inf; a weight check needs finite weights: "
                        "check the model file.")
    check_param("k", k, Interval(int, 1, min(A.shape[1:])), caller=caller,
                fix=f"ask for at most min(m, n) = {min(A.shape[1:])} singular values")


def top_singular(A: Any, k: int = 1, *, start: Any = None, block: int | None = None, tol: float = TOL,
                 tol_rest: float | None = None, max_steps: int = MAX_STEPS, seed: int = 0) -> TopSingular:
    """The k largest singular values and vectors of each matrix in the batch A (B, m, n).

    Parameters
    ----------
    A : torch.Tensor of shape (B, m, n)
        Matrices of one shape. Products with A run in its dtype (float32 or float64; half precision is
        promoted to float32), the small projected problems in float64, on A's device.
    k : int, default=1
        How many leading triplets.
    start : torch.Tensor of shape (B, n), optional
        Warm-start right vectors, e.g. the baseline's top right singular vectors.
    block : int, optional
        Block size b of the block Lanczos recurrence (default max(k, 4)): each step reads A once for b vectors.
    tol : float, default=1e-4
        Relative residual bound at which a Ritz pair is accepted.
    max_steps : int, default=300
        Block steps before giving up. A dense SVD is used instead whenever min(m, n) <= max(4b, 64), where it is
        cheaper.
    seed : int, default=0
        Seed of the random start vectors.
    """
    require_torch("top_singular")
    _check_input(A, k, "top_singular")
    b = max(k, 4) if block is None else block
    check_param("block", b, Interval(int, k, None), caller="top_singular", fix=f"use a block of at least k={k}")
    check_param("tol", tol, Interval(float, 0.0, 1.0, closed="neither"), caller="top_singular")
    check_param("tol_rest", tol_rest, Interval(float, 0.0, 1.0, closed="neither"), None, caller="top_singular")
    tols = np.full(k, tol if tol_rest is None else tol_rest)
    tols[0] = tol
    check_param("max_steps", max_steps, Interval(int, 1, None), caller="top_singular")
    seed = check_seed(seed, "top_singular")
    batch, m, n = A.shape
    if min(m, n) <= max(4 * b, DENSE_MAX):
        return _dense(A, k)
    A = A.to(_work_dtype(A))
    steps = min(max_steps, min(m, n) // b)
    Ut = A.new_empty(batch, steps * b, m)                            # left basis, one vector per row
    Vt = A.new_empty(batch, (steps + 1) * b, n)                      # right basis
    T = np.zeros((batch, steps * b, steps * b))                      # T = Uᵀ A V, block upper bidiagonal
    Vt[:, :b] = _start_block(batch, n, b, start, seed, A)
    check = max(2, -(-2 * k // b))                                   # first convergence test, then every ~25 %
    for j in range(steps):
        cols, nxt = slice(j * b, (j + 1) * b), slice((j + 1) * b, (j + 2) * b)
        P = _orthogonalise(Vt[:, cols] @ A.transpose(1, 2), Ut, j * b)   # (B, b, m): (A V_j)ᵀ
        Ut[:, cols], R = _orthonormal(P)                             # A V_j = ... + U_j R
        T[:, cols, cols] = _numpy(R)
        W = _orthogonalise(Ut[:, cols] @ A, Vt, (j + 1) * b)         # (B, b, n): (Aᵀ U_j)ᵀ
        Vt[:, nxt], S = _orthonormal(W)                              # Aᵀ U_j = V_j Rᵀ + V_{j+1} S
        size = (j + 1) * b
        if j + 1 == check or size + b > min(m, n) or j + 1 == steps:
            # A full bidiagonalisation (size = min(m, n)) spans the whole space: its Ritz values are exact.
            result = _ritz(Ut, Vt, T, _numpy(S), size, k, tols if size + b <= min(m, n) else np.full(k, math.inf))
            if result is not None:
                return result
            check = j + 1 + max(1, (j + 1) // 4)
        if j + 1 < steps:
            T[:, cols, nxt] = _numpy(S).transpose(0, 2, 1)
    raise NumericalError(f"top_singular did not converge in max_steps={max_steps} block Lanczos steps for matrices "
                         f"of shape ({m}, {n}); raise max_steps or loosen tol={tol}.")


def _numpy(x: Any) -> np.ndarray:
    return x.detach().to("cpu").double().numpy()


def _ritz(Ut: Any, Vt: Any, T: np.ndarray, S: np.ndarray, size: int, k: int, tol: np.ndarray) -> TopSingular | None:
    """The Ritz triplets of T[:size, :size] when each of the top k has a relative residual under its tol (k,).

    With Aᵀ U_J = V_J T_Jᵀ + V_{J+1} S E_Jᵀ, Ritz triplet (p_i, σ_i, q_i) of T_J has the residual
    ‖Aᵀ U_J p_i − σ_i V_J q_i‖ = ‖S p_i[last block]‖. The small problem runs in numpy (float64, CPU).
    """
    torch = require_torch("rmt")
    b = S.shape[-1]
    Tj = T[:, :size, :size]                                          # (B, size, size)
    # The top Ritz triplets from the symmetric eigenproblem T Tᵀ = P diag(s²) Pᵀ (half the cost of an SVD with
    # vectors); only the top k are used, where s² is far above rounding.
    w, P = np.linalg.eigh(Tj @ Tj.transpose(0, 2, 1))                # ascending
    s = np.sqrt(np.clip(w[:, ::-1][:, :k], 0.0, None))               # (B, k) descending
    P = P[:, :, ::-1][:, :, :k]                                      # (B, size, k)
    residual = np.linalg.norm(S @ P[:, size - b :, :], axis=1)        # (B, k)
    if not (residual <= tol[None, :] * s[:, :1]).all():
        return None
    Q = (Tj.transpose(0, 2, 1) @ P) / np.where(s > 0, s, 1.0)[:, None, :]   # (B, size, k) right Ritz vectors
    dev = Ut.device
    left = torch.from_numpy(np.ascontiguousarray(P)).to(dev, Ut.dtype).transpose(1, 2) @ Ut[:, :size]   # (B, k, m)
    right = torch.from_numpy(np.ascontiguousarray(Q)).to(dev, Vt.dtype).transpose(1, 2) @ Vt[:, :size]  # (B, k, n)
    return TopSingular(torch.from_numpy(np.ascontiguousarray(s)).to(dev), left.transpose(1, 2).double(),
                       right.transpose(1, 2).double(), size // b)


def singular_values(A: Any) -> Any:
    """All singular values of each matrix in A (B, m, n), descending, as float64 (a dense ``svdvals`` in A's
    precision: float32 weights give σ to about 1e-6 relative, half precision is promoted to float32)."""
    torch = require_torch("singular_values")
    _check_input(A, 1, "singular_values")
    return torch.linalg.svdvals(A.to(_work_dtype(A))).to(torch.float64)


def gram_singular_values(A: Any) -> Any:
    """All singular values of each matrix in A (B, m, n), descending, float64, from the Gram matrix.

    σ_i = √λ_i(A Aᵀ) (or AᵀA, whichever is smaller): one matrix product, which runs at full gemm speed, and a
    symmetric eigenvalue problem of the short side, instead of a bidiagonalisation of A: several times faster than a
    dense ``svdvals`` at transformer sizes on two CPU cores, and it gives the whole spectrum. The product runs in A's
    precision (float32 for float32 and half-precision weights), the eigenproblem in float64 (DESIGN.md). The Gram
    matrix squares the condition number, so σ_i carries a relative error of about ε (σ₁/σ_i)², ε that of A's
    precision (float32: σ₁ and the median within 1e-5, tests/rmt/test_singular.py); only values below ~1e-3 σ₁ lose
    digits.
    """
    require_torch("gram_singular_values")
    _check_input(A, 1, "gram_singular_values", finite=False)
    return gram_spectrum(finite_gram(A, "gram_singular_values"))


def finite_gram(A: Any, caller: str) -> Any:
    """The Gram matrices (B, p, p) (:func:`gram`) of A (B, m, n) or of a sequence of B matrices (m, n) of one shape
    (each formed from its own weight: no stacked copy of the weights).

    Finiteness is checked on the Gram matrices rather than on A: a NaN or Inf weight makes its Gram matrix
    non-finite (its diagonal holds squared norms), so only then are the weights themselves read; finite weights
    whose float32 products overflow are redone in float64.
    """
    torch = require_torch(caller)
    G = gram(A) if isinstance(A, torch.Tensor) else torch.stack([gram(W) for W in A])   # (B, p, p)
    if not bool(torch.isfinite(G).all()):
        stacked = A if isinstance(A, torch.Tensor) else torch.stack(list(A))
        _check_input(stacked, 1, caller)                             # raises for a non-finite weight
        G = gram(stacked.double())
    return G


def gram(A: Any) -> Any:
    """The Gram matrix of the short side of A (m, n) or of each matrix of a batch (B, m, n), in A's precision
    (half precision promoted to float32): A Aᵀ (.., m, m) when m ≤ n, else AᵀA (.., n, n)."""
    A = A.to(_work_dtype(A))
    At = A.transpose(-2, -1)
    return A @ At if A.shape[-2] <= A.shape[-1] else At @ A


#: Short sides from which the float64 eigenproblems of a batch run on parallel threads, one single-threaded
#: LAPACK call each: the tridiagonal reduction is bound by memory traffic and gains little from a second BLAS thread
#: (768: 29 ms on one thread, 25 ms on two), but two solves at once take 15 ms each. Below about 512 the
#: per-call overhead of the BLAS library eats the gain (384: 5.1 ms either way), so those run one after the other.
PARALLEL_MIN = 512


def gram_spectrum(G: Any) -> Any:
    """Singular values (B, p), descending, float64, from Gram matrices G (B, p, p) (:func:`gram`).

    The symmetric eigenproblem runs in float64: LAPACK through numpy on the CPU (a third faster than torch's
    float64 path there, and parallel over the batch, :data:`PARALLEL_MIN`), torch on other devices.
    """
    torch = require_torch("gram_spectrum")
    H = G.detach().to(torch.float64)                                 # (B, p, p)
    if H.device.type != "cpu":
        w = torch.linalg.eigvalsh(H)                                 # ascending
    else:
        w = torch.from_numpy(_eigvalsh(H.numpy(), torch.get_num_threads()))
    return w.flip(-1).clamp_min(0.0).sqrt()


def _eigvalsh(H: np.ndarray, threads: int) -> np.ndarray:
    """Ascending eigenvalues (B, p) of symmetric H (B, p, p), the batch spread over ``threads`` threads."""
    if threads < 2 or H.shape[0] < 2 or H.shape[-1] < PARALLEL_MIN:
        return np.linalg.eigvalsh(H)
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(min(threads, H.shape[0])) as pool:
        return np.stack(list(pool.map(np.linalg.eigvalsh, H)))


#: Largest short side for which :func:`largest_singular` uses the Gram matrix rather than Lanczos.
GRAM_MAX = 1024


def largest_singular(A: Any, *, start: Any = None, tol: float = TOL, seed: int = 0) -> tuple[Any, Any]:
    """σ_max of each matrix in A as float64 (B,), and its right singular vector (B, n) or None.

    A is a tensor (B, m, n) or a sequence of B tensors (m, n) of one shape. Short sides up to :data:`GRAM_MAX` use
    the Gram matrix (:func:`gram_singular_values`; no vector, relative error ~ε of A's precision; a sequence is
    never stacked), longer ones block Lanczos (:func:`top_singular`, warm-started from ``start``, certified to
    ``tol``).
    """
    torch = require_torch("largest_singular")
    if not isinstance(A, torch.Tensor):
        A = list(A)
        if not A or not all(isinstance(W, torch.Tensor) and W.ndim == 2 and W.shape == A[0].shape for W in A):
            raise DataError("The matrices passed to largest_singular must be a (B, m, n) tensor or a non-empty "
                            "sequence of 2-D tensors of one shape; group the weights by shape first.")
        if min(A[0].shape) <= GRAM_MAX:
            return gram_spectrum(finite_gram(A, "largest_singular"))[:, 0], None
        A = torch.stack(A)
    if min(A.shape[1:]) <= GRAM_MAX:
        return gram_singular_values(A)[:, 0], None
    top = top_singular(A, 1, start=start, tol=tol, seed=seed)
    return top.values[:, 0], top.right[:, :, 0]
