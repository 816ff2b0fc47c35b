"""Predictors of divergence: RKSP features at initialisation, the baselines that need no DMD, and the gradient
baselines read from the training curves.

**At initialisation** (one forward pass, no training): the residual stream of the untrained model is captured at
N = 2048 token states of an associative-recall probe batch (``ks.capture(model, tokens, blocks=model.blocks)``)
and profiled with ``ks.profile``. Model-level scores are layer means (RKSP Algorithm 1 aggregates mean, max, min
and std; the paper does not say which one its AUROC uses, the layer mean is the natural reading):

- ``m_near_unit``: M≈1, the layer-mean near-unit mass (``prof.risk``); higher = riskier (RKSP).
- ``rho``: the layer-mean spectral radius of the whitened operator.
- ``kappa``: the layer-mean eigenvector condition number κ(V) (unit-norm eigenvectors).
- ``m_log_kappa``: M≈1 · log10 κ(V), both layer means (RKSP Table 2).

No-DMD baselines, from the same captured states:

- ``rel_update``: the layer mean of ‖h_{ℓ+1} − h_ℓ‖_F / ‖h_ℓ‖_F (Frobenius norms over the N tokens); the
  hypothesis under test says M≈1 is high because this is small, so *smaller* is scored as riskier.
- ``norm_growth``: log10(‖h_L‖_F / ‖h_0‖_F), the growth of the residual-stream norm over depth; higher = riskier
  (RKSP Corollary 2: less damping, more risk).

From the training curves (``losses``, ``grad_norms``, one entry per step that ran, step 1 = at init):

- ``grad_norm_1``: the gradient norm of step 1.
- ``grad_norm_100``: the gradient norm of step 100.
- ``grad_var_100``: the variance of the gradient norms of steps 1-100.
- ``spike_count``: the number of loss spikes in steps 1-500 (see :func:`spike_count`).

A run that diverged (and stopped) inside a window is read *as logged*: over the steps of the window that ran,
and ``grad_norm_100`` is then the last logged norm, the one that diverged. These readings can see the divergence
itself, so :func:`curve_features` also says whether the run was still healthy through each window (``healthy``)
and the analysis scores every gradient baseline a second time on those survivors only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import koopscope as ks

__all__ = ["SPIKE_RATIO", "SPIKE_WINDOW", "init_features", "curve_features", "spike_count", "state_baselines"]

SPIKE_RATIO = 2.0  # a spike: loss above twice the running median ...
SPIKE_WINDOW = 20  # ... of the previous 20 steps
SPIKE_MIN_HISTORY = 5  # steps of history needed before a spike can be called
PROFILE_FEATURES = ("near_unit_mass", "expansive_mass", "contractive_mass", "intermediate_mass", "spectral_radius",
                    "kappa", "kreiss", "eta_nl", "relative_update", "relative_update_whitened",
                    "filtered_near_unit_mass", "n_spurious")


def state_baselines(states: Sequence[np.ndarray]) -> dict[str, float]:
    """The no-DMD baselines of L + 1 captured states (each (N, D)): mean relative update and norm growth."""
    norms = [float(np.linalg.norm(s.astype(np.float64))) for s in states]
    updates = [float(np.linalg.norm(b.astype(np.float64) - a)) / max(na, 1e-30)
               for a, b, na in zip(states[:-1], states[1:], norms[:-1], strict=True)]
    return {"rel_update": float(np.mean(updates)),
            "norm_growth": math.log10(max(norms[-1], 1e-30) / max(norms[0], 1e-30)),
            "rel_update_layers": updates}


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _profile(states: Any) -> tuple[dict[str, list[float]], float, list[str]]:
    """Per-layer RKSP features (``ks.profile``, full-rank whitened DMD), the risk, and the trust-flag codes."""
    prof = ks.profile(states)
    layers = {name: [_float(getattr(layer, name, None)) for layer in prof.layers] for name in PROFILE_FEATURES}
    return layers, float(prof.risk), sorted({f["code"] for f in prof.flags})


def init_features(model: Any, tokens: np.ndarray, seed: int, max_tokens: int = 2048) -> dict[str, Any]:
    """RKSP features and no-DMD baselines of ``model`` at its current weights, from one capture of ``tokens``."""
    states = ks.capture(model, tokens, blocks=model.blocks, max_tokens=max_tokens, seed=seed, batch_size=64)
    layers, risk, flags = _profile(states)
    kappa = float(np.mean(layers["kappa"]))
    out: dict[str, Any] = {
        "m_near_unit": risk,
        "rho": float(np.mean(layers["spectral_radius"])),
        "kappa": kappa,
        "m_log_kappa": risk * math.log10(kappa) if kappa > 0 else float("nan"),
        "expansive_mass": float(np.mean(layers["expansive_mass"])),
        "profile_flags": flags,
        "layers": layers,
    }
    out.update(state_baselines(states.states))
    return out


def spike_count(losses: Sequence[float], window: int = SPIKE_WINDOW, ratio: float = SPIKE_RATIO,
                min_history: int = SPIKE_MIN_HISTORY) -> int:
    """Loss spikes: steps whose loss is non-finite or above ``ratio`` × the median of the previous ``window``
    steps (once ``min_history`` steps exist); consecutive spike steps count as one spike (its onset)."""
    count, previous = 0, False
    for t, loss in enumerate(losses):
        history = losses[max(0, t - window):t]
        spike = not math.isfinite(loss) or (len(history) >= min_history and loss > ratio * float(np.median(history)))
        count += spike and not previous
        previous = spike
    return count


def _finite_or_inf(value: float) -> float:
    return value if math.isfinite(value) else float("inf")


def curve_features(losses: Sequence[float], grad_norms: Sequence[float], diverged_step: int | None,
                   grad_step: int = 100, var_window: int = 100, spike_window: int = 500) -> dict[str, Any]:
    """The gradient baselines of one run as logged (see the module docstring), with their survivor flags.

    Each feature uses the steps of its window that ran; ``grad_norm_100`` of a run that stopped before step 100
    is its last logged gradient norm (the one that diverged). Non-finite values read as +inf.
    """
    grads = [_finite_or_inf(g) for g in grad_norms]
    window = grads[:var_window]
    var = float(np.var(window)) if all(math.isfinite(g) for g in window) else float("inf")
    healthy = lambda step: diverged_step is None or diverged_step > step  # noqa: E731
    return {
        "grad_norm_1": grads[0],
        "grad_norm_100": grads[min(grad_step, len(grads)) - 1],
        "grad_var_100": var,
        "spike_count": spike_count(list(losses[:spike_window])),
        "healthy": {"grad_norm_1": healthy(1), "grad_norm_100": healthy(grad_step),
                    "grad_var_100": healthy(var_window), "spike_count": healthy(spike_window)},
    }
