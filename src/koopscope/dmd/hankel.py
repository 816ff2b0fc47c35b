"""Hankel (delay-embedded) DMD: the kernel for short trajectories.

A trajectory x_0..x_{T-1} (T, D) is embedded with d delays into h_t = [x_t, x_{t+1}, ..., x_{t+d-1}]
(T - d + 1, d D), and exact DMD runs on consecutive embedded rows. A sum of K sinusoids, invisible to
plain DMD from one scalar, becomes a rank-2K linear system (Arbabi & Mezić 2017; Brunton et al. 2017).
"""

from __future__ import annotations

import numpy as np

from koopscope._backend import Array, backend_of
from koopscope._validation import Interval, check_pairs, check_param
from koopscope.dmd.exact import fit_projected
from koopscope.dmd.spectrum import RESIDUAL_THRESHOLD, Spectrum
from koopscope.errors import DataError

__all__ = ["hankel", "delay_embed", "default_delays"]

MAX_EMBEDDED_DIM = 4096  # cap on d · D for the default number of delays


def default_delays(T: int, D: int) -> int:
    """T // 2 (a square Hankel matrix for scalar data), capped so that d · D ≤ 4096, at least 1."""
    return max(1, min(T // 2, MAX_EMBEDDED_DIM // D))


def delay_embed(traj: Array, delays: int) -> Array:
    """Rows h_t = [x_t, ..., x_{t+d-1}] of a trajectory (T, D): the (T - d + 1, d D) Hankel matrix."""
    T = traj.shape[0]
    return backend_of(traj).hstack([traj[i : T - delays + 1 + i] for i in range(delays)])


def hankel(X: Array, Y: Array | None = None, *, delays: int | None = None, rank: int | str | None = None,
           energy: float | None = None, modes: str | None = "exact", residuals: bool = True,
           holdout: float | None = None, residual_threshold: float = RESIDUAL_THRESHOLD, svd: str = "auto",
           seed: int = 0, oversampling: int = 10, power_iterations: int = 2, orientation: str = "check",
           reason: str = "method='hankel' requested") -> Spectrum:
    """Delay-embedded DMD of one trajectory X (T, D).

    Parameters
    ----------
    delays : int, optional
        Number of delays d (1 is plain DMD); default :func:`default_delays`. Needs T - d ≥ 2.

    Modes are reported for the current-time block (the first D rows of each embedded mode, renormalised);
    eigenfunction coefficients act on the embedded rows (d D). The other parameters are those of
    :func:`koopscope.dmd.exact`.
    """
    if Y is not None:
        raise DataError("hankel embeds one trajectory in time and cannot use unordered pairs; pass the trajectory "
                        "X of shape (T, D) with Y=None, or use method='exact' for pairs.")
    Xp, Yp = check_pairs(X, None, caller="hankel", orientation=orientation)
    traj = backend_of(Xp).hstack([Xp.T, Yp[-1:].T]).T  # (T, D)
    T, D = traj.shape
    d = default_delays(T, D) if delays is None else delays
    check_param("delays", d, Interval(int, 1, T - 2), caller="hankel",
                fix=f"with T = {T} snapshots at most T - 2 = {T - 2} delays leave 2 embedded pairs")
    H = delay_embed(traj, d)  # (T - d + 1, d D)
    spec = fit_projected(H[:-1], H[1:], method="hankel", reason=reason, rank=rank, energy=energy, modes=modes,
                         residuals=residuals, holdout=holdout, residual_threshold=residual_threshold, svd=svd,
                         seed=seed, oversampling=oversampling, power_iterations=power_iterations, delays=d)
    if spec.modes is None:
        return spec
    block = spec.modes[:D]  # (D, k) current-time block
    norms = np.linalg.norm(block, axis=0)
    from dataclasses import replace

    return replace(spec, modes=block / np.where(norms > 0, norms, 1.0))
