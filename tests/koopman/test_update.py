"""The streaming DMD update of K: planted maps, the EMA formula, the ring buffer, and every skip rule."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from koopscope.errors import DataError, ParameterError
from koopscope.koopman import (
    DESIGN_RCOND,
    KoopmanLayer,
    PairBuffer,
    StreamingUpdate,
    ema_blend,
    least_squares_operator,
    streaming_update,
)


def planted(k: int = 6, n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A = V diag(λ) V^-1 with known real λ and well-conditioned V; rows X (n, k) and Y = X A^T."""
    rng = np.random.default_rng(seed)
    lam = np.linspace(0.95, -0.5, k)
    V = np.eye(k) + 0.3 * rng.standard_normal((k, k))
    A = V @ np.diag(lam) @ np.linalg.inv(V)
    X = rng.standard_normal((n, k))
    return A, X, X @ A.T


def operator(k: int, seed: int = 1) -> torch.nn.Parameter:
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.Parameter(torch.eye(k, dtype=torch.float64) + 0.1 * torch.randn(k, k, generator=gen,
                                                                                    dtype=torch.float64))


def filled(X: np.ndarray, Y: np.ndarray, capacity: int | None = None) -> PairBuffer:
    buf = PairBuffer(X.shape[1], capacity=capacity or X.shape[0])
    assert buf.push(X, Y) is None
    return buf


# -- recovery of a planted linear map ------------------------------------------------------------------------------

def test_alpha_one_recovers_the_planted_map() -> None:
    A, X, Y = planted()
    K = operator(6)
    result = streaming_update(K, filled(X, Y), StreamingUpdate(alpha=1.0))
    assert result.applied and result.rank == 6 and result.n_rows == 40
    # float64 least squares on 40 well-conditioned rows (κ(X) ≈ 3): rounding error ≈ κ · eps ≈ 1e-15; 1e-10 is loose
    np.testing.assert_allclose(K.detach().numpy(), A, atol=1e-10)
    eig = np.sort(np.linalg.eigvals(K.detach().numpy()).real)
    np.testing.assert_allclose(eig, np.sort(np.linspace(0.95, -0.5, 6)), atol=1e-8)


def test_least_squares_operator_matches_the_truncated_pseudo_inverse() -> None:
    # An independent reference: numpy's pinv with the same relative cutoff, on rank-deficient noisy data.
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 4)) @ rng.standard_normal((4, 8))  # (30, 8) of rank 4
    X[:, 0] += 1e-9 * rng.standard_normal(30)  # a direction far below rcond · σ_1: dropped by both
    Y = X @ rng.standard_normal((8, 8)).T + 0.01 * rng.standard_normal((30, 8))
    K, rank, condition = least_squares_operator(X, Y, rcond=1e-6)
    reference = (np.linalg.pinv(X, rcond=1e-6) @ Y).T  # K^T = X^+ Y
    assert rank == 4 and condition > 1e6
    # both are the same minimum-norm solution computed from two SVDs of X (κ_r ≈ 10): agreement to ~1e-13
    np.testing.assert_allclose(K, reference, atol=1e-10)


def test_one_blend_is_exactly_the_ema_formula_and_repeats_converge_geometrically() -> None:
    A, X, Y = planted(seed=2)
    K = operator(6)
    K0 = K.detach().numpy().copy()
    buf = filled(X, Y)
    assert streaming_update(K, buf).applied  # default α = 0.1
    np.testing.assert_allclose(K.detach().numpy(), 0.9 * K0 + 0.1 * A, atol=1e-12)  # float64: rounding only
    for n in range(2, 31):
        streaming_update(K, buf)
        # K_n − A = 0.9^n (K_0 − A): the same buffer gives the same fit A every time
        np.testing.assert_allclose(K.detach().numpy() - A, 0.9**n * (K0 - A), atol=1e-11)


def test_ema_blend_formula() -> None:
    K, K_new = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -2.0]])
    torch.testing.assert_close(ema_blend(K, K_new, 0.25), torch.tensor([[1.5, 1.0]]))
    torch.testing.assert_close(ema_blend(K, K_new, 1.0), K_new)


def test_layer_recovers_a_planted_map_in_its_lifted_space() -> None:
    # k = 12 lifted coordinates of 5-d states: graded singular values, so the design's cutoff keeps all 12
    layer = KoopmanLayer(5, 12, seed=0, capacity=64, update=StreamingUpdate(alpha=1.0, rcond=DESIGN_RCOND))
    with torch.no_grad():
        Z = layer.lift(torch.randn(64, 5, generator=torch.Generator().manual_seed(0)))  # (64, 12) lifted states
    rng = np.random.default_rng(0)
    A = 0.9 * np.linalg.qr(rng.standard_normal((12, 12)))[0]  # a rotation scaled to |λ| = 0.9
    Znp = Z.double().numpy()
    assert layer.observe(Znp, Znp @ A.T) is None
    result = layer.update_operator()
    assert result.applied and layer.last_update is result and result.rank == 12
    # K is float32: the float64 fit (error ~κ(Z)·1e-16) is rounded to float32, |A_ij| < 1: error < 1e-7 per entry
    np.testing.assert_allclose(layer.K.detach().double().numpy(), A, atol=1e-6)
    np.testing.assert_allclose(np.abs(layer.spectrum().eigenvalues), 0.9, atol=1e-5)


def test_update_keeps_dtype_device_and_writes_without_grad() -> None:
    layer = KoopmanLayer(3, 4, capacity=20)
    X = np.random.default_rng(0).standard_normal((20, 4))
    layer.observe(X, X)
    before = layer.K
    layer.update_operator()
    assert layer.K is before and layer.K.dtype == torch.float32 and layer.K.requires_grad and layer.K.grad is None


# -- the ring buffer -----------------------------------------------------------------------------------------------

def test_buffer_wraps_dropping_the_oldest_rows_in_order() -> None:
    buf = PairBuffer(2, capacity=5)
    rows = np.arange(20.0).reshape(10, 2)
    assert len(buf) == 0 and buf.pairs()[0].shape == (0, 2)
    buf.push(rows[:3], -rows[:3])
    buf.push(rows[3:7], -rows[3:7])  # 7 rows into 5 slots: rows 0 and 1 are overwritten
    X, Y = buf.pairs()
    assert len(buf) == 5
    np.testing.assert_array_equal(X, rows[2:7])
    np.testing.assert_array_equal(Y, -rows[2:7])
    buf.push(rows[7:8], -rows[7:8])
    np.testing.assert_array_equal(buf.pairs()[0], rows[3:8])
    buf.push(rows, rows)  # a chunk larger than the buffer: its newest 5 rows
    np.testing.assert_array_equal(buf.pairs()[0], rows[5:])
    buf.clear()
    assert len(buf) == 0


def test_buffer_flattens_batches_and_takes_tensors() -> None:
    buf = PairBuffer(3, capacity=100)
    z = torch.arange(24.0).reshape(2, 4, 3)  # (batch, seq, k): 8 rows
    buf.push(z, z + 1)
    X, Y = buf.pairs()
    assert X.shape == (8, 3) and X.dtype == np.float64
    np.testing.assert_array_equal(Y - X, np.ones((8, 3)))


def test_buffer_refuses_non_finite_chunks_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    buf = PairBuffer(2, capacity=4)
    buf.push(np.ones((2, 2)), np.ones((2, 2)))
    bad = np.ones((3, 2))
    bad[1, 0] = np.nan
    with caplog.at_level(logging.WARNING, logger="koopscope.koopman"):
        reason = buf.push(bad, np.ones((3, 2)))
    assert reason == "refused 3 lifted pair(s) with NaN/Inf entries (1 bad row(s) in X and Y); the buffer is unchanged"
    assert reason in caplog.text and len(buf) == 2


def test_buffer_shape_errors() -> None:
    buf = PairBuffer(4)
    with pytest.raises(DataError) as err:
        buf.push(np.ones((3, 5)), np.ones((3, 5)))
    assert str(err.value) == ("X passed to PairBuffer.push must have last dimension k = 4 (lifted states); got shape "
                              "(3, 5): pass the lifted states φ(x), not the model states x.")
    with pytest.raises(DataError, match=r"must have the same shape \(n, 4\); got \(3, 4\) and \(2, 4\)"):
        buf.push(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ParameterError, match="The 'capacity' parameter of PairBuffer must be an int in"):
        PairBuffer(4, capacity=0)


# -- skipped updates keep K ----------------------------------------------------------------------------------------

def _assert_skipped(K: torch.nn.Parameter, buf: PairBuffer, starts: str, caplog: pytest.LogCaptureFixture,
                    config: StreamingUpdate | None = None) -> None:
    before = K.detach().clone()
    with caplog.at_level(logging.WARNING, logger="koopscope.koopman"):
        result = streaming_update(K, buf, config or StreamingUpdate())
    assert not result.applied and result.reason.startswith(starts), result.reason
    assert torch.equal(K.detach(), before)  # bitwise unchanged
    assert result.reason in caplog.text


def test_singular_buffer_is_skipped_as_ill_conditioned(caplog: pytest.LogCaptureFixture) -> None:
    K = operator(24)
    rows = np.tile(np.random.default_rng(0).standard_normal(24), (30, 1))  # 30 copies of one row: rank 1
    _assert_skipped(K, filled(rows, rows), "ill-conditioned: only 1 of the 24 singular values of the 30 buffered "
                    "lifted states are above rcond·σ_1 = 0.001·σ_1 (condition number inf), fewer than 3 = "
                    "ceil(0.1·24)", caplog)
    # a graded but full-rank buffer: 20 of 24 directions above the cutoff, more than 10 %: applied
    X = np.random.default_rng(1).standard_normal((30, 24)) * np.r_[np.ones(20), 1e-5 * np.ones(4)]
    result = streaming_update(K, filled(X, X))
    assert result.applied and result.rank == 20 and result.condition > 1e4


def test_empty_zero_and_short_buffers_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    K = operator(3)
    _assert_skipped(K, PairBuffer(3), "the buffer holds 0 row(s), fewer than min_rows = 2", caplog)
    _assert_skipped(K, filled(np.zeros((5, 3)), np.ones((5, 3))), "the buffered states admit no fit", caplog)
    short = filled(*planted(3, 4)[1:])
    _assert_skipped(K, short, "the buffer holds 4 row(s), fewer than min_rows = 5", caplog,
                    StreamingUpdate(min_rows=5))


def test_non_finite_operator_is_not_blended(caplog: pytest.LogCaptureFixture) -> None:
    K = operator(6)
    with torch.no_grad():
        K[0, 0] = float("inf")
    _assert_skipped(K, filled(*planted()[1:]), "the current operator K has NaN/Inf entries", caplog)


def test_underdetermined_buffer_still_updates_on_its_span() -> None:
    # capacity < k (the design's 100 rows against k = 256): the minimum-norm fit, zero off the span of the rows
    A, X, Y = planted(k=8, n=5)
    K = operator(8)
    K0 = K.detach().numpy().copy()
    result = streaming_update(K, filled(X, Y), StreamingUpdate(alpha=1.0))
    assert result.applied and result.rank == 5
    np.testing.assert_allclose(X @ K.detach().numpy().T, Y, atol=1e-10)  # exact on the buffered rows
    null = np.linalg.svd(X)[2][5:]  # (3, 8) directions no row reaches
    np.testing.assert_allclose(K.detach().numpy() @ null.T, 0.0, atol=1e-10)
    assert not np.allclose(K0 @ null.T, 0.0)


def test_update_config_errors() -> None:
    with pytest.raises(ParameterError) as err:
        StreamingUpdate(alpha=0)
    assert str(err.value) == ("The 'alpha' parameter of StreamingUpdate must be a float in (0, 1]; got 0; the EMA "
                              "weight of the new fit, e.g. 0.1 (1.0 replaces K).")
    with pytest.raises(ParameterError, match="The 'rcond' parameter of StreamingUpdate must be a float in"):
        StreamingUpdate(rcond=float("nan"))
    with pytest.raises(ParameterError, match="The 'min_rank_fraction' parameter"):
        StreamingUpdate(min_rank_fraction=1.5)
