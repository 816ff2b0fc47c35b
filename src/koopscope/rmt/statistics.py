"""Per-matrix spectral statistics of a model's weights: σ_max, noise level, MP and Tracy–Widom edges, spikes,
stable rank and the heavy-tail exponent α.

One decomposition per matrix. A matrix whose short side is at most :data:`FULL_SPECTRUM_MAX` (or any matrix
when ``esd=True``) gets all its singular values (from its Gram matrix); the noise level is then the
Gavish–Donoho median estimate and α is fitted to its empirical spectral density (ESD). Larger matrices get
their top ``k`` singular values by block Lanczos (:func:`koopscope.rmt.singular.top_singular`) and the
trimmed-Frobenius noise estimate; α needs the ESD and is then not reported (``None``). Matrices of one shape
are decomposed together.

These are readings, not verdicts: trained weights are expected to have spikes and heavy tails (Martin &
Mahoney 2021). The only finding a single model can produce here is a non-finite weight.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from koopscope._validation import Interval, check_param, check_seed
from koopscope.capture._deps import require_torch
from koopscope.errors import DataError
from koopscope.rmt.bulk import mp_edges, noise_estimate, spike_count, stable_rank, tw_threshold
from koopscope.rmt.discovery import WeightMatrix, find_matrices
from koopscope.rmt.powerlaw import powerlaw_alpha
from koopscope.rmt.report import RMTReport
from koopscope.rmt.singular import finite_gram, gram_spectrum, top_singular

__all__ = ["MatrixStatistics", "matrix_statistics", "read_model", "statistics_and_vectors", "FULL_SPECTRUM_MAX",
           "TOP_K",
           "SPIKE_ALPHA", "by_shape"]

#: Largest short side min(m, n) that gets its full spectrum by default, from the Gram matrix
#: (:func:`~koopscope.rmt.singular.gram_spectrum`): up to here one gemm and a float64 symmetric eigenproblem
#: cost less than the top-8 Lanczos run they replace (GPT-2 small: 1.7 s against 5.3 s for all 48 matrices), and
#: give the median noise level and α.
FULL_SPECTRUM_MAX = 1024
#: Leading singular values computed for a large matrix (the spike count is capped at TOP_K − 1 there).
TOP_K = 8
#: Residual tolerance of the 2nd..k-th singular values (σ_max keeps the default 1e-4): bulk-edge values converge
#: slowly and a spike count needs them to about 1e-4 (the error is of order tol², module doc of .singular).
TOL_REST = 1e-2
#: Level of each sequential Tracy–Widom spike test.
SPIKE_ALPHA = 0.01
#: Fewest eigenvalues for a power-law fit of the ESD.
MIN_ESD = 50


@dataclass(frozen=True)
class MatrixStatistics:
    """The spectral readings of one weight matrix (all in the matrix's own units)."""

    name: str
    family: str
    shape: tuple[int, int]
    tied_to: str | None
    finite: bool
    sigma_max: float | None
    top: tuple[float, ...]
    frobenius: float | None
    stable_rank: float | None
    noise_sigma: float | None
    noise_method: str | None
    mp_edge: float | None            # upper singular-value bulk edge σ̂(√M + √N)
    tw_threshold: float | None       # Tracy–Widom threshold for s₁ at level SPIKE_ALPHA
    spikes: int | None
    alpha: float | None              # heavy-tail exponent of the ESD (power-law fit), None without the ESD
    alpha_xmin: float | None
    full_spectrum: bool

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shape"], out["top"] = list(self.shape), list(self.top)
        return out


def by_shape(items: Sequence[Any], shape_of: Any) -> dict[tuple[int, int], list[int]]:
    """Indices of ``items`` grouped by ``shape_of(item)``, in first-seen order (for batched decompositions)."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[tuple(shape_of(item))].append(i)
    return dict(groups)


def _non_finite(wm: WeightMatrix) -> MatrixStatistics:
    return MatrixStatistics(wm.name, wm.family, wm.shape, wm.tied_to, False, None, (), None, None, None, None, None,
                            None, None, None, None, False)


def _readings(wm: WeightMatrix, s: Any, frobenius_sq: float, full: bool) -> MatrixStatistics:
    """Statistics from singular values ``s`` (all of them when ``full``, else the top few) and ‖W‖_F²."""
    shape = wm.shape
    s = s.tolist()
    if s[0] <= 0.0:  # an all-zero matrix: no scale, no bulk
        return MatrixStatistics(wm.name, wm.family, shape, wm.tied_to, True, 0.0, tuple(s[:TOP_K]), 0.0, None, None,
                                None, None, None, 0, None, None, full)
    method = "median" if full else "trimmed-frobenius"
    noise = noise_estimate(s, shape, method=method, frobenius_sq=None if full else frobenius_sq)
    spikes = spike_count(s, shape, alpha=SPIKE_ALPHA, frobenius_sq=None if full else frobenius_sq) \
        if noise.sigma > 0 else 0
    fit = powerlaw_alpha([x * x for x in s if x > 0]) if full and sum(x > 0 for x in s) >= MIN_ESD else None
    return MatrixStatistics(
        wm.name, wm.family, shape, wm.tied_to, True, s[0], tuple(s[:TOP_K]), math.sqrt(frobenius_sq),
        stable_rank(s, frobenius_sq=None if full else frobenius_sq), noise.sigma, method,
        mp_edges(noise.sigma, shape)[1] if noise.sigma > 0 else 0.0,
        tw_threshold(noise.sigma, shape, SPIKE_ALPHA) if noise.sigma > 0 else 0.0,
        spikes, None if fit is None else fit.alpha, None if fit is None else fit.xmin, full)


def matrix_statistics(matrices: Sequence[WeightMatrix], *, esd: bool = False, k: int = TOP_K,
                      seed: int = 0) -> list[MatrixStatistics]:
    return statistics_and_vectors(matrices, esd=esd, k=k, seed=seed)[0]


def statistics_and_vectors(matrices: Sequence[WeightMatrix], *, esd: bool = False, k: int = TOP_K,
                           seed: int = 0) -> tuple[list[MatrixStatistics], list[Any]]:
    """The readings of every matrix in ``matrices`` (aliases of tied storage are skipped), in order, and the top
    right singular vector (n,) of each matrix decomposed by Lanczos (None for the others), for warm starts.

    Parameters
    ----------
    matrices : sequence of WeightMatrix
        From :func:`koopscope.rmt.discovery.find_matrices`.
    esd : bool, default=False
        Compute every matrix's full spectrum (slow for large matrices), giving the median noise level and α.
    k : int, default=8
        Leading singular values of a large matrix.
    seed : int, default=0
        Seed of the Lanczos start vectors.
    """
    torch = require_torch("matrix_statistics")
    check_param("esd", esd, bool, caller="matrix_statistics", fix="pass True or False")
    check_param("k", k, Interval(int, 1, None), caller="matrix_statistics")
    seed = check_seed(seed, "matrix_statistics")
    canonical = [wm for wm in matrices if wm.tied_to is None]
    out: dict[int, MatrixStatistics] = {}
    right: list[Any] = [None] * len(canonical)
    for shape, members in by_shape(canonical, lambda wm: wm.shape).items():
        if esd or min(shape) <= FULL_SPECTRUM_MAX:
            out.update(_full_readings([canonical[i] for i in members], members))
            continue
        finite = [i for i in members if bool(torch.isfinite(canonical[i].matrix().detach()).all())]
        out.update((i, _non_finite(canonical[i])) for i in members if i not in finite)
        if not finite:
            continue
        A = torch.stack([canonical[i].matrix().detach() for i in finite])      # (B, m, n)
        frob = (torch.linalg.vector_norm(A, dim=(1, 2), dtype=torch.float64) ** 2).tolist()
        top = top_singular(A, min(k, min(shape)), tol_rest=TOL_REST, seed=seed)
        for b, i in enumerate(finite):
            out[i] = _readings(canonical[i], top.values[b].cpu(), frob[b], False)
            right[i] = top.right[b, :, 0]
    return [out[i] for i in range(len(canonical))], right


def _full_readings(matrices: Sequence[WeightMatrix], index: Sequence[int]) -> dict[int, MatrixStatistics]:
    """Full-spectrum readings of matrices of one shape, keyed by ``index``.

    Each Gram matrix (p, p) stands in for its weight (:func:`~koopscope.rmt.singular.finite_gram`: finiteness read
    off the Gram matrix, a float32 overflow redone in float64); a non-finite weight is a finding; ‖W‖_F² = tr G.
    """
    torch = require_torch("matrix_statistics")
    grams: dict[int, Any] = {}                                                 # b -> (p, p)
    for b, wm in enumerate(matrices):
        try:
            grams[b] = finite_gram([wm.matrix().detach()], "matrix_statistics")[0]
        except DataError:                                                      # NaN or Inf in this weight
            continue
    keep = list(grams)
    out = {index[b]: _non_finite(matrices[b]) for b in range(len(matrices)) if b not in grams}
    if keep:
        dtype = functools.reduce(torch.promote_types, (g.dtype for g in grams.values()))
        G = torch.stack([grams[b].to(dtype) for b in keep])                   # (B, p, p)
        frob = G.diagonal(dim1=1, dim2=2).double().sum(1).tolist()
        s = gram_spectrum(G)                                                   # (B, p)
        out.update((index[b], _readings(matrices[b], s[j], frob[j], True)) for j, b in enumerate(keep))
    return out


def read_model(model: Any, *, embeddings: bool = False, esd: bool = False, seed: int = 0,
               name: str | None = None) -> RMTReport:
    """The readings of every weight matrix of ``model`` as a report (flagged only for non-finite weights)."""
    matrices = find_matrices(model, embeddings=embeddings)
    return RMTReport.from_statistics(matrix_statistics(matrices, esd=esd, seed=seed), model=name)
