"""The Tracy–Widom distribution TW₁ (β = 1, real symmetric / real Wishart) as a Fredholm determinant.

The largest eigenvalue of a GOE matrix, or of a real white Wishart matrix XᵀX, fluctuates on the edge scale
with the law F₁ (Tracy & Widom 1996). Bornemann (2010, "On the numerical evaluation of distributions in
random matrix theory", Math. Comp. 79, 2010) writes it as a Fredholm determinant

    F₁(s) = det(I − K₁)  on L²(s, ∞),        K₁(x, y) = ½ Ai((x + y) / 2),

and evaluates it with the Nyström method: with Gauss–Legendre nodes x_i and weights w_i on a truncation
[s, b] of the half-line, det(I − K₁) ≈ det(δ_ij − √w_i K₁(x_i, x_j) √w_j). The error decays exponentially
in the number of nodes for this analytic kernel; 64 nodes reach about 1e-15 for s ≥ −4.

The symmetrised Nyström matrix has real eigenvalues μ_i < 1 (of either sign), so

    log F₁(s) = Σ log(1 − μ_i),        1 − F₁(s) = −expm1(Σ log(1 − μ_i)),

which keeps the survival function accurate to relative precision deep in the right tail, where 1 − det
would cancel. In the left tail 1 − μ_i loses digits as F₁ → 0: F₁ itself is accurate to about 1e-15
absolutely, and to relative precision only down to F₁ ≈ 1e-12 (s ≈ −8). Checked values: mean −1.2065336,
quantiles F₁⁻¹(0.95) = 0.97932, F₁⁻¹(0.99) = 2.02345 (tests/rmt/test_tracy_widom.py).

The right tail behaves as 1 − F₁(s) ≈ exp(−⅔ s^{3/2}) / (4√π s^{3/4}) (the ratio is 0.975 at s = 10 and
tends to 1). :func:`tw1_tail_quantile` is the closed form that Kritchman & Nadler (2009) obtain by also
dropping the s^{3/4} factor, s(α) = (−3/2 · log(4√π α))^{2/3}: a conservative over-estimate (24 % high at
α = 0.01).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.optimize as sopt
import scipy.special as sspec

from koopscope._validation import Interval, check_param

__all__ = ["tw1_cdf", "tw1_quantile", "tw1_sf", "tw1_tail_quantile"]

#: Gauss–Legendre nodes for s ≥ −4 (double precision there); more for very negative s, where Ai oscillates.
NODES = 64
#: Truncation length past max(s, 0): the kernel's diagonal ½ Ai(b) is below 1e-20 at b = 14.
TRUNCATION = 14.0
#: Below this F₁(s) < 1e-50 (the left tail is exp(−|s|³/24)); the CDF is returned as 0.
LEFT_LIMIT = -14.0
#: Quantiles are searched in this bracket (F₁(−8) ≈ 2e-12, 1 − F₁(14) ≈ 2e-17).
BRACKET = (-8.0, 14.0)
#: The quantile domain: relative accuracy of F₁ near its lower end, double-precision 1 − p near its upper end.
P_RANGE = (1e-10, 1.0 - 1e-15)


@lru_cache(maxsize=64)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _log_det(s: float) -> float:
    """log det(I − K₁) on L²(s, ∞) by Nyström discretisation (Bornemann 2010, §4)."""
    b = max(s, 0.0) + TRUNCATION
    n = NODES + 8 * int(max(0.0, -s - 4.0))  # Ai((x+y)/2) oscillates with wavelength ~ 2π/√|s| for s < 0
    t, w = _legendre(n)
    x = s + (b - s) * (t + 1.0) / 2.0                       # (n,) nodes on [s, b]
    root_w = np.sqrt(w * (b - s) / 2.0)                     # (n,)
    kernel = 0.5 * sspec.airy((x[:, None] + x[None, :]) / 2.0)[0]   # (n, n) K₁(x_i, x_j)
    mu = np.linalg.eigvalsh(root_w[:, None] * kernel * root_w[None, :])  # (n,) symmetric Nyström matrix
    return float(np.sum(np.log1p(-np.clip(mu, None, 1.0 - 1e-16))))


def _map(fn, s: float | np.ndarray) -> float | np.ndarray:
    """Apply a scalar function elementwise; a scalar in gives a float out."""
    arr = np.asarray(s, dtype=np.float64)
    if arr.ndim == 0:
        return fn(float(arr))
    return np.vectorize(fn, otypes=[np.float64])(arr)


def _logcdf_scalar(s: float) -> float:
    if np.isnan(s):
        return float("nan")
    if s < LEFT_LIMIT:
        return float("-inf")
    if s == float("inf"):
        return 0.0
    return _log_det(s)


def tw1_cdf(s: float | np.ndarray) -> float | np.ndarray:
    """The TW₁ distribution function F₁(s) = P(TW₁ ≤ s), elementwise.

    >>> round(tw1_cdf(0.0), 6)
    0.831908
    """
    return _map(lambda v: float(np.exp(_logcdf_scalar(v))), s)


def tw1_sf(s: float | np.ndarray) -> float | np.ndarray:
    """The survival function 1 − F₁(s), elementwise, with relative accuracy in the right tail.

    >>> f"{tw1_sf(8.0):.4e}"
    '8.0454e-09'
    """
    return _map(lambda v: float(-np.expm1(_logcdf_scalar(v))), s)


@lru_cache(maxsize=256)
def _quantile(p: float) -> float:
    lo, hi = BRACKET
    if p >= 0.5:  # root-find on the survival function: 1 − p is known to full relative precision there
        return float(sopt.brentq(lambda v: np.log(tw1_sf(v)) - np.log1p(-p), lo, hi, xtol=1e-12, rtol=1e-12))
    return float(sopt.brentq(lambda v: _logcdf_scalar(v) - np.log(p), lo, hi, xtol=1e-12, rtol=1e-12))


def tw1_quantile(p: float) -> float:
    """The p-quantile F₁⁻¹(p) of TW₁, for p in [1e-10, 1 − 1e-15], by Brent's method on F₁ (cached).

    >>> round(tw1_quantile(0.95), 4), round(tw1_quantile(0.99), 4)
    (0.9793, 2.0234)
    """
    check_param("p", p, Interval(float, *P_RANGE), caller="tw1_quantile",
                fix="pass a probability strictly inside (0, 1), e.g. 0.95 for the 5 % upper critical value")
    return _quantile(float(p))


def tw1_tail_quantile(alpha: float) -> float:
    """Kritchman–Nadler closed-form upper critical value s(α) = (−3/2 · log(4√π α))^{2/3}.

    It solves exp(−⅔ s^{3/2}) / (4√π) = α, the right-tail asymptote without its s^{3/4} factor, so it
    over-estimates F₁⁻¹(1 − α) (by 37 % at α = 0.05, 24 % at 0.01, 16 % at 0.001). A cross-check only;
    thresholds use :func:`tw1_quantile`.
    """
    check_param("alpha", alpha, Interval(float, 0.0, 1.0 / (4.0 * np.sqrt(np.pi)), closed="neither"),
                caller="tw1_tail_quantile", fix="pass a small tail probability, e.g. 0.01")
    return float((-1.5 * np.log(4.0 * np.sqrt(np.pi) * alpha)) ** (2.0 / 3.0))
