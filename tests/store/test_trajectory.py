"""Readers: .npy trajectories (no unpickling, truncation caught) and stores, through one set of functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from koopscope.errors import DataError, ParameterError
from koopscope.store import TrajectoryStore, load_npy, load_pairs, load_states, load_trajectory, partial_path
from tests.store.appender import make_states, provenance


def one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith(".") and len(message) < 400, message


def save(path: Path, arr: np.ndarray, **kwargs: object) -> Path:
    np.save(path, arr, **kwargs)
    return path


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    pytest.importorskip("zarr")
    path, states = tmp_path / "t.zarr", make_states(n_states=3, n_rows=12, width=5)
    TrajectoryStore.create(path, n_states=3, width=5, n_rows=12, provenance=provenance(),
                           source_dtype="float32").append(states)
    return path, states


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_npy_round_trip_keeps_the_float_dtype(tmp_path: Path, dtype: type) -> None:
    traj = np.random.default_rng(0).standard_normal((20, 3)).astype(dtype)
    back = load_trajectory(save(tmp_path / "t.npy", traj))
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, traj)


def test_npy_integers_become_float64_and_fortran_order_reads(tmp_path: Path) -> None:
    ints = np.arange(12).reshape(6, 2)
    assert load_npy(save(tmp_path / "i.npy", ints)).dtype == np.float64
    f = np.asfortranarray(np.random.default_rng(1).standard_normal((7, 3)))
    np.testing.assert_array_equal(load_trajectory(save(tmp_path / "f.npy", f)), f)


def test_npy_pairs_are_the_shifted_trajectory(tmp_path: Path) -> None:
    traj = np.random.default_rng(2).standard_normal((9, 2))
    X, Y = load_pairs(save(tmp_path / "t.npy", traj))
    np.testing.assert_array_equal(X, traj[:-1])
    np.testing.assert_array_equal(Y, traj[1:])


def test_pickled_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self) -> tuple:
            return (pytest.fail, ("koopscope unpickled the file",))

    path = save(tmp_path / "o.npy", np.array([[Boom(), 1]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled object array") as info:
        load_trajectory(path)
    one_sentence(str(info.value))


@pytest.mark.parametrize("keep", [0.3, 0.99])
def test_truncated_npy_is_refused(tmp_path: Path, keep: float) -> None:
    path = save(tmp_path / "t.npy", np.ones((100, 4), dtype=np.float32))
    data = path.read_bytes()
    header = len(data) - 100 * 4 * 4
    path.write_bytes(data[: header + int(keep * 1600)])
    with pytest.raises(DataError, match="is truncated") as info:
        load_trajectory(path)
    one_sentence(str(info.value))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("content", "match"), [
    (b"", "lacks the NumPy magic"), (b"hello world, not an array", "lacks the NumPy magic"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': 'garbage", "header is unreadable"),
])
def test_non_npy_files_are_refused(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        load_trajectory(path)
    assert str(path) in str(info.value)


def test_npz_gets_its_own_hint(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", traj=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"\.npz archive"):
        load_trajectory(tmp_path / "a.npz")


@pytest.mark.parametrize(("arr", "match"), [
    (np.ones(5), r"reshape\(-1, 1\)"), (np.ones((2, 3, 4)), "shape \\(2, 3, 4\\)"),
    (np.ones((3, 2), dtype=complex), "complex128"), (np.ones((3, 2), dtype=bool), "bool"),
    (np.array([["a", "b"]]), "<U1"),
])
def test_npy_that_is_not_a_real_2d_array_is_refused(tmp_path: Path, arr: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        load_trajectory(save(tmp_path / "x.npy", arr))
    one_sentence(str(info.value))


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        load_trajectory(tmp_path / "nope.npy")
    one_sentence(str(info.value))


def test_store_readers(store: tuple[Path, list[np.ndarray]]) -> None:
    path, states = store
    for got, want in zip(load_states(path), states, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(load_trajectory(path, state=2), states[2])
    X, Y = load_pairs(path, transition=1)
    np.testing.assert_array_equal(X, states[1])
    np.testing.assert_array_equal(Y, states[2])
    X, Y = load_pairs(path)  # every transition pooled: block 0 then block 1
    np.testing.assert_array_equal(X, np.concatenate(states[:2]))
    np.testing.assert_array_equal(Y, np.concatenate(states[1:]))


def test_state_and_transition_options_are_checked(store: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    path, _ = store
    with pytest.raises(ParameterError, match=r"holds states \[0, 1, 2\]; pass one of them as state="):
        load_trajectory(path)
    with pytest.raises(ParameterError, match="'state'"):
        load_trajectory(path, state=3)
    npy = save(tmp_path / "t.npy", np.ones((4, 2)))
    with pytest.raises(ParameterError, match="trajectory stores only"):
        load_trajectory(npy, state=0)
    with pytest.raises(ParameterError, match="trajectory stores only"):
        load_pairs(npy, transition=0)
    with pytest.raises(DataError, match="single trajectory"):
        load_states(npy)


def test_incomplete_store_is_refused_with_its_progress(tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    path = tmp_path / "t.zarr"
    store = TrajectoryStore.create(path, n_states=2, width=2, n_rows=10, provenance=provenance(),
                                   source_dtype="float32")
    store.append([np.ones((4, 2))] * 2)
    for reader in (load_states, load_pairs, load_trajectory):
        with pytest.raises(DataError, match="is incomplete") as info:
            reader(path)
        message = str(info.value)
        one_sentence(message)
        assert str(partial_path(path)) in message and "4 of 10 rows" in message and "rerun" in message
