"""Reading trajectories from disk: a plain ``.npy`` (T, D) file or a koopscope trajectory store.

Two kinds of file hold snapshots, and every reader accepts both where it makes sense:

* a ``.npy`` file with one 2-D real array (T, D) is **one trajectory**: T snapshots in time order, whose
  pairs are ``traj[:-1]``, ``traj[1:]``;
* a koopscope store (a directory, see :mod:`koopscope.store.zarr_store`) holds **L+1 states** (N, D) of
  the same N tokens, whose pairs for block i are state i and state i+1.

:func:`load_pairs` is the one reader a kernel needs: it turns either into snapshot pairs. :func:`load_trajectory`
returns a (T, D) array: the ``.npy`` array, or for a store the state chosen with ``state=``.
:func:`load_states` returns a store's states. Nothing here unpickles: ``.npy`` files are read with
``allow_pickle=False``, and object arrays are refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from koopscope.errors import DataError, ParameterError
from koopscope.store.zarr_store import TrajectoryStore, partial_path

__all__ = ["load_npy", "load_pairs", "load_states", "load_trajectory"]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _not_npy(shown: str, what: str) -> DataError:
    return DataError(f"The file {shown!r} is not a valid .npy trajectory ({what}); save one with "
                     "np.save(path, traj.astype(np.float32)) for a (T, D) array traj.")


def _read_header(f: BinaryIO, shown: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    magic = f.read(len(_NPY_MAGIC))
    if magic != _NPY_MAGIC:
        if magic.startswith(_ZIP_MAGIC):
            raise DataError(f"The file {shown!r} is an .npz archive, not a .npy array; extract the trajectory and "
                            "save it alone with np.save(path, archive[name]).")
        raise _not_npy(shown, "it lacks the NumPy magic bytes")
    f.seek(0)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TokenError, ...
        raise _not_npy(shown, f"its header is unreadable: {type(exc).__name__}") from None
    raise _not_npy(shown, f"format version {version[0]}.{version[1]} is only used for structured dtypes")


def load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a (T, D) trajectory from a ``.npy`` file without unpickling anything.

    Parameters
    ----------
    path : path-like
        A file written by :func:`numpy.save` holding one 2-D real array.

    Returns
    -------
    ndarray of shape (T, D)
        The array with its floating dtype; an integer array is converted to float64.

    Raises
    ------
    DataError
        Not a .npy file, a truncated file, an object (pickled) array, or not a 2-D real array.
    """
    shown = str(path)
    try:
        with open(path, "rb") as f:
            shape, _, dtype = _read_header(f, shown)
            data_bytes = os.fstat(f.fileno()).st_size - f.tell()
    except (IsADirectoryError, FileNotFoundError, PermissionError) as exc:
        raise DataError(f"The trajectory file {shown!r} cannot be read ({exc.strerror}); check the path.") from None
    if dtype.hasobject:
        raise DataError(f"The file {shown!r} holds a pickled object array, which koopscope refuses to load "
                        "(allow_pickle=False); save a numeric array with np.save(path, np.asarray(traj, "
                        "dtype=np.float32)).")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if data_bytes < expected:
        raise DataError(f"The file {shown!r} is truncated: its header promises a {shape} {dtype} array of "
                        f"{expected} bytes but only {data_bytes} follow; write the file again.")
    _check_trajectory_dtype_shape(shape, dtype, shown)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _not_npy(shown, f"numpy could not read it: {type(exc).__name__}") from None
    return arr if arr.dtype.kind == "f" else arr.astype(np.float64)


def _check_trajectory_dtype_shape(shape: tuple[int, ...], dtype: np.dtype, shown: str) -> None:
    if dtype.kind not in "fiu":
        raise DataError(f"The file {shown!r} holds a {dtype} array; a trajectory must be real-valued (float or int): "
                        "convert it before saving (for complex data stack real and imaginary parts as features).")
    if len(shape) != 2:
        hint = "for a scalar series save traj.reshape(-1, 1)" if len(shape) == 1 else "save a (T, D) array"
        raise DataError(f"The file {shown!r} holds an array of shape {shape}; a trajectory is 2-D (T, D) with one "
                        f"snapshot per row: {hint}.")


def is_store(path: Path, caller: str) -> bool:
    """True for a store directory, False for a file; DataError for a missing path (naming a .partial sibling)."""
    if path.is_dir():
        return True
    if path.exists():
        return False
    partial = partial_path(path) if path.name else None
    if partial is not None and partial.is_dir():
        try:
            store = TrajectoryStore.open(path)
            progress = f", with {store.rows_written} of {store.n_rows} rows written"
        except DataError:
            progress = ""
        raise DataError(f"The trajectory store {str(path)!r} passed to {caller} is incomplete (only "
                        f"{str(partial)!r} exists{progress}); rerun the extraction with the same arguments to finish "
                        "it.")
    raise DataError(f"The trajectory path {str(path)!r} passed to {caller} does not exist; pass a .npy (T, D) file "
                    "or a store written by koopscope extract.")


def complete_store(path: Path) -> TrajectoryStore:
    store = TrajectoryStore.open(path)
    if not store.is_complete:  # a complete store is only ever at <path>; see zarr_store
        raise DataError(f"The trajectory store {str(path)!r} is incomplete ({store.rows_written} of {store.n_rows} "
                        "rows); rerun the extraction with the same arguments to finish it.")
    return store


def load_trajectory(path: str | os.PathLike[str], *, state: int | None = None) -> np.ndarray:
    """One (T, D) array of snapshots from a ``.npy`` file or from one state of a trajectory store.

    Parameters
    ----------
    path : path-like
        A ``.npy`` file (one trajectory) or a complete koopscope store directory.
    state : int, optional
        Required for a store, refused for a ``.npy`` file: which state (0..L) to return, as an (N, D) float32
        array of its token rows. Note that a state's rows are tokens, not time steps; for a store's
        layer-to-layer dynamics use :func:`load_pairs`.

    Returns
    -------
    ndarray of shape (T, D)
    """
    p = Path(path)
    if not is_store(p, "load_trajectory"):
        if state is not None:
            raise ParameterError(f"The 'state' parameter of load_trajectory applies to trajectory stores only; got "
                                 f"state={state!r} for the .npy file {str(p)!r}: drop it.")
        return load_npy(p)
    store = complete_store(p)
    if state is None:
        raise ParameterError(f"The 'state' parameter of load_trajectory is required for the trajectory store "
                             f"{str(p)!r}, which holds states {list(store.layers)}; pass one of them as state=, or "
                             "use load_pairs for its layer-to-layer pairs.")
    if state not in store.layers or isinstance(state, bool):
        raise ParameterError(f"The 'state' parameter of load_trajectory is {state!r}, a state the store {str(p)!r} "
                             f"does not hold; pass one of {list(store.layers)}.")
    return store.read_state(state)


def load_states(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """Every state of a complete trajectory store: L+1 float32 arrays of shape (N, D), state 0 first."""
    p = Path(path)
    if not is_store(p, "load_states"):
        raise DataError(f"The file {str(p)!r} passed to load_states is a single trajectory, not a store of "
                        "residual-stream states; read it with load_trajectory or load_pairs.")
    return complete_store(p).read_states()


def load_pairs(path: str | os.PathLike[str], *, transition: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Snapshot pairs (X, Y) of shape (N, D), row i of Y the successor of row i of X, from either kind of file.

    Parameters
    ----------
    path : path-like
        A ``.npy`` trajectory, whose pairs are ``traj[:-1]``, ``traj[1:]``, or a complete store.
    transition : int, optional
        For a store: the block i whose pairs (state i, state i+1) to return. ``None`` pools every transition
        the store holds (consecutive state indices), stacking their pairs: one operator for the whole depth.
        Refused for ``.npy``.

    Returns
    -------
    X, Y : ndarray of shape (N, D)
    """
    p = Path(path)
    if not is_store(p, "load_pairs"):
        if transition is not None:
            raise ParameterError(f"The 'transition' parameter of load_pairs applies to trajectory stores only; got "
                                 f"transition={transition!r} for the .npy file {str(p)!r}: drop it.")
        traj = load_npy(p)
        return traj[:-1], traj[1:]
    store = complete_store(p)
    if transition is not None:
        return store.read_pairs(transition)
    if not store.transitions:
        raise DataError(f"The trajectory store {str(p)!r} holds states {list(store.layers)}, no two consecutive, "
                        "and pairs need state i and state i+1; read one with load_trajectory(path, state=i).")
    pairs = [store.read_pairs(i) for i in store.transitions]
    return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])
