"""Non-normality of an operator: the eigenvector condition number κ(V) and the Kreiss constant 𝒦(A).

κ(V) = ‖V‖₂ ‖V⁻¹‖₂ with every right eigenvector scaled to unit ℓ2 norm (RKSP §1.6): 1 for a normal operator,
large when eigenvectors are nearly parallel, infinite when A is defective. It is σ_max(V) / σ_min(V).

For a large operator whose left eigenvectors are known (``Spectrum.eigenfunctions``), κ(V) needs no new
decomposition: with unit-norm right vectors v_j and left vectors u_j (u_jᴴA = λ_j u_jᴴ), V⁻¹ has rows
u_jᴴ / (u_jᴴ v_j), so κ(V) = ‖V‖₂ ‖diag(1 / u_jᴴv_j) Uᴴ‖₂. Up to 128 eigenvectors one dense SVD of V is
cheapest; beyond, each 2-norm comes from Lanczos on MᴴM, certified to 1e-12 by its residual bound (768 complex
eigenvectors: 27 ms against 212 ms for the SVD; numpy only: scipy's ARPACK runs on a second BLAS thread pool that
contends with numpy's on small machines). Both routes call κ(V) infinite at the same point, κ ≥ 1 / (ε·d).

The Kreiss constant (RKSP Eq. 29)

    𝒦(A) = sup_{|z| > 1} (|z| − 1) ‖(zI − A)⁻¹‖₂ = sup_{|z| > 1} (|z| − 1) / σ_min(zI − A)

bounds the transient growth of a stable map: 𝒦 ≤ sup_n ‖Aⁿ‖₂ ≤ e·d·𝒦 (Kreiss matrix theorem). It is infinite
when ρ(A) > 1 (the resolvent has a pole outside the unit disc), 1 for a normal contraction (ρ ≤ 1).

How it is computed (the paper does not say, [NF]): in polar coordinates z = (1 + t) e^{iθ}, t > 0,

1. a grid of ``n_angles`` angles (uniform, plus the arguments of the eigenvalues) × ``n_radii`` values of t,
   log-spaced in [1e-6, 10]; σ_min(zI − A) for all grid points at once (batched SVD);
2. the best ``n_starts`` grid points are refined by Nelder–Mead over (θ, log t) to relative tolerance 1e-10;
3. 𝒦 is the largest value found (a lower bound of the supremum that is exact up to the optimiser's tolerance
   when the grid brackets the maximiser; the tests check it against dense brute force).

Large operators: the supremum is driven by eigenvalues near the unit circle and their non-normal coupling.
With ``max_dim=k`` smaller than the dimension d, 𝒦 is computed for the restriction of A to the invariant
subspace spanned by the eigenvectors of its k eigenvalues of largest modulus (an orthonormal basis Q, and
A_k = Qᴴ A Q). The resolvent of A restricted to an invariant subspace is the resolvent of A_k, so this is a
lower bound of 𝒦(A), exact when k = d.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

__all__ = ["biorthogonal_condition", "eigenvector_condition", "kreiss_constant", "resolvent_ratio"]

_T_RANGE = (1e-6, 10.0)  # |z| - 1 searched, log-spaced


def eigenvector_condition(V: np.ndarray) -> float:
    """κ(V) = σ_max / σ_min of the right eigenvectors V (d, k), each column scaled to unit norm first.

    >>> round(eigenvector_condition(np.eye(3)), 12)
    1.0
    >>> eigenvector_condition(np.array([[1.0, 1.0], [0.0, 1e-20]]))
    inf
    """
    V = np.asarray(V)
    if V.size == 0:
        return 1.0
    norms = np.linalg.norm(V, axis=0)
    sv = np.linalg.svd(V / np.where(norms > 0, norms, 1.0), compute_uv=False)  # (min(d, k),)
    if sv[-1] <= sv[0] * np.finfo(np.float64).eps * max(V.shape) or sv[-1] == 0:
        return float("inf")
    return float(sv[0] / sv[-1])


_DENSE_NORM = 128  # up to this many columns a dense SVD; beyond, Lanczos (768 × 768 complex: 27 against 212 ms)
_NORM_TOL = 1e-12  # relative residual bound at which the Lanczos Ritz value is accepted
_NORM_STEPS = 300  # Lanczos steps before falling back to the dense SVD


def _norm2(M: np.ndarray, *, seed: int = 0) -> float:
    """‖M‖₂, the largest singular value of M (d, k): a dense SVD for small M, else Lanczos on MᴴM.

    The Lanczos recurrence (seeded start, full re-orthogonalisation, twice) builds the tridiagonal T_j; its largest
    Ritz value θ has the residual bound β_j |e_jᵀy|, and for the Hermitian MᴴM the eigenvalue is within that bound
    of θ, so stopping at β_j |e_jᵀy| ≤ 10⁻¹² θ gives ‖M‖₂ = √θ to about 5·10⁻¹³ relative. Without convergence in
    min(k, 300) steps the dense SVD is used.
    """
    d, k = M.shape
    if min(d, k) <= _DENSE_NORM:
        return float(np.linalg.svd(M, compute_uv=False)[0])
    steps = min(k, _NORM_STEPS)
    Q = np.empty((steps + 1, k), dtype=np.result_type(M.dtype, np.float64))  # Lanczos vectors, one per row
    q = np.random.default_rng(seed).standard_normal(k)
    Q[0] = q / np.linalg.norm(q)
    Mh = M.conj().T  # (k, d)
    alpha, beta = [], []
    for j in range(steps):
        z = Mh @ (M @ Q[j])  # (k,)
        alpha.append(float(np.vdot(Q[j], z).real))
        for _ in range(2):
            z = z - Q[: j + 1].T @ (Q[: j + 1].conj() @ z)
        beta.append(float(np.linalg.norm(z)))
        T = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)  # (j + 1, j + 1)
        theta, Y = np.linalg.eigh(T)
        if beta[-1] * abs(Y[-1, -1]) <= _NORM_TOL * theta[-1]:
            return float(np.sqrt(max(theta[-1], 0.0)))
        Q[j + 1] = z / beta[-1]
    return float(np.linalg.svd(M, compute_uv=False)[0])


def biorthogonal_condition(V: np.ndarray, U: np.ndarray) -> float:
    """κ(V) from unit-normalisable right eigenvectors V (d, k) and left eigenvectors U (d, k) of the same operator.

    Equals :func:`eigenvector_condition` (V) when k = d; inf when some u_jᴴ v_j vanishes (a defective pair).
    """
    if V.shape[0] == V.shape[1] and V.shape[1] <= _DENSE_NORM:
        return eigenvector_condition(V)
    V = V / np.linalg.norm(V, axis=0)
    c = np.einsum("ij,ij->j", U.conj(), V)  # (k,) u_j^H v_j
    eps = np.finfo(np.float64).eps
    if np.any(np.abs(c) <= eps * np.linalg.norm(U, axis=0)):
        return float("inf")
    kappa = _norm2(V) * _norm2(U.conj().T / c[:, None])
    return float("inf") if kappa * eps * max(V.shape) >= 1.0 else kappa


def resolvent_ratio(A: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(|z| − 1) / σ_min(zI − A) for each point of ``z`` (m,): the quantity whose supremum is 𝒦(A)."""
    z = np.asarray(z, dtype=np.complex128).ravel()
    d = A.shape[0]
    M = z[:, None, None] * np.eye(d) - A[None]  # (m, d, d)
    smin = np.linalg.svd(M, compute_uv=False)[:, -1]  # (m,)
    with np.errstate(divide="ignore"):
        return np.where(smin > 0, (np.abs(z) - 1.0) / smin, np.inf)


def _restriction(A: np.ndarray, eigenvalues: np.ndarray, V: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-np.abs(eigenvalues), kind="stable")[:k]
    Q, _ = np.linalg.qr(V[:, order])  # (d, k) orthonormal basis of the dominant invariant subspace
    return Q.conj().T @ A @ Q  # (k, k)


def kreiss_constant(A: np.ndarray, *, max_dim: int | None = None, eigenvalues: np.ndarray | None = None,
                    eigenvectors: np.ndarray | None = None, n_angles: int = 64, n_radii: int = 24,
                    n_starts: int = 3) -> float:
    """The Kreiss constant of the square operator ``A`` (inf when ρ(A) > 1); see the module docstring.

    ``eigenvalues`` (d,) and right ``eigenvectors`` (d, d) of A, when already known, save its eigendecomposition.

    >>> kreiss_constant(np.diag([0.5, 0.9]))  # a normal contraction: 𝒦 = 1
    1.0
    >>> kreiss_constant(np.array([[1.2]]))
    inf
    """
    A = np.asarray(A)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"kreiss_constant needs a non-empty square matrix, got shape {A.shape}.")
    lam = np.linalg.eigvals(A) if eigenvalues is None else np.asarray(eigenvalues)
    if np.abs(lam).max() > 1.0 + 1e-12:
        return float("inf")
    V = np.linalg.eig(A)[1] if eigenvectors is None else np.asarray(eigenvectors)
    if max_dim is not None and max_dim < A.shape[0]:
        A = _restriction(A, lam, V, max_dim)
        lam = np.linalg.eigvals(A)
    if np.allclose(A @ A.conj().T, A.conj().T @ A, atol=1e-13 * max(1.0, np.abs(A).max() ** 2)):
        return 1.0  # normal and ρ ≤ 1: (|z| - 1) / min_j |z - λ_j| < 1, approached as |z| → ∞
    angles = np.concatenate([np.linspace(-np.pi, np.pi, n_angles, endpoint=False), np.angle(lam)])
    ts = np.geomspace(*_T_RANGE, n_radii)
    grid = ((1.0 + ts)[None, :] * np.exp(1j * angles)[:, None]).ravel()  # (n_angles' · n_radii,)
    values = resolvent_ratio(A, grid)
    best = float(values.max())
    for i in np.argsort(-values)[:n_starts]:
        start = np.array([np.angle(grid[i]), np.log(np.abs(grid[i]) - 1.0)])

        def negative(p: np.ndarray) -> float:
            t = float(np.clip(np.exp(p[1]), 1e-12, 1e6))
            return -float(resolvent_ratio(A, np.array([(1.0 + t) * np.exp(1j * p[0])]))[0])

        result = minimize(negative, start, method="Nelder-Mead",
                          options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 300})
        best = max(best, -float(result.fun))
    return max(best, 1.0) if np.abs(lam).max() <= 1.0 else best
