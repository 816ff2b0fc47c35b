"""kss_loss: the paper's equations, zero in the band at the target mass, gradients against finite differences."""

from __future__ import annotations

import math

import pytest

from koopscope.errors import DataError, ParameterError

torch = pytest.importorskip("torch")

from koopscope.shaping import KSSConfig, guarded_eigvals, kss_loss, soft_near_unit_mass, unstable_penalty  # noqa: E402

f64 = torch.float64


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def huber(x: float, w: float | None) -> float:
    return x * x if w is None or x <= w else w * (2 * x - w)


def reference(moduli: list[float], c: KSSConfig) -> float:
    """Definition 2 written out in plain Python, with koopscope's Huber tail h."""
    unstable = sum(sigmoid(c.temperature * (r - c.tau_u))
                   * huber(math.log1p(math.exp(c.softplus_temperature * (r - c.tau_u))) / c.softplus_temperature,
                           c.tail_width)
                   for r in moduli)
    mass = sum(sigmoid(c.temperature * (r - c.tau_l)) * sigmoid(c.temperature * (c.tau_u - r))
               for r in moduli) / len(moduli)
    return unstable + c.beta * (mass - c.gamma) ** 2


@pytest.mark.parametrize("config", [KSSConfig(), KSSConfig(softplus_temperature=1.0, beta=0.5, gamma=0.3),
                                    KSSConfig(tail_width=None), KSSConfig(tail_width=0.1)])
def test_matches_the_equations(config: KSSConfig) -> None:
    lam = torch.tensor([1.3 + 0.2j, 1.3 - 0.2j, 1.0, 0.93, 0.5, -0.2, 3.0], dtype=torch.complex128)
    expected = reference(lam.abs().tolist(), config)
    assert kss_loss(lam, config).item() == pytest.approx(expected, rel=1e-12)


def test_huber_tail_bounds_the_slope_and_matches_the_square_below_w() -> None:
    rho = torch.tensor([1.10, 1.2, 2.0, 30.0, 1000.0], dtype=f64, requires_grad=True)
    unstable_penalty(rho, KSSConfig(tail_width=0.25)).backward()
    # Slope ≤ 2w = 0.5 per eigenvalue (plus the gate's slope, which vanishes far above τ_u).
    assert torch.all(rho.grad <= 0.5 + 1e-6) and torch.all(rho.grad > 0)  # the gate adds ≤ 1e-7 at ρ = 2
    assert rho.grad[-1].item() == pytest.approx(0.5, rel=1e-9)
    below = torch.tensor([1.1, 1.25], dtype=f64)  # hinge ≤ w = 0.25: identical to the literal square
    assert torch.allclose(unstable_penalty(below, KSSConfig(tail_width=0.25)), unstable_penalty(below, KSSConfig()))
    literal = torch.tensor([30.0], dtype=f64, requires_grad=True)
    unstable_penalty(literal, KSSConfig(tail_width=None)).backward()
    assert literal.grad.item() > 50  # the paper's square: slope 2(ρ − τ_u)


def test_layers_stack_on_a_leading_axis() -> None:
    lam = torch.tensor([[1.2, 0.5, 0.95], [0.99, 0.2, 0.1]], dtype=f64)
    out = kss_loss(lam)
    assert out.shape == (2,)
    assert out.tolist() == pytest.approx([kss_loss(lam[0]).item(), kss_loss(lam[1]).item()], rel=1e-14)


def soft_count(r: float, c: KSSConfig) -> float:
    return sigmoid(c.temperature * (r - c.tau_l)) * sigmoid(c.temperature * (c.tau_u - r))


def in_band_modulus(fraction: float, c: KSSConfig) -> float:
    """The modulus ρ in (τ_l, centre] whose soft count σ(T(ρ − τ_l)) σ(T(τ_u − ρ)) is ``fraction`` (bisection)."""
    count = lambda r: soft_count(r, c)  # noqa: E731
    lo, hi = c.tau_l, (c.tau_l + c.tau_u) / 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid) < fraction else (lo, mid)
    return (lo + hi) / 2


def test_zero_inside_the_band_when_the_near_unit_mass_equals_gamma() -> None:
    # 6 of 10 eigenvalues inside the band, 4 far below it (each still counting σ(−14) ≈ 8e-7): the soft mass is
    # exactly γ = 0.4 when each in-band eigenvalue counts ≈ 0.667 (T = 20 lets one count at most 0.668).
    c = KSSConfig()
    rho = in_band_modulus((c.gamma * 10 - 4 * soft_count(0.2, c)) / 6, c)
    phases = torch.linspace(0.0, 0.3, 6, dtype=f64)
    inside = torch.polar(torch.full((6,), rho, dtype=f64), phases)
    lam = torch.cat([inside, torch.full((4,), 0.2, dtype=torch.complex128)])
    assert soft_near_unit_mass(lam.abs(), c).item() == pytest.approx(c.gamma, abs=1e-12)
    assert 0.0 <= kss_loss(lam, c).item() < 1e-4  # the hinge leaves ≤ 1.3e-5 per eigenvalue at ρ ≈ 0.96
    literal = KSSConfig(softplus_temperature=1.0)  # the paper's unit softplus is far from zero there
    assert kss_loss(lam, literal).item() > 0.1


def test_gradient_matches_finite_differences_and_is_positive_above_tau_u() -> None:
    moduli = torch.tensor([1.02, 1.06, 1.1, 1.3, 0.95, 0.5], dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r: kss_loss(r), (moduli,), eps=1e-7, atol=1e-9)
    kss_loss(moduli).backward()
    assert (moduli.grad[:4] > 0).all()  # descent lowers every modulus above τ_u (and just below it)


def test_gradient_through_the_eigenvalues_lowers_the_spectral_radius() -> None:
    # A = V diag(1.3, 1.2, 0.6, 0.3) V⁻¹, non-normal; the gradient is checked against central differences in A.
    g = torch.Generator().manual_seed(0)
    V = torch.eye(4, dtype=f64) + 0.3 * torch.randn(4, 4, generator=g, dtype=f64)
    A = (V @ torch.diag(torch.tensor([1.3, 1.2, 0.6, 0.3], dtype=f64)) @ torch.linalg.inv(V)).requires_grad_()
    loss = lambda M: kss_loss(guarded_eigvals(M))  # noqa: E731
    assert torch.autograd.gradcheck(loss, (A,), eps=1e-7, atol=1e-8)
    grad = torch.autograd.grad(loss(A), A)[0]
    radius = lambda M: torch.linalg.eigvals(M).abs().max().item()  # noqa: E731
    B = A.detach() - 0.05 * grad
    assert radius(B) < radius(A.detach()) - 1e-3
    assert loss(B).item() < loss(A).item()


def test_config_validation_names_the_argument() -> None:
    with pytest.raises(ParameterError, match=r"^The 'temperature' parameter of KSSConfig must be a float in \(0, "
                                             r"inf\); got -1.0; RKSP uses T = 20\.$"):
        KSSConfig(temperature=-1.0)
    with pytest.raises(ParameterError, match=r"^The 'tau_l' parameter of KSSConfig is 1.1, not below tau_u = 1.05"):
        KSSConfig(tau_l=1.1)
    with pytest.raises(ParameterError, match="'gamma' parameter of KSSConfig"):
        KSSConfig(gamma=1.5)


def test_bad_eigenvalues_and_config() -> None:
    with pytest.raises(DataError, match=r"^The eigenvalues passed to kss_loss must be a torch tensor; got list"):
        kss_loss([1.0, 0.5])
    with pytest.raises(DataError, match=r"must have shape \(\.\.\., r\) with r >= 1; got shape \(\)"):
        kss_loss(torch.tensor(1.0))
    with pytest.raises(DataError, match="have dtype torch.int64"):
        kss_loss(torch.tensor([1, 2]))
    with pytest.raises(ParameterError, match="^The 'config' parameter of kss_loss must be a KSSConfig or None; got "
                                             "dict: build one with KSSConfig"):
        kss_loss(torch.ones(3), {"gamma": 0.3})
