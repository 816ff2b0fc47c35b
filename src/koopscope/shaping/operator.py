r"""One layer's rank-r whitened operator in torch, differentiable, and its eigenvalues with a gradient guard.

**The operator** (:func:`whitened_operator`). From the sampled rows X, Y (N, D) of states ℓ and ℓ + 1 of the
same tokens (rows are snapshots), in float64 whatever the model's dtype:

1. centre each side by its own mean: X_c = X − x̄, Y_c = Y − ȳ (RKSP Eqs. 7-8);
2. basis Q (D, r): the top-r principal directions of X_c (:func:`principal_basis`: exact for widths up to
   4 (r + 10), else by a seeded randomized range finder, Halko et al. 2011), computed *without* gradient: the
   subspace is held fixed for the step, as ``spectral_norm`` holds its power iterates, and the gradient flows
   through the coordinates Z_x = X_c Q, Z_y = Y_c Q (N, r);
3. whiten by the X covariance plus ε (RKSP Eq. 9, ε = 1e-5): C_x = Z_xᵀZ_x / (N − 1) + εI = L Lᵀ (Cholesky);
4. the whitened operator Ã = L⁻¹ C_yx L⁻ᵀ (r, r), with C_yx = Z_yᵀZ_x / (N − 1).

In the whitened coordinates z̃ = L⁻¹z the snapshots have covariance I − ε C_x⁻¹ ≈ I, so Ã is the least-squares
operator of the whitened pairs (RKSP's Â = Ỹ X̃⁺ restricted to the top-r subspace, which whitening maps to itself)
up to O(ε / s_r), s_r the r-th principal variance; its eigenvalues are those of C_yx (C_xx + εI)⁻¹. When s_r ≲ ε
(a degenerate batch) the ε keeps Ã bounded instead of dividing by zero. Gradients pass through the centring, the
whitening and the product: scaling a state does not change Ã, so the penalty cannot be lowered by shrinking
activations, only by changing the dynamics.

**The eigenvalues** (:func:`guarded_eigvals`) come from ``torch.linalg.eig`` in float64 (complex128). Their
exact gradient is ∂L/∂A = V⁻ᴴ diag(∂L/∂λ) Vᴴ (torch's own formula for eigenvalues; there is no 1/(λ_i − λ_j)
term, which only eigenvector gradients carry). Row j of V⁻¹ is the left eigenvector w_j with w_j v_j = 1; with
unit-norm v_j, ‖w_j‖ = κ_j = 1/|cos∠(u_j, v_j)| is the condition number of λ_j, and eigenvalue j contributes a
rank-one term of Frobenius norm |∂L/∂λ_j| · κ_j. Repeated eigenvalues of a diagonalisable operator are harmless
(the identity has κ_j = 1); near-defective ones are not (a Jordan block has κ_j → ∞, and the true derivative of
|λ| is unbounded there). **The guard** scales the term of eigenvalue j by c_j = min(1, K / κ_j), K =
``max_condition`` (default 1e3):

    ∂L/∂A ≈ Σ_j c_j (∂L/∂λ_j) w_jᴴ v_jᴴ,   ‖∂L/∂A‖_F ≤ K Σ_j |∂L/∂λ_j|.

It is exact when every κ_j ≤ K (the usual case: RKSP reports κ(V) ≈ 8-11 for trained GPT-2 layers), keeps the
direction of each eigenvalue's gradient otherwise, and is finite by construction: LAPACK returns finite λ and
unit-norm V for any finite A; W = V⁻¹ is taken from ``linalg.solve_ex`` and, if V is numerically singular
(info ≠ 0 or a non-finite entry), from the Tikhonov inverse (VᴴV + μI)⁻¹Vᴴ with μ = 1e-12 (‖W‖ ≤ 1/(2√μ); zero
if even that is not finite); whatever ‖w_j‖ is, c_j ‖w_j‖ ≤ K. The penalty's ∂L/∂λ_j is finite for finite λ
(sigmoids and a softplus of |λ|, and torch takes ∂|λ|/∂λ = 0 at λ = 0). The tests run the guard on the identity,
on Jordan blocks and on nearly defective operators.

>>> import torch
>>> A = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)  # a Jordan block
>>> guarded_eigvals(A).abs().sum().backward()
>>> bool(torch.isfinite(A.grad).all())
True
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from koopscope._validation import Interval, check_param, check_seed
from koopscope.dmd.whitened import WHITENING_EPS
from koopscope.errors import DataError, ParameterError

__all__ = ["MAX_CONDITION", "eigenvalue_residuals", "guarded_eigvals", "operator_from", "principal_basis",
           "whitened_coordinates", "whitened_operator"]

MAX_CONDITION = 1e3  # K: eigenvalue condition number above which an eigenvalue's gradient is scaled down
OVERSAMPLING = 10  # randomized range finder (Halko, Martinsson & Tropp 2011, §4): r + 10 probe vectors
POWER_ITERATIONS = 2
#: Widths D up to EXACT_FACTOR · (r + OVERSAMPLING) take the exact basis from the D × D covariance: its O(N·D² + D³)
#: then costs less than the sketch's five O(N·D·k) passes and QRs (N = 512, r = 32, float64, one thread: 0.37 against
#: 1.8 ms at D = 64, 3.1 against 3.2 ms at D = 192, 7.6 against 4.0 ms at D = 256).
EXACT_FACTOR = 4
_TIKHONOV = 1e-12  # μ of the fallback inverse (VᴴV + μI)⁻¹Vᴴ (VᴴV has a unit diagonal), when V is singular


def principal_basis(Xc: torch.Tensor, rank: int, *, seed: int = 0) -> torch.Tensor:
    """Orthonormal top-``rank`` principal directions (D, r) of centred rows Xc (N, D), without gradient.

    Exact (the leading eigenvectors of Xcᵀ Xc, or the SVD of Xc when N is below the sketch's width k = r + 10) up to
    a width of :data:`EXACT_FACTOR` · k; wider states take a seeded randomized range finder (Halko, Martinsson &
    Tropp 2011: k probes, two power iterations, Rayleigh–Ritz), which spans the top-r subspace up to the decay of
    the spectrum beyond it.
    """
    N, D = Xc.shape
    k = min(rank + OVERSAMPLING, N, D)
    with torch.no_grad():
        Xc = Xc.detach()
        if k >= N:  # the sketch would span every row: the SVD of the (N, D) rows is exact and cheapest
            return torch.linalg.svd(Xc, full_matrices=False)[2][:rank].mT  # (D, r)
        if D <= EXACT_FACTOR * k:
            V = torch.linalg.eigh(Xc.mT @ Xc)[1]  # (D, D), eigenvalues ascending
            return V[:, -rank:].flip(-1)  # (D, r)
        g = torch.Generator(device="cpu").manual_seed(seed)
        probe = torch.randn(N, k, generator=g, dtype=Xc.dtype).to(Xc.device)  # (N, k)
        S = Xc.mT @ probe  # (D, k): range of Xcᵀ
        for _ in range(POWER_ITERATIONS):
            S = Xc.mT @ (Xc @ torch.linalg.qr(S)[0])  # (D, k)
        Q0 = torch.linalg.qr(S)[0]  # (D, k)
        Vh = torch.linalg.svd(Xc @ Q0, full_matrices=False)[2]  # (k, k)
        return Q0 @ Vh[:rank].mT  # (D, r)


def _check_pairs(X: Any, Y: Any, rank: int) -> None:
    for name, Z in (("X", X), ("Y", Y)):
        if not isinstance(Z, torch.Tensor) or Z.dim() != 2 or not Z.is_floating_point():
            got = f"a {Z.dim()}-D {Z.dtype} tensor" if isinstance(Z, torch.Tensor) else type(Z).__name__
            raise DataError(f"{name} passed to whitened_operator must be a floating (N, D) torch tensor with one token "
                            f"state per row; got {got}: pass the sampled rows of one state.")
    if X.shape != Y.shape:
        raise DataError(f"X and Y passed to whitened_operator have shapes {tuple(X.shape)} and {tuple(Y.shape)}; "
                        "row i of Y must be the next state of the token in row i of X: pass rows of the same tokens.")
    check_param("rank", rank, Interval(int, 1, None), caller="whitened_operator", fix="RKSP uses rank 32")
    N, D = X.shape
    if rank > min(N - 1, D):
        raise ParameterError(f"The 'rank' parameter of whitened_operator is {rank}, above min(N - 1, D) = "
                             f"{min(N - 1, D)} for {N} token states of width {D}; lower rank or pass more tokens.")


def whitened_coordinates(X: torch.Tensor, Y: torch.Tensor, rank: int, *, eps: float = WHITENING_EPS,
                         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The whitened coordinates Ψ_X = Z_x L⁻ᵀ, Ψ_Y = Z_y L⁻ᵀ (N, r), float64, differentiable in X and Y (module
    docstring, steps 1-3): row i holds token i's states ℓ and ℓ + 1 in the basis that whitens state ℓ.

    Parameters
    ----------
    X, Y : Tensor of shape (N, D)
        Rows of states ℓ and ℓ + 1 of the same N tokens, any floating dtype and device.
    rank : int
        r, at most min(N − 1, D) (RKSP: 32).
    eps : float, default 1e-5
        Whitening ridge ε (RKSP App. D).
    seed : int, default 0
        Seed of the randomized range finder.
    """
    Zx, Zy, L = _principal_coordinates(X, Y, rank, eps, seed)
    Psi = torch.linalg.solve_triangular(L, torch.cat([Zx, Zy]).mT, upper=False).mT  # (2N, r): rows L⁻¹ z
    return Psi[: X.shape[0]], Psi[X.shape[0]:]


def _principal_coordinates(X: Any, Y: Any, rank: int, eps: Any, seed: Any) -> tuple[torch.Tensor, ...]:
    """Z_x, Z_y (N, r) and the Cholesky factor L (r, r) of C_x + εI (module docstring, steps 1-3), checked."""
    _check_pairs(X, Y, rank)
    check_param("eps", eps, Interval(float, 0.0, None, closed="neither"), caller="whitened_operator",
                fix="RKSP uses eps=1e-5")
    seed = check_seed(seed, "whitened_operator")
    X, Y = X.to(torch.float64), Y.to(torch.float64)  # (N, D): eigenproblems and their inputs in float64
    n = X.shape[0] - 1
    Xc, Yc = X - X.mean(dim=0), Y - Y.mean(dim=0)  # (N, D)
    Q = principal_basis(Xc, rank, seed=seed)  # (D, r), no gradient
    Zx, Zy = Xc @ Q, Yc @ Q  # (N, r)
    eye = torch.eye(rank, dtype=torch.float64, device=X.device)
    L = torch.linalg.cholesky(Zx.mT @ Zx / n + eps * eye)  # (r, r) lower: C_x = L Lᵀ, positive definite
    return Zx, Zy, L


def operator_from(psi_x: torch.Tensor, psi_y: torch.Tensor) -> torch.Tensor:
    """Ã = Ψ_Yᵀ Ψ_X / (N − 1) = L⁻¹ C_yx L⁻ᵀ (r, r) from whitened coordinates (N, r) (module docstring, step 4)."""
    return psi_y.mT @ psi_x / (psi_x.shape[0] - 1)


def whitened_operator(X: torch.Tensor, Y: torch.Tensor, rank: int, *, eps: float = WHITENING_EPS,
                      seed: int = 0) -> torch.Tensor:
    """The rank-r whitened operator Ã (r, r), float64, differentiable in X and Y (module docstring, steps 1-4);
    parameters as :func:`whitened_coordinates`. Equal to :func:`operator_from` of those coordinates, without forming
    them: two r × r triangular solves instead of one over the 2N rows (the penalty's hot path)."""
    Zx, Zy, L = _principal_coordinates(X, Y, rank, eps, seed)
    M = torch.linalg.solve_triangular(L, Zy.mT @ Zx / (Zx.shape[0] - 1), upper=False)  # (r, r): L⁻¹ C_yx
    return torch.linalg.solve_triangular(L, M.mT, upper=False).mT  # (r, r): L⁻¹ C_yx L⁻ᵀ


def eigenvalue_residuals(eigenvalues: torch.Tensor, psi_x: torch.Tensor, psi_y: torch.Tensor) -> torch.Tensor:
    """The ResDMD residual (r,) of each eigenvalue of Ã = :func:`operator_from` (ψ_x, ψ_y), without gradient.

    Eigenvalue λ_j's eigenfunction is φ_j(x) = w_j ψ(x), w_j the left eigenvector (w_j Ã = λ_j w_j), and its residual
    is ‖Ψ_Y w_jᵀ − λ_j Ψ_X w_jᵀ‖ / ‖Ψ_X w_jᵀ‖ on the N pairs (:func:`koopscope.dmd.resdmd.residuals`, as
    :func:`koopscope.profile` computes it): near 0 for an eigenvalue the pairs support, large for one that noise or
    the whitening of near-empty directions adds. ``eigenvalues`` (r,) are those of Ã in any order (e.g. from
    :func:`guarded_eigvals`); each is matched to the nearest eigenvalue of the decomposition made here.
    """
    import numpy as np

    from koopscope.dmd.resdmd import galerkin, residuals

    px, py = (p.detach().to("cpu", torch.float64).numpy() for p in (psi_x, psi_y))  # (N, r)
    lam, V = np.linalg.eig(py.T @ px / (px.shape[0] - 1))  # (r,), (r, r)
    res = residuals(lam, np.linalg.pinv(V).T, galerkin(px, py))  # coefficients: columns w_jᵀ
    wanted = eigenvalues.detach().to("cpu", torch.complex128).numpy()  # (r,)
    nearest = np.abs(wanted[:, None] - lam[None, :]).argmin(axis=1)
    return torch.from_numpy(res[nearest]).to(eigenvalues.device)


def _left_eigenvectors(V: torch.Tensor) -> torch.Tensor:
    """W with W V = I (rows: left eigenvectors); the Tikhonov inverse when V is numerically singular."""
    eye = torch.eye(V.shape[-1], dtype=V.dtype, device=V.device).expand_as(V)
    W, info = torch.linalg.solve_ex(V, eye)
    if bool((info != 0).any()) or not bool(torch.isfinite(W).all()):
        Vh = V.mH
        W = torch.linalg.solve(Vh @ V + _TIKHONOV * eye, Vh)
        if not bool(torch.isfinite(W).all()):  # cannot happen for finite V; a zero gradient if it ever does
            W = torch.zeros_like(W)
    return W


class _GuardedEigvals(torch.autograd.Function):
    """λ = eig(A); backward: Σ_j min(1, K/κ_j) (∂L/∂λ_j) w_jᴴ v_jᴴ (module docstring)."""

    @staticmethod
    def forward(ctx: Any, A: torch.Tensor, max_condition: float) -> torch.Tensor:
        lam, V = torch.linalg.eig(A)  # (..., r) complex, (..., r, r) unit-norm columns
        ctx.save_for_backward(V)
        ctx.max_condition = max_condition
        ctx.real_input = not A.is_complex()
        return lam

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (V,) = ctx.saved_tensors
        W = _left_eigenvectors(V)  # (..., r, r)
        kappa = torch.linalg.vector_norm(W, dim=-1)  # (..., r): κ_j = ‖w_j‖ with ‖v_j‖ = 1
        scale = torch.clamp(ctx.max_condition / kappa, max=1.0)  # c_j
        gA = W.mH @ ((scale * grad).unsqueeze(-1) * V.mH)  # (..., r, r) = Wᴴ diag(c ∘ g) Vᴴ
        return (gA.real if ctx.real_input else gA), None


def guarded_eigvals(A: torch.Tensor, max_condition: float = MAX_CONDITION) -> torch.Tensor:
    """Eigenvalues (..., r) complex128 of square A (..., r, r), with the gradient guard of the module docstring.

    Parameters
    ----------
    A : Tensor of shape (..., r, r)
        Upcast to float64 (complex128 if complex) before the eigensolver.
    max_condition : float, default 1e3
        K: the gradient of an eigenvalue whose condition number κ_j exceeds K is scaled by K / κ_j.
    """
    if not isinstance(A, torch.Tensor) or A.dim() < 2 or A.shape[-1] != A.shape[-2] or A.shape[-1] == 0:
        got = f"shape {tuple(A.shape)}" if isinstance(A, torch.Tensor) else type(A).__name__
        raise DataError(f"The operator passed to guarded_eigvals must be a square (..., r, r) torch tensor; got {got}: "
                        "pass the r x r operator from whitened_operator.")
    check_param("max_condition", max_condition, Interval(float, 1.0, None), caller="guarded_eigvals",
                fix="the default is 1e3")
    A = A.to(torch.complex128 if A.is_complex() else torch.float64)
    return _GuardedEigvals.apply(A, float(max_condition))
