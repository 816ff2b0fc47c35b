"""The MP bulk: noise level, Tracy–Widom edge test, sequential spike count and BBP, against planted truth.

Every random matrix is seeded. Statistical assertions use binomial tests at the 1 % level on counts of
independent matrices, or tolerances of several measured standard errors, stated next to each assertion.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from koopscope.errors import DataError, ParameterError
from koopscope.rmt.bulk import (
    bbp_location,
    bbp_threshold,
    mp_edges,
    noise_estimate,
    noise_level,
    spike_count,
    stable_rank,
    tw_center_scale,
    tw_threshold,
)

NULL_SHAPES = [(64, 256), (128, 128), (96, 384)]   # transformer-like aspect ratios 1/4, 1, 1/4
NULL_PER_SHAPE = 300


def _unit(rng: np.random.Generator, d: int) -> np.ndarray:
    x = rng.standard_normal(d)
    return x / np.linalg.norm(x)


def _planted(rng: np.random.Generator, shape: tuple[int, int], multiples: list[float], sigma: float = 1.0
             ) -> np.ndarray:
    """σZ + Σ θ_i u_i v_iᵀ, θ_i = multiples_i × the BBP threshold, random unit u_i, v_i (nearly orthogonal)."""
    W = sigma * rng.standard_normal(shape)                                  # (m, n)
    for multiple in multiples:
        theta = multiple * bbp_threshold(shape, sigma=sigma)
        W += theta * np.outer(_unit(rng, shape[0]), _unit(rng, shape[1]))
    return W


def _svdvals(W: np.ndarray) -> np.ndarray:
    return np.linalg.svd(W, compute_uv=False)


@pytest.fixture(scope="module")
def null_spectra() -> dict[tuple[int, int], np.ndarray]:
    """Singular values (NULL_PER_SHAPE, min(m, n)) of seeded N(0, 1) matrices, per shape."""
    rng = np.random.default_rng(20240601)
    return {shape: np.array([_svdvals(rng.standard_normal(shape)) for _ in range(NULL_PER_SHAPE)])
            for shape in NULL_SHAPES}


def _consistent_with(count: int, trials: int, p: float) -> bool:
    """True unless a two-sided exact binomial test rejects rate p at the 1 % level (99 % Clopper–Pearson)."""
    return binomtest(count, trials, p).pvalue >= 0.01


# -------------------------------------------------------------------------------------------- null level

def test_edge_test_with_known_sigma_has_level_alpha(null_spectra):
    alpha = 0.05
    exceed = sum(int(np.sum(s[:, 0] > tw_threshold(1.0, shape, alpha))) for shape, s in null_spectra.items())
    assert _consistent_with(exceed, 3 * NULL_PER_SHAPE, alpha), exceed


def test_spike_count_on_pure_noise_has_level_alpha(null_spectra):
    # count > 0 on a null matrix is exactly a first-step false alarm of the sequential test, with the trace
    # estimate σ̂² = ‖W‖_F² / (mn) (the default): measured 0.034–0.051 per shape over 3000 matrices each.
    alpha = 0.05
    alarms = sum(sum(spike_count(row, shape, alpha=alpha) > 0 for row in s) for shape, s in null_spectra.items())
    assert _consistent_with(alarms, 3 * NULL_PER_SHAPE, alpha), alarms


def test_edge_test_with_median_sigma_is_inflated_but_bounded(null_spectra):
    # The median σ̂ has a relative error of about 1 % here (eigenvalue rigidity, O(√log N / N)), comparable
    # with the TW scale of s₁ (≈ 1.2 %), so the plug-in test is anti-conservative: measured 0.035–0.10 at
    # α = 0.05 (documented in spike_count). Guard the documented bound, 2α pooled, against regressions.
    alpha = 0.05
    exceed = sum(sum(row[0] > tw_threshold(noise_level(row, shape), shape, alpha) for row in s)
                 for shape, s in null_spectra.items())
    assert exceed / (3 * NULL_PER_SHAPE) < 2 * alpha


@pytest.mark.parametrize("method", ["median", "mp-pca"])
def test_noise_level_is_accurate_on_noise(null_spectra, method):
    for shape, s in null_spectra.items():
        sigma = np.array([noise_level(row, shape, method=method) for row in s])
        # Measured relative sd: median 0.7–1.3 %, MP-PCA 0.4–0.6 %; finite-size bias below 0.3 %. The mean of
        # 300 is within 0.5 % (> 5 standard errors plus the bias); each value within 5 % (≥ 4 sd).
        assert abs(sigma.mean() - 1) < 5e-3, (shape, sigma.mean())
        assert np.abs(sigma - 1).max() < 0.05, (shape, np.abs(sigma - 1).max())


# ------------------------------------------------------------------------------------------- planted spikes

@pytest.mark.parametrize("shape", NULL_SHAPES)
def test_spikes_above_bbp_are_counted(shape):
    rng = np.random.default_rng(11)
    trials = 60
    one = [spike_count(_svdvals(_planted(rng, shape, [2.0])), shape) for _ in range(trials)]
    three = [spike_count(_svdvals(_planted(rng, shape, [4.0, 3.0, 2.0])), shape) for _ in range(trials)]
    # At 2× the BBP threshold the outlier sits 15–20 % above the edge, ≥ 5 of its own sd (2–3 %) beyond the
    # α = 0.01 threshold (measured: 100/100 exact); over-counting needs a noise false alarm (≤ α).
    assert np.mean(np.array(one) == 1) >= 0.95, np.bincount(one)
    assert np.mean(np.array(three) == 3) >= 0.95, np.bincount(three)


def test_power_near_the_bbp_threshold():
    # At 1.5× the threshold the outlier is ~1.8 of its sd above the α = 0.01 critical value: measured
    # power 0.95–0.98; require 0.85 over 100 seeds (binomial sd 0.02).
    rng = np.random.default_rng(12)
    shape = (96, 384)
    found = [spike_count(_svdvals(_planted(rng, shape, [1.5])), shape) >= 1 for _ in range(100)]
    assert np.mean(found) >= 0.85


def test_spikes_below_bbp_are_not_detected_more_than_alpha():
    rng = np.random.default_rng(13)
    shape, alpha, trials = (128, 128), 0.05, 200
    # half the BBP threshold: below the transition there is no outlier, s₁ stays TW at the edge
    alarms = sum(spike_count(_svdvals(_planted(rng, shape, [0.5])), shape, alpha=alpha) > 0
                 for _ in range(trials))
    assert binomtest(alarms, trials, alpha, alternative="greater").pvalue >= 0.01, alarms


@pytest.mark.parametrize("multiple", [1.5, 3.0])
def test_outlier_sits_at_the_bbp_location(multiple):
    rng = np.random.default_rng(14)
    shape = (64, 256)
    theta = multiple * bbp_threshold(shape, sigma=0.02)
    rel = np.array([_svdvals(_planted(rng, shape, [multiple], sigma=0.02))[0] / bbp_location(theta, shape, sigma=0.02)
                    for _ in range(100)]) - 1
    # The outlier fluctuates as a Gaussian of order σ around its limit: measured relative sd 2.3–3.2 %, so the
    # mean of 100 has a standard error ≈ 0.3 %; finite-size bias measured below 0.5 %. Allow 1 % on the mean.
    assert abs(rel.mean()) < 0.01, rel.mean()
    assert rel.std() < 0.04, rel.std()


def test_median_is_robust_to_a_minority_of_spikes():
    rng = np.random.default_rng(15)
    shape = (128, 128)
    median, frobenius = [], []
    for _ in range(50):
        W = _planted(rng, shape, [3.0, 2.0, 1.5])
        median.append(noise_level(_svdvals(W), shape))
        frobenius.append(np.sqrt((W**2).sum() / W.size))
    # Three spikes shift the median by 1.5 order statistics out of 128 (+0.7 % measured) but add
    # Σθ² = 15.25 σ²√(mn) to ‖W‖_F², i.e. +5.8 % to the plain Frobenius σ̂.
    assert abs(np.mean(median) - 1) < 0.02
    assert np.mean(frobenius) - 1 > 0.04


def test_mp_pca_recovers_signal_rank_and_sigma():
    rng = np.random.default_rng(16)
    shape, sigma = (64, 256), 0.5
    estimates = [noise_estimate(_svdvals(_planted(rng, shape, [4.0, 3.0, 2.0], sigma=sigma)), shape, method="mp-pca")
                 for _ in range(50)]
    ranks = np.array([e.signal_rank for e in estimates])
    sigmas = np.array([e.sigma for e in estimates])
    # Measured on 100 seeds per shape: rank exact 86–93 %, otherwise over by 1–2 (a noise value whose range still
    # exceeds the MP width), never under for spikes ≥ 2× the BBP threshold.
    assert ranks.min() == 3 and ranks.max() <= 5 and np.mean(ranks == 3) >= 0.8, np.bincount(ranks)
    assert abs(sigmas.mean() / sigma - 1) < 0.01 and np.abs(sigmas / sigma - 1).max() < 0.03  # sd 0.6 %


def test_trimmed_frobenius_is_unbiased_after_strong_spikes_and_low_on_noise():
    rng = np.random.default_rng(17)
    shape = (128, 128)
    spiked, null = [], []
    for _ in range(50):
        W = _planted(rng, shape, [4.0, 3.0, 2.0])
        s = _svdvals(W)
        spiked.append(noise_level(s[:3], shape, method="trimmed-frobenius", frobenius_sq=float((W**2).sum())))
        z = _svdvals(rng.standard_normal(shape))
        null.append(noise_level(z[:8], shape, method="trimmed-frobenius", frobenius_sq=float((z**2).sum())))
    assert abs(np.mean(spiked) - 1) < 0.005   # measured bias −0.2 %, sd 0.5 % (standard error 0.07 %)
    # On noise each removed value carries at most the edge² = 4N instead of the 2N − 1 that the correction
    # removes: σ̂² is low, by at most 1 − (MN − 8·4N)/((M − 8)(N − 8)) = 14.7 % (measured 10 %).
    ratio = np.mean(np.square(null))
    assert (128 * 128 - 8 * 4 * 128) / 120**2 < ratio < 0.95


def test_partial_spectrum_with_frobenius_gives_the_same_count():
    rng = np.random.default_rng(18)
    shape = (96, 384)
    W = _planted(rng, shape, [3.0, 2.0])
    s = _svdvals(W)
    full = spike_count(s, shape)
    assert full == 2
    assert spike_count(s[:10], shape, frobenius_sq=float((s**2).sum())) == full
    assert spike_count(s[:2], shape, frobenius_sq=float((s**2).sum())) == 2  # = len(s): a lower bound
    assert spike_count(s, shape, sigma=1.0) == full
    assert spike_count(s, shape, method="median") == full


# ------------------------------------------------------------------------------------ closed forms

def test_edges_threshold_and_bbp_closed_forms():
    assert mp_edges(2.0, (64, 256)) == (2.0 * (16 - 8), 2.0 * (16 + 8))
    mu, tau = tw_center_scale((64, 256))
    a, b = np.sqrt(63.5), np.sqrt(255.5)
    assert mu == pytest.approx((a + b) ** 2, rel=1e-15)
    assert tau == pytest.approx((a + b) * (1 / a + 1 / b) ** (1 / 3), rel=1e-14)
    assert tw_threshold(1.0, (64, 256), 0.05) == pytest.approx(np.sqrt(mu + tau * 0.9793160534695), rel=1e-12)
    assert bbp_threshold((64, 256)) == pytest.approx(2**3.5, rel=1e-15)   # (mn)^{1/4} = (2^14)^{1/4}
    # continuous at the transition (the outlier is born at the edge √M + √N = 24), then ≈ θ for strong signals
    assert bbp_location(2**3.5, (64, 256)) == pytest.approx(24.0, rel=1e-12)
    assert bbp_location(2**3.5 * (1 + 1e-9), (64, 256)) == pytest.approx(24.0, rel=1e-7)
    assert bbp_location(1e6, (64, 256)) == pytest.approx(1e6, rel=1e-6)
    assert bbp_location(10.0, (64, 256)) == mp_edges(1.0, (64, 256))[1]
    assert tw_threshold(1.0, (1, 1), 0.5) == 0.0   # μ + τ q < 0 for a 1 × 1 "matrix": clipped


def test_stable_rank():
    s = np.array([3.0, 2.0, 1.0])
    assert stable_rank(s) == pytest.approx(14 / 9)
    assert stable_rank(s[:1], frobenius_sq=14.0) == pytest.approx(14 / 9)
    assert stable_rank(np.ones(5)) == 5.0


# ------------------------------------------------------------------------------------------- invariances

def test_scaling_equivariance_and_transposition_invariance():
    rng = np.random.default_rng(19)
    shape = (64, 200)
    W = _planted(rng, shape, [3.0, 2.0], sigma=0.3)
    s, frob = _svdvals(W), float((W**2).sum())
    for c in (1e-3, 3.7):
        for method in ("median", "mp-pca"):
            assert noise_level(c * s, shape, method=method) == pytest.approx(c * noise_level(s, shape, method=method),
                                                                              rel=1e-12)
            assert spike_count(c * s, shape, method=method) == spike_count(s, shape, method=method)
        assert noise_level(c * s[:4], shape, method="trimmed-frobenius", frobenius_sq=c**2 * frob) == pytest.approx(
            c * noise_level(s[:4], shape, method="trimmed-frobenius", frobenius_sq=frob), rel=1e-12)
        assert spike_count(c * s, shape) == spike_count(s, shape) == 2
        assert spike_count(c * s, shape, sigma=0.3 * c) == 2
        assert tw_threshold(0.3 * c, shape, 0.01) == pytest.approx(c * tw_threshold(0.3, shape, 0.01), rel=1e-12)
        assert bbp_location(c * 200.0, shape, sigma=c) == pytest.approx(c * bbp_location(200.0, shape), rel=1e-12)
    flipped = shape[::-1]
    for method in ("median", "mp-pca"):
        assert noise_estimate(s, flipped, method=method) == noise_estimate(s, shape, method=method)
        assert spike_count(s, flipped, method=method) == spike_count(s, shape, method=method)
    assert spike_count(_svdvals(W.T), flipped) == spike_count(s, shape)
    assert tw_threshold(0.3, flipped, 0.01) == tw_threshold(0.3, shape, 0.01)
    assert mp_edges(0.3, flipped) == mp_edges(0.3, shape)
    assert tw_center_scale(flipped) == tw_center_scale(shape)
    assert bbp_threshold(flipped) == bbp_threshold(shape)
    assert bbp_location(40.0, flipped) == bbp_location(40.0, shape)


def test_input_order_does_not_matter():
    rng = np.random.default_rng(20)
    s = _svdvals(rng.standard_normal((50, 80)))
    assert noise_estimate(s[::-1], (50, 80)) == noise_estimate(s, (50, 80))
    assert spike_count(rng.permutation(s), (50, 80)) == spike_count(s, (50, 80))


def test_degenerate_spectra():
    assert spike_count(np.zeros(20), (20, 30)) == 0
    assert spike_count(np.r_[5.0, np.zeros(19)], (20, 30)) == 1   # exact rank 1: the remaining noise is zero
    assert spike_count(np.array([1.0]), (1, 10)) == 0               # min(m, n) = 1 leaves nothing to test


# ------------------------------------------------------------------------------------------- bad input

S = np.linspace(3.0, 0.5, 20)


@pytest.mark.parametrize(("values", "words"), [
    (np.r_[S[:-1], np.nan], "1 NaN/Inf value(s), the first at index 19"),
    (np.r_[S[:-1], np.inf], "NaN/Inf"),
    (np.r_[S[:-1], -0.1], "1 negative value(s), the first -0.1 at index 19"),
    (np.array([]), "non-empty 1-D array; got shape (0,)"),
    (S.reshape(4, 5), "non-empty 1-D array; got shape (4, 5)"),
    (np.r_[S, 0.1], "number 21, more than min(m, n) = 20"),
    (["a", "b"], "could not be read"),
])
def test_bad_singular_values(values, words):
    with pytest.raises(DataError) as info:
        noise_level(values, (20, 30))
    assert words in str(info.value) and str(info.value).startswith("The singular values passed to noise_estimate")


@pytest.mark.parametrize("shape", [(0, 5), (5,), (5, 5, 5), "ab", (2.0, 3), (True, 3), None, (-1, 4)])
def test_bad_shape(shape):
    with pytest.raises(ParameterError, match=r"The 'shape' parameter of spike_count must be a pair \(m, n\)"):
        spike_count(S, shape)


@pytest.mark.parametrize("alpha", [0.0, 0.6, float("nan"), 1.0, "0.01", None])
def test_bad_alpha(alpha):
    expected = r"The 'alpha' parameter of tw_threshold must be a float in \[1e-15, 0.5\]"
    with pytest.raises(ParameterError, match=expected):
        tw_threshold(1.0, (20, 30), alpha)
    with pytest.raises(ParameterError, match="'alpha' parameter of spike_count"):
        spike_count(S, (20, 30), alpha=alpha)


def test_bad_parameters_and_combinations():
    with pytest.raises(ParameterError, match="'sigma' parameter of tw_threshold must be a float in \\[0, inf\\)"):
        tw_threshold(-1.0, (20, 30), 0.01)
    with pytest.raises(ParameterError, match="'sigma' parameter of spike_count"):
        spike_count(S, (20, 30), sigma=float("nan"))
    with pytest.raises(ParameterError, match="'method' parameter of noise_estimate must be one of 'median'"):
        noise_level(S, (20, 30), method="mean")
    with pytest.raises(ParameterError, match="'theta' parameter of bbp_location"):
        bbp_location(-1.0, (20, 30))
    with pytest.raises(DataError, match="number 5, but method='median' needs all min\\(m, n\\) = 20"):
        noise_level(S[:5], (20, 30))
    with pytest.raises(DataError, match="method='mp-pca' needs all"):
        spike_count(S[:5], (20, 30), method="mp-pca")
    with pytest.raises(ParameterError, match="'frobenius_sq' parameter of noise_estimate is required"):
        noise_level(S[:5], (20, 30), method="trimmed-frobenius")
    with pytest.raises(ParameterError, match="'frobenius_sq' parameter of spike_count is required"):
        spike_count(S[:5], (20, 30))
    with pytest.raises(ParameterError, match="only used by method='trimmed-frobenius'; got 10.0 with method='median'"):
        noise_level(S, (20, 30), frobenius_sq=10.0)
    with pytest.raises(DataError, match="'frobenius_sq' passed to noise_estimate is 1.0, below the sum"):
        noise_level(S[:5], (20, 30), method="trimmed-frobenius", frobenius_sq=1.0)
    with pytest.raises(DataError, match="leaves no noise for method='trimmed-frobenius'"):
        noise_level(S, (20, 30), method="trimmed-frobenius", frobenius_sq=1e4)
    with pytest.raises(DataError, match="stable rank of a zero matrix is undefined"):
        stable_rank(np.zeros(3))


def test_messages_are_one_sentence():
    for call in (lambda: noise_level(S[:5], (20, 30)), lambda: spike_count(S, (0, 3)),
                 lambda: noise_level(np.r_[S[:-1], np.nan], (20, 30))):
        with pytest.raises((DataError, ParameterError)) as info:
            call()
        message = str(info.value)
        assert message.endswith(".") and message.count(". ") == 0, message
