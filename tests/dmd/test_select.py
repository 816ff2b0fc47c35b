"""Automatic selection: each documented rule fires on the data it is meant for, and fit records the reason."""

from __future__ import annotations

import numpy as np
import pytest

import koopscope as ks
from tests.dmd.systems import planted_operator


@pytest.fixture(scope="module")
def linear():
    A, _ = planted_operator([0.95, 0.8, 0.6], [0.3, 0.0, 1.0], 3.0, 0)
    X = np.random.default_rng(0).standard_normal((2000, A.shape[0]))
    return X, X @ A.T


def test_short_trajectory_selects_hankel():
    x = np.cos(0.3 * np.arange(20))[:, None]
    method, reason = ks.dmd.select(x)
    assert method == "hankel" and "T = 20 < 30" in reason


def test_wide_states_select_randomized():
    X = np.random.default_rng(0).standard_normal((600, 5001))
    method, reason = ks.dmd.select(X[:-1], X[1:])
    assert method == "randomized" and "D = 5001 > 5000" in reason


def test_clean_linear_selects_exact(linear):
    assert ks.dmd.select(*linear)[0] == "exact"


def test_noisy_linear_selects_tls(linear):
    rng = np.random.default_rng(1)
    X, Y = (a + 0.5 * rng.standard_normal(a.shape) for a in linear)
    method, reason = ks.dmd.select(X, Y)
    assert method == "tls" and "noise" in reason


def test_nonlinear_selects_edmd():
    Z = np.random.default_rng(2).uniform(-1, 1, (1000, 2))
    W = np.c_[np.sin(3 * Z[:, 0]) * Z[:, 1], Z[:, 0] ** 2]
    method, reason = ks.dmd.select(Z, W)
    assert method == "edmd" and "residual" in reason


def test_fit_auto_records_reason(linear):
    spec = ks.dmd.fit(*linear)
    assert spec.method == "exact" and spec.reason.startswith("well-conditioned")
    assert ks.dmd.fit(*linear, method="whitened").reason == "method='whitened' requested"
