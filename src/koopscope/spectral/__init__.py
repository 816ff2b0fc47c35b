"""Features of a spectrum (layer 3): the RKSP mass partition and the spectral radius.

>>> import numpy as np, koopscope as ks
>>> lam = np.array([1.2, 1.0, 0.95 + 0.1j, 0.95 - 0.1j, 0.85, 0.5])
>>> ks.spectral.mass_partition(lam)["near_unit_mass"]
0.5
"""

from koopscope.spectral.masses import *  # noqa: F403  (the public names are listed once, in masses.__all__)
from koopscope.spectral.masses import __all__  # noqa: F401
