"""The RKSP profiler (layer 5): per-layer whitened Koopman spectra of a model's residual stream, and its risk.

``koopscope.profile`` is both this package and a function: ``ks.profile(model_or_states, inputs)`` calls
:func:`profile` (the package module is callable), and ``ks.profile.Profile`` and the names below are its parts.

>>> import numpy as np, koopscope as ks
>>> h0 = np.random.default_rng(1).standard_normal((300, 4))
>>> prof = ks.profile([h0, 0.95 * h0])
>>> round(prof.layers[0].near_unit_mass, 3), prof.trusted
(1.0, True)
"""

from __future__ import annotations

import sys
import types
from typing import Any

from koopscope.profile.layer import FEATURES, LayerProfile, layer_profile
from koopscope.profile.profile import SMALL_UPDATE, Profile, aggregate, profile

__all__ = ["FEATURES", "SMALL_UPDATE", "LayerProfile", "Profile", "aggregate", "layer_profile", "profile"]


class _CallableModule(types.ModuleType):
    """Lets ``koopscope.profile(model_or_states)`` call :func:`profile` while the package stays a package."""

    def __call__(self, model_or_states: Any, inputs: Any = None, **config: Any) -> Profile:
        return profile(model_or_states, inputs, **config)

    __call__.__doc__ = profile.__doc__


sys.modules[__name__].__class__ = _CallableModule
