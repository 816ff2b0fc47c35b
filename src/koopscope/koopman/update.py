r"""Streaming DMD updates of a learned Koopman operator: a ring buffer of lifted pairs and an EMA blend.

The operator K (k, k) advances lifted states, φ(x_{t+1}) ≈ K φ(x_t) (column vectors). Rows are snapshots, so
with the buffered lifted pairs stacked as rows, X = [φ(x_t)] and Y = [φ(x_{t+1})] of shape (N, k), the fit is
Y ≈ X K^T. One update (the "ResNet-BK" design, ``shared/reference/systems_to_build.md`` §2):

1. **Least squares by exact DMD** (Tu et al. 2014). With the POD of the buffered states, X = P S Q^T
   (:func:`koopscope.dmd.pod.pod`), and the singular values σ_i < ``rcond`` · σ_1 dropped (rank r),

       K_new = Y^T P_r S_r^{-1} Q_r^T                                                     (k, k)

   which is ``lift · Q^T`` with the exact-DMD lift Y^T P S^{-1} of :func:`koopscope.dmd.pod.reduce`: the
   minimum-norm least-squares solution of Y ≈ X K^T on the retained directions (no second DMD implementation;
   :func:`least_squares_operator`).
2. **EMA blend** K ← (1 − α) K + α K_new with α = 0.1 (:func:`ema_blend`); α = 1 replaces K.
3. **Skip** (K kept, the reason logged on the ``koopscope.koopman`` logger and returned in an
   :class:`UpdateResult`) when the buffer holds fewer than ``min_rows`` rows, when K or K_new has NaN/Inf
   entries, when the buffered states are all zero, or when they are **ill-conditioned**: fewer than
   ``min_rank_fraction`` · min(N, k) of their singular values survive the cutoff, i.e. almost every direction
   the rows could span is numerically null (duplicated rows, a collapsing lifting), so the fit would set K on a
   sliver of the space and zero it elsewhere.

**The cutoff.** The design drops singular values "under 1e-6" (:data:`DESIGN_RCOND`). The error of the fit along
a retained direction i is the component of the residual Y − X K^T along it divided by σ_i, and the lifted states
of a language model are both far from exactly linear and strongly graded (σ_1 / σ_min ~ 1e8 on 512 buffered rows
of the reference model, k = 256): with the design's cutoff the fit keeps directions down to 1e-6 σ_1, amplifies
the residual there by up to 1e6, and every blend injects that into K. Measured in ``benchmarks/koopman_layer``
(RESULTS.md): with rcond = 1e-6 the learned K reached spectral radii 15–59, the Koopman loss 18 at the end of the
hybrid phase (against 1.2 with rcond = 1e-3 and 1.3 with no updates at all) and then diverged, and the
too-large-loss fallback fired 389 times. The default ``rcond = 1e-3`` bounds the amplification by 1e3 and was
stable there; ``StreamingUpdate(rcond=DESIGN_RCOND)`` restores the design's value. The cutoff is relative to σ_1,
which makes it invariant to the scale of the lifted states.

The buffer stores **rows**: one row is one lifted pair (φ(x_t), φ(x_{t+1})), e.g. one token position of one
sequence, and ``capacity`` counts rows (the design's "100 pairs"). A batch of B sequences of T tokens gives
B · T rows at once; when more rows arrive than fit, the oldest are overwritten (the newest ``capacity`` rows of
a chunk larger than the buffer are kept). With capacity < k the least-squares problem is underdetermined and
K_new is zero off the span of the buffered states, so each blend shrinks K there by (1 − α); a capacity of at
least 2 k rows gives a determined fit.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> A = rng.standard_normal((3, 3)) / 3; X = rng.standard_normal((20, 3))
>>> K_new, rank, kappa = least_squares_operator(X, X @ A.T)
>>> rank, bool(np.allclose(K_new, A, atol=1e-12))
(3, True)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from koopscope._linalg import numerical_rank
from koopscope._validation import Interval, check_param
from koopscope.dmd.pod import pod, reduce
from koopscope.errors import DataError, NumericalError

__all__ = ["DESIGN_RCOND", "PairBuffer", "StreamingUpdate", "UpdateResult", "ema_blend", "least_squares_operator",
           "streaming_update"]

logger = logging.getLogger("koopscope.koopman")

DESIGN_RCOND = 1e-6  # systems_to_build.md §2: "singular values under 1e-6 dropped" (unstable here: module docstring)


@dataclass(frozen=True)
class StreamingUpdate:
    """The constants of one streaming operator update (defaults: ``systems_to_build.md`` §2)."""

    alpha: float = 0.1  # EMA weight of the new fit (design: α = 0.1)
    rcond: float = 1e-3  # singular values below rcond · σ_1 are dropped (design: 1e-6; see the module docstring)
    min_rank_fraction: float = 0.1  # ill-conditioned below this fraction of min(N, k) retained directions
    min_rows: int = 2  # fewer buffered rows: nothing to fit

    def __post_init__(self) -> None:
        caller = "StreamingUpdate"
        check_param("alpha", self.alpha, Interval(float, 0.0, 1.0, closed="right"), caller=caller,
                    fix="the EMA weight of the new fit, e.g. 0.1 (1.0 replaces K)")
        check_param("rcond", self.rcond, Interval(float, 0.0, 1.0, closed="neither"), caller=caller,
                    fix="the relative singular-value cutoff, e.g. 1e-3")
        check_param("min_rank_fraction", self.min_rank_fraction, Interval(float, 0.0, 1.0), caller=caller,
                    fix="the least fraction of min(N, k) directions that must survive the cutoff, e.g. 0.1")
        check_param("min_rows", self.min_rows, Interval(int, 1, None), caller=caller,
                    fix="the least number of buffered rows to fit on, e.g. 2")


@dataclass(frozen=True)
class UpdateResult:
    """What one update did: ``applied`` (K changed) or the ``reason`` it was skipped, with diagnostics."""

    applied: bool
    reason: str
    rank: int = 0  # retained singular values (0 when no fit was made)
    condition: float = math.nan  # σ_1 / σ_min over the min(N, k) singular values of the buffered states
    n_rows: int = 0


class PairBuffer:
    """A ring buffer of lifted snapshot pairs stored as rows: X, Y of shape (capacity, dim), float64.

    Parameters
    ----------
    dim : int >= 1
        Lifted dimension k.
    capacity : int >= 1, default=100
        Rows kept (one row = one pair φ(x_t), φ(x_{t+1})); older rows are overwritten.

    >>> buf = PairBuffer(2, capacity=3)
    >>> _ = buf.push(np.arange(8.0).reshape(4, 2), np.ones((4, 2)))
    >>> buf.pairs()[0][:, 0]                      # the oldest row was dropped
    array([2., 4., 6.])
    """

    def __init__(self, dim: int, capacity: int = 100) -> None:
        check_param("dim", dim, Interval(int, 1, None), caller="PairBuffer", fix="pass the lifted dimension k")
        check_param("capacity", capacity, Interval(int, 1, None), caller="PairBuffer",
                    fix="the number of rows (pairs) to keep, e.g. 100")
        self.dim, self.capacity = int(dim), int(capacity)
        self._X = np.zeros((self.capacity, self.dim))  # (C, k)
        self._Y = np.zeros((self.capacity, self.dim))  # (C, k)
        self._next = 0  # slot of the next row
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"PairBuffer(dim={self.dim}, capacity={self.capacity}, rows={self._size})"

    def clear(self) -> None:
        self._next = self._size = 0

    def push(self, X: object, Y: object) -> str | None:
        """Append the pairs X, Y (n, dim) (torch tensors or arrays; leading dims are flattened into rows).

        Returns None, or the reason the whole chunk was refused (NaN/Inf entries), which is also logged: a
        non-finite pair would poison every later fit. A chunk of the wrong shape raises :class:`DataError`.
        """
        Xa, Ya = _rows("X", X, self.dim), _rows("Y", Y, self.dim)
        if Xa.shape != Ya.shape:
            raise DataError(f"X and Y passed to PairBuffer.push must have the same shape (n, {self.dim}); got "
                            f"{Xa.shape} and {Ya.shape}: row i of Y must be the lifted successor of row i of X.")
        bad = int((~np.isfinite(Xa)).any(axis=1).sum() + (~np.isfinite(Ya)).any(axis=1).sum())
        if bad:
            reason = (f"refused {Xa.shape[0]} lifted pair(s) with NaN/Inf entries ({bad} bad row(s) in X and Y); "
                      "the buffer is unchanged")
            logger.warning("Koopman buffer: %s", reason)
            return reason
        Xa, Ya = Xa[-self.capacity:], Ya[-self.capacity:]  # a chunk larger than the buffer: its newest rows
        slots = (self._next + np.arange(Xa.shape[0])) % self.capacity  # (n,)
        self._X[slots], self._Y[slots] = Xa, Ya
        self._next = int((self._next + Xa.shape[0]) % self.capacity)
        self._size = min(self.capacity, self._size + Xa.shape[0])
        return None

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the buffered rows X, Y (N, dim), oldest first."""
        order = (self._next - self._size + np.arange(self._size)) % self.capacity  # (N,)
        return self._X[order], self._Y[order]


def _rows(name: str, a: object, dim: int) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != dim:
        raise DataError(f"{name} passed to PairBuffer.push must have last dimension k = {dim} (lifted states); "
                        f"got shape {arr.shape}: pass the lifted states φ(x), not the model states x.")
    return arr.reshape(-1, dim)


def least_squares_operator(X: np.ndarray, Y: np.ndarray, *, rcond: float = 1e-3
                           ) -> tuple[np.ndarray, int, float]:
    """The exact-DMD operator K (k, k) with Y ≈ X K^T from rows X, Y (N, k), singular values < rcond · σ_1 dropped.

    Returns ``(K, rank, condition)``: the retained rank r and σ_1 / σ_min over the min(N, k) singular values of
    X (inf when X is numerically rank-deficient, σ_min ≤ max(N, k) · eps · σ_1). Built from
    :func:`koopscope.dmd.pod.pod` (economy SVD) and the exact-DMD lift of :func:`koopscope.dmd.pod.reduce`:
    K = (Y^T P_r S_r^{-1}) Q_r^T. Raises :class:`NumericalError` when X is all zeros.
    """
    proj = pod(X, rank="full", solver="svd", caller="least_squares_operator")  # X = P S Q^T
    s = proj.s_all  # (min(N, k),) descending
    r = min(int((s >= rcond * s[0]).sum()), proj.s.size)  # never above pod's numerical rank
    proj = replace(proj, Q=proj.Q[:, :r], s=s[:r], P=proj.P[:, :r])  # (k, r), (r,), (N, r)
    lift = reduce(X, Y, proj, exact_modes=True).lift  # (k, r) = Y^T P_r S_r^-1
    condition = float(s[0] / s[-1]) if numerical_rank(s, X.shape) == s.size else math.inf  # numerically singular
    return lift @ proj.Q.T, r, condition  # (k, k)


def ema_blend(K: torch.Tensor, K_new: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 − α) K + α K_new, computed as K + α (K_new − K) (exact for α = 1 up to one rounding)."""
    return K + alpha * (K_new - K)


def _skip(reason: str, **diagnostics: float) -> UpdateResult:
    logger.warning("Koopman operator update skipped, K kept: %s", reason)
    return UpdateResult(False, reason, **diagnostics)  # type: ignore[arg-type]


def streaming_update(K: torch.Tensor, buffer: PairBuffer, config: StreamingUpdate = StreamingUpdate()
                     ) -> UpdateResult:
    """One streaming DMD update of the operator ``K`` (k, k) from the buffered pairs, written in place.

    ``K`` is typically the :class:`~koopscope.koopman.KoopmanLayer`'s ``nn.Parameter``: the blend is written into
    it under ``torch.no_grad()``, in its own dtype and device. On a skip, K is not touched (see the module
    docstring for the rules); the returned :class:`UpdateResult` says why.
    """
    X, Y = buffer.pairs()
    n, k = X.shape[0], buffer.dim
    if n < config.min_rows:
        return _skip(f"the buffer holds {n} row(s), fewer than min_rows = {config.min_rows}", n_rows=n)
    K_old = K.detach().to("cpu", torch.float64).numpy()  # (k, k)
    if not np.isfinite(K_old).all():
        return _skip("the current operator K has NaN/Inf entries", n_rows=n)
    try:
        K_new, r, condition = least_squares_operator(X, Y, rcond=config.rcond)
    except (NumericalError, np.linalg.LinAlgError) as exc:
        return _skip(f"the buffered states admit no fit ({exc})", n_rows=n)
    need = math.ceil(config.min_rank_fraction * min(n, k))
    diagnostics = {"rank": r, "condition": condition, "n_rows": n}
    if r < need:
        return _skip(f"ill-conditioned: only {r} of the {min(n, k)} singular values of the {n} buffered lifted "
                     f"states are above rcond·σ_1 = {config.rcond:g}·σ_1 (condition number {condition:.3g}), fewer "
                     f"than {need} = ceil({config.min_rank_fraction:g}·{min(n, k)})", **diagnostics)
    if not np.isfinite(K_new).all():
        return _skip("the least-squares operator has NaN/Inf entries", **diagnostics)
    with torch.no_grad():
        blended = ema_blend(torch.from_numpy(K_old), torch.from_numpy(K_new), config.alpha)  # float64
        K.copy_(blended.to(K.dtype))
    return UpdateResult(True, f"K blended with α = {config.alpha:g} towards the rank-{r} fit on {n} pairs",
                        **diagnostics)  # type: ignore[arg-type]
