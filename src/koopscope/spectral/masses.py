"""Spectral mass partition of RKSP (Kim et al. 2026, Definition 1, Eqs. 11-13).

Over the m eigenvalues of an operator,

    expansive      M_>1 = (1/m) Σ 1[|λ| > 1 + ε_u]
    near-unit      M_≈1 = (1/m) Σ 1[1 - ε_n ≤ |λ| ≤ 1 + ε_u]
    contractive    M_<1 = (1/m) Σ 1[|λ| < 1 - δ_c]
    intermediate   M_mid = 1 - M_>1 - M_≈1 - M_<1   (the gap 1 - δ_c ≤ |λ| < 1 - ε_n)

with the paper's defaults ε_u = 0.05, ε_n = 0.10, δ_c = 0.20 (App. D.3): near-unit band 0.90 ≤ |λ| ≤ 1.05,
expansive above 1.05, contractive below 0.80. Boundaries compare the computed modulus exactly, inclusive as
written. Every function accepts a :class:`~koopscope.dmd.spectrum.Spectrum` (pass ``spec.filtered()`` for
the residual-filtered masses) or an array of eigenvalues.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koopscope._validation import Interval, check_param
from koopscope.dmd.spectrum import Spectrum
from koopscope.errors import DataError, ParameterError

__all__ = [
    "SpectralBands",
    "contractive_mass",
    "expansive_mass",
    "intermediate_mass",
    "mass_partition",
    "moduli",
    "near_unit_mass",
    "spectral_radius",
]


@dataclass(frozen=True)
class SpectralBands:
    """The band edges of the mass partition; defaults from RKSP App. D.3."""

    eps_u: float = 0.05  # expansive above 1 + ε_u (RKSP Eq. 11)
    eps_n: float = 0.10  # near-unit from 1 - ε_n (Eq. 12)
    delta_c: float = 0.20  # contractive below 1 - δ_c (Eq. 13)

    def __post_init__(self) -> None:
        check_param("eps_u", self.eps_u, Interval(float, 0.0, None, closed="neither"), caller="SpectralBands",
                    fix="RKSP uses 0.05")
        check_param("eps_n", self.eps_n, Interval(float, 0.0, 1.0, closed="neither"), caller="SpectralBands",
                    fix="RKSP uses 0.10")
        check_param("delta_c", self.delta_c, Interval(float, 0.0, 1.0, closed="neither"), caller="SpectralBands",
                    fix="RKSP uses 0.20")
        if self.delta_c < self.eps_n:
            raise ParameterError(f"The 'delta_c' parameter of SpectralBands is {self.delta_c}, below eps_n = "
                                 f"{self.eps_n}, so the contractive and near-unit bands would overlap; pass "
                                 "delta_c >= eps_n.")

    @property
    def near_unit(self) -> tuple[float, float]:
        """(lo, hi) of the near-unit band, both inclusive."""
        return 1.0 - self.eps_n, 1.0 + self.eps_u

    @property
    def contractive_below(self) -> float:
        return 1.0 - self.delta_c


def moduli(eigenvalues: Spectrum | np.ndarray, caller: str = "moduli") -> np.ndarray:
    """|λ| (m,) of a Spectrum's or an array's eigenvalues; refuses empty or non-finite input."""
    lam = eigenvalues.eigenvalues if isinstance(eigenvalues, Spectrum) else np.asarray(eigenvalues)
    if lam.ndim != 1 or lam.size == 0:
        raise DataError(f"The eigenvalues passed to {caller} must be a non-empty 1-D array; got shape {lam.shape}: "
                        "pass spec.eigenvalues or a Spectrum.")
    if lam.dtype.kind not in "fiuc" or not np.isfinite(lam).all():
        raise DataError(f"The eigenvalues passed to {caller} must be finite numbers; got dtype {lam.dtype} with "
                        f"{int((~np.isfinite(lam)).sum()) if lam.dtype.kind in 'fiuc' else lam.size} non-finite "
                        "value(s): check the fit that produced them.")
    return np.abs(lam.astype(np.complex128))


def _band(lo: float, hi: float, caller: str) -> None:
    check_param("lo", lo, Interval(float, 0.0, None), caller=caller, fix="the RKSP band is 0.90 to 1.05")
    check_param("hi", hi, Interval(float, 0.0, None), caller=caller, fix="the RKSP band is 0.90 to 1.05")
    if lo > hi:
        raise ParameterError(f"The band of {caller} is empty: lo = {lo} > hi = {hi}; pass lo <= hi.")


def near_unit_mass(eigenvalues: Spectrum | np.ndarray, lo: float = 0.90, hi: float = 1.05) -> float:
    """Share of eigenvalues with lo ≤ |λ| ≤ hi (RKSP M_≈1, Eq. 12)."""
    _band(lo, hi, "near_unit_mass")
    r = moduli(eigenvalues, "near_unit_mass")
    return float(np.mean((r >= lo) & (r <= hi)))


def expansive_mass(eigenvalues: Spectrum | np.ndarray, hi: float = 1.05) -> float:
    """Share of eigenvalues with |λ| > hi (RKSP M_>1, Eq. 11)."""
    check_param("hi", hi, Interval(float, 0.0, None), caller="expansive_mass", fix="RKSP uses 1.05")
    return float(np.mean(moduli(eigenvalues, "expansive_mass") > hi))


def contractive_mass(eigenvalues: Spectrum | np.ndarray, lo: float = 0.80) -> float:
    """Share of eigenvalues with |λ| < lo (RKSP M_<1, Eq. 13)."""
    check_param("lo", lo, Interval(float, 0.0, None), caller="contractive_mass", fix="RKSP uses 0.80")
    return float(np.mean(moduli(eigenvalues, "contractive_mass") < lo))


def intermediate_mass(eigenvalues: Spectrum | np.ndarray, bands: SpectralBands | None = None) -> float:
    """Share in the gap 1 - δ_c ≤ |λ| < 1 - ε_n between the contractive and near-unit bands."""
    bands = bands or SpectralBands()
    r = moduli(eigenvalues, "intermediate_mass")
    return float(np.mean((r >= bands.contractive_below) & (r < bands.near_unit[0])))


def mass_partition(eigenvalues: Spectrum | np.ndarray, bands: SpectralBands | None = None) -> dict[str, float]:
    """The four masses (they sum to 1): expansive, near_unit, intermediate, contractive."""
    bands = bands or SpectralBands()
    lo, hi = bands.near_unit
    return {
        "expansive_mass": expansive_mass(eigenvalues, hi),
        "near_unit_mass": near_unit_mass(eigenvalues, lo, hi),
        "intermediate_mass": intermediate_mass(eigenvalues, bands),
        "contractive_mass": contractive_mass(eigenvalues, bands.contractive_below),
    }


def spectral_radius(eigenvalues: Spectrum | np.ndarray) -> float:
    """max |λ|."""
    return float(moduli(eigenvalues, "spectral_radius").max())
