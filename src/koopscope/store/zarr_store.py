"""The trajectory store: one zarr v3 group, one float32 (N, D) array per residual-stream state.

Layout on disk
--------------
A directory ``<path>`` holding a zarr v3 group with

* arrays ``state_000``, ``state_001``, ... (one per state, ``n_states`` = L+1 for an L-block model), each of
  shape (N, D) and dtype float32, row r of every array being the same token position; chunked by rows only,
  ``chunk_rows`` = ceil(1 MiB / (4 D)) rows (at most N), so every chunk holds at least 1 MiB unless the whole
  array is smaller (then one chunk); zstd-compressed with a checksum, so a damaged chunk is detected on read;
  unwritten rows read as NaN (the fill value);
* group attributes ``koopscope`` (schema name and version, tool version, ``n_states``, ``width``, ``n_rows``,
  ``dtype``, ``source_dtype``, ``chunk_rows``, ``capture_convention``), ``provenance`` (see
  :mod:`koopscope.store.provenance`) and ``progress`` (``rows_written`` and ``batch_rows``, the number of rows
  of each appended batch, in order).

Writing, interruption and resumption
------------------------------------
A store is built under the sibling directory ``<path>.partial``. Its skeleton (group, attributes, empty arrays)
is made in a private temporary directory and renamed to ``<path>.partial`` only once complete, so
``<path>.partial`` always holds a readable store. :meth:`TrajectoryStore.append` writes rows [k, k + n_b) of
every state and only then records the batch in ``progress``; every file write is atomic (zarr writes to a
temporary file and renames it), so a process killed at any moment leaves ``progress`` describing rows that are
really on disk: rows past ``rows_written`` may hold the start of an unfinished batch and are simply written
again on resume. When the last row is recorded, ``<path>.partial`` is renamed to ``<path>`` (an atomic rename
on one filesystem): a directory at ``<path>`` is therefore always a complete store, never a half-written one.
Reopening with ``TrajectoryStore.create(..., resume=True)`` and the same provenance identity continues at
:attr:`TrajectoryStore.rows_written`; a different identity is refused. Guarantees hold against a killed process;
files are not fsynced, so a power loss may lose recently written rows. One writer at a time. A process killed
while the skeleton is being made may leave a hidden ``.<name>.<random>.init`` directory beside the store; it
holds no rows, and the next ``create`` for the same path deletes it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from koopscope._backend import is_torch
from koopscope._validation import Interval, check_param
from koopscope.errors import DataError, MissingDependencyError, ParameterError
from koopscope.store.provenance import CAPTURE_CONVENTION, check_provenance, identity_mismatch, tool_version

__all__ = [
    "MIN_CHUNK_BYTES", "PARTIAL_SUFFIX", "STORE_SCHEMA", "STORE_SCHEMA_VERSION", "TrajectoryStore", "chunk_rows",
    "import_zarr", "partial_path", "state_name",
]

STORE_SCHEMA = "koopscope.trajectory-store"
STORE_SCHEMA_VERSION = 1
PARTIAL_SUFFIX = ".partial"
MIN_CHUNK_BYTES = 1 << 20  # issue 3, item 5: chunks of at least 1 MB
_DTYPE = np.dtype(np.float32)
_ZARR_INSTALL = 'pip install -c constraints.txt -e ".[zarr]"'
# zarr's LocalStore writes each file to "<name>.<uuid4 hex>.partial" and renames it; a kill can strand one.
_ZARR_TEMP = re.compile(r"\.[0-9a-f]{32}\.partial$")
_STAGING_SUFFIX = ".init"  # skeletons are made in ".<name>.<random>.init" beside the store
_OPEN_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError)  # zarr's errors are ValueError/OSError


def import_zarr() -> Any:
    """Import zarr, or raise :class:`MissingDependencyError` with the install line."""
    try:
        import zarr
    except ImportError as exc:
        raise MissingDependencyError(f"Reading or writing a koopscope trajectory store needs zarr 3.1, which is not "
                                     f"installed; install it with: {_ZARR_INSTALL}") from exc
    return zarr


def state_name(index: int) -> str:
    """The array name of state ``index``: ``state_000``, ``state_001``, ..."""
    return f"state_{index:03d}"


def chunk_rows(n_rows: int, width: int) -> int:
    """Rows per chunk so that a (rows, width) float32 chunk holds at least 1 MiB, but never more than ``n_rows``.

    >>> chunk_rows(2048, 768), chunk_rows(100, 8), chunk_rows(10, 2**20)
    (342, 100, 1)
    """
    return max(1, min(n_rows, -(-MIN_CHUNK_BYTES // (_DTYPE.itemsize * width))))


def partial_path(path: str | os.PathLike[str]) -> Path:
    """The sibling directory ``<path>.partial`` in which the store at ``path`` is built."""
    p = Path(path)
    return p.with_name(p.name + PARTIAL_SUFFIX)


@dataclass(frozen=True)
class Layout:
    """Shape and dtypes of a store: ``n_states`` arrays of (``n_rows``, ``width``) float32."""

    n_states: int
    width: int
    n_rows: int
    source_dtype: str
    layers: tuple[int, ...] = ()  # the model state index held by each array; default 0..n_states-1
    n_blocks: int | None = None  # L of the model (its last state is L), when known

    def __post_init__(self) -> None:
        if not self.layers:
            object.__setattr__(self, "layers", tuple(range(self.n_states)))

    @property
    def chunk_rows(self) -> int:
        return chunk_rows(self.n_rows, self.width)

    def position(self, state: int) -> int | None:
        """The array position of model state ``state``, or None when the store does not hold it."""
        return self.layers.index(state) if state in self.layers else None

    def attributes(self, capture_convention: Any) -> dict[str, Any]:
        return {
            "schema": STORE_SCHEMA, "schema_version": STORE_SCHEMA_VERSION, "tool_version": tool_version(),
            "n_states": self.n_states, "width": self.width, "n_rows": self.n_rows, "dtype": _DTYPE.name,
            "source_dtype": self.source_dtype, "chunk_rows": self.chunk_rows, "capture_convention": capture_convention,
            "layers": list(self.layers), "n_blocks": self.n_blocks,
        }


def _progress(batches: tuple[int, ...]) -> dict[str, Any]:
    return {"rows_written": sum(batches), "batch_rows": list(batches)}


def _state_description(index: int, n_blocks: int | None) -> str:
    if index == 0:
        return "input to block 0 (after embeddings)"
    last = " (the last block, before any final norm)" if index == n_blocks else ""
    return f"output of block {index - 1}{last}"


def _corrupt(shown: str, what: str) -> DataError:
    return DataError(f"The koopscope trajectory store {shown!r} is corrupt ({what}); delete it and rerun the "
                     "extraction.")


def _is_int(value: object, lo: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lo


def _read_layout(group: Any, shown: str) -> tuple[Layout, dict[str, Any], tuple[int, ...]]:
    """Layout, provenance and batch sizes of an opened group; DataError if it is foreign or corrupt."""
    attrs = group.attrs.asdict()
    meta = attrs.get("koopscope")
    if not isinstance(meta, dict) or meta.get("schema") != STORE_SCHEMA:
        raise DataError(f"The path {shown!r} is a zarr group but not a koopscope trajectory store (its attributes "
                        "lack the koopscope schema); pass a store written by koopscope extract or a .npy (T, D) file.")
    version = meta.get("schema_version")
    if not _is_int(version, 1):
        raise _corrupt(shown, f"schema_version is {version!r}")
    if version > STORE_SCHEMA_VERSION:
        raise DataError(f"The trajectory store {shown!r} has schema version {version}, newer than the "
                        f"{STORE_SCHEMA_VERSION} this koopscope reads; upgrade koopscope.")
    for key in ("n_states", "width", "n_rows"):
        if not _is_int(meta.get(key), 1):
            raise _corrupt(shown, f"attribute {key} is {meta.get(key)!r}, not a positive int")
    if not isinstance(meta.get("source_dtype"), str):
        raise _corrupt(shown, f"attribute source_dtype is {meta.get('source_dtype')!r}, not a string")
    layers, n_blocks = meta.get("layers") or list(range(meta["n_states"])), meta.get("n_blocks")
    if not isinstance(layers, list) or len(layers) != meta["n_states"] or not all(_is_int(i, 0) for i in layers) \
            or sorted(set(layers)) != layers or not (n_blocks is None or _is_int(n_blocks, 1)):
        raise _corrupt(shown, f"attributes layers={layers!r} and n_blocks={n_blocks!r} do not describe the states")
    layout = Layout(meta["n_states"], meta["width"], meta["n_rows"], meta["source_dtype"], tuple(layers), n_blocks)
    provenance = attrs.get("provenance")
    if not isinstance(provenance, dict):
        raise _corrupt(shown, "the provenance attribute is missing")
    progress = attrs.get("progress")
    batches = progress.get("batch_rows") if isinstance(progress, dict) else None
    if not isinstance(batches, list) or not all(_is_int(b, 1) for b in batches) or \
            sum(batches) != progress.get("rows_written") or sum(batches) > layout.n_rows:
        raise _corrupt(shown, f"the progress attribute is {progress!r}")
    for state in layout.layers:
        _check_array(group, state, layout, shown)
    return layout, provenance, tuple(batches)


def _check_array(group: Any, index: int, layout: Layout, shown: str) -> Any:
    name = state_name(index)
    try:
        array = group[name]
    except KeyError:
        raise _corrupt(shown, f"array {name} of {layout.n_states} is missing") from None
    shape, dtype = getattr(array, "shape", None), getattr(array, "dtype", None)
    if shape != (layout.n_rows, layout.width) or dtype != _DTYPE:
        raise _corrupt(shown, f"array {name} has shape {shape} and dtype {dtype}, expected "
                              f"({layout.n_rows}, {layout.width}) float32")
    return array


def _open_group(location: Path, mode: str, shown: str) -> Any:
    zarr = import_zarr()
    try:
        group = zarr.open_group(str(location), mode=mode, zarr_format=3, use_consolidated=False)
    except _OPEN_ERRORS as exc:
        raise DataError(f"The path {shown!r} is not a koopscope trajectory store (no readable zarr v3 group there); "
                        "pass a store written by koopscope extract or a .npy (T, D) file.") from exc
    return group


def _remove_stray_temporaries(location: Path) -> None:
    for p in location.rglob("*.partial"):
        if _ZARR_TEMP.search(p.name) and p.is_file():
            p.unlink(missing_ok=True)


def _remove_stale_staging(final: Path) -> None:
    """Delete skeletons of ``final`` left by a process killed in :meth:`TrajectoryStore._new` (they hold no rows)."""
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.[A-Za-z0-9_]+{re.escape(_STAGING_SUFFIX)}$")
    if final.parent.is_dir():
        for p in final.parent.iterdir():
            if pattern.match(p.name) and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _as_rows(batch_rows: object, layout: Layout, start: int) -> list[np.ndarray]:
    """The batch as ``n_states`` float32 (n_b, width) arrays; DataError naming what is wrong."""
    if isinstance(batch_rows, (str, bytes)) or not isinstance(batch_rows, (Sequence, np.ndarray)):
        raise DataError(f"batch_rows passed to TrajectoryStore.append must be a list of {layout.n_states} arrays of "
                        f"shape (n_b, {layout.width}), one per state; got {type(batch_rows).__name__}.")
    if len(batch_rows) != layout.n_states:
        raise DataError(f"batch_rows passed to TrajectoryStore.append has {len(batch_rows)} arrays but the store "
                        f"holds {layout.n_states} states; pass one (n_b, {layout.width}) array per state.")
    rows = []
    for i, x in enumerate(batch_rows):
        arr = x.detach().cpu().float().numpy() if is_torch(x) else np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise DataError(f"batch_rows[{i}] passed to TrajectoryStore.append has dtype {arr.dtype}; the store "
                            "holds real float32 states: pass real-valued arrays.")
        if arr.ndim != 2 or arr.shape[1] != layout.width:
            raise DataError(f"batch_rows[{i}] passed to TrajectoryStore.append has shape {arr.shape}; expected "
                            f"(n_b, {layout.width}) with one row per token: check the capture width.")
        rows.append(np.ascontiguousarray(arr, dtype=_DTYPE))
    counts = sorted({r.shape[0] for r in rows})
    if len(counts) > 1:
        raise DataError(f"batch_rows passed to TrajectoryStore.append have different row counts {counts}; every "
                        "state must get the same token rows so that pairs align.")
    if start + counts[0] > layout.n_rows:
        raise DataError(f"batch_rows passed to TrajectoryStore.append has {counts[0]} rows, but the store holds "
                        f"{layout.n_rows} rows and {start} are written; pass at most {layout.n_rows - start} rows.")
    return rows


class TrajectoryStore:
    """A resumable on-disk store of residual-stream states (see the module docstring for the layout).

    Make one with :meth:`create` (a new store, or ``resume=True`` to continue an interrupted one) and read one
    with :meth:`open`; the constructor is private.

    Attributes
    ----------
    path : Path
        Where the complete store lives (or will live).
    location : Path
        Where it lives now: ``path`` when complete, ``<path>.partial`` while rows are missing.
    n_states, width, n_rows : int
        Number of states (L+1), width D and rows N of every state.
    source_dtype : str
        The dtype of the model's activations before they were stored as float32.
    provenance : dict
        The provenance recorded at creation (a copy).
    """

    def __init__(self, path: Path, location: Path, group: Any, layout: Layout, provenance: dict[str, Any],
                 batches: tuple[int, ...], *, writable: bool) -> None:
        self.path = path
        self.location = location
        self._group = group
        self._layout = layout
        self._provenance = provenance
        self._batches = batches
        self._writable = writable

    # -- construction -------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, n_states: int, width: int, n_rows: int,
               provenance: dict[str, Any], source_dtype: str, resume: bool = False,
               layers: Sequence[int] | None = None, n_blocks: int | None = None) -> TrajectoryStore:
        """A new store at ``path`` (built in ``<path>.partial``), or with ``resume=True`` the one already there.

        Parameters
        ----------
        path : path-like
            The final directory of the store, e.g. ``traj.zarr``.
        n_states, width, n_rows : int
            States (L+1), width D and rows N of every (N, D) state.
        provenance : dict
            JSON-serialisable record holding at least the identity fields (see
            :func:`koopscope.store.make_provenance`). ``capture_convention`` defaults to
            :data:`koopscope.store.CAPTURE_CONVENTION`.
        source_dtype : str
            The model's activation dtype, e.g. ``"bfloat16"``.
        layers : sequence of int, optional
            The model state index of each of the ``n_states`` arrays, increasing (default 0..n_states-1); an
            array is named ``state_{index:03d}`` after its state, and pairs are formed only between consecutive
            state indices.
        n_blocks : int, optional
            The model's number of blocks L (its last state is L), recorded for the state descriptions.
        resume : bool
            Continue the store at ``<path>.partial`` (or return the complete one at ``path``) when its
            provenance identity and layout match; without it an existing store is refused.

        Returns
        -------
        TrajectoryStore
            Writable unless complete; continue appending at :attr:`rows_written`.

        Raises
        ------
        DataError
            The path is taken (without ``resume``), holds a foreign or corrupt store, or a store made with a
            different identity field or layout (the message names the field and both values).
        """
        caller = "TrajectoryStore.create"
        for name, value in (("n_states", n_states), ("width", width), ("n_rows", n_rows)):
            check_param(name, value, Interval(int, 1, None), caller=caller, fix="pass a positive int")
        check_param("source_dtype", source_dtype, str, caller=caller, fix="pass the dtype name, e.g. 'bfloat16'")
        check_param("resume", resume, bool, caller=caller)
        provenance = check_provenance(provenance, caller=caller)
        final = Path(path)
        if not final.name or final.name in (".", ".."):
            raise ParameterError(f"The 'path' parameter of {caller} must name a directory to create; got {path!r}: "
                                 "pass e.g. 'traj.zarr'.")
        held = tuple(range(int(n_states))) if layers is None else tuple(int(i) for i in layers)
        if len(held) != n_states or any(i < 0 for i in held) or list(held) != sorted(set(held)):
            raise ParameterError(f"The 'layers' parameter of {caller} must list {n_states} increasing state indices "
                                 f">= 0, one per array; got {layers!r}: pass the state index of each array.")
        check_param("n_blocks", n_blocks, Interval(int, 1, None), None, caller=caller, fix="pass the model's L")
        if n_blocks is not None and held[-1] > n_blocks:
            raise ParameterError(f"The 'layers' parameter of {caller} holds state {held[-1]}, beyond the last state "
                                 f"L = {n_blocks}; pass state indices in 0..{n_blocks}.")
        layout = Layout(int(n_states), int(width), int(n_rows), source_dtype.removeprefix("torch."), held, n_blocks)
        partial = partial_path(final)
        if final.exists() and partial.exists():
            raise DataError(f"Both {str(final)!r} and {str(partial)!r} exist, so it is unclear which store to "
                            "continue; delete one of them.")
        existing = final if final.exists() else partial if partial.exists() else None
        if existing is not None and not resume:
            state = "a store" if existing == final else "an interrupted store"
            raise DataError(f"The output {str(existing)!r} already exists ({state}); pass a new --out path, delete it, "
                            "or resume it with the same arguments (resume=True).")
        _remove_stale_staging(final)
        if existing is None:
            return cls._new(final, layout, provenance)
        store = cls._open_location(final, existing, writable=existing == partial)
        store._check_matches(layout, provenance)
        if existing == final:
            if not store.is_complete:
                raise _corrupt(str(final), f"it holds {store.rows_written} of {store.n_rows} rows but is not under "
                                           f"{PARTIAL_SUFFIX}")
            return store
        _remove_stray_temporaries(partial)
        if store.is_complete:  # interrupted between the last progress update and the rename
            store._finalise()
        return store

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> TrajectoryStore:
        """Open the store at ``path`` read-only; if only ``<path>.partial`` exists, open that (incomplete) one.

        Raises :class:`DataError` when neither exists or the directory is not a koopscope store.
        """
        final = Path(path)
        if final.exists():
            return cls._open_location(final, final, writable=False)
        if final.name and partial_path(final).exists():
            return cls._open_location(final, partial_path(final), writable=False)
        raise DataError(f"The trajectory store {str(final)!r} does not exist; check the path, or run koopscope extract "
                        "to create it.")

    @classmethod
    def _open_location(cls, final: Path, location: Path, *, writable: bool) -> TrajectoryStore:
        shown = str(location)
        group = _open_group(location, "r+" if writable else "r", shown)
        layout, provenance, batches = _read_layout(group, shown)
        return cls(final, location, group, layout, provenance, batches, writable=writable)

    @classmethod
    def _new(cls, final: Path, layout: Layout, provenance: dict[str, Any]) -> TrajectoryStore:
        zarr = import_zarr()
        partial = partial_path(final)
        parent = final.parent
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=_STAGING_SUFFIX, dir=parent))
        try:
            convention = provenance.setdefault("capture_convention", CAPTURE_CONVENTION)
            attributes = {"koopscope": layout.attributes(convention), "provenance": provenance,
                          "progress": _progress(())}
            group = zarr.open_group(str(staging), mode="w", zarr_format=3, attributes=attributes)
            for i in layout.layers:
                group.create_array(
                    state_name(i), shape=(layout.n_rows, layout.width), dtype=_DTYPE,
                    chunks=(layout.chunk_rows, layout.width), fill_value=float("nan"),
                    compressors=zarr.codecs.ZstdCodec(level=3, checksum=True),
                    dimension_names=("row", "feature"),
                    attributes={"state_index": i, "description": _state_description(i, layout.n_blocks),
                                "source_dtype": layout.source_dtype},
                )
            os.rename(staging, partial)  # the skeleton appears whole or not at all
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_directory(parent)
        return cls._open_location(final, partial, writable=True)

    def _check_matches(self, layout: Layout, provenance: dict[str, Any]) -> None:
        shown = str(self.location)
        fix = "pass a new --out path, or delete the store to start over"
        mismatch = identity_mismatch(self._provenance, provenance)
        if mismatch is not None:
            field, stored, given = mismatch
            raise DataError(f"The store {shown!r} was made with {field}={stored!r}, but this run has "
                            f"{field}={given!r}; {fix}.")
        for field in ("n_states", "width", "n_rows", "source_dtype", "layers", "n_blocks"):
            stored, given = getattr(self._layout, field), getattr(layout, field)
            if stored != given:
                raise DataError(f"The store {shown!r} was made with {field}={stored!r}, but this run has "
                                f"{field}={given!r}; {fix}.")

    # -- properties -----------------------------------------------------------------------------------------------

    @property
    def n_states(self) -> int:
        return self._layout.n_states

    @property
    def width(self) -> int:
        return self._layout.width

    @property
    def n_rows(self) -> int:
        return self._layout.n_rows

    @property
    def source_dtype(self) -> str:
        return self._layout.source_dtype

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk of every state array."""
        return self._layout.chunk_rows

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self._provenance)

    @property
    def rows_written(self) -> int:
        """Rows of every state recorded as written (the rows a resumed capture skips)."""
        return sum(self._batches)

    @property
    def batch_rows(self) -> tuple[int, ...]:
        """Rows of each appended batch, in order: a resumed capture skips ``len(batch_rows)`` batches."""
        return self._batches

    @property
    def is_complete(self) -> bool:
        return self.rows_written == self.n_rows

    def __repr__(self) -> str:
        return (f"TrajectoryStore({str(self.location)!r}, n_states={self.n_states}, rows={self.rows_written}/"
                f"{self.n_rows}, width={self.width})")

    # -- writing --------------------------------------------------------------------------------------------------

    def append(self, batch_rows: Sequence[Any]) -> int:
        """Write the next ``n_b`` rows of every state, then record them; finalise the store when it is full.

        Parameters
        ----------
        batch_rows : sequence of ``n_states`` arrays of shape (n_b, width)
            The batch's rows of state 0, 1, ..., the same token positions in each; cast to float32. An empty
            batch (n_b = 0) is a no-op.

        Returns
        -------
        int
            :attr:`rows_written` after the batch. When it reaches :attr:`n_rows`, ``<path>.partial`` has been
            renamed to ``<path>`` and the store is read-only.
        """
        if self.is_complete:
            raise DataError(f"The store {str(self.location)!r} already holds all {self.n_rows} rows; pass a new --out "
                            "path to capture more.")
        if not self._writable:
            raise ParameterError(f"The store {str(self.location)!r} was opened read-only by TrajectoryStore.open; "
                                 "continue it with TrajectoryStore.create(..., resume=True).")
        rows = _as_rows(batch_rows, self._layout, self.rows_written)
        start, n_b = self.rows_written, rows[0].shape[0]
        if n_b == 0:
            return start
        for state, block in zip(self._layout.layers, rows, strict=True):
            self._group[state_name(state)][start:start + n_b] = block
        batches = (*self._batches, n_b)
        self._group.attrs["progress"] = _progress(batches)  # last: only rows already on disk are ever recorded
        self._batches = batches
        if self.is_complete:
            self._finalise()
        return self.rows_written

    def _finalise(self) -> None:
        if self.path.exists():
            raise DataError(f"Cannot finish the store at {str(self.path)!r}: that path was created while it was being "
                            f"written; move it away and rerun to rename {str(self.location)!r} into place.")
        os.rename(self.location, self.path)
        _fsync_directory(self.path.parent)
        self.location = self.path
        self._group = _open_group(self.path, "r", str(self.path))
        self._writable = False

    # -- reading --------------------------------------------------------------------------------------------------

    def read_state(self, index: int) -> np.ndarray:
        """Model state ``index`` as a float32 array of shape (rows_written, width): (N, D) once complete."""
        check_param("index", index, Interval(int, 0, None), caller="TrajectoryStore.read_state",
                    fix=f"the store holds states {list(self.layers)}")
        if self._layout.position(int(index)) is None:
            raise ParameterError(f"The 'index' parameter of TrajectoryStore.read_state is {index}, a state this store "
                                 f"does not hold; it holds states {list(self.layers)}.")
        name = state_name(int(index))
        try:
            data = self._group[name][: self.rows_written]
        except Exception as exc:  # a damaged chunk file: zarr/numcodecs raise codec-specific errors
            raise _corrupt(str(self.location), f"array {name} could not be read: {type(exc).__name__}") from exc
        return np.asarray(data, dtype=_DTYPE)

    def read_states(self) -> list[np.ndarray]:
        """Every held state, in the order of :attr:`layers`: float32 arrays of shape (rows_written, width)."""
        return [self.read_state(i) for i in self.layers]

    @property
    def layers(self) -> tuple[int, ...]:
        """The model state index of each array, increasing."""
        return self._layout.layers

    @property
    def transitions(self) -> tuple[int, ...]:
        """The blocks i whose pairs (state i, state i+1) the store holds: both states present."""
        return tuple(i for i in self.layers if i + 1 in self.layers)

    def read_pairs(self, transition: int) -> tuple[np.ndarray, np.ndarray]:
        """Snapshot pairs of block ``transition``: ``X`` = state ``transition``, ``Y`` = state ``transition + 1``.

        Row r of ``Y`` is the token of row r of ``X`` one block later (DESIGN.md, residual-stream indexing).
        """
        if not self.transitions:
            raise ParameterError(f"The store {str(self.location)!r} holds states {list(self.layers)}, no two of them "
                                 "consecutive, and pairs need state i and state i+1; extract consecutive --layers.")
        if transition not in self.transitions or isinstance(transition, bool):
            raise ParameterError(f"The 'transition' parameter of TrajectoryStore.read_pairs is {transition!r}, but "
                                 f"the store holds pairs only for blocks {list(self.transitions)}; pass one of them.")
        return self.read_state(transition), self.read_state(transition + 1)
