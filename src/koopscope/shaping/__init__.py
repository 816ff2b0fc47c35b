"""Koopman Spectral Shaping (layer 5): the KSS regulariser, a spectral monitor, and training-loop adapters.

RKSP's KSS (Kim et al. 2026) penalises the eigenvalues of each layer's whitened Koopman operator that leave the
unit disc's edge (|λ| > 1.05) and steers the near-unit mass towards γ, on the model's own forward pass:

>>> import torch, koopscope as ks                              # doctest: +SKIP
>>> shaping = ks.shaping.SpectralShaping(model)                 # doctest: +SKIP
>>> loss = task_loss + shaping(model)                           # doctest: +SKIP

- :func:`kss_loss`, :class:`KSSConfig` (:mod:`.loss`): the penalty and its constants.
- :func:`whitened_operator`, :func:`guarded_eigvals` (:mod:`.operator`): the differentiable rank-r operator and
  its eigenvalues with a finite-gradient guard.
- :class:`SpectralShaping` (:mod:`.shaping`): the regulariser on a model; works unchanged under
  DistributedDataParallel (each rank shapes its own micro-batch).
- :class:`SpectralMonitor` (:mod:`.monitor`): per-layer M≈1, ρ, η_nl every k steps, with alarms.
- Hugging Face Trainer: :class:`~koopscope.shaping.trainer.ShapingTrainer`, :func:`~.trainer.with_shaping`;
  Lightning: :func:`~koopscope.shaping.lightning.shaping_step`, :class:`~.lightning.SpectralCallback`.
  Those two modules import transformers and lightning, so they load only when named.

Importing this package imports torch (``import koopscope`` does not: ``ks.shaping`` loads on first use).
"""

from __future__ import annotations

from typing import Any

from koopscope.shaping.loss import KSSConfig, kss_loss, soft_near_unit_mass, unstable_penalty
from koopscope.shaping.monitor import Alarm, SpectralMonitor, layer_features
from koopscope.shaping.operator import guarded_eigvals, principal_basis, whitened_operator
from koopscope.shaping.shaping import ShapingStep, SpectralShaping

__all__ = [
    "Alarm", "KSSConfig", "ShapingStep", "SpectralMonitor", "SpectralShaping", "guarded_eigvals", "kss_loss",
    "layer_features", "principal_basis", "soft_near_unit_mass", "unstable_penalty", "whitened_operator",
]

_LAZY = {"ShapingTrainer": "trainer", "with_shaping": "trainer", "shaping_step": "lightning",
         "SpectralCallback": "lightning"}


def __getattr__(name: str) -> Any:
    # The adapters import transformers / lightning: load them only when one of their names is used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"koopscope.shaping.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'koopscope.shaping' has no attribute {name!r}")
