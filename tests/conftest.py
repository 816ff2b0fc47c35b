"""Session fixtures shared across test packages: one trajectory fingerprint and one model fingerprint."""

from __future__ import annotations

import pytest

import koopscope as ks
from tests.fingerprint.planted import planted_layers, planted_trajectory


@pytest.fixture(scope="session")
def trajectory_fp() -> ks.KoopmanFingerprint:
    traj = planted_trajectory()
    return ks.fingerprint.from_trajectory(ks.dmd.exact(traj), traj[:-1], traj[1:], name="planted", n_boot=50)


@pytest.fixture(scope="session")
def model_fp() -> ks.KoopmanFingerprint:
    layers = planted_layers()
    extra = [{"eta_nl": 0.1 * (i + 1)} for i in range(len(layers))]
    return ks.fingerprint.from_layers(layers, name="planted-model", source={"model_id": "org/planted"},
                                      layer_features=extra, n_boot=30)
