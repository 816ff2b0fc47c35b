"""TW₁ by Bornemann's Fredholm determinant: tabulated moments and quantiles, tails, shape, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from koopscope.errors import ParameterError
from koopscope.rmt.tracy_widom import _quantile, tw1_cdf, tw1_quantile, tw1_sf, tw1_tail_quantile

# Reference moments of TW₁ (Tracy & Widom 1996, tabulated to 13 digits by Bornemann 2010).
TW1_MEAN, TW1_VAR = -1.2065335745820, 1.6077810345810


def _moments() -> tuple[float, float]:
    """E X and Var X from F₁ by parts: E X = b − ∫_a^b F, E X² = b² − ∫_a^b 2s F(s) ds (Gauss–Legendre).

    On [a, b] = [−8, 14], F₁(a) ≈ 2e-12 and 1 − F₁(b) ≈ 2e-17, so truncation costs < 1e-10.
    """
    a, b = -8.0, 14.0
    t, w = np.polynomial.legendre.leggauss(120)
    s = a + (b - a) * (t + 1) / 2
    w = w * (b - a) / 2
    F = tw1_cdf(s)
    mean = b - w @ F                                   # ∫ s dF = b F(b) − a F(a) − ∫ F
    second = b**2 - 2 * (w @ (s * F))                  # ∫ s² dF = b² − ∫ 2 s F
    return float(mean), float(second - mean**2)


def test_mean_and_variance_match_the_tabulated_values():
    mean, var = _moments()
    assert mean == pytest.approx(TW1_MEAN, abs=1e-8)   # 120 nodes integrate the smooth F₁ to ~1e-10
    assert var == pytest.approx(TW1_VAR, abs=1e-8)


@pytest.mark.parametrize(("p", "q"), [(0.95, 0.9793), (0.99, 2.0234), (0.5, -1.2686), (0.01, -3.8954)])
def test_quantiles_match_the_tabulated_values(p, q):
    assert tw1_quantile(p) == pytest.approx(q, abs=1e-3)   # tables carry 4 decimals
    assert tw1_cdf(tw1_quantile(p)) == pytest.approx(p, abs=1e-12)  # the root is solved to 1e-12


def test_quantile_is_cached():
    tw1_quantile(0.975)
    before = _quantile.cache_info().hits                # the public function validates, the worker is cached
    tw1_quantile(0.975)
    assert _quantile.cache_info().hits == before + 1


def test_cdf_is_a_distribution_function():
    s = np.linspace(-9.0, 16.0, 101)
    F = tw1_cdf(s)
    assert np.all((F >= 0) & (F <= 1))
    assert np.all(np.diff(F) >= -1e-15)                # non-decreasing up to rounding
    assert F[0] < 1e-14 and F[-1] == 1.0
    assert tw1_cdf(-np.inf) == 0.0 and tw1_cdf(np.inf) == 1.0
    np.testing.assert_allclose(F + tw1_sf(s), 1.0, atol=1e-15)


def test_right_tail_follows_its_asymptote():
    # 1 − F₁(s) ~ exp(−⅔ s^{3/2}) / (4√π s^{3/4}); the relative correction is O(s^{−3/2}) (≈ 6 % at s = 6),
    # so the ratio must rise towards 1. This needs the expm1(Σ log(1 − μ)) form: 1 − det cancels below 1e-16.
    s = np.array([6.0, 8.0, 10.0, 14.0, 20.0])
    ratio = tw1_sf(s) / (np.exp(-2 / 3 * s**1.5) / (4 * np.sqrt(np.pi) * s**0.75))
    assert np.all(np.diff(ratio) > 0)
    assert np.all(np.abs(1 - ratio) < 0.06) and abs(1 - ratio[-1]) < 0.01


@pytest.mark.parametrize("alpha", [0.05, 0.01, 1e-3, 1e-4])
def test_kritchman_nadler_closed_form_is_a_rough_conservative_cross_check(alpha):
    exact, rough = tw1_quantile(1 - alpha), tw1_tail_quantile(alpha)
    # Dropping the s^{−3/4} factor of the tail makes the closed form larger; its relative error shrinks as
    # the asymptote takes over (37 % at 0.05, 13 % at 1e-4).
    assert exact < rough < 1.4 * exact


def test_elementwise_and_scalar_forms_agree():
    s = np.array([[-2.0, 0.0], [1.0, 3.0]])
    np.testing.assert_array_equal(tw1_cdf(s), [[tw1_cdf(v) for v in row] for row in s])
    assert isinstance(tw1_cdf(0.0), float) and np.isnan(tw1_cdf(np.nan))


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1e-12, float("nan"), "0.5", True])
def test_quantile_refuses_probabilities_outside_its_domain(p):
    with pytest.raises(ParameterError, match=r"The 'p' parameter of tw1_quantile must be a float in \[1e-10, 1\]"):
        tw1_quantile(p)


def test_tail_quantile_refuses_a_large_alpha():
    with pytest.raises(ParameterError, match="'alpha' parameter of tw1_tail_quantile"):
        tw1_tail_quantile(0.5)
