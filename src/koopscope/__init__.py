"""koopscope: Koopman operator spectra of sequence models.

>>> import numpy as np, koopscope as ks
>>> A = np.array([[0.9, -0.2], [0.2, 0.9]])            # a damped rotation, |λ| = 0.922
>>> traj = np.empty((50, 2)); traj[0] = [1.0, 0.0]
>>> for t in range(49): traj[t + 1] = A @ traj[t]
>>> spec = ks.dmd.fit(traj, method="exact")
>>> np.round(spec.eigenvalues, 6)
array([0.9+0.2j, 0.9-0.2j])
"""

from __future__ import annotations

from koopscope import capture, dmd, spectral, store
from koopscope._version import __version__
from koopscope.dmd.spectrum import Spectrum
from koopscope.errors import (
    CaptureError,
    DataError,
    KoopscopeError,
    MissingDependencyError,
    NotFittedError,
    NumericalError,
    ParameterError,
    StoreError,
)

__all__ = [
    "CaptureError",
    "DataError",
    "KoopscopeError",
    "MissingDependencyError",
    "NotFittedError",
    "NumericalError",
    "ParameterError",
    "Spectrum",
    "StoreError",
    "__version__",
    "capture",
    "dmd",
    "spectral",
    "store",
]
