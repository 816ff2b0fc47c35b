"""Automatic kernel selection: ``select`` names a kernel and says why; ``fit`` runs it.

Rules, checked in this order (the thresholds are module constants):

1. T < 30 snapshots (a single trajectory) → ``hankel``: too few snapshots for a D-dimensional fit.
2. D > 5000 features → ``randomized``: an O(N D r) kernel instead of O(N D min(N, D)).
3. High noise → ``tls``. Linear dynamics y = A x give the stacked pairs Z = [X, Y] (N, 2D) a signal rank
   r ≤ D (lower when the Gavish-Donoho optimal hard threshold, with the exact Marchenko-Pastur median,
   finds fewer singular values above the noise); isotropic noise spreads over all 2D directions, so the
   noise carries about 2 Σ_{i>r} σ_i² / Σ σ_i² of the energy. Above 5 % the data are called noisy,
   unless an RBF lift explains the misfit (rule 4 first then). The median-only noise estimate of X alone
   is not used: it cannot tell full-rank states from noise.
4. Nonlinear → ``edmd``: the linear one-step prediction error on held-out pairs,
   ||Y_h - X_h Â^T||_F / ||Y_h - ȳ||_F, exceeds 0.3 and a 64-centre RBF regression cuts it by a third.
5. Otherwise ``exact``.

The diagnostics of rules 3-4 run on at most 1024 pairs drawn with ``seed`` (half to fit, half to test),
so selection costs a small fraction of the fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from koopscope._backend import Array, backend_of
from koopscope._linalg import svht_threshold
from koopscope._validation import Options, check_pairs, check_param, check_seed
from koopscope.dmd.edmd import edmd_dictionary
from koopscope.dmd.spectrum import Spectrum

__all__ = ["select", "fit", "SHORT_T", "LARGE_D", "NOISE_FRACTION", "NONLINEAR_RESIDUAL"]

SHORT_T = 30  # koopgauge design: Hankel DMD for T < 30
LARGE_D = 5000  # koopgauge design: Krylov/randomized DMD for D > 5000
NOISE_FRACTION = 0.05  # share of energy attributed to noise above which TLS de-biasing is used
NONLINEAR_RESIDUAL = 0.3  # koopgauge design: EDMD fallback when the linear residual is > 0.3
NONLINEAR_GAIN = 2 / 3  # the RBF lift must cut the held-out linear residual by a third
DIAGNOSTIC_PAIRS = 1024


def _lstsq_residual(F: np.ndarray, Y: np.ndarray, Ft: np.ndarray, Yt: np.ndarray) -> float:
    """Held-out relative error of the least-squares regression Y ≈ F B, evaluated on (Ft, Yt)."""
    B = np.linalg.lstsq(F, Y, rcond=None)[0]  # (n_features, D)
    denom = np.linalg.norm(Yt - Yt.mean(axis=0))
    return float(np.linalg.norm(Yt - Ft @ B) / denom) if denom > 0 else 0.0


def _diagnostics(X: np.ndarray, Y: np.ndarray, seed: int) -> tuple[float, float, float]:
    """(noise energy fraction, linear held-out residual, RBF held-out residual) on a seeded subsample."""
    idx = np.random.default_rng(seed).permutation(X.shape[0])[:DIAGNOSTIC_PAIRS]
    half = max(1, idx.size // 2)
    fit, test = idx[:half], (idx[half:] if idx.size > half else idx)
    n, D = fit.size, X.shape[1]
    s = np.linalg.svd(np.hstack([X[fit], Y[fit]]), compute_uv=False)  # (min(n, 2D),)
    signal = min(D, int((s > svht_threshold(s, (n, 2 * D))).sum()))
    noise = float(min(1.0, 2 * np.sum(s[signal:] ** 2) / max(np.sum(s**2), np.finfo(float).tiny)))
    linear = _lstsq_residual(X[fit], Y[fit], X[test], Y[test])
    rbf = linear
    if linear > NONLINEAR_RESIDUAL:
        lift = edmd_dictionary(X[fit], dictionary="rbf", n_centers=min(64, n), centers="sample", seed=seed)
        rbf = _lstsq_residual(lift(X[fit]), Y[fit], lift(X[test]), Y[test])
    return noise, linear, rbf


def select(X: Array, Y: Array | None = None, *, seed: int = 0, orientation: str = "check") -> tuple[str, str]:
    """The kernel the rules above choose for these data, and the reason, e.g. ``("hankel", "T = 20 < 30 ...")``."""
    seed = check_seed(seed, "select")
    Xp, Yp = check_pairs(X, Y, caller="select", orientation=orientation)
    N, D = Xp.shape
    if Y is None and N + 1 < SHORT_T:
        return "hankel", f"T = {N + 1} < {SHORT_T} snapshots: short trajectory, delay-embedded (hankel) DMD"
    if D > LARGE_D:
        return "randomized", f"D = {D} > {LARGE_D} features: randomized (Krylov-type) DMD at rank 32"
    xp = backend_of(Xp)
    noise, linear, rbf = _diagnostics(xp.to_numpy(Xp), xp.to_numpy(Yp), seed)
    nonlinear = (f"linear one-step residual {linear:.2f} > {NONLINEAR_RESIDUAL} on held-out pairs and an RBF "
                 f"lift brings it to {rbf:.2f}: nonlinear dynamics, extended DMD")
    if linear > NONLINEAR_RESIDUAL and rbf < NONLINEAR_GAIN * linear:
        return "edmd", nonlinear
    if noise > NOISE_FRACTION:
        return "tls", (f"noise carries about {noise:.0%} of the energy (> {NOISE_FRACTION:.0%}; trailing singular "
                       "values of [X, Y] past the signal rank): total-least-squares de-biasing")
    if linear > NONLINEAR_RESIDUAL:
        return "edmd", nonlinear
    return "exact", (f"well-conditioned linear fit (noise {noise:.1%} of energy, held-out residual {linear:.2f}): "
                     "exact DMD")


def fit(X: Array, Y: Array | None = None, method: str = "auto", **options: Any) -> Spectrum:
    """Fit the kernel ``method`` (a key of :data:`koopscope.dmd.VARIANTS`, or ``"auto"``) and return its Spectrum.

    With ``"auto"``, :func:`select` picks the kernel and ``Spectrum.reason`` records why; ``options`` are
    passed to the kernel (``seed`` also to the selection).
    """
    from koopscope.dmd import VARIANTS

    check_param("method", method, Options(("auto", *VARIANTS)), caller="fit",
                fix="see koopscope.dmd.VARIANTS for the kernels")
    if method == "auto":
        method, reason = select(X, Y, seed=options.get("seed", 0), orientation=options.get("orientation", "check"))
        options["reason"] = reason
        if method == "edmd" and "n_centers" not in options:  # the selection's lift: at most one centre per pair
            options["n_centers"] = min(64, X.shape[0] - (Y is None))
    return VARIANTS[method](X, Y, **options)
