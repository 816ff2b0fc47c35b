"""TrajectoryStore: exact round trip, 1 MiB chunks, provenance attributes, atomic finalisation, resume, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from koopscope.errors import DataError, MissingDependencyError, ParameterError
from koopscope.store import (
    CAPTURE_CONVENTION,
    MIN_CHUNK_BYTES,
    TrajectoryStore,
    chunk_rows,
    load_states,
    make_provenance,
    partial_path,
    zarr_store,
)
from tests.store.appender import BATCH, N_ROWS, N_STATES, WIDTH, append_rest, make_states, open_store, provenance

zarr = pytest.importorskip("zarr")

APPENDER = Path(__file__).with_name("appender.py")


def one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith(".") and len(message) < 400, message


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


def small_store(path: Path, n_rows: int = 10, width: int = 4, n_states: int = 3, **overrides: object
                ) -> TrajectoryStore:
    return TrajectoryStore.create(path, n_states=n_states, width=width, n_rows=n_rows,
                                  provenance=provenance(**overrides), source_dtype="bfloat16")


# -- round trip and layout --------------------------------------------------------------------------------------


def test_round_trip_is_bitwise_exact_over_several_appends(tmp_path: Path) -> None:
    states = make_states(n_states=4, n_rows=1000, width=48, seed=1)
    states[2][5, 7] = np.float32(np.nextafter(np.float32(1), np.float32(2)))  # last-bit detail survives
    store = TrajectoryStore.create(tmp_path / "t.zarr", n_states=4, width=48, n_rows=1000,
                                   provenance=provenance(), source_dtype="float16")
    for lo, hi in [(0, 1), (1, 300), (300, 301), (301, 999), (999, 1000)]:
        assert store.append([s[lo:hi] for s in states]) == hi
    assert store.is_complete and store.batch_rows == (1, 299, 1, 698, 1)
    back = load_states(tmp_path / "t.zarr")
    assert len(back) == 4
    for a, b in zip(back, states, strict=True):
        assert a.dtype == np.float32 and a.shape == (1000, 48)
        np.testing.assert_array_equal(bits(a), bits(b))
    reopened = TrajectoryStore.open(tmp_path / "t.zarr")
    X, Y = reopened.read_pairs(2)
    np.testing.assert_array_equal(bits(X), bits(states[2]))
    np.testing.assert_array_equal(bits(Y), bits(states[3]))


def test_append_casts_to_float32_and_accepts_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    store = small_store(tmp_path / "t.zarr", n_rows=6, n_states=2)
    x64 = np.linspace(0, 1, 12).reshape(3, 4)
    store.append([x64, x64 + 1])
    t = torch.arange(12, dtype=torch.bfloat16).reshape(3, 4)
    store.append([t, t])
    s0 = store.read_state(0)
    np.testing.assert_array_equal(s0[:3], x64.astype(np.float32))
    np.testing.assert_array_equal(s0[3:], np.arange(12, dtype=np.float32).reshape(3, 4))


@pytest.mark.parametrize(("n_rows", "width"), [(2048, 768), (10_000, 64), (5000, 1000), (3, 300_000), (10, 4),
                                               (100, 2048)])
def test_chunks_hold_at_least_one_mib_unless_the_array_is_smaller(tmp_path: Path, n_rows: int, width: int) -> None:
    store = TrajectoryStore.create(tmp_path / "t.zarr", n_states=2, width=width, n_rows=n_rows,
                                   provenance=provenance(), source_dtype="float32")
    for i in range(2):
        meta = json.loads((store.location / f"state_{i:03d}" / "zarr.json").read_text())
        rows, cols = meta["chunk_grid"]["configuration"]["chunk_shape"]
        assert meta["shape"] == [n_rows, width] and meta["data_type"] == "float32"
        assert cols == width and rows == chunk_rows(n_rows, width) == store.chunk_rows
        if n_rows * width * 4 < MIN_CHUNK_BYTES:
            assert rows == n_rows  # one chunk
        else:
            assert rows * width * 4 >= MIN_CHUNK_BYTES and rows <= n_rows
            assert (rows - 1) * width * 4 < MIN_CHUNK_BYTES or rows == 1  # no larger than needed


def test_attributes_hold_provenance_schema_progress_and_source_dtype(tmp_path: Path) -> None:
    record = make_provenance(model_id="gpt2", prompt_sha256="a" * 64, token_ids_sha256="b" * 64, seed=3,
                             max_tokens=10, layers=(0, 2), revision_requested="main", revision_resolved="c" * 40,
                             tokenizer="gpt2")
    store = TrajectoryStore.create(tmp_path / "t.zarr", n_states=3, width=4, n_rows=10, provenance=record,
                                   source_dtype="torch.bfloat16")
    store.append([np.ones((4, 4))] * 3)
    attrs = json.loads((store.location / "zarr.json").read_text())["attributes"]
    json.dumps(attrs, allow_nan=False)  # plain JSON throughout
    meta = attrs["koopscope"]
    assert meta["schema"] == "koopscope.trajectory-store" and meta["schema_version"] == 1
    assert (meta["n_states"], meta["width"], meta["n_rows"], meta["dtype"]) == (3, 4, 10, "float32")
    assert meta["source_dtype"] == "bfloat16" and meta["capture_convention"] == CAPTURE_CONVENTION
    assert attrs["provenance"] == record and attrs["provenance"]["layers"] == [0, 2]
    assert attrs["progress"] == {"rows_written": 4, "batch_rows": [4]}
    state = json.loads((store.location / "state_002" / "zarr.json").read_text())["attributes"]
    assert state["source_dtype"] == "bfloat16" and state["description"] == "output of block 1"  # L unknown


def test_missing_capture_convention_is_filled_in(tmp_path: Path) -> None:
    record = provenance()
    del record["capture_convention"], record["created_at"]
    store = TrajectoryStore.create(tmp_path / "t.zarr", n_states=2, width=2, n_rows=2, provenance=record,
                                   source_dtype="float32")
    assert store.provenance["capture_convention"] == CAPTURE_CONVENTION


# -- atomic finalisation -----------------------------------------------------------------------------------------


def test_store_appears_at_its_path_only_when_complete(tmp_path: Path) -> None:
    path = tmp_path / "out" / "t.zarr"  # parent directories are made
    states = make_states(n_rows=10, width=4)
    store = small_store(path)
    assert not path.exists() and partial_path(path).is_dir() and store.location == partial_path(path)
    store.append([s[:7] for s in states])
    assert not path.exists() and store.rows_written == 7 and not store.is_complete
    np.testing.assert_array_equal(store.read_state(1), states[1][:7])
    store.append([s[7:] for s in states])
    assert path.is_dir() and not partial_path(path).exists() and store.location == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.zarr"]  # no staging directory left behind
    with pytest.raises(DataError, match="already holds all 10 rows") as info:
        store.append([s[:1] for s in states])
    one_sentence(str(info.value))


def test_failed_skeleton_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(zarr_store.os, "rename", broken)
    with pytest.raises(OSError, match="disk full"):
        small_store(tmp_path / "t.zarr")
    assert list(tmp_path.iterdir()) == []


# -- resume --------------------------------------------------------------------------------------------------------


def uninterrupted(path: Path) -> Path:
    append_rest(open_store(path, resume=False), make_states())
    return path


def test_resume_after_sigkill_equals_an_uninterrupted_store(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    proc = subprocess.Popen([sys.executable, str(APPENDER), str(path), "0.3"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        assert first == f"rows {BATCH}\n", proc.stderr.read()  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not path.exists() and partial_path(path).is_dir()

    with pytest.raises(DataError, match="already exists"):
        open_store(path, resume=False)
    store = open_store(path)
    assert BATCH <= store.rows_written < N_ROWS and store.rows_written % BATCH == 0
    append_rest(store, make_states())
    assert store.is_complete and path.is_dir() and not partial_path(path).exists()

    reference = uninterrupted(tmp_path / "reference.zarr")
    assert tree(path) == tree(reference)  # metadata, progress record and every chunk, byte for byte
    for a, b in zip(load_states(path), make_states(), strict=True):
        np.testing.assert_array_equal(bits(a), bits(b))


def test_rows_written_but_not_recorded_are_rewritten_on_resume(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path, states = tmp_path / "t.zarr", make_states()
    store = open_store(path, resume=False)
    store.append([s[:BATCH] for s in states])
    real = zarr_store._progress

    def crash(batches: tuple[int, ...]) -> dict:
        raise KeyboardInterrupt  # killed after the rows of batch 2 are on disk, before they are recorded

    monkeypatch.setattr(zarr_store, "_progress", crash)
    with pytest.raises(KeyboardInterrupt):
        store.append([s[BATCH:2 * BATCH] for s in states])
    monkeypatch.setattr(zarr_store, "_progress", real)
    resumed = open_store(path)
    assert resumed.rows_written == BATCH and resumed.batch_rows == (BATCH,)
    append_rest(resumed, states)
    assert tree(path) == tree(uninterrupted(tmp_path / "reference.zarr"))


def test_resume_finishes_a_store_interrupted_before_its_rename(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path, states = tmp_path / "t.zarr", make_states(n_rows=10, width=4)
    store = small_store(path)
    real = os.rename

    def crash(src: object, dst: object) -> None:
        if str(src).endswith(".partial"):
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(zarr_store.os, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        store.append(states)
    monkeypatch.setattr(zarr_store.os, "rename", real)
    assert not path.exists()
    resumed = TrajectoryStore.create(path, n_states=3, width=4, n_rows=10, provenance=provenance(),
                                     source_dtype="bfloat16", resume=True)
    assert resumed.is_complete and path.is_dir() and not partial_path(path).exists()
    again = TrajectoryStore.create(path, n_states=3, width=4, n_rows=10, provenance=provenance(),
                                   source_dtype="bfloat16", resume=True)  # a rerun of a finished extraction
    assert again.is_complete and again.location == path


def test_create_removes_skeletons_left_by_a_killed_create(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    stale = tmp_path / ".t.zarr.k3x_9qz1.init"
    (stale / "state_000").mkdir(parents=True)
    (stale / "zarr.json").write_text("{}")
    unrelated = [tmp_path / ".t.zarr.k3x_9qz1.init.keep", tmp_path / ".other.zarr.abcdefgh.init"]
    for p in unrelated:
        p.mkdir()
    small_store(path)
    assert not stale.exists() and all(p.is_dir() for p in unrelated)


def test_resume_removes_stranded_zarr_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    small_store(path)
    stray = partial_path(path) / "zarr.0123456789abcdef0123456789abcdef.partial"
    stray.write_bytes(b"{")
    small_store_resumed = TrajectoryStore.create(path, n_states=3, width=4, n_rows=10, provenance=provenance(),
                                                 source_dtype="bfloat16", resume=True)
    assert not stray.exists() and small_store_resumed.rows_written == 0


@pytest.mark.parametrize(("field", "value"), [
    ("seed", 1), ("model_id", "gpt2"), ("prompt_sha256", "0" * 64), ("token_ids_sha256", "1" * 64),
    ("revision_resolved", "f" * 40), ("revision_requested", "v2"), ("max_tokens", 7), ("layers", [0, 1]),
])
def test_resume_with_a_different_identity_is_refused(tmp_path: Path, field: str, value: object) -> None:
    path = tmp_path / "t.zarr"
    store = open_store(path, resume=False)
    store.append([s[:BATCH] for s in make_states()])
    old = provenance()[field]
    with pytest.raises(DataError) as info:
        open_store(path, **{field: value})
    message = str(info.value)
    one_sentence(message)
    assert f"{field}={old!r}" in message and f"{field}={value!r}" in message
    assert str(partial_path(path)) in message and "--out" in message and "delete" in message
    assert open_store(path).rows_written == BATCH  # the refusal changed nothing


def test_resume_ignores_non_identity_fields_and_compares_as_json(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    open_store(path, resume=False, layers=[1, 2])
    store = open_store(path, layers=(1, 2), created_at="2030-01-01T00:00:00Z", library_versions={})
    assert store.provenance["created_at"] == "2025-01-31T12:00:00Z"  # the original record is kept


@pytest.mark.parametrize(("field", "kwargs"), [("width", {"width": 5}), ("n_rows", {"n_rows": 11}),
                                               ("n_states", {"n_states": 4}),
                                               ("source_dtype", {"source_dtype": "float16"})])
def test_resume_with_a_different_layout_is_refused(tmp_path: Path, field: str, kwargs: dict) -> None:
    path = tmp_path / "t.zarr"
    small_store(path)
    args = {"n_states": 3, "width": 4, "n_rows": 10, "source_dtype": "bfloat16", **kwargs}
    with pytest.raises(DataError, match=f"made with {field}=") as info:
        TrajectoryStore.create(path, provenance=provenance(), resume=True, **args)
    one_sentence(str(info.value))


def test_existing_store_without_resume_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    small_store(path).append(make_states(n_rows=10, width=4))
    with pytest.raises(DataError, match="already exists") as info:
        small_store(path)
    one_sentence(str(info.value))
    partial_path(path).mkdir()
    with pytest.raises(DataError, match="Both"):
        TrajectoryStore.create(path, n_states=3, width=4, n_rows=10, provenance=provenance(),
                               source_dtype="bfloat16", resume=True)


# -- foreign and corrupt paths -------------------------------------------------------------------------------------


def foreign_paths(root: Path) -> dict[str, Path]:
    (root / "empty").mkdir()
    (root / "random").mkdir()
    (root / "random" / "notes.txt").write_text("hello")
    (root / "random" / "zarr.json").write_bytes(os.urandom(64))
    (root / "file.bin").write_bytes(os.urandom(100))
    zarr.open_group(str(root / "plain.zarr"), mode="w").create_array("x", shape=(3,), dtype="f4")
    zarr.create_array(str(root / "array.zarr"), shape=(3,), dtype="f4")
    return {p.name: p for p in root.iterdir()}


@pytest.mark.parametrize("name", ["empty", "random", "file.bin", "plain.zarr", "array.zarr"])
def test_foreign_paths_are_refused_naming_the_path(tmp_path: Path, name: str) -> None:
    path = foreign_paths(tmp_path)[name]
    with pytest.raises(DataError, match="not a koopscope trajectory store") as info:
        TrajectoryStore.open(path)
    one_sentence(str(info.value))
    assert str(path) in str(info.value)
    if path.is_dir():  # resume onto a foreign directory
        with pytest.raises(DataError, match="not a koopscope trajectory store"):
            TrajectoryStore.create(path, n_states=3, width=4, n_rows=10, provenance=provenance(),
                                   source_dtype="bfloat16", resume=True)
        with pytest.raises(DataError, match="not a koopscope trajectory store"):
            load_states(path)


def corrupt(path: Path, how: str) -> None:
    group = zarr.open_group(str(path), mode="r+")
    if how == "missing array":
        del group["state_001"]
    elif how == "wrong shape":
        del group["state_001"]
        group.create_array("state_001", shape=(10, 5), dtype="f4")
    elif how == "wrong dtype":
        del group["state_001"]
        group.create_array("state_001", shape=(10, 4), dtype="f8")
    elif how == "bad progress":
        group.attrs["progress"] = {"rows_written": 3, "batch_rows": [2]}
    elif how == "no provenance":
        group.attrs["provenance"] = None
    elif how == "bad layout":
        meta = dict(group.attrs["koopscope"])
        meta["width"] = "four"
        group.attrs["koopscope"] = meta


@pytest.mark.parametrize("how", ["missing array", "wrong shape", "wrong dtype", "bad progress", "no provenance",
                                 "bad layout"])
def test_corrupt_stores_are_refused_naming_the_path(tmp_path: Path, how: str) -> None:
    path = tmp_path / "t.zarr"
    small_store(path).append(make_states(n_rows=10, width=4))
    corrupt(path, how)
    with pytest.raises(DataError, match="is corrupt") as info:
        TrajectoryStore.open(path)
    one_sentence(str(info.value))
    assert str(path) in str(info.value)


def test_damaged_chunk_is_reported_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    small_store(path).append(make_states(n_rows=10, width=4))
    chunk = path / "state_002" / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[-5] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(DataError, match="array state_002 could not be read"):
        load_states(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    small_store(path)
    group = zarr.open_group(str(partial_path(path)), mode="r+")
    group.attrs["koopscope"] = {**group.attrs["koopscope"], "schema_version": 99}
    with pytest.raises(DataError, match="upgrade koopscope"):
        TrajectoryStore.open(path)


def test_missing_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        TrajectoryStore.open(tmp_path / "nope.zarr")
    one_sentence(str(info.value))


# -- bad arguments ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("batch", "match"), [
    ([np.ones((2, 4))] * 2, "has 2 arrays but the store holds 3 states"),
    ([np.ones((2, 5))] * 3, r"shape \(2, 5\); expected \(n_b, 4\)"),
    ([np.ones((2, 4)), np.ones((3, 4)), np.ones((2, 4))], "different row counts"),
    ([np.ones((11, 4))] * 3, "pass at most 10 rows"),
    ([np.ones((2, 4), dtype=complex)] * 3, "dtype complex128"),
    ("abc", "must be a list of 3 arrays"),
    ([np.ones(4)] * 3, r"shape \(4,\)"),
])
def test_bad_batches_are_refused(tmp_path: Path, batch: object, match: str) -> None:
    store = small_store(tmp_path / "t.zarr")
    with pytest.raises(DataError, match=match) as info:
        store.append(batch)  # type: ignore[arg-type]
    one_sentence(str(info.value))
    assert store.rows_written == 0


def test_empty_batch_is_a_no_op(tmp_path: Path) -> None:
    store = small_store(tmp_path / "t.zarr")
    assert store.append([np.ones((0, 4))] * 3) == 0 and store.batch_rows == ()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_states": 0}, "'n_states'"), ({"width": 2.0}, "'width'"), ({"n_rows": -1}, "'n_rows'"),
    ({"source_dtype": None}, "'source_dtype'"), ({"provenance": {"seed": 0}}, "lacks the identity field"),
    ({"provenance": {**provenance(), "extra": np.ones(2)}}, "JSON-serialisable"),
    ({"provenance": [1]}, "must be a dict"), ({"resume": 1}, "'resume'"),
])
def test_bad_create_arguments_are_refused(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"n_states": 2, "width": 2, "n_rows": 2, "provenance": provenance(), "source_dtype": "float32", **kwargs}
    with pytest.raises(ParameterError, match=match):
        TrajectoryStore.create(tmp_path / "t.zarr", **args)
    assert list(tmp_path.iterdir()) == []


def test_read_only_and_index_checks(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    small_store(path)
    reader = TrajectoryStore.open(path)
    assert not reader.is_complete and reader.location == partial_path(path)
    with pytest.raises(ParameterError, match="read-only"):
        reader.append([np.ones((1, 4))] * 3)
    with pytest.raises(ParameterError, match="'index'"):
        reader.read_state(3)
    with pytest.raises(ParameterError, match="'transition'"):
        reader.read_pairs(2)
    single = TrajectoryStore.create(tmp_path / "one.zarr", n_states=1, width=2, n_rows=2, provenance=provenance(),
                                    source_dtype="float32")
    with pytest.raises(ParameterError, match="no two of them consecutive"):
        single.read_pairs(0)


# -- optional dependency ------------------------------------------------------------------------------------------


def test_import_does_not_load_zarr() -> None:
    code = "import sys, koopscope.store; print('zarr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_missing_zarr_names_the_install_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(MissingDependencyError, match=r'pip install -c constraints.txt -e "\.\[zarr\]"'):
        small_store(tmp_path / "t.zarr")


def test_layout_constants() -> None:
    assert (N_STATES, N_ROWS, WIDTH) == (3, 10_000, 64)
    assert chunk_rows(N_ROWS, WIDTH) * WIDTH * 4 == MIN_CHUNK_BYTES and N_ROWS > chunk_rows(N_ROWS, WIDTH)


def test_layer_subsets_are_labelled_by_state_and_pair_only_consecutive_states(tmp_path):
    """--layers 0,1,2,6 of a 6-block model: arrays named by state, pairs only for blocks 0 and 1."""
    layers, rng = (0, 1, 2, 6), np.random.default_rng(0)
    states = [rng.standard_normal((5, 3)).astype(np.float32) for _ in layers]
    record = provenance(layers=list(layers))
    store = TrajectoryStore.create(tmp_path / "sub.zarr", n_states=4, width=3, n_rows=5, provenance=record,
                                   source_dtype="float32", layers=layers, n_blocks=6)
    store.append(states)
    done = TrajectoryStore.open(tmp_path / "sub.zarr")
    assert done.layers == layers and done.transitions == (0, 1)
    np.testing.assert_array_equal(done.read_state(6), states[3])
    x, y = done.read_pairs(1)
    np.testing.assert_array_equal(x, states[1]) and np.testing.assert_array_equal(y, states[2])
    with pytest.raises(ParameterError, match=r"pairs only for blocks \[0, 1\]"):
        done.read_pairs(2)  # state 3 is not held: never pair state 2 with state 6
    with pytest.raises(ParameterError, match="does not hold"):
        done.read_state(3)
    import zarr

    attrs = zarr.open_group(str(tmp_path / "sub.zarr"), mode="r")["state_006"].attrs.asdict()
    assert attrs["state_index"] == 6 and "last block, before any final norm" in attrs["description"]
    with pytest.raises(ParameterError, match="'layers'"):
        TrajectoryStore.create(tmp_path / "bad.zarr", n_states=2, width=3, n_rows=5, provenance=record,
                               source_dtype="float32", layers=(2, 1))
