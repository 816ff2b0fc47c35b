"""Auditing a trajectory file or array: fit the kernel, then build its fingerprint (what ``koopscope audit`` runs).

* A ``.npy`` file or an array (T, D) is one trajectory: the kernel is fitted to its pairs
  (traj[:-1], traj[1:]) and the result is a ``kind="trajectory"`` fingerprint.
* A trajectory store written by ``koopscope extract`` holds a model's residual-stream states: every
  transition ℓ → ℓ+1 it holds is fitted on its token pairs (state ℓ, state ℓ+1) and the result is a
  ``kind="model"`` fingerprint carrying the store's provenance. Here ``kernel="auto"`` means
  :data:`LAYER_KERNEL`, the RKSP kernel (full-rank ZCA-whitened DMD), for every transition: one kernel for
  the whole depth keeps layers, and models, comparable, and whitening makes the spectrum independent of the
  residual stream's scale and its outlier dimensions. Pass another kernel to override.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from koopscope._validation import as_2d, check_finite
from koopscope.dmd import fit
from koopscope.errors import DataError
from koopscope.fingerprint.build import from_layers, from_trajectory
from koopscope.fingerprint.document import KoopmanFingerprint
from koopscope.store import TrajectoryStore, load_trajectory
from koopscope.store.trajectory import complete_store, is_store

__all__ = ["LAYER_KERNEL", "audit_path", "audit_trajectory"]

#: The kernel of a store's layer transitions under kernel="auto" (RKSP §2: whitened DMD per transition).
LAYER_KERNEL = "whitened"


def audit_trajectory(traj: Any, *, kernel: str = "auto", rank: int | str | None = None, name: str | None = None,
                     source: dict[str, Any] | None = None, n_boot: int = 200, seed: int = 0) -> KoopmanFingerprint:
    """Fit ``kernel`` to the trajectory (T, D) and return its ``kind="trajectory"`` fingerprint."""
    traj = as_2d("traj", traj, caller="audit_trajectory")
    options: dict[str, Any] = {"seed": seed} if rank is None else {"seed": seed, "rank": rank}
    spectrum = fit(traj, method=kernel, **options)
    return from_trajectory(spectrum, traj[:-1], traj[1:], name=name, source=source, n_boot=n_boot, seed=seed)


def _audit_store(store: TrajectoryStore, *, kernel: str, rank: int | str | None, name: str | None, n_boot: int,
                 seed: int) -> KoopmanFingerprint:
    options: dict[str, Any] = {"seed": seed} if rank is None else {"seed": seed, "rank": rank}
    if kernel == "auto":
        kernel, options["reason"] = LAYER_KERNEL, "kernel='auto' on layer transitions: the RKSP whitened kernel"
    layers = []
    for i in store.transitions:
        X, Y = store.read_pairs(i)  # (N, D) each: state i and state i + 1 of the same tokens
        layers.append((fit(X, Y, method=kernel, **options), X, Y))
    source = {**store.provenance, "source": store.location.name}
    return from_layers(layers, name=name, source=source, indices=store.transitions, n_boot=n_boot, seed=seed)


def audit_path(path: str | os.PathLike[str], *, kernel: str = "auto", rank: int | str | None = None,
               name: str | None = None, n_boot: int = 200, seed: int = 0) -> KoopmanFingerprint:
    """The fingerprint of a ``.npy`` trajectory (kind "trajectory") or an extraction store (kind "model")."""
    p = Path(path)
    if is_store(p, "audit_path"):
        store = complete_store(p)
        return _audit_store(store, kernel=kernel, rank=rank, name=name, n_boot=n_boot, seed=seed)
    traj = load_trajectory(p)
    if traj.shape[0] < 3:
        raise DataError(f"The trajectory {str(p)!r} passed to audit has {traj.shape[0]} snapshot(s) (shape "
                        f"{traj.shape}); a fit needs at least 3 snapshots (2 pairs): record a longer trajectory.")
    check_finite(f"The trajectory {str(p)!r}", traj, "audit")
    return audit_trajectory(traj, kernel=kernel, rank=rank, name=name or p.name, source={"source": p.name},
                            n_boot=n_boot, seed=seed)
