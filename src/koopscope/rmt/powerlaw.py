"""Heavy-tail exponent α of an empirical spectral density by the continuous power-law MLE.

Heavy-tailed self-regularisation (Martin & Mahoney 2021) summarises a trained layer by the exponent of the
tail of its eigenvalue density ρ(λ) ∝ λ^{−α}, λ = s² the eigenvalues of WᵀW. Following Clauset, Shalizi &
Newman (2009, §3), for a lower cut-off x_min the maximum-likelihood exponent of the n tail values λ ≥ x_min
is

    α̂ = 1 + n / Σ_{λ_i ≥ x_min} log(λ_i / x_min),         σ_α = (α̂ − 1) / √n,

and x_min is the candidate that minimises the Kolmogorov–Smirnov distance between the tail's empirical CDF
and the fitted one, F(x) = 1 − (x / x_min)^{1−α̂}:

    D = max_{λ ≥ x_min} |F_emp(λ) − F(λ)|    (both one-sided gaps at every sample).

Candidates are the distinct positive sample values that leave at least ``min_tail`` points in the tail;
ties in D go to the smaller x_min (the longer tail). The scan over all candidates is one vectorised
O(n²) pass, in blocks of rows to bound memory.

Fingers. A few very large eigenvalues ("fingers", WeightWatcher issues #102, #229, #230) can pull α̂; this
module removes none by default and offers no clipping, because dropping the top of the sample without a
truncated-power-law likelihood biases α̂ upwards (WeightWatcher issue #103). ``ks_distance`` and
``sigma_alpha`` are returned so a caller can flag a poor or short fit instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koopscope._validation import Interval, Options, check_param
from koopscope.errors import DataError
from koopscope.rmt.bulk import check_spectrum

__all__ = ["PowerLawFit", "ks_scan", "powerlaw_alpha"]

#: Default smallest tail: σ_α = (α − 1)/√n is already 30 % of α − 1 at n = 10.
MIN_TAIL = 10
#: Candidates per block of the KS scan: a block reads only the samples from its first start on (the scan is
#: triangular), and 64 rows keep each temporary under 64 × n float64 (4 MB at n = 8192).
ROWS = 64


@dataclass(frozen=True)
class PowerLawFit:
    """A power-law fit ρ(λ) ∝ λ^{−α} for λ ≥ xmin to the n_tail largest eigenvalues.

    ``ks_distance`` is the Kolmogorov–Smirnov distance of the tail to the fit; ``sigma_alpha`` =
    (α − 1)/√n_tail the asymptotic standard error of α (Clauset, Shalizi & Newman 2009, §3).
    """

    alpha: float
    xmin: float
    n_tail: int
    ks_distance: float
    sigma_alpha: float


def _alphas(x: np.ndarray, starts: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """MLE α̂ of the tails x[i:] (x ascending, positive) with cut-offs ``cuts`` ≤ x[i], in O(n) by suffix sums."""
    log_x = np.log(x)                                           # (n,)
    suffix = np.cumsum(log_x[::-1])[::-1]                       # (n,) Σ_{j≥i} log x_j
    n_tail = x.size - starts                                    # (c,)
    log_ratio_sum = suffix[starts] - n_tail * np.log(cuts)      # (c,) Σ log(x_j / x_min)
    with np.errstate(divide="ignore"):
        return np.where(log_ratio_sum > 0, 1.0 + n_tail / np.maximum(log_ratio_sum, 1e-300), np.inf)


def ks_scan(x: np.ndarray, starts: np.ndarray, cuts: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """KS distance of each tail x[i:] (x ascending) to its fitted power law, for every start i in ``starts``.

    ``cuts`` (c,) are the cut-offs x_min and ``alphas`` (c,) the exponents, one per start.

    For the tail starting at i with n_i = n − i points, the sample x_j (rank r = j − i) sits between the
    empirical CDF values r / n_i and (r + 1) / n_i; D_i is the largest gap to F_i(x_j) over j ≥ i.
    """
    n = x.size
    out = np.empty(starts.size)
    log_x = np.log(x)                                           # (n,)
    for lo in range(0, starts.size, ROWS):
        i = starts[lo:lo + ROWS, None]                          # (b, 1) tail starts
        first = int(i.min())                                    # columns before the first start never count
        a = alphas[lo:lo + ROWS, None]                          # (b, 1)
        n_i = n - i                                             # (b, 1)
        rank = np.arange(first, n)[None, :] - i                 # (b, n − first) rank within the tail, < 0 outside
        with np.errstate(over="ignore", invalid="ignore"):
            fit = 1.0 - np.exp((1.0 - a) * (log_x[None, first:] - np.log(cuts[lo:lo + ROWS, None])))  # fitted CDF
        gap = np.maximum(np.abs((rank + 1) / n_i - fit), np.abs(rank / n_i - fit))
        gap = np.where(rank >= 0, gap, 0.0)                     # only samples in the tail count
        out[lo:lo + ROWS] = np.where(np.isfinite(a[:, 0]), gap.max(axis=1), np.inf)
    return out


def powerlaw_alpha(eigenvalues: object, *, xmin: float | str = "ks", min_tail: int = MIN_TAIL) -> PowerLawFit:
    """Fit ρ(λ) ∝ λ^{−α} to the tail of an eigenvalue sample by maximum likelihood.

    Parameters
    ----------
    eigenvalues : array of shape (n,)
        Non-negative eigenvalues λ = s² of WᵀW (any order; zeros are allowed and never in the tail).
    xmin : "ks" or float, default="ks"
        The lower cut-off: ``"ks"`` scans every sample value for the smallest KS distance (Clauset et al.
        2009); a number fixes it (the tail is then λ ≥ xmin).
    min_tail : int, default=10
        The fewest tail points a fit may use.

    Returns
    -------
    PowerLawFit
        α̂, x_min, tail size, KS distance and σ_α; never NaN.

    >>> rng = np.random.default_rng(0)
    >>> lam = (1.0 - rng.random(4000)) ** (-1.0 / 1.5)   # Pareto with density exponent α = 2.5, x_min = 1
    >>> fit = powerlaw_alpha(lam, xmin=1.0)
    >>> abs(fit.alpha - 2.5) < 3 * fit.sigma_alpha
    True
    """
    caller = "powerlaw_alpha"
    check_param("min_tail", min_tail, Interval(int, 2, None), caller=caller,
                fix="use at least 2 tail points; 10 or more for a meaningful exponent")
    check_param("xmin", xmin, Options(("ks",)), Interval(float, 0.0, None, closed="neither"), caller=caller,
                fix="pass 'ks' to choose it by the KS distance or a positive cut-off")
    x = np.sort(check_spectrum("eigenvalues", eigenvalues, caller))   # (n,) ascending
    positive = int(np.count_nonzero(x > 0))
    if positive < min_tail:
        raise DataError(f"The eigenvalues passed to {caller} have {positive} positive value(s), fewer than "
                        f"min_tail = {min_tail}; pass a larger spectrum or lower min_tail.")
    x = x[x.size - positive:]
    if xmin == "ks":
        starts = np.unique(x[: x.size - min_tail + 1], return_index=True)[1]   # first index of each value
        cuts = x[starts]
    else:
        starts = np.array([np.searchsorted(x, float(xmin), side="left")])
        cuts = np.array([float(xmin)])
        if x.size - starts[0] < min_tail:
            raise DataError(f"The cut-off xmin={xmin!r} passed to {caller} leaves {x.size - starts[0]} "
                            f"eigenvalue(s) in the tail, fewer than min_tail = {min_tail}; lower xmin or "
                            "min_tail.")
    alphas = _alphas(x, starts, cuts)
    distances = ks_scan(x, starts, cuts, alphas)
    best = int(np.argmin(distances))
    if not np.isfinite(distances[best]):
        raise DataError(f"The eigenvalues passed to {caller} have a tail of {x.size - starts[best]} equal "
                        "values, so no power law fits; pass a spectrum with distinct values.")
    n_tail = int(x.size - starts[best])
    alpha = float(alphas[best])
    return PowerLawFit(alpha, float(cuts[best]), n_tail, float(distances[best]), float((alpha - 1.0) / np.sqrt(n_tail)))
