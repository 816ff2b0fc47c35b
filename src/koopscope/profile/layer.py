"""One layer transition ℓ → ℓ+1 of the RKSP profile: the whitened operator and every feature of it.

Full rank (the default): the moments of the pairs give the whitened Galerkin matrices
(:func:`koopscope.dmd.whitened.whitened_galerkin`), whose operator is eigendecomposed once
(:func:`koopscope.dmd.spectrum.decompose`, left and right eigenvectors, in-sample ResDMD residuals). From that
single decomposition come the eigenvalues, the masses, ρ, κ(V) (from the bi-orthogonal eigenvectors), the Kreiss
constant (:mod:`koopscope.spectral.nonnormality`), η_nl and the whitened relative update
(:mod:`koopscope.spectral.nonlinearity`). Rank r: :func:`koopscope.dmd.whitened.whitened_sketch` (Cholesky
whitening and a randomized subspace iteration for the r leading principal directions, O(N·D² + D²·r), no D × D
eigendecomposition), with η_nl and the whitened update not computed (they need the full-rank moments).

The raw relative update is ‖Y − X‖_F / ‖X‖_F over the N sampled tokens (uncentred states, as the residual
stream is): how far one block moves the stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from koopscope.dmd.resdmd import Galerkin
from koopscope.dmd.spectrum import RESIDUAL_THRESHOLD, Spectrum, decompose
from koopscope.dmd.whitened import WHITENING_EPS, whitened_galerkin, whitened_moments, whitened_sketch
from koopscope.spectral.masses import SpectralBands, mass_partition
from koopscope.spectral.nonlinearity import nonlinearity_ratio, whitened_relative_update
from koopscope.spectral.nonnormality import biorthogonal_condition, kreiss_constant

__all__ = ["LayerProfile", "layer_profile"]

#: The per-layer features written to a fingerprint, in order.
FEATURES = ("near_unit_mass", "expansive_mass", "contractive_mass", "intermediate_mass", "spectral_radius",
            "kappa", "kreiss", "eta_nl", "relative_update", "relative_update_whitened", "filtered_near_unit_mass",
            "n_spurious")


@dataclass(frozen=True, eq=False)
class LayerProfile:
    """The features of transition ``index`` → ``index + 1`` (see the module docstring for each definition).

    ``kreiss`` is inf when ρ > 1; ``eta_nl`` and ``relative_update_whitened`` are None at rank r;
    ``filtered_near_unit_mass`` is the near-unit mass of the eigenvalues ResDMD keeps (None if it keeps none).
    """

    index: int
    spectrum: Spectrum
    near_unit_mass: float
    expansive_mass: float
    contractive_mass: float
    intermediate_mass: float
    spectral_radius: float
    kappa: float
    kreiss: float
    eta_nl: float | None
    relative_update: float
    relative_update_whitened: float | None
    filtered_near_unit_mass: float | None
    n_spurious: int
    n_pairs: int
    dim: int
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def eigenvalues(self) -> np.ndarray:
        return self.spectrum.eigenvalues

    @property
    def residuals(self) -> np.ndarray | None:
        return self.spectrum.residuals

    @property
    def features(self) -> dict[str, float | int | None]:
        """The features as JSON-ready numbers: an infinite value (κ(V) or 𝒦) is written as None."""
        values = {name: getattr(self, name) for name in FEATURES}
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()}


def _full_rank(X: np.ndarray, Y: np.ndarray, eps: float, residual_threshold: float
               ) -> tuple[Spectrum, float | None, float | None, np.ndarray]:
    """The spectrum in whitened PCA coordinates (modes and eigenfunctions there: every feature computed from them
    is unitarily invariant, so the ZCA lift U · v is skipped), η_nl, the whitened update, and the operator."""
    N, D = X.shape
    _, _, Cxx, Cxy, Cyy = whitened_moments(X, Y, need_yy=True)  # (D, D) each
    wg = whitened_galerkin(Cxx, Cxy, Cyy, N=N, D=D, eps=eps)
    spec = decompose(wg.operator, method="whitened", reason="RKSP profile: full-rank whitened DMD",
                     gal=Galerkin(wg.G, wg.A, wg.L), modes=True, rank=wg.s.size,
                     singular_values=np.sqrt(wg.s * (N - 1)), n_pairs=N, residual_threshold=residual_threshold,
                     options={"eps": eps, "path": "eigh", "coordinates": "whitened PCA"})
    eta = nonlinearity_ratio(wg.G, wg.A, wg.L, wg.operator)
    return spec, eta, whitened_relative_update(wg.G, wg.A, wg.L), wg.operator


def layer_profile(X: np.ndarray, Y: np.ndarray, index: int, *, rank: int | None = None, eps: float = WHITENING_EPS,
                  bands: SpectralBands | None = None, residual_threshold: float = RESIDUAL_THRESHOLD,
                  kreiss_dim: int = 16, seed: int = 0) -> LayerProfile:
    """Profile the transition with pairs X, Y (N, D): state ``index`` and state ``index + 1`` of the same tokens."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if rank is None:
        spec, eta, update_w, operator = _full_rank(X, Y, eps, residual_threshold)
    else:
        spec = whitened_sketch(X, Y, rank=rank, eps=eps, residual_threshold=residual_threshold, seed=seed,
                               reason=f"RKSP profile: rank-{rank} randomized whitened DMD")
        eta = update_w = None
    V = np.asarray(spec.modes)  # (k, k) right eigenvectors in the operator's own (orthonormal) coordinates
    if rank is not None:  # the r × r operator from its eigendecomposition (r is small)
        operator = V @ np.diag(spec.eigenvalues) @ np.linalg.pinv(V)
    masses = mass_partition(spec.eigenvalues, bands)
    kept = spec.eigenvalues[~spec.spurious]
    norm_x = float(np.linalg.norm(X))
    return LayerProfile(
        index=index, spectrum=spec, **masses, spectral_radius=spec.spectral_radius,
        kappa=biorthogonal_condition(V, np.conj(spec.eigenfunctions)),
        kreiss=kreiss_constant(operator, max_dim=kreiss_dim, eigenvalues=spec.eigenvalues, eigenvectors=V),
        eta_nl=eta,
        relative_update=float(np.linalg.norm(Y - X)) / norm_x if norm_x > 0 else float("inf"),
        relative_update_whitened=update_w,
        filtered_near_unit_mass=mass_partition(kept, bands)["near_unit_mass"] if kept.size else None,
        n_spurious=spec.n_spurious, n_pairs=X.shape[0], dim=X.shape[1],
    )
