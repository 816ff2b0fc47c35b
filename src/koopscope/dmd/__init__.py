"""DMD kernels: arrays in, :class:`~koopscope.dmd.spectrum.Spectrum` out, no state."""

from koopscope.dmd.exact import exact
from koopscope.dmd.spectrum import Spectrum

__all__ = ["Spectrum", "exact"]
