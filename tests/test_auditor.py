"""ks.SpectralAuditor: predictions of every kernel against a planted linear system, the transform layout, score,
the fingerprint, the scikit-learn estimator contract, and one-sentence errors for bad input."""

from __future__ import annotations

import importlib
import pickle
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

import koopscope as ks
from koopscope.auditor import INSTALL_LINE, AuditorNotFittedError, SpectralAuditor

# --- a planted linear system x_{t+1} = A x_t with known eigenvalues --------------------------------------------

PLANTED = np.array([0.95 * np.exp(0.3j), 0.95 * np.exp(-0.3j), 0.8, 0.6])


def planted_operator(seed: int = 0) -> np.ndarray:
    """A = V B V⁻¹ (4, 4), B the real block form of PLANTED (a rotation block and two real eigenvalues)."""
    rng = np.random.default_rng(seed)
    c, s = 0.95 * np.cos(0.3), 0.95 * np.sin(0.3)
    B = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 0.8, 0], [0, 0, 0, 0.6]])
    V = rng.standard_normal((4, 4))
    return V @ B @ np.linalg.inv(V)


def simulate(A: np.ndarray, T: int, seed: int = 1) -> np.ndarray:
    """A trajectory (T, D) of x_{t+1} = A x_t from a random start."""
    traj = np.empty((T, A.shape[0]))
    traj[0] = np.random.default_rng(seed).standard_normal(A.shape[0])
    for t in range(T - 1):
        traj[t + 1] = A @ traj[t]
    return traj


A = planted_operator()
TRAJ = simulate(A, 60)  # (60, 4)
POINTS = np.random.default_rng(2).standard_normal((7, 4))  # fresh states, not on the trajectory

# (kernel, rank, kernel_options): every kernel, and the alternative paths inside some of them
KERNELS = [
    ("exact", None, None),
    ("exact", 4, None),  # an int rank: a POD basis and exact modes, not the state coordinates themselves
    ("tls", None, None),
    ("randomized", None, None),
    ("whitened", None, None),
    ("whitened", 4, None),  # randomized DMD on the whitened snapshots
    ("hankel", None, None),  # default delays T // 2 = 30
    ("hankel", None, {"delays": 3}),
    ("edmd", None, {"dictionary": "poly", "degree": 2}),
    ("edmd", None, {"n_centers": 20}),  # RBF dictionary with the constant and linear functions
]
KERNEL_IDS = [f"{k}-{r}-{o}" for k, r, o in KERNELS]


def fitted(kernel: str, rank: object = None, options: dict | None = None, traj: np.ndarray = TRAJ) -> SpectralAuditor:
    return SpectralAuditor(kernel=kernel, rank=rank, kernel_options=options).fit(traj)


def complex_coordinates(aud: SpectralAuditor, Z: np.ndarray) -> np.ndarray:
    """Undo transform's real layout: (n, k) complex, a pair's second member being the conjugate of the first."""
    lam = aud.eigenvalues_
    out = Z.astype(np.complex128)
    for j in range(lam.size - 1):
        if lam[j].imag > 0 and np.isclose(lam[j + 1], lam[j].conj()):
            out[:, j] = Z[:, j] + 1j * Z[:, j + 1]
            out[:, j + 1] = out[:, j].conj()
    return out


def assert_one_sentence(message: str) -> None:
    assert message.endswith("."), message
    assert "\n" not in message, message
    assert message[0].isupper(), message


# --- predictions against the planted operator --------------------------------------------------------------------


@pytest.mark.parametrize(("kernel", "rank", "options"), KERNELS, ids=KERNEL_IDS)
def test_predict_is_the_planted_operator_power(kernel: str, rank: object, options: dict | None) -> None:
    aud = fitted(kernel, rank, options)
    for n in (1, 3, 10):
        want = POINTS @ np.linalg.matrix_power(A, n).T  # (7, 4): A^n x per row
        got = aud.predict(POINTS, n_steps=n)
        assert got.shape == POINTS.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-8 * np.abs(want).max())
    assert aud.score(TRAJ) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("kernel", "rank", "options"), KERNELS[:8], ids=KERNEL_IDS[:8])
def test_linear_kernels_recover_the_planted_eigenvalues(kernel: str, rank: object, options: dict | None) -> None:
    aud = fitted(kernel, rank, options)
    assert aud.kernel_ == kernel
    np.testing.assert_allclose(aud.eigenvalues_, PLANTED, atol=1e-10)
    assert aud.spectral_radius_ == pytest.approx(0.95, abs=1e-10)


@pytest.mark.parametrize(("kernel", "rank", "options"), [c for c in KERNELS if c[0] != "whitened"],
                         ids=[i for c, i in zip(KERNELS, KERNEL_IDS, strict=True) if c[0] != "whitened"])
def test_transform_gives_koopman_eigenfunctions(kernel: str, rank: object, options: dict | None) -> None:
    # a_j(A x) = λ_j a_j(x): one step of the planted map multiplies each mode coordinate by its eigenvalue
    aud = fitted(kernel, rank, options)
    before = complex_coordinates(aud, aud.transform(POINTS))
    after = complex_coordinates(aud, aud.transform(POINTS @ A.T))
    np.testing.assert_allclose(after, before * aud.eigenvalues_, rtol=0, atol=1e-8 * np.abs(before).max())


def test_whitened_is_an_affine_map_with_the_centre_and_drift_of_the_fit() -> None:
    # whitened DMD centres X and Y by their own means: one step is ȳ + A (x − x̄), and its coordinates are centred
    aud = fitted("whitened")
    X, Y = TRAJ[:-1], TRAJ[1:]
    np.testing.assert_allclose(aud.transform(X.mean(axis=0, keepdims=True)), 0.0, atol=1e-12)
    step = Y.mean(axis=0) + (POINTS - X.mean(axis=0)) @ A.T
    np.testing.assert_allclose(aud.predict(POINTS), step, atol=1e-10)


@pytest.mark.parametrize("kernel", ["exact", "hankel", "edmd"])
def test_modes_reconstruct_the_state(kernel: str) -> None:
    aud = fitted(kernel, None, {"dictionary": "poly", "degree": 1} if kernel == "edmd" else None)
    Z = complex_coordinates(aud, aud.transform(POINTS))  # (7, k)
    np.testing.assert_allclose((Z @ aud.modes_.T).real, POINTS, atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(aud.modes_, axis=0), 1.0)


def test_transform_columns_follow_the_eigenvalues() -> None:
    aud = fitted("exact")
    Z = aud.transform(POINTS)
    assert Z.shape == (7, 4) and Z.dtype == np.float64
    assert aud.get_feature_names_out().tolist() == ["mode0_re", "mode0_im", "mode2", "mode3"]
    a = aud._readout.coordinates(POINTS)  # (7, 4) complex
    np.testing.assert_array_equal(Z[:, 0], a[:, 0].real)
    np.testing.assert_array_equal(Z[:, 1], a[:, 0].imag)
    np.testing.assert_allclose(a[:, 1], a[:, 0].conj(), atol=1e-12)
    np.testing.assert_array_equal(Z[:, 2:], a[:, 2:].real)
    np.testing.assert_allclose(a[:, 2:].imag, 0.0, atol=1e-12)


@pytest.mark.parametrize("kernel", ["exact", "tls", "randomized"])
def test_truncated_rank_predictions_follow_the_spectrum(kernel: str) -> None:
    # at rank 2 on noisy data, predict is the rank-2 operator: its mode coordinates advance by λ exactly
    noisy = TRAJ + 0.01 * np.random.default_rng(3).standard_normal(TRAJ.shape)
    aud = SpectralAuditor(kernel=kernel, rank=2).fit(noisy)
    assert aud.eigenvalues_.size == 2
    a = aud._readout.coordinates(POINTS)
    np.testing.assert_allclose(aud._readout.coordinates(aud.predict(POINTS, n_steps=2)), a * aud.eigenvalues_**2,
                               atol=1e-10)


def test_score_is_the_variance_weighted_r2_of_one_step_predictions() -> None:
    noisy = TRAJ + 0.05 * np.random.default_rng(4).standard_normal(TRAJ.shape)
    aud = SpectralAuditor(kernel="exact").fit(noisy[:40])
    held = noisy[40:]
    pred = aud.predict(held[:-1])
    want = 1 - np.sum((held[1:] - pred) ** 2) / np.sum((held[1:] - held[1:].mean(axis=0)) ** 2)
    assert aud.score(held) == pytest.approx(want, rel=1e-12)
    assert aud.score(held, y=np.zeros(len(held))) == aud.score(held)  # y is ignored


# --- kernel selection ----------------------------------------------------------------------------------------------


def test_auto_follows_dmd_fit_and_records_the_reason() -> None:
    aud = SpectralAuditor().fit(TRAJ)
    spec = ks.dmd.fit(TRAJ)
    assert aud.kernel_ == spec.method == "exact"
    assert aud.reason_ == spec.reason
    np.testing.assert_array_equal(aud.eigenvalues_, spec.eigenvalues)


def test_auto_uses_hankel_on_a_short_trajectory_and_still_predicts() -> None:
    aud = SpectralAuditor().fit(TRAJ[:20])
    assert aud.kernel_ == "hankel"
    assert "T = 20 < 30" in aud.reason_
    np.testing.assert_allclose(aud.predict(POINTS), POINTS @ A.T, atol=1e-10)


def test_hankel_on_a_partially_observed_system_predicts_from_one_snapshot_only_approximately() -> None:
    # a scalar sum of two sinusoids: hankel recovers its four unit-circle eigenvalues exactly, but one snapshot does
    # not determine the delay window, so predict (row by row) is only the best linear estimate (documented)
    t = np.arange(25)
    series = (np.sin(0.4 * t) + 0.5 * np.cos(1.1 * t))[:, None]  # (25, 1)
    aud = SpectralAuditor().fit(series)
    assert aud.kernel_ == "hankel"
    want = np.exp(1j * np.array([0.4, -0.4, 1.1, -1.1]))
    np.testing.assert_allclose(aud.eigenvalues_, want, atol=1e-8)
    assert 0.0 < aud.score(series) < 0.9
    assert aud.transform(series).shape == (25, 4)


def test_torch_tensor_input() -> None:
    torch = pytest.importorskip("torch")
    aud = SpectralAuditor(kernel="exact").fit(torch.tensor(TRAJ))
    got = aud.predict(torch.tensor(POINTS))
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, POINTS @ A.T, atol=1e-10)


def test_auto_edmd_on_a_short_nonlinear_trajectory_caps_the_rbf_centres() -> None:
    # 40 snapshots: fewer pairs than edmd's default 64 centres (koopscope.dmd.fit alone refuses this)
    traj = np.empty((40, 2))
    traj[0] = [0.3, 0.6]
    for t in range(39):
        x, y = traj[t]
        traj[t + 1] = [3.9 * x * (1 - x), 0.5 * y + x**2]
    aud = SpectralAuditor().fit(traj)
    assert aud.kernel_ == "edmd"
    assert aud.spectrum_.options["dictionary"].centers.shape[0] == 39
    assert aud.score(traj) > 0.99


def test_filter_spurious_drops_the_flagged_eigenpairs() -> None:
    # the planted system plus two white-noise coordinates: their eigenvalues have ResDMD residuals near 1
    traj = simulate(A, 200)
    noisy = np.hstack([traj, 0.3 * np.random.default_rng(5).standard_normal((200, 2))])
    full = SpectralAuditor(kernel="exact").fit(noisy)
    kept = SpectralAuditor(kernel="exact", filter_spurious=True).fit(noisy)
    assert full.n_spurious_ == 2 and kept.n_spurious_ == 0
    np.testing.assert_allclose(kept.eigenvalues_, PLANTED, atol=0.02)
    assert "ResDMD filter removed 2" in kept.reason_
    assert kept.transform(noisy).shape == (200, 4)
    pred = kept.predict(noisy[:-1])[:, :4]
    assert np.abs(pred - traj[1:]).max() < 0.05 * np.abs(traj).max()


def test_filter_spurious_refuses_to_leave_no_eigenvalue() -> None:
    noise = np.random.default_rng(1).standard_normal((80, 3))
    with pytest.raises(ks.DataError, match="^The filter_spurious option removed all 3 eigenvalues") as err:
        SpectralAuditor(kernel="exact", filter_spurious=True).fit(noise)
    assert_one_sentence(str(err.value))


def test_kernel_options_reach_the_kernel() -> None:
    aud = SpectralAuditor(kernel="hankel", kernel_options={"delays": 5}).fit(TRAJ)
    assert aud.spectrum_.options["delays"] == 5
    aud = SpectralAuditor(kernel="exact", residual_threshold=0.5).fit(TRAJ)
    assert aud.spectrum_.residual_threshold == 0.5


# --- fitted attributes, parameters, cloning ------------------------------------------------------------------------


def test_fitted_attributes() -> None:
    aud = SpectralAuditor(kernel="exact").fit(TRAJ)
    spec = aud.spectrum_
    assert isinstance(spec, ks.Spectrum)
    assert aud.eigenvalues_ is spec.eigenvalues
    assert aud.residuals_ is spec.residuals
    assert (aud.kernel_, aud.rank_, aud.n_features_in_) == ("exact", 4, 4)
    assert aud.spectral_radius_ == spec.spectral_radius
    assert aud.n_spurious_ == spec.n_spurious == 0
    assert aud.modes_.shape == (4, 4) and aud.modes_.dtype == np.complex128
    assert not hasattr(aud, "feature_names_in_")


def test_fit_keeps_the_pairs_by_reference() -> None:
    aud = SpectralAuditor(kernel="exact").fit(TRAJ)
    assert np.shares_memory(aud._X, TRAJ) and np.shares_memory(aud._Y, TRAJ)
    np.testing.assert_array_equal(aud._X, TRAJ[:-1])
    np.testing.assert_array_equal(aud._Y, TRAJ[1:])


def test_get_params_set_params_and_clone() -> None:
    options = {"delays": 4}
    aud = SpectralAuditor(kernel="hankel", rank=3, seed=7, n_boot=50, kernel_options=options)
    params = aud.get_params()
    assert params == {"kernel": "hankel", "rank": 3, "seed": 7, "n_boot": 50, "level": 0.95,
                      "residual_threshold": 0.1, "filter_spurious": False, "kernel_options": options}
    assert params["kernel_options"] is options  # stored unchanged
    aud.fit(TRAJ)
    copy = clone(aud)
    assert copy.get_params() == params and not hasattr(copy, "spectrum_")
    assert aud.set_params(kernel="tls", rank=None, kernel_options=None) is aud
    assert aud.get_params()["kernel"] == "tls"
    assert aud.fit(TRAJ).kernel_ == "tls"
    assert options == {"delays": 4}  # fit never mutates a parameter


def test_pickle_round_trip_predicts_the_same() -> None:
    aud = fitted("edmd", None, {"n_centers": 20})
    back = pickle.loads(pickle.dumps(aud))
    np.testing.assert_array_equal(back.predict(POINTS, n_steps=4), aud.predict(POINTS, n_steps=4))
    np.testing.assert_array_equal(back.transform(POINTS), aud.transform(POINTS))


def test_same_seed_same_numbers() -> None:
    kw = {"kernel": "randomized", "rank": 3, "seed": 11}
    a, b = SpectralAuditor(**kw).fit(TRAJ), SpectralAuditor(**kw).fit(TRAJ)
    np.testing.assert_array_equal(a.transform(POINTS), b.transform(POINTS))


def test_dataframe_feature_names() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(TRAJ, columns=["a", "b", "c", "d"])
    aud = SpectralAuditor(kernel="exact").fit(df)
    assert aud.feature_names_in_.tolist() == ["a", "b", "c", "d"]
    out = aud.set_output(transform="pandas").transform(df)
    assert out.columns.tolist() == ["mode0_re", "mode0_im", "mode2", "mode3"]
    with pytest.raises(ValueError, match="input_features should have length equal"):
        aud.get_feature_names_out(["a"])
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        aud.get_feature_names_out(["w", "x", "y", "z"])


# --- the fingerprint -----------------------------------------------------------------------------------------------


def test_fingerprint_of_the_fitted_spectrum() -> None:
    aud = SpectralAuditor(kernel="exact", n_boot=20).fit(TRAJ)
    fp = aud.fingerprint(name="planted")
    assert isinstance(fp, ks.KoopmanFingerprint)
    assert fp.kind == "trajectory" and fp.name == "planted"
    # the document rounds floats to 12 significant digits so that last-bit BLAS differences do not change it
    assert fp.spectral_radius == pytest.approx(aud.spectrum_.spectral_radius, rel=1e-11)
    assert fp.document["kernel"]["method"] == "exact"
    assert fp.document["uncertainty"]["n_boot"] == 20
    assert fp.provenance["seed"] == 0


def test_fingerprint_overrides_and_hankel() -> None:
    aud = SpectralAuditor(n_boot=20).fit(TRAJ[:20])  # auto → hankel
    fp = aud.fingerprint(n_boot=5, seed=3, source={"source": "planted.npy"})
    assert fp.document["kernel"]["method"] == "hankel"
    assert fp.document["uncertainty"]["n_boot"] == 5 and fp.provenance["seed"] == 3
    assert fp.name == "planted.npy"
    assert fp.spectral_radius == pytest.approx(aud.spectral_radius_, rel=1e-11)


def test_fingerprint_before_fit() -> None:
    with pytest.raises(ks.NotFittedError, match="call fit"):
        SpectralAuditor().fingerprint()


# --- the scikit-learn estimator contract -----------------------------------------------------------------------------

ESTIMATORS = [
    SpectralAuditor(),
    *(SpectralAuditor(kernel=k) for k in ("exact", "hankel", "tls", "randomized", "whitened")),
    SpectralAuditor(kernel="edmd", kernel_options={"n_centers": 5}),  # the checks fit as few as 9 pairs
    SpectralAuditor(kernel="edmd", kernel_options={"dictionary": "poly", "degree": 2}),
    SpectralAuditor(kernel="exact", rank=2),
]


def expected_failed_checks(estimator: SpectralAuditor) -> dict[str, str]:
    if estimator.rank == 2:
        return {"check_fit2d_1feature": "rank=2 cannot be fitted to 1 feature; the kernel's ParameterError names "
                                        "rank and min(N, D) = 1 instead of n_features"}
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator: SpectralAuditor, check) -> None:
    check(estimator)


# Public checks that check_estimator does not yield (pandas output, feature names, dataframe names).
EXTRA_CHECKS = ["check_dataframe_column_names_consistency", "check_transformer_get_feature_names_out",
                "check_transformer_get_feature_names_out_pandas", "check_set_output_transform",
                "check_set_output_transform_pandas", "check_global_output_transform_pandas",
                "check_inplace_ensure_writeable"]


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")  # the checks' own mixed cases
@pytest.mark.filterwarnings("ignore:X has feature names, but SpectralAuditor was fitted without")
@pytest.mark.parametrize("name", EXTRA_CHECKS)
@pytest.mark.parametrize("kernel", ["auto", "hankel"])
def test_sklearn_feature_name_and_output_checks(name: str, kernel: str) -> None:
    getattr(estimator_checks, name)("SpectralAuditor", SpectralAuditor(kernel=kernel))


def test_not_fitted_error_is_koopscope_and_sklearn() -> None:
    assert issubclass(AuditorNotFittedError, ks.NotFittedError)
    assert issubclass(AuditorNotFittedError, SklearnNotFittedError)


@pytest.mark.parametrize("method", ["predict", "transform", "score", "get_feature_names_out"])
def test_use_before_fit(method: str) -> None:
    args = () if method == "get_feature_names_out" else (TRAJ,)
    with pytest.raises(AuditorNotFittedError) as err:
        getattr(SpectralAuditor(), method)(*args)
    assert str(err.value) == (f"This SpectralAuditor is not fitted yet, so {method} has no operator to use; call "
                              "fit(X) with a trajectory X of shape (T, D) first.")


def test_missing_sklearn_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert INSTALL_LINE == 'pip install "koopscope[sklearn]"'
    monkeypatch.delitem(sys.modules, "koopscope.auditor")
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now raises ImportError
    with pytest.raises(ks.MissingDependencyError) as err:
        importlib.import_module("koopscope.auditor")
    assert 'pip install "koopscope[sklearn]"' in str(err.value)
    assert_one_sentence(str(err.value))
    with pytest.raises(ks.MissingDependencyError, match=r'pip install "koopscope\[sklearn\]"'):  # the lazy path
        ks.SpectralAuditor  # noqa: B018


# --- bad input: one-sentence KoopscopeErrors -------------------------------------------------------------------------


def nan_at(shape: tuple[int, int], value: float) -> np.ndarray:
    X = np.random.default_rng(0).standard_normal(shape)
    X[1, 2] = value
    return X


FIT_ERRORS = [
    ("nan", nan_at((30, 4), np.nan), ks.DataError, r"contains 1 NaN/Inf value\(s\), the first at row 1, column 2"),
    ("inf", nan_at((30, 4), np.inf), ks.DataError, r"contains 1 NaN/Inf value\(s\)"),
    ("empty", np.empty((0, 3)), ks.DataError,
     r"has 0 sample\(s\) \(shape=\(0, 3\)\) while a minimum of 3 is required"),
    ("no features", np.empty((5, 0)), ks.DataError,
     r"has 0 feature\(s\) \(shape=\(5, 0\)\) while a minimum of 1 is required"),
    ("one row", np.ones((1, 3)), ks.DataError, r"has 1 sample\(s\) \(shape=\(1, 3\)\) while a minimum of 3"),
    ("two rows", np.eye(2, 3), ks.DataError, r"2 sample\(s\) .* gives T - 1 pairs and DMD fits at least 2"),
    ("1-D", np.arange(10.0), ks.DataError, r"is a 1-D array of shape \(10,\) .*: Reshape your data"),
    ("3-D", np.ones((4, 3, 2)), ks.DataError, r"is a 3-D array of shape \(4, 3, 2\)"),
    ("complex", TRAJ + 1j, ks.DataError, r"^Complex data not supported: X passed to SpectralAuditor.fit"),
    ("bool", TRAJ > 0, ks.DataError, "has boolean dtype"),
    ("strings", np.array([["a", "b"], ["c", "d"], ["e", "f"]]), ks.DataError, "has dtype <U1"),
    ("sparse", sp.csr_matrix(TRAJ), ks.DataError, "is a sparse csr_matrix; .* X.toarray()"),
    ("object", np.array([[1.0, {"a": 1}]] * 5, dtype=object), TypeError,
     "has dtype object and an entry that is not a number .*argument must be"),
    ("ragged", [[1.0, 2.0], [3.0]], ks.DataError, "could not be read as a numeric array"),
    ("constant", np.ones((10, 3)), ks.DataError, "is constant"),
    ("transposed", np.random.default_rng(0).standard_normal((4, 100)), ks.DataError, r"looks transposed .*X\.T"),
]


@pytest.mark.parametrize(("X", "error", "match"), [c[1:] for c in FIT_ERRORS], ids=[c[0] for c in FIT_ERRORS])
def test_bad_trajectory(X: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match) as err:
        SpectralAuditor(kernel="exact").fit(X)
    assert isinstance(err.value, ks.KoopscopeError)
    assert "SpectralAuditor.fit" in str(err.value)
    assert_one_sentence(str(err.value))


def test_transposed_trajectory_accepted_with_orientation_rows() -> None:
    wide = np.random.default_rng(0).standard_normal((4, 100))
    aud = SpectralAuditor(kernel="exact", kernel_options={"orientation": "rows"}).fit(wide)
    assert aud.n_features_in_ == 100


@pytest.mark.parametrize("method", ["predict", "transform", "score"])
def test_bad_input_after_fit(method: str) -> None:
    aud = SpectralAuditor(kernel="exact").fit(TRAJ)
    call = getattr(aud, method)
    caller = f"SpectralAuditor.{method}"
    cases = [
        (TRAJ[:, :3], "^X has 3 features, but SpectralAuditor is expecting 4 features as input; pass snapshots with "
                      f"4 columns to {caller}"),
        (nan_at((10, 4), np.nan), r"contains 1 NaN/Inf value\(s\)"),
        (nan_at((10, 4), -np.inf), r"contains 1 NaN/Inf value\(s\)"),
        (TRAJ[0], "Reshape your data"),
        (np.empty((0, 4)), r"0 sample\(s\)"),
    ]
    for X, match in cases:
        with pytest.raises(ks.DataError, match=match) as err:
            call(X)
        assert_one_sentence(str(err.value))


def test_score_needs_two_snapshots() -> None:
    aud = SpectralAuditor(kernel="exact").fit(TRAJ)
    with pytest.raises(ks.DataError, match=r"has 1 sample\(s\) .* minimum of 2 is required, since scoring"):
        aud.score(TRAJ[:1])


@pytest.mark.parametrize("n_steps", [0, -1, 1.5, True, "2", None])
def test_bad_n_steps(n_steps: object) -> None:
    aud = SpectralAuditor(kernel="exact").fit(TRAJ)
    with pytest.raises(ks.ParameterError) as err:
        aud.predict(POINTS, n_steps=n_steps)
    assert str(err.value) == (f"The 'n_steps' parameter of SpectralAuditor.predict must be an int in [1, inf); "
                              f"got {n_steps!r}; give the number of steps ahead, e.g. 1.")


def test_numpy_int_n_steps() -> None:
    aud = SpectralAuditor(kernel="exact").fit(TRAJ)
    np.testing.assert_array_equal(aud.predict(POINTS, n_steps=np.int64(2)), aud.predict(POINTS, n_steps=2))


PARAM_ERRORS = [
    ({"kernel": "dmd"}, "The 'kernel' parameter of SpectralAuditor must be one of 'auto', 'exact', 'hankel', 'tls', "
                        "'randomized', 'edmd', 'whitened'; got 'dmd'; see koopscope.dmd.VARIANTS for the kernels."),
    ({"kernel": None}, "The 'kernel' parameter of SpectralAuditor must be one of"),
    ({"seed": -1}, "The 'seed' parameter of SpectralAuditor must be an int in [0, "),
    ({"n_boot": -1}, "The 'n_boot' parameter of SpectralAuditor must be an int in [0, inf); got -1"),
    ({"level": 1.5}, "The 'level' parameter of SpectralAuditor must be a float in (0, 1); got 1.5"),
    ({"residual_threshold": 0.0}, "The 'residual_threshold' parameter of SpectralAuditor must be a float in (0, inf)"),
    ({"filter_spurious": "yes"}, "The 'filter_spurious' parameter of SpectralAuditor must be an instance of bool"),
    ({"kernel_options": [("delays", 3)]}, "The 'kernel_options' parameter of SpectralAuditor must be an instance of "
                                          "Mapping or None"),
    ({"kernel_options": {"rank": 2}}, "The 'kernel_options' parameter of SpectralAuditor has the key 'rank', which "
                                      "the auditor sets itself; pass rank as a SpectralAuditor parameter instead."),
    ({"kernel_options": {"modes": None}}, "has modes=None, but predict and transform need the modes"),
    ({"kernel": "exact", "kernel_options": {"delays": 3}}, "has the key(s) ['delays'], which the exact kernel does "
                                                           "not accept; use only its options"),
    ({"kernel": "exact", "rank": 0}, "The 'rank' parameter of exact must be"),
]


@pytest.mark.parametrize(("params", "message"), PARAM_ERRORS, ids=[str(p) for p, _ in PARAM_ERRORS])
def test_bad_parameters_fail_in_fit(params: dict, message: str) -> None:
    aud = SpectralAuditor(**params)  # sklearn: __init__ stores, fit validates
    with pytest.raises(ks.ParameterError) as err:
        aud.fit(TRAJ)
    assert message in str(err.value)
    assert_one_sentence(str(err.value))
    assert not hasattr(aud, "spectrum_")
