"""The variance profile of an edit ΔW and its standardisation to unit-variance noise.

An edit's noise is rarely homoscedastic: round-to-nearest quantisation with one scale per output channel adds
uniform noise of variance Δ_i²/12 to row i, and Δ_i follows the row's largest weight. Against a single
Marchenko–Pastur edge, such an edit looks like a spike in every matrix with an outlier channel (on MiniLM, int8
RTN puts σ₁(ΔW) at up to 11× the homoscedastic edge). The profile model

    E[ΔW_ij²] = r_i c_j                                                     (separable variances)

covers per-channel and per-input-column scales exactly and group-wise scales approximately. It is fitted by
Sinkhorn–Knopp scaling of P = ΔW∘ΔW (alternating r_i = mean_j P_ij / c_j and c_j = mean_i P_ij / r_i), and
Z = diag(r)^{-1/2} ΔW diag(c)^{-1/2} has unit mean square in every row and column. Under the null of
independent noise Z follows the Marchenko–Pastur law with σ = 1 (measured on MiniLM: σ₁(Z) stays under the
99 % Tracy–Widom threshold for int8 and int4 RTN, per channel and per group), while a low-rank edit u vᵀ
spread over many rows and columns stays coherent after the scaling and stands out. An edit confined to
one row is a variance profile, not a spike, under this model; :mod:`koopscope.rmt.guard` catches it by the
growth of σ_max instead.

Rows and columns that the edit left exactly unchanged carry no noise; they are dropped (the support).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from koopscope.capture._deps import require_torch

__all__ = ["Standardised", "standardise", "SINKHORN_TOL", "SINKHORN_ITERATIONS"]

#: Relative deviation of any row or column mean square of Z from 1 at which the scaling stops.
SINKHORN_TOL = 1e-6
#: Scaling sweeps before stopping anyway (a near-decomposable pattern converges slowly; the profile is then
#: still a good variance model).
SINKHORN_ITERATIONS = 200


@dataclass(frozen=True)
class Standardised:
    """ΔW restricted to its support and scaled to unit variance.

    ``Z`` (m', n') float32 (float64 for a float64 ΔW), ``rows`` (m',) and ``cols`` (n',) index the support in ΔW,
    ``r`` (m',) and ``c`` (n',) the profile, with ΔW[rows][:, cols] = diag(√r) Z diag(√c); ``iterations`` the
    Sinkhorn sweeps taken.
    """

    Z: Any
    rows: Any
    cols: Any
    r: Any
    c: Any
    iterations: int

    def unscale(self, Z: Any) -> Any:
        """diag(√r) Z diag(√c): a standardised matrix back in ΔW's units (on the support)."""
        return self.r.sqrt()[:, None] * Z * self.c.sqrt()[None, :]


def standardise(delta: Any, *, tol: float = SINKHORN_TOL, max_iterations: int = SINKHORN_ITERATIONS) -> Standardised:
    """Fit the separable variance profile of ``delta`` (m, n) and return the unit-variance Z on its support.

    ``delta`` must have at least one non-zero entry (an unchanged matrix has no edit to test).
    """
    torch = require_torch("standardise")
    D = delta.detach()
    D = D.to(torch.float64) if D.dtype == torch.float64 else D.to(torch.float32)
    rows = torch.nonzero((D != 0).any(1)).squeeze(1)
    cols = torch.nonzero((D != 0).any(0)).squeeze(1)
    D = D[rows][:, cols]                                             # (m', n'), the support
    P = (D * D).to(torch.float64)                                    # (m', n'), float64: no scale underflows
    m, n = P.shape
    # Sinkhorn–Knopp on P with matrix-vector products only (no (m', n') temporaries):
    # c_j = mean_i P_ij / r_i,  r_i = mean_j P_ij / c_j;  column mean squares of Z = (Pᵀ r⁻¹)_j / (m c_j).
    r = P.mean(1)
    c = torch.ones(n, dtype=torch.float64, device=P.device)
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (the count is reported)
        c = (P.T @ (1 / r)) / m
        r = (P @ (1 / c)) / n
        col_ms = (P.T @ (1 / r)) / (m * c)                           # row mean squares are 1 after the r update
        if float((col_ms - 1).abs().max()) <= tol:
            break
    scale = c.mean()                                                 # split the free factor evenly: mean(c) = 1
    r, c = r * scale, c / scale
    Z = D / (r.sqrt()[:, None] * c.sqrt()[None, :]).to(D.dtype)
    return Standardised(Z, rows, cols, r, c, iterations)
