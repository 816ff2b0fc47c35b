"""Exact DMD (Tu, Rowley, Luchtenburg, Brunton & Kutz 2014) with projected or exact modes."""

from __future__ import annotations

from typing import Any

from koopscope._backend import Array
from koopscope._validation import Interval, Options, check_pairs, check_param, check_seed
from koopscope.dmd.pod import pod, reduce
from koopscope.dmd.resdmd import holdout_split
from koopscope.dmd.spectrum import RESIDUAL_THRESHOLD, Spectrum, decompose

__all__ = ["exact"]


def check_common(modes: object, holdout: object, residual_threshold: object, caller: str) -> None:
    check_param("modes", modes, Options(("exact", "projected")), None, caller=caller,
                fix="'exact' modes are Y V S^-1 W / λ, 'projected' modes are Q W, None skips them")
    check_param("holdout", holdout, Interval(float, 0.0, 1.0, closed="neither"), None, caller=caller,
                fix="give the fraction of pairs held out for the ResDMD residuals, e.g. 0.2")
    check_param("residual_threshold", residual_threshold, Interval(float, 0.0, None, closed="neither"),
                caller=caller, fix="the default is 0.1")


def fit_projected(X: Array, Y: Array, *, method: str, reason: str, rank: int | str | None, energy: float | None,
                  modes: str | None, residuals: bool, holdout: float | None, residual_threshold: float, svd: str,
                  seed: int, oversampling: int, power_iterations: int, **extra: Any) -> Spectrum:
    """The shared projected-DMD pipeline: POD basis, reduced operator, eigenpairs, residuals."""
    check_common(modes, holdout, residual_threshold, method)
    seed = check_seed(seed, method)
    held = extra.pop("held", None)  # pairs for the residuals, already split off by the caller
    split = extra.pop("split", "in-sample" if held is None else "held-out")
    if holdout is not None:
        X, Y, *held = holdout_split(X, Y, holdout, seed)
    proj = pod(X, rank=rank, energy=energy, solver=svd, seed=seed, oversampling=oversampling,
               power_iterations=power_iterations, identity_ok=True, caller=method)
    red = reduce(X, Y, proj, exact_modes=modes == "exact", holdout=None if held is None else tuple(held))
    return decompose(
        red.operator, method=method, reason=reason, basis=proj.basis(), lift=red.lift,
        z0=red.z0, gal=red.gal if residuals else None, modes=modes is not None, rank=proj.s.size,
        singular_values=proj.s_all,
        n_pairs=X.shape[0], residual_split="held-out" if holdout is not None else split,
        residual_threshold=residual_threshold, options={"svd": proj.solver, **extra},
    )


def exact(X: Array, Y: Array | None = None, *, rank: int | str | None = None, energy: float | None = None,
          modes: str | None = "exact", residuals: bool = True, holdout: float | None = None,
          residual_threshold: float = RESIDUAL_THRESHOLD, svd: str = "auto", seed: int = 0,
          oversampling: int = 10, power_iterations: int = 2, orientation: str = "check",
          reason: str = "method='exact' requested") -> Spectrum:
    """Exact DMD of a trajectory X (T, D) or of pairs X, Y (N, D): the least-squares operator Y ≈ X A^T.

    Parameters
    ----------
    rank : None, "full", int or "svht", default=None
        Retained POD directions: None/"full" the numerical rank, an int r, or the Gavish-Donoho threshold.
    energy : float in (0, 1], optional
        Instead of ``rank``, keep the fewest directions holding this fraction of Σσ².
    modes : {"exact", "projected"} or None, default="exact"
        None skips the right eigenvectors (no modes or amplitudes); with ``residuals=False`` too, only
        eigenvalues are computed (the fastest path).
    residuals : bool, default=True
        Compute the ResDMD residual of every eigenpair.
    holdout : float in (0, 1), optional
        Fit on the other pairs and evaluate the residuals on this fraction, chosen at random (``seed``).
    svd : {"auto", "svd", "gram", "randomized"}, default="auto"
        How the POD basis is computed (see :mod:`koopscope.dmd.pod`).

    Returns
    -------
    Spectrum

    Examples
    --------
    >>> import numpy as np, koopscope as ks
    >>> X = np.random.default_rng(0).standard_normal((100, 3)); A = np.diag([0.9, 0.5, -0.3])
    >>> ks.dmd.exact(X, X @ A.T).eigenvalues.real.round(12)
    array([ 0.9,  0.5, -0.3])
    """
    X, Y = check_pairs(X, Y, caller="exact", orientation=orientation)
    return fit_projected(X, Y, method="exact", reason=reason, rank=rank, energy=energy, modes=modes,
                         residuals=residuals, holdout=holdout, residual_threshold=residual_threshold, svd=svd,
                         seed=seed, oversampling=oversampling, power_iterations=power_iterations)
