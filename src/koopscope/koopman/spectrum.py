r"""The learned operator as a koopscope spectrum and fingerprint, like any fitted DMD operator.

:func:`operator_spectrum` eigendecomposes K itself (float64, :func:`koopscope.dmd.spectrum.decompose`), so the
eigenvalues are K's own, sorted by descending modulus with conjugate pairs adjacent. When lifted pairs (X, Y)
(N, k) are given (a layer's buffer), each eigenpair also gets its ResDMD residual on them (Colbrook & Townsend
2024): ‖Y g − λ X g‖ / ‖X g‖ for the eigenfunction φ_j(z) = g_j · z, i.e. how far the lifted data are from
following that eigenfunction; the amplitudes refer to the first buffered row.

The spectrum's ``method`` is ``"exact"``: K's target in the streaming update is the exact-DMD operator of the
buffered pairs, and the fingerprint's bootstrap (:func:`koopscope.fingerprint.from_trajectory`, ``n_boot > 0``)
refits exact DMD on resampled buffered pairs. Those replicates measure the sampling spread of that target, not
of K (which also moves by gradient steps and the EMA), so :func:`operator_fingerprint` draws none by default
(``n_boot=0``: the fingerprint then carries the ``no_interval`` flag and its label rests on the point estimate).
``options["operator"] = "learned"`` marks the document.
"""

from __future__ import annotations

import numpy as np
import torch

from koopscope._validation import Interval, check_param
from koopscope.dmd.resdmd import galerkin
from koopscope.dmd.spectrum import Spectrum, decompose
from koopscope.errors import DataError, NotFittedError
from koopscope.fingerprint.build import from_trajectory
from koopscope.fingerprint.document import KoopmanFingerprint

__all__ = ["operator_fingerprint", "operator_spectrum"]

REASON = "the learned operator K of a Koopman layer (gradient steps and EMA blends of exact-DMD fits), eigendecomposed"


def _operator(K: torch.Tensor | np.ndarray) -> np.ndarray:
    A = K.detach().to("cpu", torch.float64).numpy() if isinstance(K, torch.Tensor) else np.asarray(K, np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise DataError(f"K passed to operator_spectrum must be a square (k, k) operator; got shape {A.shape}.")
    return A


def operator_spectrum(K: torch.Tensor | np.ndarray, X: np.ndarray | None = None,
                      Y: np.ndarray | None = None) -> Spectrum:
    """The :class:`~koopscope.dmd.Spectrum` of the operator K (k, k), with residuals on lifted pairs X, Y (N, k)."""
    A = _operator(K)  # (k, k)
    k = A.shape[0]
    if X is None or Y is None:
        return decompose(A, method="exact", reason=REASON, rank=k, options={"operator": "learned"})
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    if X.shape != Y.shape or X.ndim != 2 or X.shape[1] != k:
        raise DataError(f"X and Y passed to operator_spectrum must both have shape (N, {k}) (lifted pairs of the "
                        f"{k}x{k} operator); got {X.shape} and {Y.shape}.")
    return decompose(A, method="exact", reason=f"{REASON}; ResDMD residuals on {X.shape[0]} buffered lifted pairs",
                     z0=X[0], gal=galerkin(X, Y), rank=k, n_pairs=X.shape[0],
                     singular_values=np.linalg.svd(X, compute_uv=False), options={"operator": "learned"})


def operator_fingerprint(K: torch.Tensor | np.ndarray, X: np.ndarray, Y: np.ndarray, *, name: str = "KoopmanLayer",
                         n_boot: int = 0, level: float = 0.95, seed: int = 0) -> KoopmanFingerprint:
    """The ``kind="trajectory"`` :class:`~koopscope.KoopmanFingerprint` of K on the lifted pairs X, Y (N, k).

    Its eigenvalues are eig(K); ``n_boot > 0`` adds bootstrap intervals of the exact-DMD refit on the pairs (see
    the module docstring; needs N >= k).
    """
    check_param("n_boot", n_boot, Interval(int, 0, None), caller="operator_fingerprint",
                fix="0 (default) draws no bootstrap replicates")
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    if X.shape[0] < 2:
        raise NotFittedError(f"operator_fingerprint needs at least 2 buffered lifted pairs to describe K; got "
                             f"{X.shape[0]}: run training steps (or KoopmanLayer.observe) before fingerprinting.")
    k = _operator(K).shape[0]
    if n_boot > 0 and X.shape[0] < k:
        raise DataError(f"operator_fingerprint with n_boot={n_boot} refits exact DMD at rank k = {k} on the "
                        f"{X.shape[0]} pairs, which needs at least {k}: buffer more pairs (a larger capacity) or "
                        "pass n_boot=0.")
    spectrum = operator_spectrum(K, X, Y)
    return from_trajectory(spectrum, X, Y, name=name, source={"source": name}, n_boot=n_boot, level=level, seed=seed)
