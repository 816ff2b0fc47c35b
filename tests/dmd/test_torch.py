"""Torch inputs run on their own device and give the numpy numbers (1e-8, float64)."""

from __future__ import annotations

import numpy as np
import pytest

import koopscope as ks
from tests.dmd.systems import ANGLES, MODULI, match_error, planted_operator

torch = pytest.importorskip("torch")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
KERNELS = {
    "exact": {},
    "exact-svd": {"svd": "svd"},
    "exact-projected": {"modes": "projected", "holdout": 0.2},
    "tls": {"forward_backward": True},
    "randomized": {"rank": 6},
    "whitened": {},
    "whitened-rank": {"rank": 5},
    "whitened-eigvals": {"modes": None, "residuals": False},
    "hankel": {"delays": 3},
    "edmd": {"dictionary": "poly", "degree": 2},
}


@pytest.fixture(scope="module")
def data():
    A, _ = planted_operator(MODULI[2:], ANGLES[2:], 5.0, 0)
    rng = np.random.default_rng(0)
    traj = np.empty((400, A.shape[0]))
    traj[0] = rng.standard_normal(A.shape[0])
    for t in range(399):
        traj[t + 1] = A @ traj[t] + 0.3 * rng.standard_normal(A.shape[0])
    return traj


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(KERNELS))
def test_torch_matches_numpy(data, name, device):
    kernel = ks.dmd.VARIANTS[name.split("-")[0]]
    ref = kernel(data, **KERNELS[name])
    got = kernel(torch.as_tensor(data, device=device), **KERNELS[name])
    assert got.eigenvalues.dtype == np.complex128 and got.eigenvalues.size == ref.eigenvalues.size
    assert match_error(got.eigenvalues, ref.eigenvalues) < 1e-8
    if ref.residuals is not None:
        np.testing.assert_allclose(got.residuals, ref.residuals, atol=1e-8)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_tensor_is_upcast(data, device):
    x32 = torch.as_tensor(data, dtype=torch.float32, device=device)
    ref = ks.dmd.exact(x32.cpu().double().numpy())
    got = ks.dmd.exact(x32)
    assert match_error(got.eigenvalues, ref.eigenvalues) < 1e-8


def test_streaming_accepts_tensors(data):
    online = ks.dmd.StreamingDMD(data.shape[1])
    online.update_many(torch.as_tensor(data))
    assert match_error(online.spectrum().eigenvalues, ks.dmd.exact(data).eigenvalues) < 1e-8


def test_mixed_numpy_and_torch_refused(data):
    with pytest.raises(ks.DataError, match="must both be numpy arrays or both torch tensors"):
        ks.dmd.exact(data[:-1], torch.as_tensor(data[1:]))


@pytest.mark.parametrize("device", DEVICES)
def test_nan_in_tensor_reported(data, device):
    bad = torch.as_tensor(data, device=device).clone()
    bad[5, 2] = float("nan")
    with pytest.raises(ks.DataError, match="row 5, column 2"):
        ks.dmd.exact(bad)
