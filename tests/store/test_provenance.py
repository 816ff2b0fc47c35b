"""Provenance helpers: documented hash framings, weight-directory hashing, versions, time, identity."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from koopscope.errors import DataError, ParameterError
from koopscope.store import (
    IDENTITY_FIELDS,
    PROVENANCE_KEYS,
    created_at,
    identity,
    identity_mismatch,
    library_versions,
    make_provenance,
    sha256_directory_weights,
    sha256_text,
    sha256_token_ids,
)


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def test_sha256_text_follows_the_documented_framing() -> None:
    texts = ["Hello", "wörld", ""]
    h = hashlib.sha256(b"koopscope-text-v1")
    for t in texts:
        h.update(u64(len(t.encode())) + t.encode())
    assert sha256_text(texts) == h.hexdigest() == sha256_text(tuple(texts)) == sha256_text(iter(texts))
    assert sha256_text(["ab", "c"]) != sha256_text(["a", "bc"]) != sha256_text(["abc"])
    assert sha256_text("abc") == sha256_text(["abc"]) and sha256_text([]) != sha256_text([""])
    with pytest.raises(DataError, match="item 1 is a bytes"):
        sha256_text(["a", b"b"])  # type: ignore[list-item]


def test_sha256_token_ids_is_dtype_and_container_independent() -> None:
    batch = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32)
    ref = hashlib.sha256(b"koopscope-token-ids-v1")
    for row in batch:
        ref.update(u64(3) + row.astype("<i8").tobytes())
    assert sha256_token_ids(batch) == ref.hexdigest()
    assert sha256_token_ids(batch.astype(np.int64)) == sha256_token_ids(batch.tolist()) == ref.hexdigest()
    assert sha256_token_ids(batch) != sha256_token_ids(batch.T.copy()) != sha256_token_ids(batch.ravel())
    ragged = [[1, 2, 3], [4, 5]]
    assert sha256_token_ids(ragged) != sha256_token_ids([[1, 2], [3, 4, 5]])
    assert sha256_token_ids(np.array([7, 8])) == sha256_token_ids([[7, 8]]) == sha256_token_ids([7, 8])


def test_sha256_token_ids_accepts_torch_and_refuses_floats() -> None:
    torch = pytest.importorskip("torch")
    assert sha256_token_ids(torch.tensor([[1, 2], [3, 4]])) == sha256_token_ids([[1, 2], [3, 4]])
    assert sha256_token_ids([torch.tensor([1, 2]), torch.tensor([3])]) == sha256_token_ids([[1, 2], [3]])
    with pytest.raises(DataError, match="must be integers"):
        sha256_token_ids(np.ones((2, 2)))
    with pytest.raises(DataError, match="1-D"):
        sha256_token_ids(np.ones((2, 2, 2), dtype=int))
    with pytest.raises(DataError, match="got str"):
        sha256_token_ids("1 2 3")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "model.safetensors").write_bytes(os.urandom(2_500_000))  # more than two 1 MiB reads
    (d / "sub" / "extra.bin").write_bytes(b"\x00" * 10)
    (d / "config.json").write_text('{"n_layer": 2}')
    return d


def test_sha256_directory_weights_follows_the_documented_framing(model_dir: Path) -> None:
    h = hashlib.sha256(b"koopscope-weights-v1")
    for rel in ["model.safetensors", "sub/extra.bin"]:
        data = (model_dir / rel).read_bytes()
        h.update(u64(len(rel)) + rel.encode() + u64(len(data)) + data)
    assert sha256_directory_weights(model_dir) == sha256_directory_weights(str(model_dir)) == h.hexdigest()


def test_sha256_directory_weights_tracks_weights_only(model_dir: Path) -> None:
    base = sha256_directory_weights(model_dir)
    (model_dir / "config.json").write_text('{"n_layer": 3}')
    (model_dir / "tokenizer.json").write_text("{}")
    assert sha256_directory_weights(model_dir) == base

    weights = model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[1_500_000] ^= 1  # one bit, in the second 1 MiB chunk
    weights.write_bytes(bytes(data))
    changed = sha256_directory_weights(model_dir)
    assert changed != base
    data[1_500_000] ^= 1
    weights.write_bytes(bytes(data))
    assert sha256_directory_weights(model_dir) == base

    (model_dir / "sub" / "extra.bin").rename(model_dir / "sub" / "other.bin")
    assert sha256_directory_weights(model_dir) != base
    (model_dir / "sub" / "other.bin").rename(model_dir / "sub" / "extra.bin")
    (model_dir / "adapter.PT").write_bytes(b"x")
    assert sha256_directory_weights(model_dir) != base


def test_sha256_directory_weights_follows_symlinked_files(model_dir: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for rel in ["model.safetensors", "sub/extra.bin"]:
        (snapshot / rel).parent.mkdir(exist_ok=True)
        (snapshot / rel).symlink_to(model_dir / rel)
    assert sha256_directory_weights(snapshot) == sha256_directory_weights(model_dir)


def test_sha256_directory_weights_refusals(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a directory"):
        sha256_directory_weights(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DataError, match="holds no weight files"):
        sha256_directory_weights(tmp_path)


def test_library_versions_and_created_at() -> None:
    versions = library_versions()
    assert list(versions)[0] == "python" and list(versions)[-1] == "koopscope"
    assert {"numpy", "scipy"} <= set(versions) and all(isinstance(v, str) and v for v in versions.values())
    stamp = created_at()
    parsed = dt.datetime.fromisoformat(stamp)
    assert stamp.endswith("Z") and parsed.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.UTC) - parsed).total_seconds()) < 60


def test_make_provenance_has_every_key_and_is_json() -> None:
    record = make_provenance(model_id="gpt2", prompt_sha256=sha256_text(["a"]), token_ids_sha256=sha256_token_ids([1]),
                             seed=0, max_tokens=2048, layers=range(3))
    assert tuple(record) == PROVENANCE_KEYS and record["layers"] == [0, 1, 2]
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert set(IDENTITY_FIELDS) <= set(PROVENANCE_KEYS)
    assert identity(record) == {k: record[k] for k in IDENTITY_FIELDS}


def test_identity_mismatch_names_the_first_differing_field() -> None:
    a = make_provenance(model_id="m", prompt_sha256="p", token_ids_sha256="t", seed=0, max_tokens=8, layers=(1,))
    b = {**a, "created_at": "later", "library_versions": {}, "layers": [1]}
    assert identity_mismatch(a, b) is None
    assert identity_mismatch(a, {**a, "seed": 1, "model_id": "n"}) == ("model_id", "m", "n")
    with pytest.raises(ParameterError, match="JSON-serialisable"):
        make_provenance(model_id="m", prompt_sha256="p", token_ids_sha256="t", seed=0, max_tokens=float("nan"))
