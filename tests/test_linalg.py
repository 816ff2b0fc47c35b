"""_linalg: Marchenko-Pastur median and the Gavish-Donoho threshold against independent estimates, rank
selection, spectrum ordering, the real-complex product, the eigensolver wrapper and the triangular inverse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg as sla

from koopscope._linalg import (
    TRIANGULAR_LEAF,
    eig_left_right,
    lower_triangular_inverse,
    mp_median,
    numerical_rank,
    real_matmul,
    sort_spectrum,
    svht_threshold,
    truncation_rank,
)
from koopscope.errors import KoopscopeError, NumericalError, ParameterError

# --------------------------------------------------------------------------------------------------
# Independent references for the Marchenko-Pastur median


def mp_median_beta1_closed_form() -> float:
    """β = 1: with x = 4 sin²θ the MP CDF is (2/π)(θ + sinθ cosθ); solve it = 1/2 by bisection on θ."""
    lo, hi = 0.0, math.pi / 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if (2 / math.pi) * (mid + math.sin(mid) * math.cos(mid)) < 0.5:
            lo = mid
        else:
            hi = mid
    return 4 * math.sin((lo + hi) / 2) ** 2


def mp_median_by_quadrature(beta: float, nodes: int = 200) -> float:
    """MP median by a smooth change of variables and Gauss-Legendre quadrature (no scipy.integrate/optimize).

    With x = c - r cos φ, c = 1 + β, r = 2√β, the density times dx is r² sin²φ / (2πβ x) dφ on [0, π]:
    smooth (for β = 1 it is (1 + cos φ) / π), so Gauss-Legendre converges geometrically; the median
    is found by bisection on φ.
    """
    c, r = 1 + beta, 2 * math.sqrt(beta)
    t, w = np.polynomial.legendre.leggauss(nodes)

    def cdf(phi: float) -> float:
        p = (t + 1) * phi / 2  # nodes on [0, phi]
        f = r**2 * np.sin(p) ** 2 / (2 * math.pi * beta * (c - r * np.cos(p)))
        return float(np.sum(w * f) * phi / 2)

    lo, hi = 0.0, math.pi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < 0.5 else (lo, mid)
    return c - r * math.cos((lo + hi) / 2)


def wishart_median_bidiagonal(beta: float, n: int, seed: int) -> float:
    """Monte-Carlo median eigenvalue of W = Z^T Z / m, Z an m x n standard Gaussian matrix, β = n / m.

    Uses the Golub-Kahan bidiagonal model of a Gaussian matrix (Dumitriu & Edelman 2002): the singular
    values of Z are those of an upper bidiagonal B with diagonal χ_m, χ_{m-1}, ..., χ_{m-n+1} and
    superdiagonal χ_{n-1}, ..., χ_1, so W has the eigenvalues of the tridiagonal B^T B / m. Bisection
    (LAPACK stebz) gives the two middle eigenvalues in O(n), which makes n = 400 000 cheap.
    """
    m = int(round(n / beta))
    rng = np.random.default_rng(seed)
    d = np.sqrt(rng.chisquare(m - np.arange(n)))  # (n,) χ_{m-i}
    e = np.sqrt(rng.chisquare(n - 1 - np.arange(n - 1)))  # (n-1,) χ_{n-1-i}
    diag = (d**2 + np.concatenate([[0.0], e**2])) / m
    off = d[:-1] * e / m
    k = n // 2
    middle = sla.eigvalsh_tridiagonal(diag, off, select="i", select_range=(k - 1, k))
    return float(middle.mean())


def wishart_median_dense(beta: float, n: int, seed: int) -> float:
    """Monte-Carlo median eigenvalue of W = Z^T Z / m for a dense m x n Gaussian Z, β = n / m."""
    m = int(round(n / beta))
    Z = np.random.default_rng(seed).standard_normal((m, n))
    return float(np.median(np.linalg.eigvalsh(Z.T @ Z / m)))


def lambda_star(beta: float) -> float:
    """Gavish & Donoho (2014) Eq. (11): the optimal threshold coefficient for known noise."""
    return math.sqrt(2 * (beta + 1) + 8 * beta / ((beta + 1) + math.sqrt(beta**2 + 14 * beta + 1)))


# --------------------------------------------------------------------------------------------------
# mp_median


def test_mp_median_square_matches_closed_form():
    assert mp_median(1.0) == pytest.approx(mp_median_beta1_closed_form(), abs=1e-10)


def test_mp_median_square_matches_monte_carlo():
    estimate = wishart_median_bidiagonal(1.0, 400_000, seed=0)
    assert abs(mp_median(1.0) - estimate) < 1e-3


def test_bidiagonal_model_agrees_with_dense_gaussian_matrices():
    """Sanity check of the Monte-Carlo model itself: same law as a dense Gaussian matrix."""
    dense = np.mean([wishart_median_dense(0.5, 300, seed) for seed in range(2)])
    assert wishart_median_bidiagonal(0.5, 400_000, seed=1) == pytest.approx(dense, abs=1e-2)


def test_omega_at_beta_one_matches_gavish_donoho_table():
    omega = lambda_star(1.0) / math.sqrt(mp_median(1.0))
    assert abs(omega - 2.858) < 1e-3
    # svht_threshold uses the same ω: with every singular value 1 the threshold is ω(1) itself
    assert abs(svht_threshold(np.ones(50), (50, 50)) - 2.858) < 1e-3


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_mp_median_rectangular_matches_dense_monte_carlo(beta):
    n = 500 if beta == 0.5 else 300  # (1000, 500) and (3000, 300) Gaussian matrices (seeded, within 1e-3)
    assert abs(mp_median(beta) - wishart_median_dense(beta, n, seed=0)) < 1e-2


@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5, 0.9, 1.0])
def test_mp_median_matches_independent_quadrature(beta):
    assert mp_median(beta) == pytest.approx(mp_median_by_quadrature(beta), abs=1e-9)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_mp_median_rectangular_matches_large_monte_carlo(beta):
    assert abs(mp_median(beta) - wishart_median_bidiagonal(beta, 200_000, seed=2)) < 1e-3


@pytest.mark.parametrize("beta", [0.0, -0.5, 1.5, float("nan")])
def test_mp_median_rejects_beta_outside_unit_interval(beta):
    with pytest.raises(ParameterError, match="'beta'"):
        mp_median(beta)


def test_mp_median_is_increasing_in_beta_towards_one():
    """The MP median moves from 1 (β → 0, all mass at 1) down as the spread grows."""
    values = [mp_median(b) for b in (0.01, 0.1, 0.3, 0.6, 1.0)]
    assert values[0] == pytest.approx(1.0, abs=0.01)
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


# --------------------------------------------------------------------------------------------------
# svht_threshold and truncation_rank


def planted_low_rank(m: int = 500, n: int = 200, rank: int = 5, noise: float = 0.1, seed: int = 0):
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((m, rank)))[0]
    V = np.linalg.qr(rng.standard_normal((n, rank)))[0]
    signal = U @ np.diag(np.linspace(20.0, 8.0, rank)) @ V.T
    return signal + noise * rng.standard_normal((m, n))


@pytest.mark.parametrize("transpose", [False, True])
def test_svht_recovers_planted_rank(transpose):
    M = planted_low_rank()
    M = M.T if transpose else M
    s = np.linalg.svd(M, compute_uv=False)
    tau = svht_threshold(s, M.shape)
    assert (s > tau).sum() == 5
    assert truncation_rank(s, M.shape, "svht", None, caller="test") == 5
    # the threshold sits between the signal and the noise bulk, whose edge is about σ (√m + √n)
    assert s[5] < tau < s[4]
    assert tau > 0.1 * (math.sqrt(500) + math.sqrt(200))


def test_svht_threshold_scales_with_the_median_singular_value():
    s = np.linspace(3.0, 1.0, 40)
    assert svht_threshold(2 * s, (100, 40)) == pytest.approx(2 * svht_threshold(s, (100, 40)), rel=1e-14)


def test_svht_on_pure_noise_keeps_at_least_one():
    Z = np.random.default_rng(3).standard_normal((300, 100))
    s = np.linalg.svd(Z, compute_uv=False)
    assert (s > svht_threshold(s, Z.shape)).sum() == 0
    assert truncation_rank(s, Z.shape, "svht", None, caller="test") == 1


S_DEFICIENT = np.array([3.0, 2.0, 1.0, 1e-15, 0.0, 0.0])  # 10 x 6 matrix of numerical rank 3


@pytest.mark.parametrize("rank", [None, "full"])
def test_truncation_rank_full_is_the_numerical_rank(rank):
    assert truncation_rank(S_DEFICIENT, (10, 6), rank, None, caller="test") == 3
    assert numerical_rank(S_DEFICIENT, (10, 6)) == 3


def test_truncation_rank_int():
    assert truncation_rank(S_DEFICIENT, (10, 6), 2, None, caller="test") == 2
    # never above the numerical rank, even for a valid rank <= min(N, D)
    assert truncation_rank(S_DEFICIENT, (10, 6), 5, None, caller="test") == 3


def test_truncation_rank_int_above_min_shape_names_rank_and_both_numbers():
    with pytest.raises(ParameterError) as info:
        truncation_rank(S_DEFICIENT, (10, 6), 7, None, caller="exact")
    msg = str(info.value)
    assert "'rank'" in msg and "exact" in msg and "7" in msg and "min(N, D) = 6" in msg
    assert "\n" not in msg


def test_truncation_rank_accepts_numpy_integers():
    assert truncation_rank(S_DEFICIENT, (10, 6), np.int64(2), None, caller="test") == 2


@pytest.mark.parametrize(("energy", "expected"), [
    (0.5, 1),
    (9 / 14, 1),  # exactly the first value's share of Σσ² = 14: kept by the 1e-12 slack
    (0.65, 2),
    (13 / 14, 2),
    (0.99, 3),
    (1.0, 3),
])
def test_truncation_rank_energy(energy, expected):
    assert truncation_rank(S_DEFICIENT, (10, 6), None, energy, caller="test") == expected


def test_truncation_rank_zero_matrix_is_a_numerical_error():
    with pytest.raises(NumericalError, match="numerical rank 0"):
        truncation_rank(np.zeros(4), (10, 4), None, None, caller="exact")


def test_numerical_rank_edge_cases():
    assert numerical_rank(np.array([]), (3, 0)) == 0
    assert numerical_rank(np.zeros(3), (3, 3)) == 0
    eps = np.finfo(np.float64).eps
    s = np.array([1.0, 11 * eps, 9 * eps])
    assert numerical_rank(s, (10, 3)) == 2  # cut-off max(shape) · eps · σ_max = 10 eps


# --------------------------------------------------------------------------------------------------
# sort_spectrum


def assert_conjugates_adjacent(lam: np.ndarray) -> None:
    i = 0
    while i < lam.size:
        if lam[i].imag == 0:
            i += 1
            continue
        assert lam[i].imag > 0, f"position {i}: negative imaginary part first in {lam}"
        assert i + 1 < lam.size and lam[i + 1] == np.conj(lam[i]), f"position {i}: conjugate not adjacent in {lam}"
        i += 2


def test_sort_spectrum_ties_between_real_and_complex_pairs():
    # |λ| = 1 for all but the last: a real 1, a real -1, the pairs 0.6 ± 0.8i and ±i, and 0.5
    lam = np.array([0.6 - 0.8j, -1.0, 0.5, 1j, 0.6 + 0.8j, 1.0, -1j], dtype=np.complex128)
    assert np.abs(0.6 + 0.8j) == 1.0  # a true tie in floating point
    rng = np.random.default_rng(0)
    expected = None
    for _ in range(20):
        shuffled = lam[rng.permutation(lam.size)]
        out = shuffled[sort_spectrum(shuffled)]
        assert np.all(np.diff(np.abs(out)) <= 0)
        assert_conjugates_adjacent(out)
        expected = out if expected is None else expected
        np.testing.assert_array_equal(out, expected)  # independent of the input order
    np.testing.assert_array_equal(expected, [1.0, 0.6 + 0.8j, 0.6 - 0.8j, 1j, -1j, -1.0, 0.5])


def test_sort_spectrum_real_eigenvalue_with_pair_modulus_from_a_real_matrix():
    """Eigenvalues of a real matrix whose real eigenvalue ties a complex pair in modulus."""
    theta = 0.7
    R = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    B = sla.block_diag(0.9 * R, [[0.9]], [[-0.9]], 0.9 * R.T, [[0.3]])
    V = np.random.default_rng(1).standard_normal(B.shape) + 3 * np.eye(B.shape[0])
    A = V @ B @ np.linalg.inv(V)
    lam = np.linalg.eigvals(A)
    out = lam[sort_spectrum(lam)]
    assert np.all(np.diff(np.abs(out)) <= 0)
    assert_conjugates_adjacent(out)
    assert out[-1] == pytest.approx(0.3)


def test_sort_spectrum_is_a_permutation():
    lam = np.random.default_rng(2).standard_normal(30) + 0j
    order = sort_spectrum(lam)
    assert sorted(order.tolist()) == list(range(30))


# --------------------------------------------------------------------------------------------------
# real_matmul and eig_left_right


@pytest.mark.parametrize("shape", [(5, 3, 4), (1, 1, 1), (7, 0, 2), (6, 6, 6)])
def test_real_matmul_equals_matmul(shape):
    m, n, k = shape
    rng = np.random.default_rng(4)
    R = rng.standard_normal((m, n))
    C = rng.standard_normal((n, k)) + 1j * rng.standard_normal((n, k))
    out = real_matmul(R, C)
    assert out.shape == (m, k) and np.iscomplexobj(out)
    np.testing.assert_allclose(out, R @ C, rtol=1e-14, atol=1e-14)
    real = rng.standard_normal((n, k))
    np.testing.assert_array_equal(real_matmul(R, real), R @ real)


def test_eig_left_right_definitions():
    A = np.random.default_rng(5).standard_normal((6, 6))
    lam, U, V = eig_left_right(A)
    assert lam.dtype == np.complex128 and U.dtype == np.complex128 and V.dtype == np.complex128
    np.testing.assert_array_equal(lam, lam[sort_spectrum(lam)])
    np.testing.assert_allclose(A @ V, V * lam, atol=1e-12)  # right: A v = λ v
    np.testing.assert_allclose(U.conj().T @ A, lam[:, None] * U.conj().T, atol=1e-12)  # left: u^H A = λ u^H
    np.testing.assert_allclose(np.linalg.norm(U, axis=0), 1.0, rtol=1e-12)
    lam_only, no_u, no_v = eig_left_right(A, left=False, right=False)
    assert no_u is None and no_v is None
    np.testing.assert_allclose(lam_only, lam, atol=1e-12)


def test_eig_left_right_non_finite_is_a_numerical_error():
    A = np.eye(3)
    A[1, 2] = np.nan
    with pytest.raises(NumericalError) as info:
        eig_left_right(A)
    assert isinstance(info.value, KoopscopeError) and "\n" not in str(info.value)


@pytest.mark.parametrize("split", [None, 1e-14, 1e-18])
def test_left_eigenvectors_satisfy_their_equation(split):
    from koopscope._linalg import EIGENVALUE_CONDITION_LIMIT, eig_left_right

    rng = np.random.default_rng(3)
    if split is not None:  # a Jordan block split by `split`: κ(λ) ≈ 0.5 / sqrt(split) (5e6 and 5e8)
        A = np.array([[0.9, 1.0, 0.0], [split, 0.9, 0.0], [0.0, 0.0, 0.5]])
    else:
        A = rng.standard_normal((12, 12))
    lam, U, V = eig_left_right(A)
    np.testing.assert_allclose(np.linalg.norm(U, axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(V, axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(U.conj().T @ A, lam[:, None] * U.conj().T, atol=1e-9)  # u^H A = λ u^H
    np.testing.assert_allclose(A @ V, V * lam, atol=1e-9)
    if split == 1e-18:  # this one takes the LAPACK left-vector fallback
        assert np.linalg.norm(np.linalg.inv(np.linalg.eig(A)[1]), axis=1).max() > EIGENVALUE_CONDITION_LIMIT


@pytest.mark.parametrize("D", [1, 7, TRIANGULAR_LEAF, TRIANGULAR_LEAF + 1, 3 * TRIANGULAR_LEAF + 5])
def test_lower_triangular_inverse_matches_a_dense_inverse(D: int) -> None:
    # Sizes on both sides of the leaf and an odd split; the factor of a covariance, as whitening inverts it.
    rng = np.random.default_rng(D)
    X = rng.standard_normal((2 * D + 3, D))
    L = np.linalg.cholesky(X.T @ X / (2 * D) + 1e-5 * np.eye(D))
    inverse = lower_triangular_inverse(L)
    assert np.array_equal(inverse, np.tril(inverse))
    # Backward-stable blocks: L⁻¹L = I to a few ulps times κ(L), here below 1e3.
    assert np.abs(inverse @ L - np.eye(D)).max() < 1e-12
    assert np.allclose(inverse, np.linalg.inv(L), rtol=0, atol=1e-12 * np.abs(inverse).max())
