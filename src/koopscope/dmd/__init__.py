"""DMD kernels: arrays in, :class:`~koopscope.dmd.spectrum.Spectrum` out, no state.

Every kernel takes a trajectory X (T, D) or snapshot pairs X, Y (N, D), rows being snapshots, as numpy
arrays or torch tensors (CPU or CUDA), and returns discrete-time eigenvalues sorted by descending modulus
with ResDMD residuals. :data:`VARIANTS` maps kernel names to functions; :func:`fit` dispatches, with
``method="auto"`` choosing by :func:`select`'s documented rules. :class:`StreamingDMD` updates online.
"""

from koopscope.dmd.edmd import edmd
from koopscope.dmd.exact import exact
from koopscope.dmd.hankel import hankel
from koopscope.dmd.randomized import randomized
from koopscope.dmd.resdmd import pseudospectrum
from koopscope.dmd.select import fit, select
from koopscope.dmd.spectrum import Spectrum
from koopscope.dmd.streaming import StreamingDMD
from koopscope.dmd.tls import tls
from koopscope.dmd.whitened import whitened

VARIANTS = {
    "exact": exact,
    "hankel": hankel,
    "tls": tls,
    "randomized": randomized,
    "edmd": edmd,
    "whitened": whitened,
}

__all__ = [
    "VARIANTS",
    "Spectrum",
    "StreamingDMD",
    "edmd",
    "exact",
    "fit",
    "hankel",
    "pseudospectrum",
    "randomized",
    "select",
    "tls",
    "whitened",
]
