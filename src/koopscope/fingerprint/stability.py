"""Stability labels of a spectrum from its spectral radius ρ and the bootstrap interval of ρ.

The rules (bands from DESIGN.md, "Paper defaults": the near-unit band is 0.90 ≤ |λ| ≤ 1.05):

* **expansive**: ρ > 1.05, some mode grows by more than the near-unit band allows;
* **near-unit**: 0.90 ≤ ρ ≤ 1.05, the slowest mode neither clearly grows nor clearly decays;
* **contractive**: ρ < 0.90, every mode decays by at least 10 % a step;
* **uncertain**: the interval [low, high] of ρ reaches into more than one of these regions, so the data do
  not decide between them.

With an interval, the label is that of the region holding the whole interval; without one (B = 0), that of
the point estimate.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CONTRACTIVE_BELOW", "EXPANSIVE_ABOVE", "STABILITY_RULE", "stability_label"]

CONTRACTIVE_BELOW: Final = 0.90  # lower edge of the near-unit band, 1 - ε_n (RKSP Eq. 12)
EXPANSIVE_ABOVE: Final = 1.05  # upper edge of the near-unit band, 1 + ε_u (RKSP Eq. 11)

STABILITY_RULE: Final = (f"expansive if the spectral radius is above {EXPANSIVE_ABOVE}, contractive if below "
                         f"{CONTRACTIVE_BELOW}, near-unit otherwise; uncertain when its bootstrap interval "
                         "reaches into more than one of these regions")


def _region(rho: float) -> str:
    if rho > EXPANSIVE_ABOVE:
        return "expansive"
    if rho < CONTRACTIVE_BELOW:
        return "contractive"
    return "near-unit"


def stability_label(rho: float, low: float | None = None, high: float | None = None) -> str:
    """The label of spectral radius ``rho`` with optional interval [low, high].

    >>> stability_label(0.7), stability_label(0.97), stability_label(1.2)
    ('contractive', 'near-unit', 'expansive')
    >>> stability_label(0.95, 0.85, 0.99)
    'uncertain'
    """
    if low is None or high is None:
        return _region(rho)
    regions = {_region(low), _region(high), _region(rho)}
    return regions.pop() if len(regions) == 1 else "uncertain"
