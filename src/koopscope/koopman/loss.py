r"""The Koopman auxiliary losses: linearity in the lifted space and next-state prediction.

For lifted pairs z_i = φ(x_i), z'_i = φ(x'_i) in R^k (rows of ``phi_x``, ``phi_y``), the design's auxiliary loss
‖φ(x_{t+1}) − K φ(x_t)‖² is taken as a mean over rows and lifted coordinates,

    L_K = (1 / (N k)) Σ_i ‖z'_i − K z_i‖²                                               (koopman_loss)

so that its scale does not grow with the batch or with k (the trainer's "loss above 10" fallback compares this
number). Alone, L_K is minimised by a constant lifting (φ ≡ c, K c = c); the block wrapper therefore adds the
prediction error of the Koopman path in the model's own coordinates,

    L_pred = (1 / (N d)) Σ_i ‖x_i + ψ(K φ(LN x_i)) − x'_i‖²                           (prediction_loss)

which needs an informative φ (Lusch, Kutz & Brunton 2018 use the same pair of losses).

>>> import torch
>>> z = torch.eye(3); K = 2 * torch.eye(3)
>>> float(koopman_loss(z, 2 * z, K)), float(koopman_loss(z, z, K))     # exact, then off by z per row
(0.0, 0.3333333432674408)
"""

from __future__ import annotations

import torch

from koopscope.errors import DataError

__all__ = ["koopman_loss", "prediction_loss"]


def _check_same(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor, caller: str) -> None:
    if a.shape != b.shape:
        raise DataError(f"{name_a} and {name_b} passed to {caller} must have the same shape; got "
                        f"{tuple(a.shape)} and {tuple(b.shape)}: row i of {name_b} must follow row i of {name_a}.")


def koopman_loss(phi_x: torch.Tensor, phi_y: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Mean squared linearity error (1/(N k)) Σ ‖φ(y_i) − K φ(x_i)‖² of lifted pairs (..., k) under K (k, k)."""
    _check_same("phi_x", phi_x, "phi_y", phi_y, "koopman_loss")
    k = phi_x.shape[-1]
    if K.dim() != 2 or tuple(K.shape) != (k, k):
        raise DataError(f"K passed to koopman_loss must be a square ({k}, {k}) operator matching the lifted "
                        f"dimension of phi_x {tuple(phi_x.shape)}; got shape {tuple(K.shape)}.")
    residual = phi_y - phi_x @ K.T  # (..., k): rows advance as z K^T
    return residual.pow(2).mean()


def prediction_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error (1/(N d)) Σ ‖x̂'_i − x'_i‖² of predicted next states (..., d)."""
    _check_same("prediction", prediction, "target", target, "prediction_loss")
    return (prediction - target).pow(2).mean()
