"""The torch whitened operator and the guarded eigenvalues: agreement with numpy DMD, invariances, finite gradients."""

from __future__ import annotations

import numpy as np
import pytest

import koopscope as ks
from koopscope.errors import DataError, ParameterError

torch = pytest.importorskip("torch")

from koopscope.shaping import guarded_eigvals, kss_loss, principal_basis, whitened_operator  # noqa: E402
from koopscope.shaping.operator import MAX_CONDITION  # noqa: E402

f64 = torch.float64


def _sorted(lam: np.ndarray) -> np.ndarray:
    return lam[np.lexsort((np.round(lam.imag, 8), np.round(np.abs(lam), 8)))]


def pairs(N: int = 400, D: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """X with an anisotropic covariance and Y = X Mᵀ + noise, M with planted eigenvalues (some above 1)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, D, generator=g, dtype=f64) @ torch.diag(torch.logspace(0, -1, D, dtype=f64)) + 3.0
    lam = torch.linspace(1.25, 0.3, D, dtype=f64)
    V = torch.eye(D, dtype=f64) + 0.2 * torch.randn(D, D, generator=g, dtype=f64)
    M = V @ torch.diag(lam) @ torch.linalg.inv(V)
    return X, X @ M.T + 0.01 * torch.randn(N, D, generator=g, dtype=f64)


def test_full_rank_eigenvalues_equal_whitened_dmd() -> None:
    # RKSP's whitened least squares has eig(C_yx C_xx⁻¹) whatever ε; the operator here is its ridge form
    # eig(C_yx (C_xx + εI)⁻¹): equal as ε → 0, and within O(ε / s_min) at the default ε = 1e-5 (s_min = 1e-2 here).
    X, Y = pairs()
    ref = _sorted(ks.dmd.whitened(X.numpy(), Y.numpy(), modes=None, residuals=False).eigenvalues)
    exact = guarded_eigvals(whitened_operator(X, Y, rank=12, eps=1e-12)).numpy()
    np.testing.assert_allclose(_sorted(exact), ref, atol=1e-8)
    ridge = guarded_eigvals(whitened_operator(X, Y, rank=12)).numpy()
    np.testing.assert_allclose(_sorted(ridge), ref, atol=2 * 1e-5 / 1e-2)


def test_eigenvalues_are_invariant_under_a_change_of_coordinates_and_scale() -> None:
    X, Y = pairs(D=8)
    g = torch.Generator().manual_seed(1)
    P = torch.randn(8, 8, generator=g, dtype=f64)  # invertible: x ↦ P x for every state
    eig = lambda X, Y: _sorted(guarded_eigvals(whitened_operator(X, Y, rank=8, eps=1e-12)).numpy())  # noqa: E731
    base = eig(X, Y)
    np.testing.assert_allclose(eig(X @ P.T, Y @ P.T), base, atol=1e-8)
    np.testing.assert_allclose(eig(50 * X, 50 * Y), base, atol=1e-8)


# Paths for rank 5 (k = 15 probes): covariance (D <= 4k = 60), randomized (D = 100), SVD of the rows (N <= k).
@pytest.mark.parametrize("rows, width, exact_path", [(300, 60, True), (300, 100, False), (12, 100, True)])
def test_principal_basis_spans_the_top_principal_subspace(rows: int, width: int, exact_path: bool) -> None:
    g = torch.Generator().manual_seed(0)
    scale = torch.cat([torch.logspace(1, 0.5, 5, dtype=f64), torch.logspace(-1, -2, width - 5, dtype=f64)])
    X = torch.randn(rows, width, generator=g, dtype=f64) * scale  # a gap after the 5th principal variance
    Xc = X - X.mean(0)
    Q = principal_basis(Xc, 5, seed=3)
    exact = torch.linalg.svd(Xc, full_matrices=False)[2][:5].mT
    assert torch.allclose(Q.mT @ Q, torch.eye(5, dtype=f64), atol=1e-12)
    # Same subspace: the cosines of its principal angles to the exact one are 1 (the exact path to rounding).
    assert torch.linalg.svdvals(exact.mT @ Q).min() > 1 - (1e-12 if exact_path else 1e-6)
    assert torch.equal(Q, principal_basis(Xc, 5, seed=3))  # deterministic (seeded)


@pytest.mark.parametrize("shape, dtype", [((6, 6), f64), ((3, 5, 5), f64), ((5, 5), torch.complex128)])
def test_guarded_eigvals_equal_torch_where_well_conditioned(shape, dtype) -> None:
    g = torch.Generator().manual_seed(0)
    A = torch.randn(*shape, generator=g, dtype=dtype, requires_grad=True)
    loss = lambda lam: (lam.abs() ** 3).sum() + lam.real.sum()  # noqa: E731
    ours = torch.autograd.grad(loss(guarded_eigvals(A)), A)[0]
    theirs = torch.autograd.grad(loss(torch.linalg.eigvals(A)), A)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(guarded_eigvals(A), torch.linalg.eigvals(A), rtol=0, atol=0)  # the same LAPACK call


def jordan(n: int, lam: float = 1.0) -> torch.Tensor:
    return lam * torch.eye(n, dtype=f64) + torch.diag(torch.ones(n - 1, dtype=f64), 1)


@pytest.mark.parametrize("name, A", [
    ("identity", torch.eye(5, dtype=f64)),
    ("zero", torch.zeros(4, 4, dtype=f64)),
    ("repeated above tau_u", 1.2 * torch.eye(4, dtype=f64)),
    ("jordan 2", jordan(2, 1.1)),
    ("jordan 4", jordan(4, 1.0)),
    ("nearly defective", jordan(3, 1.1) + 1e-13 * torch.tril(torch.ones(3, 3, dtype=f64), -1)),
    ("jordan in a rotated basis", torch.linalg.qr(torch.arange(16.0, dtype=f64).reshape(4, 4).cos())[0]
     @ jordan(4, 1.2) @ torch.linalg.qr(torch.arange(16.0, dtype=f64).reshape(4, 4).cos())[0].T),
])
def test_gradients_stay_finite_and_bounded_at_repeated_and_defective_eigenvalues(name: str, A: torch.Tensor) -> None:
    A = A.clone().requires_grad_()
    lam = guarded_eigvals(A)
    assert torch.isfinite(lam).all()
    loss = kss_loss(lam)
    grad = torch.autograd.grad(loss, A)[0]
    assert torch.isfinite(grad).all(), name
    # ‖∂L/∂A‖_F ≤ K Σ_j |∂L/∂λ_j|
    lam_leaf = lam.detach().requires_grad_()
    dlam = torch.autograd.grad(kss_loss(lam_leaf), lam_leaf)[0]
    assert torch.linalg.norm(grad) <= MAX_CONDITION * dlam.abs().sum() * (1 + 1e-9) + 1e-12


def test_identity_operator_gets_the_exact_gradient() -> None:
    # repeated eigenvalues of a normal operator are harmless: V = I, κ_j = 1, nothing is scaled
    A = (1.2 * torch.eye(3, dtype=f64)).requires_grad_()
    grad = torch.autograd.grad(kss_loss(guarded_eigvals(A)), A)[0]
    rho = torch.full((3,), 1.2, dtype=f64, requires_grad=True)
    drho = torch.autograd.grad(kss_loss(rho), rho)[0]
    torch.testing.assert_close(grad, torch.diag(drho), rtol=1e-12, atol=1e-14)


def test_states_with_an_identity_transition_give_finite_gradients() -> None:
    # Y = X: the whitened operator is ≈ I (all eigenvalues repeated at 1) and the gradient reaches the states
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 16, generator=g, dtype=f64, requires_grad=True)
    loss = kss_loss(guarded_eigvals(whitened_operator(X, X, rank=8)))
    (gx,) = torch.autograd.grad(loss, X)
    assert torch.isfinite(gx).all()


def test_bf16_states_are_upcast_and_receive_gradients() -> None:
    X, Y = pairs(N=200, D=16)
    Xb = X.to(torch.bfloat16).requires_grad_()
    Yb = Y.to(torch.bfloat16).requires_grad_()
    A = whitened_operator(Xb, Yb, rank=8)
    assert A.dtype == f64
    kss_loss(guarded_eigvals(A)).backward()
    assert Xb.grad.dtype == torch.bfloat16 and torch.isfinite(Xb.grad.float()).all()
    assert torch.isfinite(Yb.grad.float()).all() and Yb.grad.abs().sum() > 0


def test_bad_input() -> None:
    X, Y = pairs(N=20, D=6)
    with pytest.raises(ParameterError, match=r"^The 'rank' parameter of whitened_operator is 7, above min\(N - 1, D\) "
                                             r"= 6 for 20 token states of width 6; lower rank or pass more tokens\.$"):
        whitened_operator(X, Y, rank=7)
    with pytest.raises(DataError, match=r"^X and Y passed to whitened_operator have shapes \(20, 6\) and \(19, 6\)"):
        whitened_operator(X, Y[:-1], rank=2)
    with pytest.raises(DataError, match="X passed to whitened_operator must be a floating"):
        whitened_operator(X.numpy(), Y, rank=2)
    with pytest.raises(DataError, match=r"must be a square \(\.\.\., r, r\) torch tensor; got shape \(2, 3\)"):
        guarded_eigvals(torch.ones(2, 3))
    with pytest.raises(ParameterError, match="'max_condition' parameter of guarded_eigvals"):
        guarded_eigvals(torch.eye(2), max_condition=0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_operator_matches_cpu() -> None:
    X, Y = pairs()
    Xg, Yg = X.cuda().float().requires_grad_(), Y.cuda().float()
    lam = guarded_eigvals(whitened_operator(Xg, Yg, rank=12))
    assert lam.device.type == "cuda"
    kss_loss(lam).backward()
    assert torch.isfinite(Xg.grad).all()
    ref = guarded_eigvals(whitened_operator(X.float(), Y.float(), rank=12))
    np.testing.assert_allclose(_sorted(lam.detach().cpu().numpy()), _sorted(ref.detach().numpy()), atol=1e-4)


def test_eigenvalue_residuals_equal_the_whitened_dmd_residuals_in_any_order() -> None:
    from koopscope.shaping.operator import eigenvalue_residuals, operator_from, whitened_coordinates

    X, Y = pairs()
    psi_x, psi_y = whitened_coordinates(X, Y, 12, eps=1e-12)
    lam = guarded_eigvals(operator_from(psi_x, psi_y))
    np.testing.assert_allclose(operator_from(psi_x, psi_y).numpy(), whitened_operator(X, Y, 12, eps=1e-12).numpy(),
                               atol=1e-12)
    res = eigenvalue_residuals(lam, psi_x, psi_y).numpy()
    ref = ks.dmd.whitened(X.numpy(), Y.numpy(), modes=None)  # numpy, full rank, its own residuals
    order, ref_order = np.argsort(np.abs(lam.numpy())), np.argsort(np.abs(ref.eigenvalues))
    np.testing.assert_allclose(res[order], ref.residuals[ref_order], rtol=1e-7)
    np.testing.assert_array_equal(eigenvalue_residuals(lam.flip(0), psi_x, psi_y).flip(0).numpy(), res)
    # Planted: two extra coordinates of pure noise (Y independent of X there) carry eigenvalues the pairs do not
    # support, and only those get large residuals.
    g = torch.Generator().manual_seed(5)
    Xn = torch.cat([X, 0.5 * torch.randn(X.shape[0], 2, generator=g, dtype=f64)], 1)
    Yn = torch.cat([Y, 0.5 * torch.randn(X.shape[0], 2, generator=g, dtype=f64)], 1)
    psi_x, psi_y = whitened_coordinates(Xn, Yn, 14, eps=1e-12)
    res = eigenvalue_residuals(guarded_eigvals(operator_from(psi_x, psi_y)), psi_x, psi_y)
    assert int((res > 0.5).sum()) == 2 and int((res < 0.1).sum()) == 12
