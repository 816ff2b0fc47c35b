"""Randomized DMD (Erichson, Mathelin, Kutz & Brunton 2019): the large-D kernel and every rank-r path.

The POD basis comes from a randomized range finder on the snapshots (Halko, Martinsson & Tropp 2011):
a seeded Gaussian sketch with ``oversampling`` extra columns and ``power_iterations`` subspace
iterations, O(N D r) instead of O(N D min(N, D)). This is koopscope's Krylov-type kernel for D > 5000.
"""

from __future__ import annotations

from koopscope._backend import Array
from koopscope._validation import Interval, check_pairs, check_param
from koopscope.dmd.exact import fit_projected
from koopscope.dmd.spectrum import RESIDUAL_THRESHOLD, Spectrum

__all__ = ["randomized", "RANDOMIZED_RANK"]

RANDOMIZED_RANK = 32  # RKSP App. D: "randomized DMD eigenvalues with rank r = 32"


def randomized(X: Array, Y: Array | None = None, *, rank: int | None = None, oversampling: int = 10,
               power_iterations: int = 2, seed: int = 0, modes: str | None = "exact", residuals: bool = True,
               holdout: float | None = None, residual_threshold: float = RESIDUAL_THRESHOLD,
               orientation: str = "check", reason: str = "method='randomized' requested") -> Spectrum:
    """Rank-r DMD of a trajectory X (T, D) or pairs X, Y (N, D) through a randomized POD basis.

    Parameters
    ----------
    rank : int, optional
        Number of leading POD directions, at most min(N, D); default min(32, N, D) (RKSP's rank 32).
    oversampling, power_iterations : int, default=10, 2
        Extra sketch columns and subspace iterations of the range finder.
    seed : int, default=0
        Seed of the Gaussian sketch; the same seed gives the same numbers on numpy and torch.

    The other parameters are those of :func:`koopscope.dmd.exact`.
    """
    check_param("rank", rank, Interval(int, 1, None), None, caller="randomized",
                fix="the randomized kernel takes an int rank, e.g. rank=32, or None for min(32, N, D)")
    X, Y = check_pairs(X, Y, caller="randomized", orientation=orientation)
    rank = min(RANDOMIZED_RANK, *X.shape) if rank is None else rank
    return fit_projected(X, Y, method="randomized", reason=reason, rank=rank, energy=None, modes=modes,
                         residuals=residuals, holdout=holdout, residual_threshold=residual_threshold,
                         svd="randomized", seed=seed, oversampling=oversampling, power_iterations=power_iterations)
