"""Features of a spectrum (layer 3): the RKSP mass partition and the spectral radius.

>>> import numpy as np, koopscope as ks
>>> lam = np.array([1.2, 1.0, 0.95 + 0.1j, 0.95 - 0.1j, 0.85, 0.5])
>>> ks.spectral.mass_partition(lam)["near_unit_mass"]
0.5
"""

from koopscope.spectral.masses import (
    SpectralBands,
    contractive_mass,
    expansive_mass,
    intermediate_mass,
    mass_partition,
    moduli,
    near_unit_mass,
    spectral_radius,
)

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
