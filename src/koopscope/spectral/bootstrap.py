"""Percentile-bootstrap confidence intervals of spectral statistics over snapshot pairs.

A fitted spectrum summarises N snapshot pairs; how much would its statistics move with other pairs from the
same dynamics? :func:`bootstrap` answers by resampling the pairs with replacement B times (seeded), refitting
the operator each time and reading the statistics off the refitted eigenvalues. The interval at level 1 − a
is the (a/2, 1 − a/2) percentile interval of the B replicates (Efron & Tibshirani 1993, §13.3).

What is held fixed. The refit repeats the kernel's *estimator*, not its model selection: the method, the
rank and the kernel's coordinates stay those of the original fit, so the interval measures sampling
variability of the operator, not the variability of rank selection. Concretely (see :func:`kernel_pairs`):

* exact, tls, randomized, whitened: the same kernel on the resampled (X, Y) at the original rank (a full-rank
  whitened fit is refitted at full rank, by its eigenvalue-only covariance path);
* hankel: exact DMD on resampled delay-embedded pairs (the original number of delays);
* edmd: exact DMD on resampled lifted pairs (ψ(X), ψ(Y)) with the original dictionary ψ.

Refits skip modes and residuals (eigenvalues only), so B = 200 refits cost about B eigenvalue solves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from koopscope._backend import backend_of
from koopscope._validation import Interval, check_param, check_seed
from koopscope.dmd import VARIANTS
from koopscope.dmd.hankel import delay_embed
from koopscope.dmd.spectrum import Spectrum
from koopscope.errors import DataError

__all__ = ["ConfidenceInterval", "bootstrap", "bootstrap_layers", "kernel_pairs", "percentile_interval"]

#: A statistic maps the eigenvalues (k,) of one fit to a number.
Statistic = Callable[[np.ndarray], float]
#: A depth statistic maps the eigenvalues of every layer's fit (one array per layer) to a number.
DepthStatistic = Callable[[Sequence[np.ndarray]], float]

# Kernels whose refit takes the original kernel on resampled raw pairs (and the option they must keep).
_SAME_KERNEL: dict[str, tuple[str, ...]] = {
    "exact": (), "randomized": (), "tls": ("forward_backward",), "whitened": ("eps",),
}


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with its percentile-bootstrap interval [low, high] and bootstrap bias estimate.

    ``bias`` is mean(replicates) − estimate (Efron & Tibshirani 1993, §10.2). An estimate outside its own
    interval (:attr:`excludes_estimate`) means the statistic is strongly biased at this sample size, e.g. the
    spectral radius of a high-dimensional operator fitted on few pairs per dimension, and the interval should
    not be trusted for a decision.
    """

    estimate: float
    low: float
    high: float
    bias: float = 0.0

    @property
    def excludes_estimate(self) -> bool:
        return not self.low <= self.estimate <= self.high

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "bias": self.bias}


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    """The (a/2, 1 − a/2) percentiles of the replicates (B,), a = 1 − level (linear interpolation)."""
    alpha = 1.0 - level
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def kernel_pairs(spectrum: Spectrum, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, str, dict]:
    """The pairs the kernel's operator acts on, and the refit (method, options) that holds the kernel fixed.

    X, Y are the raw snapshot pairs (N, D) of the original fit. Returns (Xk, Yk, method, options): for hankel
    the delay-embedded pairs, for edmd the lifted pairs ψ(X), ψ(Y), otherwise X, Y themselves.
    """
    method, rank = spectrum.method, int(spectrum.rank)
    if method in _SAME_KERNEL:
        kept = {k: spectrum.options[k] for k in _SAME_KERNEL[method] if k in spectrum.options}
        if method == "whitened" and spectrum.options.get("path") in ("cholesky", "eigh"):
            return X, Y, method, {"rank": None, **kept}  # a full-rank fit: refit by covariance algebra too
        return X, Y, method, {"rank": rank, **kept}
    if method == "hankel":
        delays = int(spectrum.options["delays"])
        traj = np.concatenate([X, Y[-1:]], axis=0)  # (N + 1, D): the pairs of one trajectory
        H = delay_embed(traj, delays)  # (N + 2 - delays, delays · D)
        return H[:-1], H[1:], "exact", {"rank": rank}
    if method == "edmd":
        psi = spectrum.options["dictionary"]
        return psi(X), psi(Y), "exact", {"rank": rank}
    raise DataError(f"The spectrum's method {method!r} passed to bootstrap has no pair-resampling refit; "
                    f"fit with one of {sorted([*_SAME_KERNEL, 'hankel', 'edmd'])} to bootstrap its statistics.")


def _refit_eigenvalues(Xb: np.ndarray, Yb: np.ndarray, method: str, options: Mapping[str, Any]) -> np.ndarray:
    kernel = VARIANTS[method]
    spec = kernel(Xb, Yb, modes=None, residuals=False, orientation="rows", **options)
    return np.asarray(spec.eigenvalues)


def _check_settings(n_boot: object, level: object, seed: object, caller: str) -> int:
    check_param("n_boot", n_boot, Interval(int, 0, None), caller=caller, fix="the default is 200")
    check_param("level", level, Interval(float, 0.0, 1.0, closed="neither"), caller=caller,
                fix="give a confidence level such as 0.95")
    return check_seed(seed, caller)


def _as_numpy(a: Any) -> np.ndarray:
    return np.asarray(backend_of(a).to_numpy(a), dtype=np.float64)


def bootstrap_layers(layers: Sequence[tuple[Spectrum, Any, Any]], statistics: Mapping[str, DepthStatistic], *,
                     n_boot: int = 200, level: float = 0.95, seed: int = 0) -> dict[str, ConfidenceInterval]:
    """Joint percentile-bootstrap intervals of statistics over depth (one fit per layer transition).

    Every layer's pairs (X_ℓ, Y_ℓ) must have the same N rows, row r being the same token in every layer (as
    in a residual-stream capture): each replicate resamples the N token positions once and refits every
    layer on the same rows, so a statistic such as max_ℓ ρ_ℓ sees the layers' joint variability.

    Parameters
    ----------
    layers : sequence of (Spectrum, X, Y)
        Per transition: its fit and the pairs (N, D_ℓ) it was fitted on.
    statistics : mapping of name to callable
        Each maps the per-layer eigenvalue arrays (a list, one (k_ℓ,) array per layer) to a float.
    n_boot, level, seed
        As in :func:`bootstrap`.
    """
    seed = _check_settings(n_boot, level, seed, "bootstrap_layers")
    if not layers:
        raise DataError("layers passed to bootstrap_layers is empty; give one (spectrum, X, Y) per transition.")
    refits = [kernel_pairs(spec, _as_numpy(X), _as_numpy(Y)) for spec, X, Y in layers]
    sizes = {Xk.shape[0] for Xk, *_ in refits}
    if len(sizes) != 1:
        raise DataError(f"The layers passed to bootstrap_layers have different numbers of pairs {sorted(sizes)}; "
                        "a joint bootstrap needs the same token rows in every layer.")
    n = sizes.pop()
    spectra = [np.asarray(spec.eigenvalues) for spec, _, _ in layers]
    estimates = {name: float(stat(spectra)) for name, stat in statistics.items()}
    if n_boot == 0:
        return {name: ConfidenceInterval(v, v, v) for name, v in estimates.items()}
    rng = np.random.default_rng(seed)
    replicates = {name: np.empty(n_boot) for name in statistics}
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)  # (N,) resampled token rows, shared by every layer
        lams = [_refit_eigenvalues(Xk[idx], Yk[idx], method, {**options, "seed": seed + 1 + b})
                for Xk, Yk, method, options in refits]
        for name, stat in statistics.items():
            replicates[name][b] = stat(lams)
    return {name: ConfidenceInterval(estimates[name], *percentile_interval(replicates[name], level),
                                     bias=float(replicates[name].mean() - estimates[name]))
            for name in statistics}


def bootstrap(spectrum: Spectrum, X: Any, Y: Any, statistics: Mapping[str, Statistic], *, n_boot: int = 200,
              level: float = 0.95, seed: int = 0) -> dict[str, ConfidenceInterval]:
    """Percentile-bootstrap intervals of ``statistics`` of the operator fitted to the pairs (X, Y).

    Parameters
    ----------
    spectrum : Spectrum
        The fit of the full data; each statistic's ``estimate`` is taken from its eigenvalues.
    X, Y : array_like of shape (N, D)
        The snapshot pairs the spectrum was fitted on (rows are snapshots).
    statistics : mapping of name to callable
        Each maps an eigenvalue array (k,) to a float, e.g. ``koopscope.spectral.spectral_radius``.
    n_boot : int, default=200
        Bootstrap replicates B; 0 gives the degenerate interval [estimate, estimate].
    level : float in (0, 1), default=0.95
    seed : int, default=0
        Seeds the resampling; the same inputs and seed give the same intervals.

    Returns
    -------
    dict of name to ConfidenceInterval

    >>> import numpy as np, koopscope as ks
    >>> rng = np.random.default_rng(0)
    >>> traj = np.empty((400, 2)); traj[0] = [1.0, 0.0]
    >>> A = np.array([[0.9, -0.2], [0.2, 0.9]])
    >>> for t in range(399): traj[t + 1] = A @ traj[t] + 0.05 * rng.standard_normal(2)
    >>> spec = ks.dmd.exact(traj)
    >>> ci = bootstrap(spec, traj[:-1], traj[1:], {"rho": ks.spectral.spectral_radius}, n_boot=100)
    >>> ci["rho"].low < 0.922 < ci["rho"].high
    True
    """
    _check_settings(n_boot, level, seed, "bootstrap")
    depth = {name: (lambda lams, stat=stat: stat(lams[0])) for name, stat in statistics.items()}
    return bootstrap_layers([(spectrum, X, Y)], depth, n_boot=n_boot, level=level, seed=seed)
