"""Provenance of a captured trajectory: content hashes, versions, time, and the identity a resume must match.

Everything here is a small pure function over plain Python and numpy values (no zarr, no torch import), so
capture code, the store and the fingerprint can share it. A provenance record is a JSON-serialisable dict
with the keys of :data:`PROVENANCE_KEYS`; :func:`make_provenance` builds one. Its :data:`IDENTITY_FIELDS`
decide whether an interrupted store may be resumed: the same model, revision, prompts, token ids, seed,
token budget and layers, or a refusal (see :func:`identity_mismatch`).

Hash framing (stable; changing it changes every stored hash, so it is versioned by a tag)
------------------------------------------------------------------------------------------
* :func:`sha256_text`: the tag ``koopscope-text-v1``, then for each text its UTF-8 byte length as an 8-byte
  little-endian integer followed by the bytes. Length prefixes make ``["ab", "c"]`` and ``["a", "bc"]`` differ.
* :func:`sha256_token_ids`: the tag ``koopscope-token-ids-v1``, then for each sequence its length (8-byte
  little-endian) followed by the ids as little-endian int64. A (B, L) array and the list of its B rows hash
  the same, so a padded batch and ragged prompts are hashed alike.
* :func:`sha256_directory_weights`: the tag ``koopscope-weights-v1``, then for each weight file in sorted
  relative-path order its POSIX relative path (length-prefixed UTF-8), its size (8-byte little-endian) and its
  bytes, read in 1 MiB chunks.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from koopscope._backend import is_torch
from koopscope._version import __version__
from koopscope.errors import DataError, ParameterError

__all__ = [
    "CAPTURE_CONVENTION", "IDENTITY_FIELDS", "PROVENANCE_KEYS", "WEIGHT_SUFFIXES", "check_provenance", "created_at",
    "identity", "identity_mismatch", "library_versions", "make_provenance", "sha256_directory_weights", "sha256_text",
    "sha256_token_ids", "tool_version",
]

# DESIGN.md, "Conventions": residual-stream indexing and the row convention, recorded with every store.
CAPTURE_CONVENTION: dict[str, Any] = {
    "name": "koopscope-residual-stream",
    "version": 1,
    "rows": "snapshots: row r of every state is the same token position",
    "state_0": "input to block 0 (after embeddings)",
    "state_i": "output of block i-1",
    "last_state": "output of the last block before any final norm",
}

# The keys of a complete provenance record (DESIGN.md, "The fingerprint": provenance).
PROVENANCE_KEYS: tuple[str, ...] = (
    "model_id", "revision_requested", "revision_resolved", "tokenizer", "prompt_sha256", "token_ids_sha256",
    "seed", "max_tokens", "layers", "tool_version", "library_versions", "capture_convention", "created_at",
)

# The fields a resumed store must share with the run that resumes it (issue 3, item 6).
IDENTITY_FIELDS: tuple[str, ...] = (
    "model_id", "revision_requested", "revision_resolved", "prompt_sha256", "token_ids_sha256", "seed",
    "max_tokens", "layers",
)

# Weight files of a local model directory (safetensors, PyTorch pickles, GGUF).
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".bin", ".pt", ".pth", ".gguf")

# Libraries recorded by library_versions(), in order; absent ones are left out.
_LIBRARIES: tuple[str, ...] = ("numpy", "scipy", "torch", "transformers", "zarr")
_CHUNK = 1 << 20  # bytes per read when hashing weight files


def _u64(n: int) -> bytes:
    return int(n).to_bytes(8, "little", signed=False)


def sha256_text(texts: str | Iterable[str]) -> str:
    """SHA-256 (hex) of prompt texts, length-prefixed so that the split between texts counts.

    Parameters
    ----------
    texts : str or iterable of str
        The prompts in order; a single string is hashed as a one-element list.

    Returns
    -------
    str
        64 lowercase hex digits.

    >>> sha256_text(["ab", "c"]) == sha256_text(["a", "bc"])
    False
    >>> sha256_text("hello") == sha256_text(["hello"])
    True
    """
    items = [texts] if isinstance(texts, str) else list(texts)
    h = hashlib.sha256(b"koopscope-text-v1")
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise DataError(f"texts passed to sha256_text must be strings; item {i} is a {type(text).__name__}: "
                            "decode or convert every prompt to str first.")
        data = text.encode("utf-8")
        h.update(_u64(len(data)))
        h.update(data)
    return h.hexdigest()


def _id_rows(token_ids: object) -> list[np.ndarray]:
    """The token-id sequences of a 1-D/2-D array, a tensor, or a list of sequences (possibly ragged)."""
    if is_torch(token_ids):
        token_ids = token_ids.detach().cpu().numpy()  # type: ignore[attr-defined]
    if isinstance(token_ids, np.ndarray):
        if token_ids.ndim not in (1, 2):
            raise DataError(f"token_ids passed to sha256_token_ids must be 1-D (one sequence) or 2-D (a batch of "
                            f"sequences); got shape {token_ids.shape}: reshape it to (batch, length).")
        return [token_ids] if token_ids.ndim == 1 else list(token_ids)
    if isinstance(token_ids, (list, tuple)):
        if token_ids and all(np.ndim(seq) == 0 for seq in token_ids):  # one flat sequence of ids
            return [np.asarray(token_ids)]
        rows = []
        for seq in token_ids:
            arr = seq.detach().cpu().numpy() if is_torch(seq) else np.asarray(seq)
            if arr.ndim != 1:
                raise DataError(f"token_ids passed to sha256_token_ids as a list must hold 1-D sequences; got an "
                                f"item of shape {arr.shape}: pass a (batch, length) array or a list of 1-D sequences.")
            rows.append(arr)
        return rows
    raise DataError(f"token_ids passed to sha256_token_ids must be an integer array, tensor or list of sequences; "
                    f"got {type(token_ids).__name__}.")


def sha256_token_ids(token_ids: object) -> str:
    """SHA-256 (hex) of token-id sequences, independent of their integer dtype.

    Parameters
    ----------
    token_ids : array_like of int
        A 1-D sequence (array, tensor or flat list), a (batch, length) array or tensor, or a list of 1-D
        sequences of different lengths.
        Ids are hashed as int64, so int32 and int64 inputs agree; pass only the real tokens (no padding),
        or pad consistently.

    Returns
    -------
    str
        64 lowercase hex digits.
    """
    h = hashlib.sha256(b"koopscope-token-ids-v1")
    for i, row in enumerate(_id_rows(token_ids)):
        if row.size and row.dtype.kind not in "iu":
            raise DataError(f"token_ids passed to sha256_token_ids must be integers; sequence {i} has dtype "
                            f"{row.dtype}: pass the tokenizer's input_ids.")
        h.update(_u64(row.size))
        h.update(np.ascontiguousarray(row, dtype="<i8").tobytes())
    return h.hexdigest()


def _weight_files(root: Path) -> list[tuple[str, Path]]:
    found = [(p.relative_to(root).as_posix(), p) for p in root.rglob("*")
             if p.suffix.lower() in WEIGHT_SUFFIXES and p.is_file()]
    return sorted(found)


def sha256_directory_weights(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) over the weight files of a local model directory: its resolved revision.

    Every ``*.safetensors``, ``*.bin``, ``*.pt``, ``*.pth`` and ``*.gguf`` file below ``path`` (recursively,
    following symbolic links to files, as in a Hugging Face cache snapshot) is hashed in sorted relative-path
    order with its path and size, streamed in 1 MiB chunks. Renaming, editing, adding or removing a weight
    file changes the hash; configuration and tokenizer files do not.

    Parameters
    ----------
    path : path-like
        A local model directory.

    Returns
    -------
    str
        64 lowercase hex digits.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"The model path {str(root)!r} passed to sha256_directory_weights is not a directory; pass a "
                        "local model directory (or a Hugging Face id, whose revision is its commit hash).")
    files = _weight_files(root)
    if not files:
        raise DataError(f"The model directory {str(root)!r} holds no weight files ({', '.join(WEIGHT_SUFFIXES)}); "
                        "pass the directory that contains the model's weights.")
    h = hashlib.sha256(b"koopscope-weights-v1")
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    for rel, file in files:
        name = rel.encode("utf-8")
        h.update(_u64(len(name)) + name + _u64(file.stat().st_size))
        with file.open("rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
    return h.hexdigest()


def _version_of(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        module = sys.modules.get(name)  # imported from a source tree without metadata
        version = getattr(module, "__version__", None)
        return None if version is None else str(version)


def tool_version() -> str:
    """The koopscope version (:mod:`koopscope._version`, the single source)."""
    return __version__


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a capture depends on, read without importing them.

    Returns
    -------
    dict of str to str
        ``python``, then ``numpy``, ``scipy``, ``torch``, ``transformers``, ``zarr`` where installed, then
        ``koopscope``.
    """
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        version = _version_of(name)
        if version is not None:
            versions[name] = version
    versions["koopscope"] = tool_version()
    return versions


def created_at() -> str:
    """The current UTC time as ISO-8601 with second precision, e.g. ``2025-01-31T12:00:00Z``."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_provenance(*, model_id: str, prompt_sha256: str, token_ids_sha256: str, seed: int, max_tokens: int,
                    layers: Iterable[int] | None = None, revision_requested: str | None = None,
                    revision_resolved: str | None = None, tokenizer: str | None = None,
                    capture_convention: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A complete provenance record with the keys of :data:`PROVENANCE_KEYS`.

    ``tool_version``, ``library_versions`` and ``created_at`` are filled in now; ``capture_convention``
    defaults to :data:`CAPTURE_CONVENTION`; ``layers`` is stored as a list (``None`` means all layers).
    """
    record: dict[str, Any] = {
        "model_id": model_id,
        "revision_requested": revision_requested,
        "revision_resolved": revision_resolved,
        "tokenizer": tokenizer,
        "prompt_sha256": prompt_sha256,
        "token_ids_sha256": token_ids_sha256,
        "seed": seed,
        "max_tokens": max_tokens,
        "layers": None if layers is None else [int(i) for i in layers],
        "tool_version": tool_version(),
        "library_versions": library_versions(),
        "capture_convention": dict(CAPTURE_CONVENTION if capture_convention is None else capture_convention),
        "created_at": created_at(),
    }
    return check_provenance(record, caller="make_provenance")


def check_provenance(provenance: object, *, caller: str) -> dict[str, Any]:
    """``provenance`` as the plain JSON value it will be stored as (tuples become lists).

    Raises :class:`ParameterError` unless it is a dict with string keys, JSON-serialisable values and every
    field of :data:`IDENTITY_FIELDS`.
    """
    if not isinstance(provenance, Mapping):
        raise ParameterError(f"The 'provenance' parameter of {caller} must be a dict; got "
                             f"{type(provenance).__name__}: build one with koopscope.store.make_provenance.")
    missing = [k for k in IDENTITY_FIELDS if k not in provenance]
    if missing:
        raise ParameterError(f"The 'provenance' parameter of {caller} lacks the identity field(s) {missing}, which "
                             "decide whether a store may be resumed; build it with koopscope.store.make_provenance.")
    try:
        return json.loads(json.dumps(dict(provenance), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"The 'provenance' parameter of {caller} must be JSON-serialisable (str keys; str, "
                             f"number, bool, None, list or dict values; no NaN); json.dumps failed with: {exc}."
                             ) from None


def identity(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`IDENTITY_FIELDS` of a provenance record (missing fields read as ``None``)."""
    return {k: provenance.get(k) for k in IDENTITY_FIELDS}


def identity_mismatch(stored: Mapping[str, Any], given: Mapping[str, Any]) -> tuple[str, Any, Any] | None:
    """The first identity field in which two provenance records differ, as ``(field, stored, given)``, or None.

    Values are compared as JSON (a tuple of layers equals the list it was stored as).
    """
    a, b = _as_json(identity(stored)), _as_json(identity(given))
    for key in IDENTITY_FIELDS:
        if a[key] != b[key]:
            return key, a[key], b[key]
    return None


def _as_json(value: Any) -> Any:
    """``value`` after a JSON round trip (tuples become lists; dict keys become strings)."""
    return json.loads(json.dumps(value))
