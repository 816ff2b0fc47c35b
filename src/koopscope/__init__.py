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

from typing import Any

from koopscope import capture, dmd, fingerprint, gate, profile, spectral, store
from koopscope._version import __version__
from koopscope.dmd.spectrum import Spectrum
from koopscope.errors import (
    CaptureError,
    DataError,
    HubError,
    KoopscopeError,
    MissingDependencyError,
    NotFittedError,
    NumericalError,
    ParameterError,
    StoreError,
)
from koopscope.fingerprint import KoopmanFingerprint

__all__ = [
    "CaptureError",
    "KoopmanFingerprint",
    "SpectralAuditor",
    "DataError",
    "HubError",
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
    "fingerprint",
    "gate",
    "koopman",
    "plot",
    "profile",
    "rmt",
    "shaping",
    "spectral",
    "store",
]


def __getattr__(name: str) -> Any:
    # Names whose modules need an optional extra (scikit-learn, matplotlib, torch) load on first use, so
    # `import koopscope` stays light; each module raises MissingDependencyError with the pip line.
    if name == "SpectralAuditor":
        from koopscope.auditor import SpectralAuditor

        return SpectralAuditor
    if name in ("koopman", "plot", "rmt", "shaping"):  # koopman and shaping import torch; rmt may
        import importlib

        return importlib.import_module(f"koopscope.{name}")
    raise AttributeError(f"module 'koopscope' has no attribute {name!r}")
