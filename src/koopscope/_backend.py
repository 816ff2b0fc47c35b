"""Array backends: the few bulk operations the kernels run on numpy or torch arrays.

numpy.linalg is preferred over scipy.linalg for every routine it offers: the two packages ship separate OpenBLAS
builds, and a scipy LAPACK call right after numpy BLAS work contends with numpy's still-spinning threads (measured
on 2 cores: a 1024 x 42 QR 14 ms slower, a 1024 x 1024 eigvals 12 % slower).

Kernels run their bulk linear algebra (centring, Gram products, SVD, QR, symmetric eigenproblems) where the
data live: a numpy array on the CPU, a torch tensor on its own device (CPU or CUDA). Everything is float64
there. The small reduced operators (r x r) are then moved to numpy and eigendecomposed with LAPACK in
complex128; torch's own CUDA ``linalg.eig`` also runs on the host, so nothing is lost by doing it here.

A backend is chosen from the array's type alone, so ``import koopscope`` never imports torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla

Array = Any  # numpy.ndarray or torch.Tensor


def is_torch(x: object) -> bool:
    """True for a torch tensor, decided without importing torch."""
    return type(x).__module__.split(".")[0] == "torch"


class NumpyBackend:
    """float64 numpy arrays on the CPU."""

    name = "numpy"

    @staticmethod
    def asarray(x: Array) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    @staticmethod
    def to_numpy(x: Array) -> np.ndarray:
        return np.asarray(x)

    @staticmethod
    def like(x: np.ndarray, ref: Array) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    @staticmethod
    def mean0(x: np.ndarray) -> np.ndarray:
        return x.mean(axis=0)

    @staticmethod
    def svd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # economy SVD; gesdd, falling back to the slower but more robust gesvd
        try:
            return np.linalg.svd(x, full_matrices=False)
        except np.linalg.LinAlgError:
            return sla.svd(x, full_matrices=False, lapack_driver="gesvd", check_finite=False)

    @staticmethod
    def eigh(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.linalg.eigh(x)

    @staticmethod
    def eigvalsh(x: np.ndarray) -> np.ndarray:
        return np.linalg.eigvalsh(x)

    @staticmethod
    def qr(x: np.ndarray) -> np.ndarray:
        return np.linalg.qr(x)[0]

    @staticmethod
    def hstack(xs: list[np.ndarray]) -> np.ndarray:
        return np.hstack(xs)

    @staticmethod
    def rows(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return x[idx]


class TorchBackend:
    """float64 torch tensors on their own device."""

    name = "torch"

    @staticmethod
    def asarray(x: Array) -> Any:
        import torch

        return x.detach().to(dtype=torch.float64)

    @staticmethod
    def to_numpy(x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    @staticmethod
    def like(x: np.ndarray, ref: Any) -> Any:
        import torch

        return torch.as_tensor(np.asarray(x, dtype=np.float64), device=ref.device)

    @staticmethod
    def mean0(x: Any) -> Any:
        return x.mean(dim=0)

    @staticmethod
    def svd(x: Any) -> tuple[Any, Any, Any]:
        import torch

        return torch.linalg.svd(x, full_matrices=False)

    @staticmethod
    def eigh(x: Any) -> tuple[Any, Any]:
        import torch

        return torch.linalg.eigh(x)

    @staticmethod
    def eigvalsh(x: Any) -> np.ndarray:
        import torch

        return torch.linalg.eigvalsh(x).cpu().numpy()

    @staticmethod
    def qr(x: Any) -> Any:
        import torch

        return torch.linalg.qr(x, mode="reduced")[0]

    @staticmethod
    def hstack(xs: list[Any]) -> Any:
        import torch

        return torch.hstack(xs)

    @staticmethod
    def rows(x: Any, idx: np.ndarray) -> Any:
        import torch

        return x[torch.as_tensor(idx, device=x.device)]


def frozen_array(a: np.ndarray | None, *, copy: bool = True) -> np.ndarray | None:
    """A read-only numpy array (a copy by default, else a view): what the frozen result types hold."""
    if a is None:
        return None
    out = np.array(a, copy=True) if copy else np.asarray(a).view()
    out.setflags(write=False)
    return out


def is_shifted_view(X: Array, Y: Array) -> bool:
    """True when Y is X advanced by one row in the same buffer (X = traj[:-1], Y = traj[1:])."""
    if X.shape != Y.shape or X.ndim != 2 or X.shape[0] < 1:
        return False
    if is_torch(X):
        return bool(X.stride() == Y.stride() and Y.data_ptr() == X.data_ptr() + X.stride(0) * X.element_size())
    if not isinstance(X, np.ndarray) or not isinstance(Y, np.ndarray) or X.strides != Y.strides:
        return False
    return Y.__array_interface__["data"][0] == X.__array_interface__["data"][0] + X.strides[0]


Backend = type[NumpyBackend] | type[TorchBackend]


def backend_of(x: Array) -> Backend:
    """The backend that keeps ``x`` where it is."""
    return TorchBackend if is_torch(x) else NumpyBackend
