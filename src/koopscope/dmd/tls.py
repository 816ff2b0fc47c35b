"""Total-least-squares DMD (Hemati, Rowley, Deem & Cattafesta 2017), with forward-backward averaging.

Plain DMD regresses Y on a noisy X and is biased: noise in X shrinks the eigenvalues towards 0. TLS
treats X and Y symmetrically: it projects both onto the leading r right singular vectors of the
stacked snapshots Z = [X, Y] (N, 2D), X̄ = Z Π[:, :D], Ȳ = Z Π[:, D:] with Π = V_r V_r^T, and runs exact
DMD on the de-noised pairs.

``forward_backward=True`` selects the other classical de-biasing estimator instead, forward-backward DMD
(Dawson, Hemati, Williams & Rowley 2016): on the raw pairs, in the POD basis of X, it fits the forward
operator Ã_f (x → y) and the backward operator Ã_b (y → x) and returns Ã = (Ã_f Ã_b^{-1})^{1/2}, whose
noise bias cancels to first order. (After the TLS projection the pairs are exactly linearly related,
Ã_f Ã_b = I, so combining the two would return the TLS operator unchanged.)
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from koopscope._backend import Array, backend_of
from koopscope._validation import check_pairs, check_param, check_rank, check_rank_limit, check_seed
from koopscope.dmd.exact import check_common, fit_projected
from koopscope.dmd.pod import pod, reduce
from koopscope.dmd.resdmd import holdout_split
from koopscope.dmd.spectrum import RESIDUAL_THRESHOLD, Spectrum, decompose
from koopscope.errors import NumericalError

__all__ = ["tls", "tls_project"]


def tls_project(X: Array, Y: Array, *, rank: int | str | None, energy: float | None, svd: str, seed: int,
                oversampling: int, power_iterations: int) -> tuple[Array, Array, int]:
    """De-noised pairs (X̄, Ȳ) (N, D) and the TLS rank r (the signal rank of Z = [X, Y])."""
    xp = backend_of(X)
    D = X.shape[1]
    Z = xp.hstack([X, Y])  # (N, 2D)
    full = rank is None or rank == "full"
    proj = pod(Z, rank=rank if not full else None, energy=energy, solver=svd, seed=seed,
               oversampling=oversampling, power_iterations=power_iterations, caller="tls")
    r = min(proj.s.size, D) if full else proj.s.size  # Y = A X: the signal rank of Z is at most D
    V = proj.Q[:, :r]  # (2D, r)
    Zp = (Z @ V) @ V.T  # (N, 2D) projection onto the TLS subspace
    return Zp[:, :D], Zp[:, D:], r


def tls(X: Array, Y: Array | None = None, *, rank: int | str | None = None, energy: float | None = None,
        forward_backward: bool = False, modes: str | None = "exact", residuals: bool = True,
        holdout: float | None = None, residual_threshold: float = RESIDUAL_THRESHOLD, svd: str = "auto",
        seed: int = 0, oversampling: int = 10, power_iterations: int = 2, orientation: str = "check",
        reason: str = "method='tls' requested") -> Spectrum:
    """Total-least-squares DMD of a trajectory X (T, D) or pairs X, Y (N, D).

    ``rank`` (None: min(D, numerical rank of [X, Y]); an int; "svht"; or ``energy``) is the dimension of
    the TLS subspace and of the DMD (the POD rank with ``forward_backward=True``, which replaces the TLS
    projection by forward-backward averaging on the raw pairs; projected modes). Residuals are always
    evaluated on the raw (not de-noised) pairs. The other parameters are those of :func:`koopscope.dmd.exact`.
    """
    check_param("forward_backward", forward_backward, bool, caller="tls", fix="pass True or False")
    check_rank(rank, energy, "tls")
    check_common(modes, holdout, residual_threshold, "tls")
    seed = check_seed(seed, "tls")
    X, Y = check_pairs(X, Y, caller="tls", orientation=orientation)
    check_rank_limit(rank, tuple(X.shape), "tls")
    held = None
    if holdout is not None:
        X, Y, *held = holdout_split(X, Y, holdout, seed)
    if not forward_backward:
        Xd, Yd, r = tls_project(X, Y, rank=rank, energy=energy, svd=svd, seed=seed, oversampling=oversampling,
                                power_iterations=power_iterations)
        return fit_projected(Xd, Yd, method="tls", reason=reason, rank=r, energy=None, modes=modes,
                             residuals=residuals, holdout=None, held=tuple(held) if held is not None else (X, Y),
                             split="in-sample" if held is None else "held-out", residual_threshold=residual_threshold,
                             svd=svd, seed=seed, oversampling=oversampling, power_iterations=power_iterations,
                             forward_backward=False)
    proj = pod(X, rank=rank, energy=energy, solver=svd, seed=seed, oversampling=oversampling,
               power_iterations=power_iterations, caller="tls")
    red = reduce(X, Y, proj, exact_modes=False, holdout=None if held is None else tuple(held))
    xp = backend_of(X)
    ZX, ZY = xp.to_numpy(proj.coords(X)), xp.to_numpy(proj.coords(Y))  # (N, r) each
    forward = red.operator  # (r, r)
    backward = np.linalg.lstsq(ZY, ZX, rcond=None)[0].T  # (r, r): z_x ≈ Ã_b z_y
    try:
        op = sla.sqrtm(forward @ np.linalg.inv(backward))
    except np.linalg.LinAlgError:
        raise NumericalError("tls(forward_backward=True) could not invert the backward operator; lower the "
                             "rank or use forward_backward=False.") from None
    op = op.real if np.iscomplexobj(op) and np.abs(op.imag).max() <= 1e-10 * np.abs(op).max() else op
    return decompose(op, method="tls", reason=reason, basis=proj.basis(), z0=red.z0,
                     gal=red.gal if residuals else None, modes=modes is not None, rank=proj.s.size,
                     singular_values=proj.s_all, n_pairs=X.shape[0],
                     residual_split="held-out" if held is not None else "in-sample",
                     residual_threshold=residual_threshold,
                     options={"svd": proj.solver, "forward_backward": True})
