"""Online and windowed DMD (Zhang, Rowley, Deem & Cattafesta, SIADS 2019): O(D^2) per snapshot pair.

The operator A (D, D) with y ≈ A x is the (weighted) least-squares fit to every pair seen so far,

    A = (Σ_i w_i y_i x_i^T) C^-1,    C = Σ_i w_i x_i x_i^T,    w_i = ρ^(n-1-i),

kept up to date by recursive least squares instead of a new solve. With ``P = (ρ C)^-1`` (P is
stored pre-divided by the forgetting factor ρ), a new pair (x, y) costs two rank-1 updates
(Sherman-Morrison):

    γ = 1 / (1 + x^T P x),    A ← A + γ (y - A x)(P x)^T,    P ← (P - γ (P x)(P x)^T) / ρ.

A window of w pairs adds the newest pair and drops the oldest in one Woodbury rank-2 update with
weights diag(-ρ^w, 1). Both updates are exact: after any number of pairs the running A equals the
batch least-squares operator to rounding. The maths uses column vectors; the public API takes 1-D
states (D,) and (N, D) arrays whose rows are snapshots.

Alongside A and P the class keeps the Galerkin moments G = Σ w x x^T, A_g = Σ w x y^T and
L = Σ w y y^T (same forgetting and window), so that :meth:`StreamingDMD.spectrum` reports a ResDMD
residual for every eigenpair without storing the data.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from koopscope._backend import backend_of, is_torch
from koopscope._validation import Interval, Options, as_2d, check_finite, check_param
from koopscope.dmd.resdmd import Galerkin
from koopscope.dmd.spectrum import Spectrum, decompose
from koopscope.errors import DataError, NotFittedError

__all__ = ["StreamingDMD", "INIT_MAX_CONDITION"]

# Batch initialisation waits until κ(X^T W X) <= 1e10, so that P = (X^T W X)^-1 keeps about 6
# significant digits (relative rounding error κ · eps ≈ 2e-6) before the recursion starts from it.
INIT_MAX_CONDITION = 1e10

_CALLER = "StreamingDMD"


# --------------------------------------------------------------------------------------------------
# Pure helpers: validation


def _check_state(name: str, v: object, dim: int, caller: str) -> np.ndarray:
    """One state vector as float64 (D,), or a :class:`DataError` naming ``name``."""
    if is_torch(v):
        v = backend_of(v).to_numpy(v)
    try:
        arr = np.asarray(v)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} passed to {caller} could not be read as an array ({exc}); pass a "
                        f"state vector of shape ({dim},).") from None
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{name} passed to {caller} has dtype {arr.dtype}; online DMD needs a "
                        f"real numeric state vector of shape ({dim},): cast it with "
                        f"{name}.astype(float) or split complex states into real and imaginary "
                        "parts.")
    if arr.shape != (dim,):
        hint = (f"for several pairs call update_many(X, Y) with (N, {dim}) arrays" if arr.ndim > 1
                else f"pass a state with dim = {dim} features")
        raise DataError(f"{name} passed to {caller} must be one state vector of shape ({dim},); "
                        f"got shape {arr.shape}: {hint}.")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(f"{name} passed to {caller} contains {int(bad.sum())} NaN/Inf value(s), "
                        f"the first at index {first}; online DMD needs finite states: drop or "
                        "impute this pair.")
    return arr.astype(np.float64)


def _check_width(name: str, X: np.ndarray, dim: int, caller: str) -> None:
    N, D = X.shape
    if D == dim:
        return
    hint = (f"which looks transposed (rows must be snapshots): pass {name}.T" if N == dim
            else f"pass states with dim = {dim} features")
    raise DataError(f"{name} passed to {caller} must have shape (N, {dim}) with one state per row; "
                    f"got shape {(N, D)}, {hint}.")


def _check_chunk(X: object, Y: object, dim: int, caller: str) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (N, D) from pairs X, Y or from a trajectory X (T, D); float64 numpy arrays."""
    Xa = as_2d("X", X, caller)
    _check_width("X", Xa, dim, caller)
    if Y is None:
        if Xa.shape[0] < 2:
            raise DataError(f"X passed to {caller} is a trajectory of {Xa.shape[0]} snapshot(s); "
                            "at least 2 are needed to form a pair: pass a longer trajectory, or "
                            "pairs X, Y.")
        Xa, Ya = Xa[:-1], Xa[1:]
    else:
        Ya = as_2d("Y", Y, caller)
        if tuple(Ya.shape) != tuple(Xa.shape):
            raise DataError(f"X and Y passed to {caller} must have the same shape (N, {dim}); got "
                            f"X {tuple(Xa.shape)} and Y {tuple(Ya.shape)}: row i of Y must be the "
                            "successor of row i of X.")
    check_finite("X", Xa, caller)
    check_finite("Y", Ya, caller)
    return backend_of(Xa).to_numpy(Xa), backend_of(Ya).to_numpy(Ya)


# --------------------------------------------------------------------------------------------------
# Pure helpers: the recursive least-squares maths (column vectors)


def _weight_sum(m: int, rho: float) -> float:
    """Σ_{j<m} ρ^j, the total quadrature weight of the m pairs in the fit."""
    return float(m) if rho == 1.0 else (1.0 - rho**m) / (1.0 - rho)


def _batch_init(G: np.ndarray, A_g: np.ndarray, rho: float
                ) -> tuple[float, np.ndarray | None, np.ndarray | None]:
    """Condition number of G and, if it is finite, the batch operator and P = (ρ G)^-1."""
    w, V = np.linalg.eigh((G + G.T) / 2)  # (D,), (D, D) ascending
    cond = float(w[-1] / w[0]) if w[0] > 0 else np.inf
    if not np.isfinite(cond):
        return cond, None, None
    G_inv = (V / w) @ V.T  # (D, D)
    A = A_g.T @ G_inv  # (D, D) = (Σ w y x^T)(Σ w x x^T)^-1
    return cond, A, (G_inv + G_inv.T) / (2 * rho)


def _sherman_morrison(A: np.ndarray, P: np.ndarray, x: np.ndarray, y: np.ndarray, rho: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Add the pair (x, y): C ← ρ C + x x^T, with P = (ρ C)^-1 before and after."""
    Px = P @ x  # (D,)
    gamma = 1.0 / (1.0 + x @ Px)
    A = A + gamma * np.outer(y - A @ x, Px)  # (D, D)
    P = (P - gamma * np.outer(Px, Px)) / rho  # (D, D)
    return A, (P + P.T) / 2


def _woodbury(A: np.ndarray, P: np.ndarray, U: np.ndarray, V: np.ndarray, c: np.ndarray,
              rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Add the pairs (U[:, j], V[:, j]) with weights c_j: C ← ρ C + U diag(c) U^T, P = (ρ C)^-1."""
    PU = P @ U  # (D, k)
    S = np.diag(1.0 / c) + U.T @ PU  # (k, k)
    K = np.linalg.solve(S, PU.T)  # (k, D) = S^-1 U^T P
    A = A + (V - A @ U) @ K  # (D, D)
    P = (P - PU @ K) / rho  # (D, D)
    return A, (P + P.T) / 2


# --------------------------------------------------------------------------------------------------


class StreamingDMD:
    """Online DMD: the least-squares operator A (D, D), y ≈ A x, updated one pair at a time.

    Parameters
    ----------
    dim : int >= 1
        State dimension D.
    forgetting : float in (0, 1], default=1.0
        Exponential forgetting factor ρ: pair i of n has weight ρ^(n-1-i). 1.0 weights all pairs
        equally; smaller values track a drifting operator, with a memory of about 1 / (1 - ρ) pairs.
    window : int >= dim + 1, optional
        Keep only the last ``window`` pairs (weighted by ``forgetting`` within the window): each
        update adds the newest pair and drops the oldest in one Woodbury rank-2 update. The window's
        pairs are stored, O(window · D) memory; without a window no pair is stored.
    init : {"batch", "identity"}, default="batch"
        ``"batch"`` accumulates the moments of the first pairs and, once there are at least D + 1
        of them and X^T X is well conditioned (κ <= ``INIT_MAX_CONDITION``), initialises A and P by
        exact batch least squares; from then on A equals the batch operator to rounding.
        ``"identity"`` starts at A = 0, P = ``alpha`` · I, available from the first pair but
        approximate: it is ridge regression with penalty ρ^(n-1) / alpha, i.e. ghost pairs
        that fade only with forgetting.
    alpha : float > 0, default=1e6
        Scale of the initial P for ``init="identity"`` (larger: closer to least squares, less
        stable).

    Attributes
    ----------
    operator : ndarray of shape (D, D)
        A copy of the current operator.
    n_pairs : int
        Pairs passed to :meth:`update` / :meth:`update_many` so far (all of them, also with a
        window).

    Notes
    -----
    Each update costs about 4 D^2 flops for A and P (8 D^2 with a window) plus 3 D^2 for the
    Galerkin moments; :meth:`spectrum` costs O(D^3). As in any recursive least squares with ρ < 1,
    P grows when the data stop exciting some direction ("wind-up"). Pairs are validated before any
    state changes, so a rejected call leaves the estimate untouched.

    References
    ----------
    Zhang, Rowley, Deem & Cattafesta, "Online dynamic mode decomposition for time-varying systems",
    SIAM J. Appl. Dyn. Syst. 18 (2019); reference implementation ``odmd`` (OnlineDMD, WindowDMD).

    Examples
    --------
    >>> import numpy as np
    >>> from koopscope.dmd.streaming import StreamingDMD
    >>> A = np.array([[0.9, -0.2], [0.2, 0.9]])
    >>> online = StreamingDMD(2)
    >>> for x in np.random.default_rng(0).standard_normal((10, 2)):
    ...     online.update(x, A @ x)
    >>> np.round(online.spectrum().eigenvalues, 10)
    array([0.9+0.2j, 0.9-0.2j])
    """

    def __init__(self, dim: int, *, forgetting: float = 1.0, window: int | None = None,
                 init: str = "batch", alpha: float = 1e6) -> None:
        check_param("dim", dim, Interval(int, 1, None), caller=_CALLER,
                    fix="pass the state dimension D, the number of features of each snapshot")
        check_param("forgetting", forgetting, Interval(float, 0.0, 1.0, closed="right"),
                    caller=_CALLER,
                    fix="use 1.0 for no forgetting or e.g. 0.99 for a memory of about 100 pairs")
        check_param("window", window, Interval(int, dim + 1, None), None, caller=_CALLER,
                    fix=f"a window must hold at least dim + 1 = {dim + 1} pairs for X^T X to be "
                        "invertible (2·dim to 10·dim is typical), or None for no window")
        check_param("init", init, Options(("batch", "identity")), caller=_CALLER,
                    fix="'batch' is exact least squares after dim + 1 pairs, 'identity' starts at "
                        "P = alpha·I (approximate)")
        check_param("alpha", alpha, Interval(float, 0.0, None, closed="neither"), caller=_CALLER,
                    fix="give the scale of the initial P = alpha·I, e.g. 1e6")
        self.dim, self.forgetting, self.window = int(dim), float(forgetting), window
        self.init, self.alpha = init, float(alpha)
        D = self.dim
        self._n = 0
        self._G, self._A_g, self._L = np.zeros((D, D)), np.zeros((D, D)), np.zeros((D, D))
        self._A: np.ndarray | None = None  # (D, D) operator, y ≈ A x
        self._P: np.ndarray | None = None  # (D, D) = (ρ C)^-1
        if init == "identity":
            self._A, self._P = np.zeros((D, D)), self.alpha * np.eye(D)
        self._pairs: deque[tuple[np.ndarray, np.ndarray]] | None = (
            None if window is None else deque())
        self._x0: np.ndarray | None = None
        self._next_check = D + 1
        self._cond: float | None = None

    # ----------------------------------------------------------------------------------------------
    # Public API

    @property
    def n_pairs(self) -> int:
        """Pairs seen so far."""
        return self._n

    @property
    def operator(self) -> np.ndarray:
        """A copy of the current operator A (D, D), with y ≈ A x."""
        self._require_fitted("operator")
        return self._A.copy()  # type: ignore[union-attr]

    def update(self, x: object, y: object) -> None:
        """Add one snapshot pair: ``y`` (D,) is the successor of ``x`` (D,)."""
        caller = f"{_CALLER}.update"
        x = _check_state("x", x, self.dim, caller)
        y = _check_state("y", y, self.dim, caller)
        self._push(x, y)

    def update_many(self, X: object, Y: object = None) -> None:
        """Add snapshot pairs X, Y (N, D) in row order, or the pairs of one trajectory X (T, D).

        Pairs are formed within the call: the last state of one trajectory is not paired with the
        first state of the next. Every row is validated before the first update.
        """
        Xa, Ya = _check_chunk(X, Y, self.dim, f"{_CALLER}.update_many")
        for x, y in zip(Xa, Ya, strict=True):
            self._push(x.copy(), y.copy())

    def spectrum(self) -> Spectrum:
        """Eigenvalues, modes and ResDMD residuals of the current operator.

        The residuals use the running Galerkin moments with quadrature weights w_i / Σ w_i
        (in-sample).

        Returns
        -------
        Spectrum
            ``method="streaming"``, ``rank=dim``; ``n_pairs`` counts the pairs in the fit (at most
            ``window``); amplitudes refer to the first state seen.

        Raises
        ------
        NotFittedError
            Before the operator is initialised; the message says how many more pairs are needed.
        """
        self._require_fitted("spectrum()")
        m = self._n_fit
        W = _weight_sum(m, self.forgetting)
        gal = Galerkin(self._G / W, self._A_g / W, self._L / W)
        scope = f"the last {m} of {self._n}" if m < self._n else f"{m}"
        reason = (f"online least squares (Zhang et al. 2019) over {scope} pair(s), "
                  f"forgetting={self.forgetting:g}, init={self.init!r}")
        return decompose(
            self._A, method="streaming", reason=reason, basis=None, gal=gal,
            rank=self.dim, n_pairs=m, z0=self._x0,
            options={"forgetting": self.forgetting, "window": self.window, "init": self.init,
                     "alpha": self.alpha, "pairs_seen": self._n},
        )

    def __repr__(self) -> str:
        return (f"StreamingDMD(dim={self.dim}, forgetting={self.forgetting:g}, "
                f"window={self.window}, init={self.init!r}, n_pairs={self._n})")

    # ----------------------------------------------------------------------------------------------
    # Internals

    @property
    def _n_fit(self) -> int:
        """Pairs the current fit depends on."""
        return self._n if self.window is None else min(self._n, self.window)

    def _push(self, x: np.ndarray, y: np.ndarray) -> None:
        rho = self.forgetting
        if self._x0 is None:
            self._x0 = x.copy()
        old, w_old = None, 0.0
        if self._pairs is not None:
            if len(self._pairs) == self.window:
                old, w_old = self._pairs.popleft(), rho**self.window
            self._pairs.append((x, y))
        self._G = rho * self._G + np.outer(x, x)  # (D, D)
        self._A_g = rho * self._A_g + np.outer(x, y)  # (D, D)
        self._L = rho * self._L + np.outer(y, y)  # (D, D)
        if old is not None:
            xo, yo = old
            self._G -= w_old * np.outer(xo, xo)
            self._A_g -= w_old * np.outer(xo, yo)
            self._L -= w_old * np.outer(yo, yo)
        if self._A is not None:
            if old is not None and w_old > 0.0:  # ρ^w can underflow: the oldest pair then weighs 0
                U, V = np.column_stack([old[0], x]), np.column_stack([old[1], y])  # (D, 2) each
                self._A, self._P = _woodbury(self._A, self._P, U, V, np.array([-w_old, 1.0]), rho)
            else:
                self._A, self._P = _sherman_morrison(self._A, self._P, x, y, rho)
        self._n += 1
        if self._A is None and self._n >= self._next_check:
            self._initialise()

    def _initialise(self) -> None:
        """Batch least squares from the moments once there are dim + 1 well-conditioned pairs."""
        if self._n_fit < self.dim + 1:
            return
        self._cond, A, P = _batch_init(self._G, self._A_g, self.forgetting)
        if self._cond <= INIT_MAX_CONDITION:
            self._A, self._P = A, P
        else:  # an O(D^3) check at most every dim + 1 pairs: O(D^2) per pair
            self._next_check = self._n + self.dim + 1

    def _require_fitted(self, what: str) -> None:
        if self._A is None:
            self._initialise()
        if self._A is not None and self._n_fit > 0:
            return
        m, need = self._n_fit, (self.dim + 1 if self.init == "batch" else 1)
        if m < need:
            alt = (", or construct with init='identity' for an approximate estimate from the first "
                   "pair" if self.init == "batch" else "")
            raise NotFittedError(f"{_CALLER}.{what} needs at least {need} snapshot pair(s) "
                                 f"(dim = {self.dim}) to initialise the operator; got {m}: call "
                                 f"update() with {need - m} more pair(s){alt}.")
        raise NotFittedError(f"{_CALLER}.{what} cannot initialise the operator yet: the {m} pairs "
                             f"give X^T X a condition number of {self._cond:.3g} > "
                             f"{INIT_MAX_CONDITION:.0e}, so they do not excite all "
                             f"dim = {self.dim} directions: call update() with more varied "
                             "pairs, or construct with init='identity'.")
