"""A built-in demo: a planted linear system whose spectrum is known, and its audit.

:func:`demo_trajectory` simulates x_{t+1} = A x_t in a latent space of 8 dimensions, with
A = V diag(λ) V^{-1} (three complex-conjugate pairs and two real eigenvalues, 0.6 ≤ |λ| ≤ 0.99,
κ(V) ≈ 2), lifts the states to D dimensions with an orthonormal map and adds Gaussian measurement
noise. The planted eigenvalues are returned with the trajectory, so any kernel can be scored
against them.

:func:`run_demo` fits the trajectory with ``koopscope.dmd.fit(traj, method="auto")`` and matches the
recovered eigenvalues to the planted ones. It is what ``koopscope demo`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from koopscope import dmd
from koopscope._validation import Interval, check_param, check_seed
from koopscope.dmd.spectrum import Spectrum

__all__ = ["PLANTED_EIGENVALUES", "DemoResult", "demo_trajectory", "match_eigenvalues", "run_demo"]


def _planted() -> np.ndarray:
    pairs = ((0.99, 0.12), (0.93, 0.55), (0.80, 1.30))  # (|λ|, angle in rad/step)
    reals = (0.90, 0.60)
    lam = [r * np.exp(s * 1j * th) for r, th in pairs for s in (1, -1)]
    lam += [complex(r) for r in reals]
    lam.sort(key=lambda z: (-abs(z), -z.imag))  # descending modulus, positive imaginary part first
    return np.array(lam, dtype=np.complex128)


#: The planted one-step eigenvalues, descending modulus, conjugate pairs adjacent.
PLANTED_EIGENVALUES: np.ndarray = _planted()
PLANTED_EIGENVALUES.setflags(write=False)
_LATENT = PLANTED_EIGENVALUES.size  # 8


def _real_block_diagonal(lam: np.ndarray) -> np.ndarray:
    """A real matrix with eigenvalues ``lam``: a 2x2 rotation-scaling block per conjugate pair."""
    B = np.zeros((lam.size, lam.size))
    i = 0
    while i < lam.size:
        z = lam[i]
        if z.imag > 0:
            B[i:i + 2, i:i + 2] = [[z.real, -z.imag], [z.imag, z.real]]
            i += 2
        else:
            B[i, i] = z.real
            i += 1
    return B


def demo_trajectory(T: int = 400, D: int = 16, noise: float = 1e-3, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """A seeded trajectory (T, D) of a planted linear system, and its true eigenvalues (8,).

    Parameters
    ----------
    T : int >= 3, default=400
        Number of snapshots (rows).
    D : int >= 8, default=16
        State dimension; the 8 latent dimensions are lifted by a random orthonormal (D, 8) map.
    noise : float >= 0, default=1e-3
        Standard deviation of the additive Gaussian measurement noise (each mode starts at
        amplitude ~1).
    seed : int >= 0, default=0
        Seeds the eigenvector matrix, the lift and the noise; the eigenvalues themselves are fixed.

    Returns
    -------
    trajectory : ndarray of shape (T, D), float64
    eigenvalues : ndarray of shape (8,), complex128
        :data:`PLANTED_EIGENVALUES`, descending modulus.

    Examples
    --------
    >>> traj, lam = demo_trajectory(T=100, D=12, seed=1)
    >>> traj.shape, lam.shape
    ((100, 12), (8,))
    """
    check_param("T", T, Interval(int, 3, None), caller="demo_trajectory",
                fix="pass at least 3 snapshots")
    check_param("D", D, Interval(int, _LATENT, None), caller="demo_trajectory",
                fix=f"the planted system has {_LATENT} latent dimensions")
    check_param("noise", noise, Interval(float, 0.0, None), caller="demo_trajectory",
                fix="give the standard deviation of the measurement noise, e.g. 1e-3")
    seed = check_seed(seed, "demo_trajectory")
    rng = np.random.default_rng(seed)
    n = _LATENT
    # A = S B S^-1 with B real block-diagonal: a well-conditioned, non-normal real system.
    S = np.eye(n) + 0.3 * rng.standard_normal((n, n)) / np.sqrt(n)
    A = S @ _real_block_diagonal(PLANTED_EIGENVALUES) @ np.linalg.inv(S)
    lift = np.linalg.qr(rng.standard_normal((D, n)))[0]  # (D, n), orthonormal columns
    z = np.empty((T, n))
    z[0] = S @ np.ones(n)  # every mode starts with amplitude 1
    for t in range(T - 1):
        z[t + 1] = A @ z[t]
    traj = z @ lift.T + float(noise) * rng.standard_normal((T, D))
    return traj, PLANTED_EIGENVALUES.copy()


@dataclass(frozen=True)
class DemoResult:
    """A fitted demo: the spectrum, the planted eigenvalues and how they match.

    ``matched[i]`` is the index in ``spectrum.eigenvalues`` matched to planted eigenvalue i
    (one-to-one, minimising the total distance), or -1 when the spectrum has fewer eigenvalues than
    were planted; ``errors[i]`` is the distance |λ_recovered − λ_planted| (inf when unmatched).
    """

    spectrum: Spectrum
    planted: np.ndarray
    matched: np.ndarray
    errors: np.ndarray
    T: int
    D: int
    noise: float
    seed: int

    @property
    def max_error(self) -> float:
        return float(self.errors.max()) if self.errors.size else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: complex numbers as {"re", "im"}, non-finite numbers as None."""
        spec = self.spectrum

        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        def cplx(z: complex) -> dict[str, float]:
            return {"re": float(z.real), "im": float(z.imag)}

        return {
            "trajectory": {"T": self.T, "D": self.D, "noise": self.noise, "seed": self.seed},
            "method": spec.method,
            "reason": spec.reason,
            "rank": int(spec.rank),
            "spectral_radius": float(spec.spectral_radius),
            "eigenvalues": [cplx(z) for z in spec.eigenvalues],
            "residuals": None if spec.residuals is None else [num(r) for r in spec.residuals],
            "residual_threshold": float(spec.residual_threshold),
            "spurious": [bool(s) for s in spec.spurious],
            "n_spurious": spec.n_spurious,
            "planted_eigenvalues": [cplx(z) for z in self.planted],
            "planted_errors": [num(e) for e in self.errors],
            "max_error": num(self.max_error),
        }


def match_eigenvalues(planted: np.ndarray, recovered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one assignment of recovered to planted eigenvalues minimising the summed distance."""
    matched = np.full(planted.size, -1, dtype=np.intp)
    errors = np.full(planted.size, np.inf)
    if planted.size and recovered.size:
        cost = np.abs(planted[:, None] - recovered[None, :])
        rows, cols = linear_sum_assignment(cost)
        matched[rows] = cols
        errors[rows] = cost[rows, cols]
    return matched, errors


def run_demo(T: int = 400, D: int = 16, noise: float = 1e-3, seed: int = 0, method: str = "auto"
             ) -> DemoResult:
    """Simulate :func:`demo_trajectory`, fit it with ``koopscope.dmd.fit(traj, method=method)``
    and match the recovered eigenvalues to the planted ones."""
    traj, planted = demo_trajectory(T=T, D=D, noise=noise, seed=seed)
    spec = dmd.fit(traj, method=method)
    matched, errors = match_eigenvalues(planted, spec.eigenvalues)
    return DemoResult(spec, planted, matched, errors, T=T, D=D, noise=float(noise), seed=seed)
