"""Extended DMD: the Williams-Kevrekidis-Rowley map, eigenfunctions, ResDMD residuals, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from koopscope.dmd.edmd import (
    Dictionary,
    edmd,
    edmd_dictionary,
    monomial_exponents,
    poly_dictionary,
)
from koopscope.errors import DataError, ParameterError

# Williams, Kevrekidis & Rowley (2015), Sec. 4.1: x_{n+1} = J x_n
J = np.array([[0.9, -0.1], [0.0, 0.8]])


def products(max_degree: int) -> np.ndarray:
    """{0.9^i 0.8^j : i + j <= max_degree}, descending (all distinct for max_degree <= 4)."""
    values = [0.9**i * 0.8**j for i in range(max_degree + 1) for j in range(max_degree + 1 - i)]
    return np.sort(values)[::-1]


@pytest.fixture(scope="module")
def linear_pairs() -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(0).uniform(-1.0, 1.0, (500, 2))  # 500 random initial conditions
    return X, X @ J.T


@pytest.fixture(scope="module")
def poly_spec(linear_pairs):
    X, Y = linear_pairs
    return edmd(X, Y, dictionary="poly", degree=4)


@pytest.fixture(scope="module")
def rbf_spec(linear_pairs):
    X, Y = linear_pairs
    return edmd(X, Y, dictionary="rbf", n_centers=100, centers="kmeans", seed=0)


def index_of(spec, value: float) -> int:
    return int(np.argmin(np.abs(spec.eigenvalues - value)))


# --- the linear map: spectrum -----------------------------------------------------------------


def test_poly_dictionary_is_exact_on_the_linear_map(poly_spec):
    # polynomials of degree <= 4 are invariant under a linear map: EDMD is exact there
    truth = products(4)  # 15 values = C(2 + 4, 4) monomials
    assert poly_spec.method == "edmd"
    assert poly_spec.eigenvalues.shape == (15,)
    np.testing.assert_allclose(poly_spec.eigenvalues[:8], truth[:8], rtol=0, atol=1e-10)
    np.testing.assert_allclose(poly_spec.eigenvalues, truth, rtol=0, atol=1e-10)
    assert poly_spec.eigenfunctions.shape == (15, 15)


def test_rbf_dictionary_recovers_the_leading_eigenvalues(rbf_spec):
    # 1, 0.9, 0.8 lie in the span of [1, x] (exact); Gaussians approximate 0.81, 0.729 and 0.72.
    # The next ones (0.6561: ~4e-3, 0.648: ~1e-3) do not improve with more data or centres: the
    # wide median-heuristic Gaussians cap the numerical rank of Psi_X near 71.
    truth = products(4)
    np.testing.assert_allclose(rbf_spec.eigenvalues[:6], truth[:6], rtol=0, atol=1e-3)
    for value in (1.0, 0.9, 0.8):
        assert abs(rbf_spec.eigenvalues[index_of(rbf_spec, value)] - value) < 1e-10
    psi = rbf_spec.options["dictionary"]
    assert isinstance(psi, Dictionary) and psi.kind == "rbf"
    assert psi.size == 1 + 2 + 100
    assert rbf_spec.eigenfunctions.shape == (psi.size, rbf_spec.eigenvalues.size)


# --- eigenfunctions, modes, amplitudes --------------------------------------------------------


def test_poly_eigenfunction_of_0_9_is_an_eigenfunction(poly_spec):
    psi = poly_spec.options["dictionary"]
    xi = poly_spec.eigenfunctions[:, index_of(poly_spec, 0.9)]  # (n,)
    x = np.random.default_rng(1).uniform(-1.0, 1.0, (200, 2))  # new points
    phi, phi_next = psi(x) @ xi, psi(x @ J.T) @ xi  # (200,) each
    assert np.linalg.norm(phi_next - 0.9 * phi) <= 1e-8 * np.linalg.norm(phi)


@pytest.mark.parametrize("fixture", ["poly_spec", "rbf_spec"])
def test_koopman_modes_reconstruct_the_state(fixture, linear_pairs, request):
    spec = request.getfixturevalue(fixture)
    X, _ = linear_pairs
    phi = spec.options["dictionary"](X) @ spec.eigenfunctions  # (N, k)
    assert spec.modes.shape == (2, spec.eigenvalues.size)
    np.testing.assert_allclose((phi @ spec.modes.T).real, X, atol=1e-8)  # x = sum_j phi_j(x) v_j
    np.testing.assert_allclose(spec.amplitudes, phi[0], atol=1e-12)  # b_j = phi_j(x_0)
    np.testing.assert_allclose((spec.modes @ spec.amplitudes).real, X[0], atol=1e-8)


def test_koopman_modes_of_the_linear_eigenfunctions_are_eigenvectors_of_J(poly_spec):
    for value in (0.9, 0.8):
        v = poly_spec.modes[:, index_of(poly_spec, value)]  # (2,)
        assert np.linalg.norm(J @ v - value * v) < 1e-10 * np.linalg.norm(v)
        assert np.linalg.norm(v) > 0.1
    # eigenfunctions of degree >= 2 do not contribute to the state
    j = index_of(poly_spec, 0.81)
    assert np.linalg.norm(poly_spec.modes[:, j]) < 1e-10


# --- ResDMD residuals -------------------------------------------------------------------------


def test_residuals_of_true_eigenpairs_are_tiny(poly_spec, linear_pairs):
    assert poly_spec.residuals.shape == (15,)
    assert poly_spec.residuals.max() < 1e-6
    assert poly_spec.n_spurious == 0
    X, Y = linear_pairs
    held = edmd(X, Y, dictionary="poly", degree=4, holdout=0.3)
    assert held.residual_split == "held-out"
    assert held.residuals.max() < 1e-6


def test_nonlinear_map_has_spurious_eigenvalues():
    # the chaotic logistic map x -> 4 x (1 - x): cubics are far from invariant
    x = np.random.default_rng(2).uniform(0.0, 1.0, (1000, 1))
    spec = edmd(x, 4.0 * x * (1.0 - x), dictionary="poly", degree=3)
    assert abs(spec.eigenvalues[0] - 1.0) < 1e-10 and spec.residuals[0] < 1e-6  # the constant
    assert (spec.residuals > 0.1).any()
    assert spec.n_spurious == int((spec.residuals > 0.1).sum()) >= 1
    assert spec.filtered().eigenvalues.size == spec.eigenvalues.size - spec.n_spurious


def test_residuals_can_be_skipped(linear_pairs):
    X, Y = linear_pairs
    spec = edmd(X, Y, dictionary="poly", degree=2, residuals=False)
    assert spec.residuals is None and spec.modes is not None


# --- dictionaries -----------------------------------------------------------------------------


def test_poly_dictionary_order_and_size():
    x = np.array([[2.0, 3.0]])
    # 1, x1, x2, x1^2, x1 x2, x2^2
    np.testing.assert_array_equal(poly_dictionary(x, 2), [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]])
    assert monomial_exponents(2, 2) == [(), (0,), (1,), (0, 0), (0, 1), (1, 1)]
    assert len(monomial_exponents(5, 3)) == math.comb(8, 3)


def test_rbf_dictionary_contents_and_median_bandwidth(linear_pairs):
    X, _ = linear_pairs
    psi = edmd_dictionary(X, n_centers=10, centers="sample", seed=3)
    assert psi.bandwidth == pytest.approx(float(np.median(cdist(X, psi.centers))), rel=1e-14)
    F = psi(X[:5])  # (5, 1 + 2 + 10)
    assert F.shape == (5, 13)
    np.testing.assert_array_equal(F[:, 0], 1.0)
    np.testing.assert_array_equal(F[:, 1:3], X[:5])
    d2 = ((X[:5, None, :] - psi.centers[None]) ** 2).sum(-1)  # (5, 10)
    np.testing.assert_allclose(F[:, 3:], np.exp(-d2 / (2 * psi.bandwidth**2)), rtol=1e-12)
    # sampled centres are distinct rows of X
    assert all((X == c).all(axis=1).any() for c in psi.centers)
    assert len({tuple(c) for c in psi.centers}) == 10
    assert edmd_dictionary(X, n_centers=10, bandwidth=0.5).bandwidth == 0.5


def test_dictionary_rejects_points_of_the_wrong_dimension(poly_spec):
    psi = poly_spec.options["dictionary"]
    with pytest.raises(DataError, match=r"reshape"):
        psi(np.zeros(2))
    with pytest.raises(DataError, match=r"\(N, 2\)"):
        psi(np.zeros((4, 3)))


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_identical_eigenvalues(linear_pairs, rbf_spec):
    X, Y = linear_pairs
    again = edmd(X, Y, n_centers=100, centers="kmeans", seed=0)
    np.testing.assert_array_equal(again.eigenvalues, rbf_spec.eigenvalues)
    np.testing.assert_array_equal(again.options["dictionary"].centers,
                                  rbf_spec.options["dictionary"].centers)
    other = edmd_dictionary(X, n_centers=100, centers="kmeans", seed=1)
    assert not np.array_equal(other.centers, rbf_spec.options["dictionary"].centers)


def test_sampled_centres_run_and_are_seeded(linear_pairs):
    X, Y = linear_pairs
    a = edmd(X, Y, n_centers=100, centers="sample", seed=5)
    b = edmd(X, Y, n_centers=100, centers="sample", seed=5)
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    np.testing.assert_allclose(a.eigenvalues[:4], products(2)[:4], rtol=0, atol=1e-3)


def test_trajectory_input_forms_pairs():
    traj = np.random.default_rng(4).standard_normal((300, 2)).cumsum(axis=0)  # (T, D)
    spec = edmd(traj, dictionary="poly", degree=2)
    pairs = edmd(traj[:-1], traj[1:], dictionary="poly", degree=2)
    assert spec.n_pairs == 299
    np.testing.assert_array_equal(spec.eigenvalues, pairs.eigenvalues)


@pytest.mark.torch
def test_torch_input_runs_on_numpy(linear_pairs, poly_spec):
    torch = pytest.importorskip("torch")
    X, Y = linear_pairs
    spec = edmd(torch.from_numpy(X).float(), torch.from_numpy(Y).float(), dictionary="poly",
                degree=4)
    assert isinstance(spec.eigenvalues, np.ndarray)
    np.testing.assert_allclose(spec.eigenvalues[:3], poly_spec.eigenvalues[:3], atol=1e-6)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("dictionary", "fourier"),
        ("dictionary", None),
        ("centers", "random"),
        ("n_centers", 0),
        ("n_centers", 2.5),
        ("n_centers", True),
        ("degree", 0),
        ("degree", 2.0),
        ("bandwidth", 0.0),
        ("bandwidth", -1.0),
        ("bandwidth", "1"),
        ("residuals", "yes"),
        ("holdout", 1.0),
        ("rank", 0),
        ("svd", "qr"),
        ("seed", -1),
    ],
)
def test_out_of_domain_option_names_the_parameter(name, value, linear_pairs):
    X, Y = linear_pairs
    with pytest.raises(ParameterError, match=rf"^The '{name}' parameter of edmd must be .*got "):
        edmd(X, Y, **{name: value})


def test_more_centres_than_pairs_is_refused():
    X = np.random.default_rng(0).uniform(-1, 1, (30, 2))
    with pytest.raises(ParameterError, match=r"'n_centers'.* 64, more than the N = 30 snapshots"):
        edmd(X, X @ J.T)
    with pytest.raises(ParameterError, match=r"'n_centers'.* 31, more than the N = 30"):
        edmd_dictionary(X, n_centers=31)
    # the polynomial dictionary ignores n_centers
    assert edmd(X, X @ J.T, dictionary="poly", degree=1).eigenvalues.size == 3


def test_too_many_monomials_is_refused():
    X = np.random.default_rng(0).standard_normal((100, 20))
    with pytest.raises(ParameterError, match=r"'degree'.* 6, .*230230 monomials .*limit of 5000"):
        edmd(X, X, dictionary="poly", degree=6)


def test_bad_data_is_refused_by_check_pairs():
    with pytest.raises(DataError, match=r"looks transposed"):
        edmd(np.zeros((3, 100)) + np.arange(100))
