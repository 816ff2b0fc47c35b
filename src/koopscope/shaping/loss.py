r"""The Koopman Spectral Shaping penalty (RKSP, Kim et al. 2026, KSS: Definition 2, Eqs. 14-15).

For the r eigenvalues λ_1..λ_r of one layer's whitened operator, with moduli ρ_j = |λ_j| and σ the sigmoid,

    L_KSS = Σ_j σ(T (ρ_j − τ_u)) · h(softplus_S(ρ_j − τ_u))         (Eq. 14, "unstable penalty")
            + β · (m_soft − γ)²                                       ("near-unit target")

    m_soft = (1/r) Σ_j σ(T (ρ_j − τ_l)) · σ(T (τ_u − ρ_j))           (Eq. 15, soft count of τ_l ≤ ρ ≤ τ_u)

    softplus_S(x) = log(1 + exp(S x)) / S

    h(x) = x²   (RKSP; or, with ``tail_width=w``, the Huber tail x² for x <= w and w (2x − w) beyond)

Defaults (:class:`KSSConfig`): T = 20, τ_u = 1.05, τ_l = 0.90, γ = 0.4 (the paper's range is 0.3-0.5), β = 1.

Three choices the paper leaves open, made here and written down:

* **β** is not given by the paper ([NF]). β = 1 weighs a full-band miss of the mass target ((1 − 0.4)² = 0.36)
  like about sixteen eigenvalues at |λ| = 1.2, so neither term swamps the other at r = 32.
* **The softplus temperature S.** The paper writes softplus(ρ − τ_u), i.e. S = 1. With S = 1 the "above τ_u"
  penalty is not small inside the band: at ρ = 1.00 it is σ(−1) · softplus(−0.05)² ≈ 0.12 per eigenvalue, so it
  pushes every near-unit eigenvalue down and fights the near-unit target. S = T (the default) makes softplus_S a
  smooth hinge of width 1/T: 7·10⁻⁵ per eigenvalue at ρ = 1, below 2·10⁻⁵ for ρ ≤ 0.975 (6·10⁻⁴ at the edge
  τ_u itself), and ≈ (ρ − τ_u)² well above the band (0.022 at ρ = 1.2, against 0.57 for S = 1). Pass
  ``softplus_temperature=1.0`` for the literal formula.
* **The tail above τ_u** is the paper's square by default. ``tail_width=w`` continues it linearly beyond w above
  τ_u (the Huber tail: value and slope continuous at w, slope at most 2w per eigenvalue), for layers whose
  whitened radius can run to 30–1000. Measured on the seeded divergence test of ``tests/shaping``
  (8 seeds, every step, all layers): the square keeps 7 of 8 runs stable, w = 0.25 only 2 of 8 (no KSS: 2 of 8):
  the square's strong pull on large radii is what stops those divergences, so it stays the default.

The penalty is a symmetric function of the eigenvalues (order and conjugate pairing do not matter) and is
differentiable wherever ρ_j > 0; autograd gives ∂L/∂ρ_j > 0 above τ_u, so a gradient step lowers |λ| there.

>>> import torch
>>> lam = torch.tensor([1.2 + 0j, 0.95 + 0.1j, 0.95 - 0.1j, 0.3 + 0j], dtype=torch.complex128)
>>> round(float(kss_loss(lam)), 4)
0.0259
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.nn import functional as F

from koopscope._validation import Interval, check_param
from koopscope.errors import DataError, ParameterError

__all__ = ["KSSConfig", "kss_loss", "soft_near_unit_mass", "unstable_penalty"]


@dataclass(frozen=True)
class KSSConfig:
    """The constants of the KSS penalty; defaults from RKSP (KSS, Definition 2) unless marked.

    Attributes
    ----------
    temperature : float, default 20
        T, the sigmoid temperature of the gate and the soft count (RKSP: T = 20).
    tau_u : float, default 1.05
        Upper edge of the near-unit band and start of the unstable penalty (RKSP: τ_u = 1 + ε_u = 1.05).
    tau_l : float, default 0.90
        Lower edge of the near-unit band (RKSP: τ_l = 1 − ε_n = 0.90).
    gamma : float, default 0.4
        γ, the target near-unit mass (RKSP: γ ∈ [0.3, 0.5]; DESIGN.md fixes 0.4).
    beta : float, default 1.0
        β, the weight of the near-unit term (not given by the paper; see the module docstring).
    softplus_temperature : float, default 20
        S in softplus_S(x) = log(1 + e^{S x}) / S (koopscope's reading, see the module docstring; 1 = literal).
    tail_width : float or None, default None
        w, where the squared hinge turns linear (the Huber tail); None is the paper's unbounded square.
    """

    temperature: float = 20.0  # RKSP Eq. 14-15: T = 20
    tau_u: float = 1.05  # RKSP Eq. 14: τ_u = 1.05 (the expansive edge of Definition 1)
    tau_l: float = 0.90  # RKSP Eq. 15: τ_l = 0.90 (the near-unit lower edge of Definition 1)
    gamma: float = 0.4  # RKSP KSS defaults: γ ∈ [0.3, 0.5]; DESIGN.md "Paper defaults": γ = 0.4
    beta: float = 1.0  # [NF] in RKSP; koopscope's choice
    softplus_temperature: float = 20.0  # [I] koopscope: softplus at the gate's temperature (S = 1 is literal)
    tail_width: float | None = None  # RKSP Eq. 14: the square; koopscope's option: a Huber tail beyond τ_u + w

    def __post_init__(self) -> None:
        positive = Interval(float, 0.0, None, closed="neither")
        for name, fix in (("temperature", "RKSP uses T = 20"), ("tau_u", "RKSP uses 1.05"),
                          ("softplus_temperature", "20 is koopscope's default, 1 the paper's literal softplus")):
            check_param(name, getattr(self, name), positive, caller="KSSConfig", fix=fix)
        check_param("tau_l", self.tau_l, Interval(float, 0.0, None), caller="KSSConfig", fix="RKSP uses 0.90")
        check_param("gamma", self.gamma, Interval(float, 0.0, 1.0), caller="KSSConfig", fix="RKSP uses 0.3 to 0.5")
        check_param("beta", self.beta, Interval(float, 0.0, None), caller="KSSConfig", fix="the default is 1.0")
        check_param("tail_width", self.tail_width, positive, None, caller="KSSConfig",
                    fix="0.25 is the default, None the paper's unbounded square")
        if self.tau_l >= self.tau_u:
            raise ParameterError(f"The 'tau_l' parameter of KSSConfig is {self.tau_l}, not below tau_u = "
                                 f"{self.tau_u}, so the near-unit band is empty; pass tau_l < tau_u (RKSP: 0.90).")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _moduli(eigenvalues: Any) -> torch.Tensor:
    if not isinstance(eigenvalues, torch.Tensor):
        raise DataError(f"The eigenvalues passed to kss_loss must be a torch tensor; got {type(eigenvalues).__name__}: "
                        "convert them with torch.as_tensor(eigenvalues).")
    if eigenvalues.dim() == 0 or eigenvalues.shape[-1] == 0:
        raise DataError(f"The eigenvalues passed to kss_loss must have shape (..., r) with r >= 1; got shape "
                        f"{tuple(eigenvalues.shape)}: pass one layer's eigenvalues (r,) or a stack (layers, r).")
    if not (eigenvalues.is_complex() or eigenvalues.is_floating_point()):
        raise DataError(f"The eigenvalues passed to kss_loss have dtype {eigenvalues.dtype}; pass a complex or "
                        "floating tensor, e.g. torch.linalg.eigvals(A.double()).")
    return eigenvalues.abs()  # (..., r), real; autograd: ∂|λ|/∂λ = λ/|λ| (0 at λ = 0)


def unstable_penalty(moduli: torch.Tensor, config: KSSConfig) -> torch.Tensor:
    """Σ_j σ(T (ρ_j − τ_u)) · h(softplus_S(ρ_j − τ_u)) over the last axis (Eq. 14, first term, with the Huber
    tail h of the module docstring): (..., r) -> (...)."""
    excess = moduli - config.tau_u  # (..., r)
    gate = torch.sigmoid(config.temperature * excess)
    hinge = F.softplus(excess, beta=config.softplus_temperature)  # log(1 + e^{S x}) / S
    w = config.tail_width
    tail = hinge**2 if w is None else torch.where(hinge <= w, hinge**2, w * (2 * hinge - w))
    return (gate * tail).sum(dim=-1)


def soft_near_unit_mass(moduli: torch.Tensor, config: KSSConfig) -> torch.Tensor:
    """m_soft = (1/r) Σ_j σ(T (ρ_j − τ_l)) σ(T (τ_u − ρ_j)) over the last axis (Eq. 15): (..., r) -> (...)."""
    T = config.temperature
    inside = torch.sigmoid(T * (moduli - config.tau_l)) * torch.sigmoid(T * (config.tau_u - moduli))  # (..., r)
    return inside.mean(dim=-1)


def kss_loss(eigenvalues: torch.Tensor, config: KSSConfig | None = None) -> torch.Tensor:
    """The KSS penalty of each layer: eigenvalues (..., r), complex or real, -> losses (...).

    Parameters
    ----------
    eigenvalues : Tensor of shape (r,) or (..., r)
        One layer's eigenvalues on the last axis (any order); a leading axis stacks layers.
    config : KSSConfig, optional
        The constants (default: RKSP's).

    Returns
    -------
    Tensor of shape (...)
        L_KSS per layer (module docstring), in the real dtype of the eigenvalues, differentiable.
    """
    config = config or KSSConfig()
    if not isinstance(config, KSSConfig):
        raise ParameterError(f"The 'config' parameter of kss_loss must be a KSSConfig or None; got "
                             f"{type(config).__name__}: build one with KSSConfig(gamma=..., ...).")
    rho = _moduli(eigenvalues)  # (..., r)
    mass_gap = soft_near_unit_mass(rho, config) - config.gamma  # (...)
    return unstable_penalty(rho, config) + config.beta * mass_gap**2
