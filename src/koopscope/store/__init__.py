"""Trajectory storage: residual-stream states on disk, with provenance, resumable and atomically finalised.

A capture writes its L+1 states, batch by batch, into a :class:`TrajectoryStore` (a zarr v3 group with one
float32 (N, D) array per state; zarr is imported only when a store is opened). The store is built under
``<path>.partial`` and renamed to ``<path>`` when its last row is written, so a directory at ``<path>`` is always
complete; an interrupted capture resumes with ``TrajectoryStore.create(..., resume=True)`` and the same
provenance identity, and a different identity is refused. Readers (:func:`load_pairs`, :func:`load_trajectory`,
:func:`load_states`) also accept a plain ``.npy`` (T, D) file as one trajectory.

>>> from koopscope.store import sha256_text, chunk_rows
>>> len(sha256_text(["The quick brown fox"])), chunk_rows(2048, 768)
(64, 342)
"""

from __future__ import annotations

from koopscope.store.provenance import (
    CAPTURE_CONVENTION,
    IDENTITY_FIELDS,
    PROVENANCE_KEYS,
    WEIGHT_SUFFIXES,
    check_provenance,
    created_at,
    identity,
    identity_mismatch,
    library_versions,
    make_provenance,
    sha256_directory_weights,
    sha256_text,
    sha256_token_ids,
    tool_version,
)
from koopscope.store.trajectory import load_npy, load_pairs, load_states, load_trajectory
from koopscope.store.zarr_store import (
    MIN_CHUNK_BYTES,
    PARTIAL_SUFFIX,
    STORE_SCHEMA,
    STORE_SCHEMA_VERSION,
    TrajectoryStore,
    chunk_rows,
    partial_path,
    state_name,
)

__all__ = [
    "CAPTURE_CONVENTION",
    "IDENTITY_FIELDS",
    "MIN_CHUNK_BYTES",
    "PARTIAL_SUFFIX",
    "PROVENANCE_KEYS",
    "STORE_SCHEMA",
    "STORE_SCHEMA_VERSION",
    "WEIGHT_SUFFIXES",
    "TrajectoryStore",
    "check_provenance",
    "chunk_rows",
    "created_at",
    "identity",
    "identity_mismatch",
    "library_versions",
    "load_npy",
    "load_pairs",
    "load_states",
    "load_trajectory",
    "make_provenance",
    "partial_path",
    "sha256_directory_weights",
    "sha256_text",
    "sha256_token_ids",
    "state_name",
    "tool_version",
]
