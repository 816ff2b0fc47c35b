"""The nonlinearity ratio η_nl and the relative update size of a layer transition, from whitened moments.

RKSP Eq. 5, in whitened coordinates (X̃, Ỹ: the centred pairs whitened by the pre-snapshot covariance):

    η_nl = ‖Ỹ − X̃ Âᵀ‖_F / (‖Ỹ − X̃‖_F + ε_nl)

the part of the update the linear operator does not explain, relative to the update itself. With the Galerkin
matrices of the whitened PCA coordinates (G = Z_xᵀZ_x / n, A = Z_xᵀZ_y / n, L = Z_yᵀZ_y / n, operator Ã) the
squared norms are n·[tr L − 2 tr(Ã A) + tr(Ã G Ãᵀ)] and n·[tr L − 2 tr A + tr G], so nothing N × D is formed.
ε_nl (unspecified in the paper, [NF]) is 1e-12 · ‖Ỹ‖_F here: it only keeps an identity map (Ỹ = X̃) from
dividing 0 by 0; η_nl blows up when the update is tiny, which is why the profile flags such layers.

The whitened relative update ‖Ỹ − X̃‖_F / ‖X̃‖_F measures the same update in whitened units.
"""

from __future__ import annotations

import numpy as np

__all__ = ["nonlinearity_ratio", "whitened_relative_update"]

EPS_NL_RELATIVE = 1e-12


def _update_sq(G: np.ndarray, A: np.ndarray, L: np.ndarray) -> float:
    return max(float(np.trace(L) - 2.0 * np.trace(A) + G.sum()), 0.0)  # ‖Z_y − Z_x‖² / n


def nonlinearity_ratio(G: np.ndarray, A: np.ndarray, L: np.ndarray, operator: np.ndarray) -> float:
    """η_nl from the whitened Galerkin matrices: G (r,) the diagonal of Z_xᵀZ_x / n, A, L (r, r), Ã (r, r).

    >>> G = np.ones(2); A = L = np.eye(2)  # Z_y = Z_x: the identity map fits exactly, and there is no update
    >>> nonlinearity_ratio(G, A, L, np.eye(2))
    0.0
    """
    # tr(Ã A) = Σ_ij Ã_ij A_ji and tr(Ã G Ãᵀ) = Σ_ij Ã_ij² G_j (G diagonal): O(r²), no product formed
    fit_sq = float(np.trace(L) - 2.0 * np.sum(operator * A.T) + np.sum(operator**2 * G[None, :]))
    fit = np.sqrt(max(fit_sq, 0.0))
    eps = EPS_NL_RELATIVE * np.sqrt(max(float(np.trace(L)), 0.0))
    return float(fit / (np.sqrt(_update_sq(G, A, L)) + eps)) if fit > 0 else 0.0


def whitened_relative_update(G: np.ndarray, A: np.ndarray, L: np.ndarray) -> float:
    """‖Ỹ − X̃‖_F / ‖X̃‖_F from the whitened Galerkin matrices (0 for an identity transition)."""
    return float(np.sqrt(_update_sq(G, A, L) / max(float(G.sum()), np.finfo(np.float64).tiny)))
