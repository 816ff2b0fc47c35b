"""Metamorphic properties, checked with hypothesis over random systems: what must not change the spectrum."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import koopscope as ks
from tests.dmd.systems import match_error

systems = st.builds(
    lambda seed, D, N: (np.random.default_rng(seed), D, N),
    st.integers(0, 2**32 - 1), st.integers(2, 8), st.integers(40, 120),
)


def pairs(rng: np.random.Generator, D: int, N: int) -> tuple[np.ndarray, np.ndarray]:
    A = rng.standard_normal((D, D)) / np.sqrt(D)
    X = rng.standard_normal((N, D))
    return X, np.tanh(X @ A.T) + 0.1 * rng.standard_normal((N, D))  # nonlinear and noisy: no planted truth


@settings(max_examples=25, deadline=None)
@given(systems, st.sampled_from(["exact", "tls", "whitened", "edmd"]))
def test_pair_order_does_not_matter(system, kernel):
    rng, D, N = system
    X, Y = pairs(rng, D, N)
    perm = rng.permutation(N)
    kw = {"dictionary": "poly", "degree": 2} if kernel == "edmd" else {}
    a = ks.dmd.VARIANTS[kernel](X, Y, **kw).eigenvalues
    b = ks.dmd.VARIANTS[kernel](X[perm], Y[perm], **kw).eigenvalues
    assert match_error(a, b) < 1e-8


@settings(max_examples=25, deadline=None)
@given(systems, st.floats(1e-3, 1e3))
def test_uniform_scaling_does_not_matter(system, c):
    rng, D, N = system
    X, Y = pairs(rng, D, N)
    for kernel in ("exact", "tls", "whitened"):
        assert match_error(ks.dmd.VARIANTS[kernel](c * X, c * Y).eigenvalues,
                           ks.dmd.VARIANTS[kernel](X, Y).eigenvalues) < 1e-8


@settings(max_examples=25, deadline=None)
@given(systems)
def test_whitened_is_affine_invariant(system):
    rng, D, N = system
    X, Y = pairs(rng, D, N)
    T = rng.standard_normal((D, D)) + 2 * np.sqrt(D) * np.eye(D)  # invertible, moderately conditioned
    b = rng.standard_normal(D) * 10
    moved = ks.dmd.whitened(X @ T.T + b, Y @ T.T + b).eigenvalues
    assert match_error(moved, ks.dmd.whitened(X, Y).eigenvalues) < 1e-7


@settings(max_examples=15, deadline=None)
@given(systems)
def test_streaming_equals_batch_in_any_order(system):
    rng, D, N = system
    X, Y = pairs(rng, D, N)
    online = ks.dmd.StreamingDMD(D)
    perm = rng.permutation(N)
    online.update_many(X[perm], Y[perm])
    assert match_error(online.spectrum().eigenvalues, ks.dmd.exact(X, Y).eigenvalues) < 1e-8
