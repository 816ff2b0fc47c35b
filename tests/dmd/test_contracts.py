"""koopscope's check_estimator: the contract every kernel in ``koopscope.dmd.VARIANTS`` must keep.

Output: a read-only :class:`~koopscope.dmd.Spectrum` with complex128 eigenvalues in the documented order,
finite non-negative residuals, its registry name as ``method``. Determinism, trajectory/pairs agreement,
holdout, ResDMD filtering and ``fit`` dispatch. Bad input: every case, for every kernel (and for
``StreamingDMD.update_many`` where it applies), raises a :class:`KoopscopeError` with a one-sentence
message naming the argument, without any warning on the way.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import koopscope as ks
from koopscope.dmd import VARIANTS, Spectrum, StreamingDMD
from koopscope.errors import DataError, KoopscopeError, ParameterError

KERNELS = list(VARIANTS)
PAIR_KERNELS = [k for k in KERNELS if k != "hankel"]  # hankel embeds one trajectory and refuses pairs
D, T = 4, 200
# Small and fast: randomized needs an int rank <= min(N, D); hankel's default T // 2 delays is slow-ish.
OPTIONS: dict[str, dict[str, Any]] = {"randomized": {"rank": 4}, "hankel": {"delays": 10}}
# min(N, D) of the matrix each kernel truncates: the data for most, the (T - 10, 10 D) Hankel matrix for hankel,
# the (N, 1 + D + 64) RBF-lifted snapshots for edmd.
RANK_LIMIT = {"exact": D, "tls": D, "randomized": D, "whitened": D, "hankel": 10 * D, "edmd": 1 + D + 64}


def kernel_kwargs(name: str, **overrides: Any) -> dict[str, Any]:
    return {**OPTIONS.get(name, {}), **overrides}


def run(name: str, *args: Any, **overrides: Any) -> Spectrum:
    """Call the kernel with warnings turned into errors (no RuntimeWarning may escape a kernel)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return VARIANTS[name](*args, **kernel_kwargs(name, **overrides))


def takes(name: str, parameter: str) -> bool:
    return parameter in inspect.signature(VARIANTS[name]).parameters


def planted_trajectory(seed: int = 0) -> np.ndarray:
    """x_{t+1} = A x_t + 0.1 w_t, A = V diag-blocks V^-1 with λ = 0.95 e^{±0.3i}, 0.8, 0.5; (T, D)."""
    rng = np.random.default_rng(seed)
    a, b = 0.95 * np.cos(0.3), 0.95 * np.sin(0.3)
    B = np.array([[a, -b, 0, 0], [b, a, 0, 0], [0, 0, 0.8, 0], [0, 0, 0, 0.5]])
    V = rng.standard_normal((D, D)) + 2 * np.eye(D)
    A = V @ B @ np.linalg.inv(V)
    x = np.empty((T, D))
    x[0] = rng.standard_normal(D)
    for t in range(T - 1):
        x[t + 1] = A @ x[t] + 0.1 * rng.standard_normal(D)
    return x


TRAJ = planted_trajectory()
TRAJ.setflags(write=False)


def one_sentence(msg: str) -> bool:
    """No newline, ends with a full stop, and no full stop followed by a new capitalised sentence."""
    return "\n" not in msg and msg.endswith(".") and re.search(r"\.\s+[A-Z]", msg) is None


def conjugates_adjacent(lam: np.ndarray) -> bool:
    """Every non-real eigenvalue is followed by its exact conjugate, positive imaginary part first."""
    i = 0
    while i < lam.size:
        if lam[i].imag == 0:
            i += 1
            continue
        if lam[i].imag < 0 or i + 1 == lam.size or lam[i + 1] != np.conj(lam[i]):
            return False
        i += 2
    return True


# --------------------------------------------------------------------------------------------------
# The Spectrum contract


def check_spectrum(spec: Spectrum, name: str) -> None:
    assert isinstance(spec, Spectrum)
    lam = spec.eigenvalues
    assert isinstance(lam, np.ndarray) and lam.dtype == np.complex128 and lam.ndim == 1 and lam.size >= 1
    assert np.isfinite(lam).all()
    assert np.all(np.diff(np.abs(lam)) <= 0), "eigenvalues are not in descending modulus"
    assert conjugates_adjacent(lam), f"conjugate pairs not adjacent / positive imaginary part first: {lam}"
    assert spec.spectral_radius == np.abs(lam).max()
    if spec.residuals is not None:
        r = spec.residuals
        assert r.dtype == np.float64 and r.shape == lam.shape
        assert np.isfinite(r).all() and (r >= 0).all()
        assert spec.n_spurious == int((r > spec.residual_threshold).sum())
    assert spec.method == name
    assert isinstance(spec.rank, int | np.integer) and spec.rank >= 1
    assert spec.residual_split in ("in-sample", "held-out")
    k = lam.size
    if spec.modes is not None:
        assert spec.modes.shape == (D, k) and np.isfinite(spec.modes).all()
    if spec.amplitudes is not None:
        assert spec.amplitudes.shape == (k,)
    if spec.eigenfunctions is not None:
        assert spec.eigenfunctions.ndim == 2 and spec.eigenfunctions.shape[1] == k
    if spec.singular_values is not None:
        s = spec.singular_values
        assert np.isfinite(s).all() and (s >= 0).all() and np.all(np.diff(s) <= 0)
    for field in ("eigenvalues", "modes", "amplitudes", "residuals", "eigenfunctions", "singular_values"):
        a = getattr(spec, field)
        if a is None:
            continue
        assert not a.flags.writeable, field
        with pytest.raises(ValueError):
            a[0] = 0


def option_sets(name: str) -> list[dict[str, Any]]:
    sets: list[dict[str, Any]] = [{}, {"residuals": False}, {"rank": 2}, {"holdout": 0.2}]
    if takes(name, "modes"):
        sets.append({"modes": None, "residuals": False})  # the eigenvalues-only path
        sets.append({"modes": None})
    return sets


CONTRACT_CASES = [pytest.param(name, opts, id=f"{name}-{'-'.join(f'{k}={v}' for k, v in opts.items()) or 'default'}")
                  for name in KERNELS for opts in option_sets(name)]


@pytest.mark.parametrize(("name", "opts"), CONTRACT_CASES)
def test_spectrum_contract(name, opts):
    spec = run(name, TRAJ, **opts)
    check_spectrum(spec, name)
    if opts.get("residuals", True):
        assert spec.residuals is not None
    if opts == {"rank": 2}:
        assert spec.rank == 2 and spec.eigenvalues.size == 2


@pytest.mark.parametrize("name", KERNELS)
def test_default_options_contract(name):
    """The registry entry with nothing but what it needs (hankel with its default number of delays)."""
    spec = run(name, TRAJ, **({"delays": None} if name == "hankel" else {}))
    check_spectrum(spec, name)
    n_pairs = T - spec.options["delays"] if name == "hankel" else T - 1
    assert spec.n_pairs == n_pairs and spec.residual_split == "in-sample"


@pytest.mark.parametrize("name", KERNELS)
def test_float32_input_still_gives_complex128(name):
    spec = run(name, TRAJ.astype(np.float32))
    assert spec.eigenvalues.dtype == np.complex128
    check_spectrum(spec, name)


# --------------------------------------------------------------------------------------------------
# Determinism and input forms


@pytest.mark.parametrize("name", KERNELS)
def test_deterministic_for_same_inputs_and_seed(name):
    a, b = run(name, TRAJ, seed=3), run(name, TRAJ.copy(), seed=3)
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    np.testing.assert_array_equal(a.residuals, b.residuals)
    c, d = run(name, TRAJ, holdout=0.2, seed=5), run(name, TRAJ, holdout=0.2, seed=5)
    np.testing.assert_array_equal(c.eigenvalues, d.eigenvalues)
    np.testing.assert_array_equal(c.residuals, d.residuals)


@pytest.mark.parametrize("name", PAIR_KERNELS)
def test_trajectory_equals_explicit_pairs(name):
    from_traj = run(name, TRAJ)
    from_pairs = run(name, TRAJ[:-1].copy(), TRAJ[1:].copy())
    # equal up to rounding: a trajectory forms Y^T Y by a rank-2 update of X^T X instead of a fresh product
    np.testing.assert_allclose(from_traj.eigenvalues, from_pairs.eigenvalues, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(from_traj.residuals, from_pairs.residuals, rtol=1e-10, atol=1e-13)
    assert from_traj.n_pairs == from_pairs.n_pairs == T - 1


def test_hankel_refuses_pairs():
    with pytest.raises(DataError) as info:
        run("hankel", TRAJ[:-1], TRAJ[1:])
    msg = str(info.value)
    assert "Y=None" in msg and "hankel" in msg and one_sentence(msg)


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16])
def test_integer_input_is_converted(name, dtype):
    Xi = np.round((TRAJ - TRAJ.min()) * 1000).astype(dtype)  # non-negative so that uint16 holds it
    from_int = run(name, Xi)
    from_float = run(name, Xi.astype(np.float64))
    np.testing.assert_array_equal(from_int.eigenvalues, from_float.eigenvalues)
    check_spectrum(from_int, name)


# --------------------------------------------------------------------------------------------------
# Holdout and ResDMD filtering


@pytest.mark.parametrize("name", KERNELS)
def test_holdout(name):
    spec = run(name, TRAJ, holdout=0.2)
    check_spectrum(spec, name)
    assert spec.residual_split == "held-out"
    assert spec.residuals is not None
    full = T - 10 if name == "hankel" else T - 1
    assert spec.n_pairs == full - round(0.2 * full)
    assert run(name, TRAJ).residual_split == "in-sample"


@pytest.mark.parametrize("name", KERNELS)
def test_filtered_removes_exactly_the_eigenvalues_above_threshold(name):
    spec = run(name, TRAJ)
    r = spec.residuals
    for thr in (float(np.median(r)), spec.residual_threshold, 0.0, float(r.max()), np.inf):
        out = spec.filtered(thr) if thr != spec.residual_threshold else spec.filtered()
        keep = r <= thr
        np.testing.assert_array_equal(out.eigenvalues, spec.eigenvalues[keep])
        np.testing.assert_array_equal(out.residuals, r[keep])
        if spec.modes is not None:
            np.testing.assert_array_equal(out.modes, spec.modes[:, keep])
        if spec.amplitudes is not None:
            np.testing.assert_array_equal(out.amplitudes, spec.amplitudes[keep])
        assert out.residual_threshold == thr and out.n_spurious == 0
        assert out.method == spec.method and out.rank == spec.rank
        assert not out.eigenvalues.flags.writeable
    # without residuals there is nothing to filter
    bare = run(name, TRAJ, residuals=False)
    assert bare.filtered(0.0) is bare


SPLIT_CASES = list(KERNELS)


@pytest.mark.parametrize("name", SPLIT_CASES)
def test_filtered_never_splits_a_conjugate_pair(name):
    """A threshold anywhere must keep or drop both members of a conjugate pair (pairs share a residual)."""
    configs = [kernel_kwargs(name, seed=s) for s in range(3)]
    if name == "edmd":
        configs += [kernel_kwargs(name, seed=s, n_centers=128) for s in range(3)]
    for kw in configs:
        spec = VARIANTS[name](TRAJ, **kw)
        for thr in np.unique(spec.residuals):
            assert conjugates_adjacent(spec.filtered(float(thr)).eigenvalues), (kw, thr)


# --------------------------------------------------------------------------------------------------
# fit dispatch


@pytest.mark.parametrize("name", KERNELS)
def test_fit_equals_the_kernel(name):
    via_fit = ks.dmd.fit(TRAJ, method=name, **kernel_kwargs(name))
    direct = run(name, TRAJ)
    np.testing.assert_array_equal(via_fit.eigenvalues, direct.eigenvalues)
    np.testing.assert_array_equal(via_fit.residuals, direct.residuals)
    assert via_fit.method == direct.method == name


def test_fit_auto_names_a_registered_kernel_and_says_why():
    spec = ks.dmd.fit(TRAJ)
    assert spec.method in VARIANTS and spec.reason
    assert spec.method == ks.dmd.select(TRAJ)[0]


def test_fit_unknown_method():
    with pytest.raises(ParameterError) as info:
        ks.dmd.fit(TRAJ, method="nope")
    msg = str(info.value)
    assert "'method'" in msg and "'nope'" in msg and one_sentence(msg)


# --------------------------------------------------------------------------------------------------
# Bad input


def with_value(a: np.ndarray, row: int, col: int, value: float) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a[row, col] = value
    return a


# name -> (inputs, fragments every message must contain); fragments may use {caller}
BadCase = tuple[Callable[[], tuple[Any, ...]], tuple[str, ...]]
BAD_TRAJECTORY: dict[str, BadCase] = {
    "nan": (lambda: (with_value(TRAJ, 17, 2, np.nan),), ("X passed to {caller}", "NaN/Inf", "row 17, column 2")),
    "pos_inf": (lambda: (with_value(TRAJ, 5, 1, np.inf),), ("X passed to {caller}", "NaN/Inf", "row 5, column 1")),
    "neg_inf": (lambda: (with_value(TRAJ, 0, 0, -np.inf),), ("X passed to {caller}", "NaN/Inf", "row 0, column 0")),
    "one_snapshot": (lambda: (TRAJ[:1],), ("X passed to {caller}", "1 snapshot(s)")),
    "no_features": (lambda: (np.zeros((10, 0)),), ("X passed to {caller}", "D = 0")),
    "one_d": (lambda: (TRAJ[:, 0],), ("X passed to {caller}", "1-D", "reshape(-1, 1)")),
    "three_d": (lambda: (TRAJ.reshape(2, 100, D),), ("X passed to {caller}", "3-D", "(2, 100, 4)")),
    "constant": (lambda: (np.tile(TRAJ[0], (T, 1)),), ("X passed to {caller}", "constant")),
    "all_zero": (lambda: (np.zeros((T, D)),), ("X passed to {caller}", "all zeros")),
    "transposed": (lambda: (np.random.default_rng(1).standard_normal((5, 100)),),
                   ("X passed to {caller}", "looks transposed", "X.T")),
    "boolean": (lambda: (TRAJ > 0,), ("X passed to {caller}", "boolean", "X.astype(float)")),
    "complex": (lambda: (TRAJ.astype(np.complex128),), ("X passed to {caller}", "complex")),
    "complex_real_valued": (lambda: (TRAJ + 0j,), ("X passed to {caller}", "complex")),
}
BAD_PAIRS: dict[str, BadCase] = {
    "nan_in_Y": (lambda: (TRAJ[:-1], with_value(TRAJ[1:], 3, 1, np.nan)), ("Y passed to {caller}", "row 3, column 1")),
    "inf_in_Y": (lambda: (TRAJ[:-1], with_value(TRAJ[1:], 9, 0, np.inf)), ("Y passed to {caller}", "NaN/Inf")),
    "one_pair": (lambda: (TRAJ[:1], TRAJ[1:2]), ("X passed to {caller}", "1 snapshot pair(s)")),
    "shape_mismatch": (lambda: (TRAJ[:-1], TRAJ[1:-1]), ("X and Y passed to {caller}", "same shape", "(198, 4)")),
    "width_mismatch": (lambda: (TRAJ[:-1], TRAJ[1:, :3]), ("X and Y passed to {caller}", "same shape")),
    "boolean_Y": (lambda: (TRAJ[:-1], TRAJ[1:] > 0), ("Y passed to {caller}", "Y.astype(float)")),
    "complex_Y": (lambda: (TRAJ[:-1], TRAJ[1:].astype(np.complex64)), ("Y passed to {caller}", "complex")),
    "transposed_pairs": (lambda: tuple(np.random.default_rng(2).standard_normal((2, 5, 100))),
                         ("X passed to {caller}", "looks transposed", "X.T")),
}


def assert_clean_error(call: Callable[[], Any], fragments: tuple[str, ...], caller: str,
                       kind: type[KoopscopeError] = DataError) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning on the way would surface as a different exception
        with pytest.raises(KoopscopeError) as info:
            call()
    err = info.value
    assert isinstance(err, kind), f"{type(err).__name__}: {err}"
    msg = str(err)
    assert one_sentence(msg), msg
    for fragment in fragments:
        assert fragment.format(caller=caller) in msg, (fragment, msg)
    return msg


BAD_KERNEL_CASES = (
    [pytest.param(name, case, id=f"{name}-{case}") for name in KERNELS for case in BAD_TRAJECTORY]
    + [pytest.param(name, case, id=f"{name}-{case}") for name in KERNELS for case in BAD_PAIRS]
)


@pytest.mark.parametrize(("name", "case"), BAD_KERNEL_CASES)
def test_bad_input(name, case):
    make, fragments = {**BAD_TRAJECTORY, **BAD_PAIRS}[case]
    if name == "hankel" and case in BAD_PAIRS:
        fragments = ("hankel", "Y=None")  # hankel refuses pairs before looking at them
    assert_clean_error(lambda: run(name, *make()), fragments, caller=name)


@pytest.mark.parametrize("name", KERNELS)
def test_no_features_message_reports_the_input_shape(name):
    assert_clean_error(lambda: run(name, np.zeros((10, 0))), ("(10, 0)",), caller=name)


RANK_CASES = list(KERNELS)


@pytest.mark.parametrize("name", RANK_CASES)
def test_rank_above_min_n_d(name):
    limit = RANK_LIMIT[name]
    rank = limit + 1
    run(name, TRAJ, rank=limit)  # the limit itself is fine
    msg = assert_clean_error(lambda: run(name, TRAJ, rank=rank), ("'rank'", name), caller=name,
                             kind=ParameterError)
    assert re.search(rf"\b{rank}\b", msg) and re.search(rf"\b{limit}\b", msg), msg


@pytest.mark.parametrize("name", RANK_CASES)
def test_huge_rank(name):
    msg = assert_clean_error(lambda: run(name, TRAJ, rank=10**6), ("'rank'", "1000000"), caller=name,
                             kind=ParameterError)
    assert re.search(r"\b\d+\b", msg.replace("1000000", ""))


def test_tls_rank_message_names_the_real_limit():
    msg = assert_clean_error(lambda: run("tls", TRAJ, rank=9), ("'rank'",), caller="tls", kind=ParameterError)
    assert re.search(r"\b4\b", msg) and not re.search(r"\b8\b", msg), msg


NUMPY_RANK_CASES = list(KERNELS)


@pytest.mark.parametrize("name", NUMPY_RANK_CASES)
def test_numpy_integer_rank_equals_python_int_rank(name):
    a, b = run(name, TRAJ, rank=np.int64(2)), run(name, TRAJ, rank=2)
    assert a.rank == b.rank == 2
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("rank", [0, -1, 1.5, "auto", True])
def test_bad_rank_value(name, rank):
    assert_clean_error(lambda: run(name, TRAJ, rank=rank), ("'rank' parameter of " + name, f"got {rank!r}"),
                       caller=name, kind=ParameterError)


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize(("param", "value"), [("holdout", 0.0), ("holdout", 1.0), ("seed", -1),
                                              ("residual_threshold", 0.0), ("orientation", "cols")])
def test_bad_common_options(name, param, value):
    assert_clean_error(lambda: run(name, TRAJ, **{param: value}), (f"'{param}' parameter of {name}",),
                       caller=name, kind=ParameterError)


# --------------------------------------------------------------------------------------------------
# StreamingDMD.update_many: the same cases where they apply (a chunk need not be full rank or moving,
# and there is no rank), with the state dimension the chunk is meant for.

STREAM_CASES = ["nan", "pos_inf", "neg_inf", "one_snapshot", "no_features", "one_d", "three_d", "transposed",
                "boolean", "complex", "complex_real_valued", "nan_in_Y", "inf_in_Y", "shape_mismatch",
                "width_mismatch", "boolean_Y", "complex_Y"]
STREAM_FRAGMENTS = {"no_features": ("X passed to {caller}", "(10, 0)"),
                    "transposed": ("X passed to {caller}", "looks transposed", "X.T")}


@pytest.mark.parametrize("case", STREAM_CASES)
def test_streaming_bad_input(case):
    make, fragments = {**BAD_TRAJECTORY, **BAD_PAIRS}[case]
    fragments = STREAM_FRAGMENTS.get(case, fragments)
    online = StreamingDMD(5 if case == "transposed" else D)  # (5, 100) is a transposed chunk of 5-D states
    online.update_many(np.random.default_rng(4).standard_normal((20, online.dim)))
    before = online.n_pairs
    assert_clean_error(lambda: online.update_many(*make()), fragments, caller="StreamingDMD.update_many")
    assert online.n_pairs == before  # a rejected chunk leaves the estimate untouched


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16])
def test_streaming_integer_input_is_converted(dtype):
    Xi = np.round((TRAJ - TRAJ.min()) * 1000).astype(dtype)
    a, b = StreamingDMD(D), StreamingDMD(D)
    a.update_many(Xi)
    b.update_many(Xi.astype(np.float64))
    np.testing.assert_array_equal(a.spectrum().eigenvalues, b.spectrum().eigenvalues)
    check_spectrum(a.spectrum(), "streaming")


@pytest.mark.parametrize(("x", "fragment"), [
    (np.array([np.nan, 0, 0, 0]), "NaN/Inf"),
    (np.array([True, False, True, True]), "astype(float)"),
    (np.ones(4, dtype=np.complex128), "complex"),
    (np.ones((1, 4)), "update_many"),
    (np.ones(3), "dim = 4"),
])
def test_streaming_update_bad_state(x, fragment):
    online = StreamingDMD(D)
    assert_clean_error(lambda: online.update(x, np.ones(D)), ("x passed to StreamingDMD.update", fragment),
                       caller="StreamingDMD.update")
    assert online.n_pairs == 0
