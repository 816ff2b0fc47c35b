"""_validation: declarative parameter constraints, their exact messages, seeds, ranks and snapshot data."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import koopscope as ks
from koopscope._validation import Interval, Options, check_pairs, check_param, check_rank, check_seed
from koopscope.errors import DataError, KoopscopeError, ParameterError


def one_sentence(msg: str) -> bool:
    """No newline, ends with a full stop, and no full stop followed by a new capitalised sentence."""
    return "\n" not in msg and msg.endswith(".") and re.search(r"\.\s+[A-Z]", msg) is None


def traj(T: int = 50, D: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((T, D))


# --------------------------------------------------------------------------------------------------
# Interval


@pytest.mark.parametrize(("interval", "inside", "outside"), [
    (Interval(int, 1, None), [1, 2, 10**12, np.int64(3), np.uint8(1)], [0, -1, 1.0, 2.5, True, "1", None]),
    (Interval(float, 0.0, 1.0, closed="right"), [1.0, 1, 0.5, 1e-300, np.float32(0.5)], [0.0, 0, -0.1, 1.0001, False]),
    (Interval(float, 0.0, 1.0, closed="left"), [0.0, 0.999], [1.0, -1e-300]),
    (Interval(float, 0.0, 1.0, closed="neither"), [0.5], [0.0, 1.0]),
    (Interval(float, 0.0, 1.0, closed="both"), [0.0, 1.0], [1.5]),
    (Interval(float, None, None), [-1e300, 0.0, 1e300], [math.nan, math.inf, -math.inf, 1 + 0j]),
])
def test_interval_membership(interval, inside, outside):
    for v in inside:
        assert v in interval, (v, interval)
    for v in outside:
        assert v not in interval, (v, interval)


@pytest.mark.parametrize(("interval", "text"), [
    (Interval(int, 1, None), "an int in [1, inf)"),
    (Interval(float, 0.0, 1.0, closed="right"), "a float in (0, 1]"),
    (Interval(float, 0.0, 1.0, closed="left"), "a float in [0, 1)"),
    (Interval(float, 0.0, 1.0, closed="neither"), "a float in (0, 1)"),
    (Interval(float, None, 2.5), "a float in (-inf, 2.5]"),
    (Interval(float, None, None, closed="neither"), "a float in (-inf, inf)"),
])
def test_interval_str(interval, text):
    assert str(interval) == text


# --------------------------------------------------------------------------------------------------
# Options and check_param


def test_options_are_type_strict():
    opts = Options(("full", 1))
    assert "full" in opts and 1 in opts
    assert 1.0 not in opts and True not in opts and "FULL" not in opts and None not in opts
    assert str(Options(("svht", "full"))) == "one of 'svht', 'full'"


def test_check_param_passes_silently():
    check_param("rank", 3, Interval(int, 1, None), None, caller="exact")
    check_param("rank", None, Interval(int, 1, None), None, caller="exact")
    check_param("flag", True, bool, caller="tls")
    check_param("name", "x", str, caller="tls")


def test_check_param_exact_message_without_fix():
    with pytest.raises(ParameterError) as info:
        check_param("rank", 0, Interval(int, 1, None), None, caller="exact")
    assert str(info.value) == "The 'rank' parameter of exact must be an int in [1, inf) or None; got 0."


def test_check_param_exact_message_with_fix_and_repr_of_value():
    with pytest.raises(ParameterError) as info:
        check_param("svd", "qr", Options(("svd", "gram")), caller="pod", fix="choose a solver")
    assert str(info.value) == "The 'svd' parameter of pod must be one of 'svd', 'gram'; got 'qr'; choose a solver."


def test_check_param_bool_is_not_an_int():
    with pytest.raises(ParameterError, match=r"must be an instance of int; got True"):
        check_param("n", True, int, caller="f")
    with pytest.raises(ParameterError, match=r"got False"):
        check_param("n", False, Interval(int, 0, None), caller="f")


def test_parameter_error_is_a_value_error_and_a_koopscope_error():
    with pytest.raises(ParameterError) as info:
        check_param("x", -1, Interval(int, 0, None), caller="f")
    assert isinstance(info.value, ValueError) and isinstance(info.value, KoopscopeError)


def test_exact_rank_zero_message_shape():
    """The message every kernel gives for a bad rank: name, caller, expected, value, fix; one sentence."""
    with pytest.raises(ParameterError) as info:
        ks.dmd.exact(traj(), rank=0)
    msg = str(info.value)
    assert msg.startswith("The 'rank' parameter of exact must be an int in [1, inf) or one of 'svht', 'full' "
                          "or None; got 0; ")
    assert msg == ("The 'rank' parameter of exact must be an int in [1, inf) or one of 'svht', 'full' or None; "
                   "got 0; use None or 'full' for full rank, an int r >= 1, or 'svht' for the Gavish-Donoho "
                   "threshold.")
    assert one_sentence(msg)


# --------------------------------------------------------------------------------------------------
# check_seed


@pytest.mark.parametrize("seed", [0, 1, 2**63 - 1, np.int64(7), np.uint32(5)])
def test_check_seed_returns_a_python_int(seed):
    out = check_seed(seed, "randomized")
    assert type(out) is int and out == int(seed)


@pytest.mark.parametrize("seed", [-1, 2**63, 1.0, 0.5, True, "0", None, math.nan])
def test_check_seed_rejects(seed):
    with pytest.raises(ParameterError) as info:
        check_seed(seed, "randomized")
    msg = str(info.value)
    assert msg.startswith("The 'seed' parameter of randomized must be an int in [0, ")
    assert f"got {seed!r}" in msg and msg.endswith("; pass a non-negative int.")
    assert one_sentence(msg)


# --------------------------------------------------------------------------------------------------
# check_rank


@pytest.mark.parametrize(("rank", "energy"), [
    (None, None), ("full", None), ("svht", None), (1, None), (10**6, None),
    (None, 0.9), ("full", 0.9), (None, 1.0), (None, 1),
])
def test_check_rank_accepts(rank, energy):
    check_rank(rank, energy, "exact")


@pytest.mark.parametrize("rank", [0, -1, 2.0, True, "auto", "FULL", [3]])
def test_check_rank_rejects_rank(rank):
    with pytest.raises(ParameterError) as info:
        check_rank(rank, None, "tls")
    msg = str(info.value)
    assert msg.startswith("The 'rank' parameter of tls must be an int in [1, inf) or one of 'svht', 'full' or None; ")
    assert f"got {rank!r}" in msg


@pytest.mark.parametrize("energy", [0.0, -0.1, 1.01, math.nan, True, "0.9"])
def test_check_rank_rejects_energy(energy):
    with pytest.raises(ParameterError, match=r"^The 'energy' parameter of tls must be a float in \(0, 1\] or None"):
        check_rank(None, energy, "tls")


@pytest.mark.parametrize("rank", [3, "svht"])
def test_check_rank_rank_and_energy_are_exclusive(rank):
    with pytest.raises(ParameterError) as info:
        check_rank(rank, 0.9, "exact")
    assert str(info.value) == (f"The 'rank' and 'energy' parameters of exact are exclusive; got rank={rank!r} and "
                               "energy=0.9: pass only one of them.")


def test_kernels_enforce_rank_energy_exclusivity():
    for name in ("exact", "tls", "edmd"):
        with pytest.raises(ParameterError, match="exclusive"):
            ks.dmd.VARIANTS[name](traj(), rank=2, energy=0.9)


# --------------------------------------------------------------------------------------------------
# check_pairs


def test_check_pairs_forms_pairs_from_a_trajectory():
    t = traj(20, 3)
    X, Y = check_pairs(t, caller="exact")
    assert X.shape == Y.shape == (19, 3) and X.dtype == Y.dtype == np.float64
    np.testing.assert_array_equal(X, t[:-1])
    np.testing.assert_array_equal(Y, t[1:])


def test_check_pairs_passes_pairs_through_and_converts_integers():
    X0 = np.arange(30, dtype=np.int32).reshape(10, 3) ** 2
    Y0 = X0 + np.arange(3)
    X, Y = check_pairs(X0, Y0, caller="exact")
    assert X.dtype == Y.dtype == np.float64
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)


def test_check_pairs_accepts_nested_lists():
    X, Y = check_pairs([[0.0, 1.0], [1.0, 0.5], [2.0, 0.1]], caller="exact")
    assert X.shape == (2, 2) and X.dtype == np.float64


@pytest.mark.parametrize(("shape", "pairs"), [((5, 51), False), ((5, 51), True), ((3, 200), False)])
def test_looks_transposed_error_and_rows_bypass(shape, pairs):
    X = np.random.default_rng(1).standard_normal(shape)
    args = (X, X[::-1].copy()) if pairs else (X,)
    with pytest.raises(DataError) as info:
        check_pairs(*args, caller="exact")
    msg = str(info.value)
    assert "X.T" in msg and "looks transposed" in msg and f"shape {shape}" in msg and one_sentence(msg)
    Xa, Ya = check_pairs(*args, caller="exact", orientation="rows")  # the user says rows are snapshots
    assert Xa.shape[1] == shape[1]
    spec = ks.dmd.exact(*args, orientation="rows")
    assert spec.eigenvalues.size >= 1


@pytest.mark.parametrize(("shape", "pairs"), [((5, 50), False), ((5, 50), True)])
def test_looks_transposed_boundary_d_equal_10_t_is_accepted(shape, pairs):
    X = np.random.default_rng(1).standard_normal(shape)
    args = (X, X[::-1].copy()) if pairs else (X,)
    Xa, _ = check_pairs(*args, caller="exact")
    assert Xa.shape[1] == 50


def test_orientation_must_be_check_or_rows():
    with pytest.raises(ParameterError, match=r"^The 'orientation' parameter of exact must be one of 'check', 'rows'"):
        check_pairs(traj(), caller="exact", orientation="cols")


def test_min_pairs():
    with pytest.raises(DataError, match=r"gives 3 snapshot pair\(s\); at least 5 are needed"):
        check_pairs(traj(4, 2), caller="exact", min_pairs=5)
    X, _ = check_pairs(traj(6, 2), caller="exact", min_pairs=5)
    assert X.shape == (5, 2)


def test_constant_up_to_relative_1e12_is_degenerate_but_small_motion_is_not():
    base = np.tile([1.0, -2.0, 3.0], (30, 1))
    jitter = np.random.default_rng(2).standard_normal(base.shape)
    with pytest.raises(DataError, match="is constant"):
        check_pairs(base + 1e-14 * jitter, caller="exact")
    check_pairs(base + 1e-9 * jitter, caller="exact")


def test_only_y_moving_is_not_constant():
    X = np.ones((10, 2))
    Y = np.random.default_rng(3).standard_normal((10, 2))
    check_pairs(X, Y, caller="exact")


@pytest.mark.parametrize("value", ["a", b"a", object()])
def test_non_numeric_dtype(value):
    X = np.full((5, 2), value, dtype=object if not isinstance(value, str | bytes) else None)
    with pytest.raises(DataError) as info:
        check_pairs(X, caller="exact")
    msg = str(info.value)
    assert msg.startswith("X passed to exact has dtype ") and "real numeric array" in msg and one_sentence(msg)


def test_ragged_input_is_a_data_error():
    with pytest.raises(DataError, match=r"^X passed to exact could not be read as a numeric array"):
        check_pairs([[1.0, 2.0], [3.0]], caller="exact")


def test_ragged_input_message_is_one_sentence():
    with pytest.raises(DataError) as info:
        check_pairs([[1.0, 2.0], [3.0]], caller="exact")
    assert one_sentence(str(info.value))


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint16, np.float16, np.float32])
def test_numeric_dtypes_become_float64(dtype):
    X0 = (np.abs(traj(10, 2)) * 50).astype(dtype)
    X, Y = check_pairs(X0, caller="exact")
    assert X.dtype == Y.dtype == np.float64
    np.testing.assert_array_equal(X, X0[:-1].astype(np.float64))


# --------------------------------------------------------------------------------------------------
# torch inputs (the checks run on the tensor's device; only what validation itself decides)


def test_torch_dtype_and_mixing_checks():
    torch = pytest.importorskip("torch")
    t = torch.tensor(traj(20, 3))
    X, Y = check_pairs(t, caller="exact")
    assert torch.is_tensor(X) and X.dtype == torch.float64 and tuple(X.shape) == (19, 3)
    with pytest.raises(DataError, match=r"boolean dtype.*astype\(float\)"):
        check_pairs(t > 0, caller="exact")
    with pytest.raises(DataError, match="complex dtype"):
        check_pairs(t.to(torch.complex128), caller="exact")
    with pytest.raises(DataError, match="both be numpy arrays or both torch tensors"):
        check_pairs(t, traj(20, 3), caller="exact")
    bad = t.clone()
    bad[4, 2] = float("nan")
    with pytest.raises(DataError, match=r"1 NaN/Inf value\(s\), the first at row 4, column 2"):
        check_pairs(bad, caller="exact")
