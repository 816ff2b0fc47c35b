"""Power-law MLE with a KS-chosen x_min: planted Pareto exponents, a bulk + tail mixture, the KS scan, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from koopscope.errors import DataError, ParameterError
from koopscope.rmt import powerlaw
from koopscope.rmt.powerlaw import PowerLawFit, powerlaw_alpha


def _pareto(rng: np.random.Generator, alpha: float, xmin: float, size: int) -> np.ndarray:
    """Samples with density ∝ x^{−α} on [xmin, ∞), by inverting the CDF 1 − (x / xmin)^{1−α}."""
    return xmin * (1.0 - rng.random(size)) ** (-1.0 / (alpha - 1.0))


def _ks_reference(x: np.ndarray, xmin: float, alpha: float) -> float:
    """KS distance of the tail x ≥ xmin to the power law, one candidate at a time (independent reference)."""
    tail = np.sort(x[x >= xmin])
    fit = 1.0 - (tail / xmin) ** (1.0 - alpha)
    n = tail.size
    return float(max(np.max(np.arange(1, n + 1) / n - fit), np.max(fit - np.arange(n) / n)))


@pytest.mark.parametrize("alpha", [2.5, 4.0])
def test_pareto_exponent_is_recovered(alpha):
    rng = np.random.default_rng(int(alpha * 10))
    z_fixed, z_ks = [], []
    for _ in range(20):
        lam = _pareto(rng, alpha, 1.0, 1000)
        fixed, scanned = powerlaw_alpha(lam, xmin=1.0), powerlaw_alpha(lam)
        assert fixed.n_tail == 1000 and fixed.xmin == 1.0
        z_fixed.append((fixed.alpha - alpha) / fixed.sigma_alpha)
        z_ks.append((scanned.alpha - alpha) / scanned.sigma_alpha)
    # (α̂ − α)/σ_α is asymptotically N(0, 1) with σ_α = (α − 1)/√n (measured sd 0.9–1.0 with x_min known,
    # 1.0–1.13 with the KS scan, which fits shorter tails): every |z| < 4, and the mean of 20 within 1
    # (its standard error is ≈ 0.25).
    assert np.max(np.abs(z_fixed)) < 4 and abs(np.mean(z_fixed)) < 1
    assert np.max(np.abs(z_ks)) < 4 and abs(np.mean(z_ks)) < 1


@pytest.mark.parametrize("alpha", [2.5, 4.0])
def test_xmin_is_recovered_on_a_bulk_plus_tail_mixture(alpha):
    rng = np.random.default_rng(int(alpha * 100))
    x0 = 5.0
    cuts, zs = [], []
    for _ in range(10):
        bulk = rng.exponential(1.5, 6000)
        bulk = bulk[bulk < x0][:2000]                            # an exponential bulk below x0
        fit = powerlaw_alpha(np.concatenate([bulk, _pareto(rng, alpha, x0, 400)]))
        cuts.append(fit.xmin)
        zs.append((fit.alpha - alpha) / fit.sigma_alpha)
    # Measured over 20 seeds: x_min in [0.95, 1.6] × x0 (the KS scan may start inside the tail, never deep in
    # the bulk, where the exponential part would inflate D); α̂ within 2.3 σ_α.
    assert 0.8 * x0 < min(cuts) and max(cuts) < 2.0 * x0 and 0.9 * x0 < np.median(cuts) < 1.3 * x0, cuts
    assert np.max(np.abs(zs)) < 4, zs


def test_the_vectorised_scan_matches_a_one_at_a_time_reference():
    rng = np.random.default_rng(3)
    lam = np.concatenate([rng.random(300), _pareto(rng, 3.0, 1.0, 200)])
    x = np.sort(lam)
    starts = np.arange(0, x.size - 10, 7)
    cuts = x[starts]
    alphas = 1.0 + (x.size - starts) / np.array([np.log(x[i:] / x[i]).sum() for i in starts])
    distances = powerlaw.ks_scan(x, starts, cuts, alphas)
    expected = [_ks_reference(x, c, a) for c, a in zip(cuts, alphas, strict=True)]
    np.testing.assert_allclose(distances, expected, rtol=1e-12, atol=1e-15)
    fit = powerlaw_alpha(lam)
    assert fit.ks_distance == pytest.approx(_ks_reference(x, fit.xmin, fit.alpha), rel=1e-12)


def test_small_blocks_give_the_same_fit(monkeypatch):
    rng = np.random.default_rng(4)
    lam = _pareto(rng, 3.0, 2.0, 500)
    whole = powerlaw_alpha(lam)
    monkeypatch.setattr(powerlaw, "ROWS", 2)                  # two candidates per block
    assert powerlaw_alpha(lam) == whole


def test_fit_is_deterministic_scale_equivariant_and_order_free():
    rng = np.random.default_rng(5)
    lam = _pareto(rng, 2.5, 1.0, 800)
    fit = powerlaw_alpha(lam)
    assert isinstance(fit, PowerLawFit) and np.isfinite([fit.alpha, fit.xmin, fit.ks_distance]).all()
    assert powerlaw_alpha(rng.permutation(lam)) == fit
    scaled = powerlaw_alpha(7.0 * lam)   # λ → cλ leaves α and the tail unchanged and scales x_min
    assert scaled.alpha == pytest.approx(fit.alpha, rel=1e-10) and scaled.n_tail == fit.n_tail
    assert scaled.xmin == pytest.approx(7.0 * fit.xmin, rel=1e-12)


def test_zeros_and_ties_are_handled():
    rng = np.random.default_rng(6)
    lam = np.concatenate([np.zeros(50), _pareto(rng, 3.0, 1.0, 300)])   # a rank-deficient matrix
    fit = powerlaw_alpha(lam)
    assert fit.xmin > 0 and fit.n_tail <= 300
    assert powerlaw_alpha(np.r_[np.ones(10), 2.0 * np.ones(10)], min_tail=5).alpha > 1   # ties at x_min


def test_min_tail_is_respected():
    rng = np.random.default_rng(7)
    fit = powerlaw_alpha(_pareto(rng, 3.0, 1.0, 100), min_tail=60)
    assert fit.n_tail >= 60


@pytest.mark.parametrize(("values", "kwargs", "error", "words"), [
    (np.ones(5), {}, DataError, "have 5 positive value(s), fewer than min_tail = 10"),
    (np.r_[np.zeros(20), np.ones(3)], {}, DataError, "3 positive value(s)"),
    (np.r_[np.ones(20), np.nan], {}, DataError, "1 NaN/Inf value(s), the first at index 20"),
    (np.r_[np.ones(20), -1.0], {}, DataError, "1 negative value(s), the first -1.0 at index 20"),
    (np.ones((4, 5)), {}, DataError, "must be a non-empty 1-D array; got shape (4, 5)"),
    (np.ones(20), {}, DataError, "tail of 20 equal values"),
    (np.arange(1.0, 31.0), {"xmin": 25.0}, DataError, "xmin=25.0 passed to powerlaw_alpha leaves 6 eigenvalue(s)"),
    (np.arange(1.0, 31.0), {"xmin": 0.0}, ParameterError, "The 'xmin' parameter of powerlaw_alpha must be one of 'ks'"),
    (np.arange(1.0, 31.0), {"xmin": "auto"}, ParameterError, "'xmin' parameter"),
    (np.arange(1.0, 31.0), {"min_tail": 1}, ParameterError, "The 'min_tail' parameter of powerlaw_alpha must be an"),
])
def test_bad_input(values, kwargs, error, words):
    with pytest.raises(error) as info:
        powerlaw_alpha(values, **kwargs)
    assert words in str(info.value), str(info.value)
