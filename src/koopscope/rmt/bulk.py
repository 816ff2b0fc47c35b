"""The Marchenko–Pastur bulk of a weight matrix: its noise level, edges, Tracy–Widom threshold and spikes.

Model. An m × n matrix W = S + σZ, Z with iid N(0, 1) entries and S of low rank. Write M = max(m, n),
N = min(m, n), c = N / M. Without signal the singular values of σZ fill the bulk

    [σ(√M − √N), σ(√M + √N)]                                        (Marchenko & Pastur 1967)

and the largest one fluctuates around the upper edge on the Tracy–Widom scale. A spike is a singular value
that a test at level α places above that edge. The module answers, for a vector ``s`` of singular values
(any order; sorted descending inside) and the matrix ``shape``:

* :func:`noise_level` / :func:`noise_estimate`: σ̂ from the spectrum (median, MP-PCA, trimmed Frobenius);
* :func:`mp_edges`, :func:`tw_threshold`: the bulk edges and the level-α edge test for given σ;
* :func:`spike_count`: the number of spikes by a sequential Tracy–Widom test (Kritchman & Nadler 2009);
* :func:`stable_rank`; :func:`bbp_threshold`, :func:`bbp_location`: where a planted rank-1 signal θ uvᵀ
  separates from the bulk (Benaych-Georges & Nadakuditi 2012).

Every function is invariant under transposition (only M and N enter) and equivariant under W → cW: σ̂,
edges, thresholds and BBP quantities scale by c, counts do not change.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from koopscope._linalg import mp_median
from koopscope._validation import Interval, Options, check_param
from koopscope.errors import DataError, ParameterError
from koopscope.rmt.tracy_widom import tw1_quantile

__all__ = [
    "NOISE_METHODS",
    "NoiseEstimate",
    "bbp_location",
    "bbp_threshold",
    "mp_edges",
    "noise_estimate",
    "noise_level",
    "spike_count",
    "stable_rank",
    "tw_center_scale",
    "tw_threshold",
]

NOISE_METHODS = ("median", "mp-pca", "trimmed-frobenius")
#: A test level below this would ask TW₁ for a quantile beyond double precision (see tracy_widom.P_RANGE).
ALPHA_RANGE = Interval(float, 1e-15, 0.5)
#: Relative slack when checking ‖W‖_F² ≥ Σ s_i² (both are rounded sums).
FROBENIUS_RTOL = 1e-10


@dataclass(frozen=True)
class NoiseEstimate:
    """An estimate σ̂ of the entries' noise standard deviation.

    ``signal_rank`` is the number of leading singular values the method set aside as signal: the MP-PCA p,
    the k known values of the trimmed Frobenius estimate, and None for the median (which sets none aside).
    """

    sigma: float
    method: str
    signal_rank: int | None


# ----------------------------------------------------------------------------------------------- validation

def check_shape(shape: object, caller: str) -> tuple[int, int]:
    """(m, n) as two positive Python ints, or a ParameterError naming the value."""
    ok = (isinstance(shape, tuple | list) and len(shape) == 2
          and all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in shape))
    if not ok:
        raise ParameterError(f"The 'shape' parameter of {caller} must be a pair (m, n) of positive ints; got "
                             f"{shape!r}: pass W.shape of the 2-D weight matrix.")
    return int(shape[0]), int(shape[1])  # type: ignore[index]


def check_spectrum(name: str, values: object, caller: str) -> np.ndarray:
    """A non-empty 1-D float64 array of finite, non-negative values, or a DataError naming the first bad one."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"The {name} passed to {caller} could not be read as a 1-D array of numbers; pass a "
                        "numpy array or a list of floats.") from None
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(f"The {name} passed to {caller} must be a non-empty 1-D array; got shape {arr.shape}: "
                        "pass the spectrum of one matrix, e.g. np.linalg.svd(W, compute_uv=False).")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise DataError(f"The {name} passed to {caller} contain {bad.size} NaN/Inf value(s), the first at index "
                        f"{bad[0]}; the spectrum of a finite matrix is finite: check the weights.")
    negative = np.flatnonzero(arr < 0)
    if negative.size:
        raise DataError(f"The {name} passed to {caller} contain {negative.size} negative value(s), the first "
                        f"{float(arr[negative[0]])!r} at index {negative[0]}; they must be >= 0: pass singular values "
                        "or eigenvalues of WᵀW, not signed eigenvalues.")
    return arr


def _check_singular_values(s: object, shape: tuple[int, int], caller: str) -> np.ndarray:
    """Validated singular values sorted descending, at most min(m, n) of them."""
    arr = check_spectrum("singular values", s, caller)
    if arr.size > min(shape):
        raise DataError(f"The singular values passed to {caller} number {arr.size}, more than min(m, n) = "
                        f"{min(shape)} for shape {shape}; pass the spectrum of a matrix of that shape.")
    return np.sort(arr)[::-1]


def _check_sigma(sigma: object, caller: str) -> float:
    check_param("sigma", sigma, Interval(float, 0.0, None), caller=caller,
                fix="pass the entries' noise standard deviation, e.g. noise_level(s, shape)")
    return float(sigma)  # type: ignore[arg-type]


def _check_frobenius(frobenius_sq: object, top: np.ndarray, caller: str) -> float:
    """‖W‖_F², checked to be at least the sum of the given squared singular values."""
    check_param("frobenius_sq", frobenius_sq, Interval(float, 0.0, None), caller=caller,
                fix="pass the squared Frobenius norm, e.g. float((W ** 2).sum())")
    total = float(frobenius_sq)  # type: ignore[arg-type]
    known = float(np.sum(top**2))
    if total < known * (1.0 - FROBENIUS_RTOL):
        raise DataError(f"The 'frobenius_sq' passed to {caller} is {total!r}, below the sum {known!r} of the "
                        "squared singular values given; pass ‖W‖_F² of the same matrix.")
    return max(total, known)


# ------------------------------------------------------------------------------------------- noise level

def _median_sigma(s: np.ndarray, m: int, n: int) -> float:
    """Gavish–Donoho (2014, Eq. 10): σ̂ = s_med / √(M μ_c), μ_c the median of MP with ratio c = N/M."""
    big, small = max(m, n), min(m, n)
    return float(np.median(s) / np.sqrt(big * mp_median(small / big)))


def _mp_pca(s: np.ndarray, m: int, n: int) -> tuple[float, int]:
    """Veraart et al. (2016) MP-PCA on λ = s² (descending, all N of them): (σ̂, signal rank p).

    For each candidate p the trailing λ_{p+1} ≥ … ≥ λ_N are taken as the spectrum of an (M−p) × (N−p)
    noise matrix, whose eigenvalues have sum σ²(M−p)(N−p) and range 4σ²√((M−p)(N−p)). Two estimates

        σ²_mean(p)  = Σ_{i>p} λ_i / ((M−p)(N−p)),     σ²_range(p) = (λ_{p+1} − λ_N) / (4√((M−p)(N−p)))

    agree on pure noise; a spike left in the trailing set inflates the range far more than the mean. The
    rank is the smallest p with σ²_range(p) ≤ σ²_mean(p) (p = N − 1 always qualifies) and σ̂² = σ²_mean(p).
    """
    big, small = max(m, n), min(m, n)
    lam = s**2                                                  # (N,) descending
    p = np.arange(small)                                        # candidate signal ranks
    dof = (big - p) * (small - p)                               # (N,) noise degrees of freedom
    tail_sum = np.cumsum(lam[::-1])[::-1]                       # (N,) Σ_{i≥p} λ_i (0-based)
    sigma2_mean = tail_sum / dof
    sigma2_range = (lam - lam[-1]) / (4.0 * np.sqrt(dof))
    rank = int(np.argmax(sigma2_range <= sigma2_mean))
    return float(np.sqrt(sigma2_mean[rank])), rank


def _trimmed_sigma(top: np.ndarray, m: int, n: int, frobenius_sq: float) -> float:
    """σ̂² = (‖W‖_F² − Σ_{i≤k} s_i²) / ((m − k)(n − k)) from the top k singular values."""
    k = top.size
    return float(np.sqrt(max(frobenius_sq - np.sum(top**2), 0.0) / ((m - k) * (n - k))))


def _check_noise_inputs(values: np.ndarray, shape: tuple[int, int], method: str, frobenius_sq: object,
                        caller: str, *, trim_all: bool) -> float:
    """Check that ``values`` and ``frobenius_sq`` suit ``method``; returns ‖W‖_F² for the trimmed estimate.

    ``trim_all``: the trimmed estimate removes every given value (noise_estimate), so a full spectrum
    leaves no noise; otherwise (spike_count) it removes only the spikes found, and a full spectrum supplies
    ‖W‖_F² = Σ s_i² itself.
    """
    m, n = shape
    full = values.size == min(m, n)
    if method == "trimmed-frobenius":
        if trim_all and full:
            raise DataError(f"The singular values passed to {caller} number {values.size} = min(m, n), which "
                            "leaves no noise for method='trimmed-frobenius'; use method='median' on a full "
                            "spectrum.")
        if frobenius_sq is None and not full:
            raise ParameterError(f"The 'frobenius_sq' parameter of {caller} is required by method="
                                 "'trimmed-frobenius' with a partial spectrum; got None: pass "
                                 "float((W ** 2).sum()).")
        return float(np.sum(values**2)) if frobenius_sq is None else _check_frobenius(frobenius_sq, values,
                                                                                      caller)
    if frobenius_sq is not None:
        raise ParameterError(f"The 'frobenius_sq' parameter of {caller} is only used by method="
                             f"'trimmed-frobenius'; got {frobenius_sq!r} with method={method!r}: drop it.")
    if not full:
        raise DataError(f"The singular values passed to {caller} number {values.size}, but method={method!r} "
                        f"needs all min(m, n) = {min(m, n)} of the {m}x{n} matrix; pass the full spectrum or "
                        "use method='trimmed-frobenius' with frobenius_sq.")
    return float("nan")


def noise_estimate(s: object, shape: tuple[int, int], *, method: str = "median",
                   frobenius_sq: float | None = None) -> NoiseEstimate:
    """Estimate the noise standard deviation σ of the entries of an m × n matrix from its singular values.

    Parameters
    ----------
    s : array of shape (k,)
        Singular values (any order). ``"median"`` and ``"mp-pca"`` need all k = min(m, n) of them;
        ``"trimmed-frobenius"`` takes the top k < min(m, n).
    shape : (int, int)
        The matrix shape (m, n); the result does not depend on its order.
    method : {"median", "mp-pca", "trimmed-frobenius"}, default="median"
        * ``"median"`` (Gavish & Donoho 2014): σ̂ = s_med / √(M μ_c), with μ_c the exact median of the MP law
          of ratio c = N / M (:func:`koopscope._linalg.mp_median`). Consistent, and robust to spikes: r spikes
          move the median by r/2 order statistics, a relative change of order r / N.
        * ``"mp-pca"`` (Veraart, Fieremans & Novikov 2016): the smallest signal rank p whose trailing N − p
          eigenvalues λ = s² fit an MP law of their own mean, σ̂² = Σ_{i>p} λ_i / ((M − p)(N − p)); returns p
          as ``signal_rank``. On pure noise p = 0 in about 9 cases out of 10 and 1–2 otherwise (measured at
          N = 64–128: a large s₁ stretches the sample range past the MP width), and σ̂ then drops with it.
        * ``"trimmed-frobenius"``: for when only the top k singular values are known (a Lanczos run),
          σ̂² = (‖W‖_F² − Σ_{i≤k} s_i²) / ((m − k)(n − k)). Bias: a spike θ uvᵀ has s² ≈ θ² + σ²(M + N)
          + σ⁴MN/θ² (BBP), and the (m − k)(n − k) correction removes about σ²(M + N) per value, so a strong
          spike (θ ≫ σ(MN)^{1/4}) is removed without bias. A noise value among the top k (or a spike near the
          BBP threshold) removes about σ²(√M + √N)², so σ̂² is low by up to 2k / √(MN) relative (1 % for
          k = 8 at 768 × 3072, i.e. σ̂ low by 0.5 %); spikes beyond the top k bias σ̂² up by θ² / (mn) each.
    frobenius_sq : float, optional
        ‖W‖_F², required by ``"trimmed-frobenius"`` and refused by the other methods.

    Returns
    -------
    NoiseEstimate
        σ̂, the method, and the signal rank it set aside (None for the median).

    References
    ----------
    Gavish & Donoho, "The optimal hard threshold for singular values is 4/√3", IEEE Trans. Inf. Theory 60
    (2014). Veraart et al., "Denoising of diffusion MRI using random matrix theory", NeuroImage 142 (2016).
    """
    caller = "noise_estimate"
    m, n = check_shape(shape, caller)
    check_param("method", method, Options(NOISE_METHODS), caller=caller,
                fix="use 'median' for a full spectrum or 'trimmed-frobenius' for the top k values")
    values = _check_singular_values(s, (m, n), caller)
    total = _check_noise_inputs(values, (m, n), method, frobenius_sq, caller, trim_all=True)
    if method == "trimmed-frobenius":
        return NoiseEstimate(_trimmed_sigma(values, m, n, total), method, int(values.size))
    if method == "median":
        return NoiseEstimate(_median_sigma(values, m, n), method, None)
    sigma, rank = _mp_pca(values, m, n)
    return NoiseEstimate(sigma, method, rank)


def noise_level(s: object, shape: tuple[int, int], *, method: str = "median",
                frobenius_sq: float | None = None) -> float:
    """σ̂ of the entries of an m × n matrix from its singular values (see :func:`noise_estimate`).

    >>> rng = np.random.default_rng(0)
    >>> s = np.linalg.svd(0.02 * rng.standard_normal((200, 400)), compute_uv=False)
    >>> round(noise_level(s, (200, 400)), 3)
    0.02
    """
    return noise_estimate(s, shape, method=method, frobenius_sq=frobenius_sq).sigma


# --------------------------------------------------------------------------------------- edges and test

def mp_edges(sigma: float, shape: tuple[int, int]) -> tuple[float, float]:
    """The singular-value MP bulk [σ(√M − √N), σ(√M + √N)] of an m × n matrix with entry std σ."""
    m, n = check_shape(shape, "mp_edges")
    sigma = _check_sigma(sigma, "mp_edges")
    big, small = np.sqrt(max(m, n)), np.sqrt(min(m, n))
    return float(sigma * (big - small)), float(sigma * (big + small))


def tw_center_scale(shape: tuple[int, int]) -> tuple[float, float]:
    """Centring μ and scale τ of the top eigenvalue of ZᵀZ, Z an m × n matrix of iid N(0, 1) entries.

    With the half-integer corrections of Johnstone (2001) as refined by Ma (2012),

        μ = (√(m − ½) + √(n − ½))²,       τ = √μ (1/√(m − ½) + 1/√(n − ½))^{1/3},

    (λ₁ − μ) / τ → TW₁, with an error of order N^{−2/3} in the distribution function.
    """
    return _center_scale(*check_shape(shape, "tw_center_scale"))


def _center_scale(m: int, n: int) -> tuple[float, float]:
    a, b = math.sqrt(m - 0.5), math.sqrt(n - 0.5)
    mu = (a + b) ** 2
    return mu, math.sqrt(mu) * (1.0 / a + 1.0 / b) ** (1.0 / 3.0)


def tw_threshold(sigma: float, shape: tuple[int, int], alpha: float) -> float:
    """The singular value that the top singular value of σZ (m × n, iid N(0, 1)) exceeds with probability α.

    threshold = σ √(μ + τ q₁₋α), with (μ, τ) from :func:`tw_center_scale` and q₁₋α the TW₁ quantile. For
    tiny matrices where μ + τ q₁₋α < 0 (only min(m, n) = 1 with α near ½) the threshold is 0. At transformer
    sizes it sits within a percent of the MP edge: 768 × 3072 gives edge × 1.0044 at α = 0.01.

    >>> round(tw_threshold(1.0, (768, 3072), 0.01) / mp_edges(1.0, (768, 3072))[1], 4)
    1.0044
    """
    caller = "tw_threshold"
    m, n = check_shape(shape, caller)
    sigma = _check_sigma(sigma, caller)
    check_param("alpha", alpha, ALPHA_RANGE, caller=caller,
                fix="pass the false-alarm probability of the test, e.g. 0.01")
    return _tw_value(sigma, m, n, tw1_quantile(1.0 - alpha))


def _tw_value(sigma: float, m: int, n: int, quantile: float) -> float:
    """σ √(μ + τ q) for checked arguments (the inner loop of :func:`spike_count`)."""
    mu, tau = _center_scale(m, n)
    return sigma * math.sqrt(max(mu + tau * quantile, 0.0))


def _sigma_after(values: np.ndarray, shape: tuple[int, int], k: int, method: str, frobenius_sq: float) -> float:
    """σ̂ from the values left once the top k are declared spikes (the noise of an (m − k) × (n − k) matrix)."""
    m, n = shape
    if method == "median":
        return _median_sigma(values[k:], m - k, n - k)
    if method == "mp-pca":
        return _mp_pca(values[k:], m - k, n - k)[0]
    return _trimmed_sigma(values[:k], m, n, frobenius_sq)


def spike_count(s: object, shape: tuple[int, int], *, alpha: float = 0.01, sigma: float | None = None,
                method: str = "trimmed-frobenius", frobenius_sq: float | None = None) -> int:
    """The number of spikes: singular values above the noise bulk by a sequential Tracy–Widom test.

    Kritchman & Nadler (2009) test "at least k + 1 spikes" against "exactly k" for k = 0, 1, …, stopping at
    the first acceptance. The variant here, for a rectangular matrix: with k spikes found, the trailing
    values s_{k+1} ≥ s_{k+2} ≥ … are treated as the spectrum of an (m − k) × (n − k) noise matrix (a rank-k
    signal removes k dimensions from each side), and s_{k+1} is a spike when

        s_{k+1} > tw_threshold(σ̂_k, (m − k, n − k), α),

    where σ̂_k = ``sigma`` if given, else re-estimated at every step from what is not yet a spike. The
    default, as in Kritchman & Nadler, is the trace estimate σ̂²_k = (‖W‖_F² − Σ_{i≤k} s_i²) / ((m − k)(n − k))
    (``"trimmed-frobenius"``; ‖W‖_F² = Σ s_i² for a full spectrum). ``"median"`` and ``"mp-pca"`` apply
    those estimators to s_{k+1}, … with shape (m − k, n − k).

    Level. Each step is a level-α test, so a pure-noise matrix gets a count > 0 with probability ≈ α (with
    the trace estimate: measured 0.034–0.051 at α = 0.05 over 3000 Gaussian matrices each of 64 × 256,
    128 × 128, 96 × 384). The median estimate is robust to spikes but noisy: its relative error (about 1 %
    at N = 128) is comparable with the Tracy–Widom scale of s₁ (1.2 %), and the level inflates to 0.035–0.10
    at α = 0.05 for those shapes (0.15 at 32 × 32); MP-PCA's σ̂ drops exactly when s₁ is large, with a similar
    inflation (0.05–0.11). Use them when the bulk is far from Gaussian, not for a calibrated count.

    Parameters
    ----------
    s : array of shape (k,)
        Singular values, any order: all min(m, n) of them, or the top k with ``frobenius_sq`` for
        ``"trimmed-frobenius"`` (or any number when ``sigma`` is given).
    shape : (int, int)
        The matrix shape (m, n).
    alpha : float, default=0.01
        Level of each test, in [1e-15, 0.5].
    sigma : float, optional
        The known entry standard deviation; skips estimation (``method`` and ``frobenius_sq`` are then ignored).
    method : {"trimmed-frobenius", "median", "mp-pca"}, default="trimmed-frobenius"
        Noise estimator used when ``sigma`` is None (see :func:`noise_estimate`).
    frobenius_sq : float, optional
        ‖W‖_F², for ``"trimmed-frobenius"`` with a partial spectrum.

    Returns
    -------
    int
        The spike count, at most min(len(s), min(m, n) − 1): at least one value is always left as noise.
        A count equal to len(s) for a partial spectrum is a lower bound; pass more singular values.
    """
    caller = "spike_count"
    m, n = check_shape(shape, caller)
    check_param("alpha", alpha, ALPHA_RANGE, caller=caller, fix="pass the level of each test, e.g. 0.01")
    check_param("method", method, Options(NOISE_METHODS), caller=caller,
                fix="use 'trimmed-frobenius' (the default), 'median' or 'mp-pca'")
    values = _check_singular_values(s, (m, n), caller)
    total = float("nan")
    if sigma is not None:
        sigma = _check_sigma(sigma, caller)
    else:
        total = _check_noise_inputs(values, (m, n), method, frobenius_sq, caller, trim_all=False)
    limit = min(values.size, min(m, n) - 1)
    quantile = tw1_quantile(1.0 - alpha)
    for k in range(limit):
        sigma_k = sigma if sigma is not None else _sigma_after(values, (m, n), k, method, total)
        if values[k] <= _tw_value(sigma_k, m - k, n - k, quantile):
            return k
    return limit


def stable_rank(s: object, *, frobenius_sq: float | None = None) -> float:
    """The stable rank ‖W‖_F² / ‖W‖₂² = Σ s_i² / s_1², in [1, rank W].

    With only the top singular values known, pass ``frobenius_sq`` = ‖W‖_F² for the numerator.
    """
    values = check_spectrum("singular values", s, "stable_rank")
    top = float(values.max())
    if top == 0.0:
        raise DataError("The singular values passed to stable_rank are all zero; the stable rank of a zero "
                        "matrix is undefined: check the weights.")
    total = float(np.sum(values**2)) if frobenius_sq is None else _check_frobenius(frobenius_sq, values,
                                                                                   "stable_rank")
    return total / top**2


# ------------------------------------------------------------------------------------------------- BBP

def bbp_threshold(shape: tuple[int, int], *, sigma: float = 1.0) -> float:
    """The smallest rank-1 signal strength θ (of θ u vᵀ, unit u, v) that produces an outlier: σ (mn)^{1/4}.

    Benaych-Georges & Nadakuditi (2012): in units of σ√M the noise edge is 1 + √c and the phase transition
    is θ = c^{1/4}, i.e. θ = σ √M c^{1/4} = σ (MN)^{1/4} in the units of W.
    """
    m, n = check_shape(shape, "bbp_threshold")
    sigma = _check_sigma(sigma, "bbp_threshold")
    return float(sigma * (m * n) ** 0.25)


def bbp_location(theta: float, shape: tuple[int, int], *, sigma: float = 1.0) -> float:
    """The asymptotic top singular value of θ u vᵀ + σZ (Z an m × n matrix of iid N(0, 1) entries).

    With t = θ / (σ√M) (Benaych-Georges & Nadakuditi 2012, §3.1),

        s₁ → σ√M · √((1 + t²)(c + t²)) / t    for t > c^{1/4},     and the bulk edge σ(√M + √N) otherwise;

    the two branches meet at the threshold. Fluctuations around the limit are Gaussian of order σ, small
    against σ√M.
    """
    caller = "bbp_location"
    m, n = check_shape(shape, caller)
    sigma = _check_sigma(sigma, caller)
    check_param("theta", theta, Interval(float, 0.0, None), caller=caller,
                fix="pass the signal strength θ >= 0 of θ u vᵀ, in the units of W")
    big, c = max(m, n), min(m, n) / max(m, n)
    if sigma == 0.0:
        return float(theta)
    t = float(theta) / (sigma * np.sqrt(big))
    if t <= c**0.25:
        return mp_edges(sigma, (m, n))[1]
    return float(sigma * np.sqrt(big) * np.sqrt((1.0 + t**2) * (c + t**2)) / t)
