"""Features of a spectrum (layer 3): the RKSP mass partition, the spectral radius, and their bootstrap intervals.

>>> import numpy as np, koopscope as ks
>>> lam = np.array([1.2, 1.0, 0.95 + 0.1j, 0.95 - 0.1j, 0.85, 0.5])
>>> ks.spectral.mass_partition(lam)["near_unit_mass"]
0.5
"""

from koopscope.spectral import bootstrap as _bootstrap
from koopscope.spectral import masses as _masses
from koopscope.spectral.bootstrap import *  # noqa: F403  (public names are listed once, in each module's __all__)
from koopscope.spectral.masses import *  # noqa: F403

__all__ = [*_masses.__all__, *_bootstrap.__all__]
