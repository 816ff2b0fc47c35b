"""Benchmark the audit's bootstrap: eigenvalue-only refits against naive full refits, and the interval's coverage.

The fingerprint's intervals come from B = 200 refits of the operator on resampled snapshot pairs
(:mod:`koopscope.spectral.bootstrap`). Each refit skips modes and residuals and holds the kernel and rank fixed.
The reference is the naive bootstrap a user would write: ``ks.dmd.fit(X[idx], Y[idx], method=...)`` with
everything computed (modes, ResDMD residuals), B times. Both run in this process on the same data and the same
resampled indices; the ratio naive / koopscope is printed. Also printed: the empirical coverage of the nominal
90 % interval of the spectral radius over independent planted trajectories (it should be near 0.90).

Cases: the planted AR system of the tests (D = 3) and a residual-stream-sized case (N = 2048 pairs, D = 384,
a random orthogonal map scaled to 0.95, plus noise), for the exact and whitened kernels.

    .venv/bin/python benchmarks/audit.py [--n-boot 200] [--coverage-runs 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from _environment import environment  # type: ignore[import-not-found]

import koopscope as ks
from koopscope.spectral import bootstrap, spectral_radius

A3 = np.array([[0.9, -0.2, 0.0], [0.2, 0.9, 0.0], [0.0, 0.0, 0.5]])


def ar_pairs(A: np.ndarray, N: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    traj = np.empty((N + 1, A.shape[0]))
    traj[0] = rng.standard_normal(A.shape[0])
    for t in range(N):
        traj[t + 1] = A @ traj[t] + noise * rng.standard_normal(A.shape[0])
    return traj[:-1], traj[1:]


def wide_pairs(N: int, D: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Token-like pairs: Y = X (0.95 Q)ᵀ + noise with X i.i.d. rows (as layer transitions are, not a time series)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    Q = np.linalg.qr(rng.standard_normal((D, D)))[0]
    return X, X @ (0.95 * Q).T + 0.05 * rng.standard_normal((N, D))


def naive(X: np.ndarray, Y: np.ndarray, method: str, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, X.shape[0], size=X.shape[0])
        out[b] = ks.dmd.fit(X[idx], Y[idx], method=method, orientation="rows").spectral_radius
    return out


def time_case(name: str, X: np.ndarray, Y: np.ndarray, method: str, n_boot: int) -> dict[str, Any]:
    spec = ks.dmd.fit(X, Y, method=method, orientation="rows")
    t0 = time.perf_counter()
    ci = bootstrap(spec, X, Y, {"rho": spectral_radius}, n_boot=n_boot, seed=0)["rho"]
    t_ks = time.perf_counter() - t0
    t0 = time.perf_counter()
    reps = naive(X, Y, method, n_boot, seed=0)
    t_naive = time.perf_counter() - t0
    low, high = np.quantile(reps, [0.025, 0.975])
    return {"case": name, "method": method, "N": X.shape[0], "D": X.shape[1], "n_boot": n_boot,
            "koopscope_s": t_ks, "naive_s": t_naive, "ratio": t_naive / t_ks,
            "interval": [ci.low, ci.high], "naive_interval": [float(low), float(high)]}


def coverage(runs: int, n_boot: int) -> dict[str, Any]:
    rho = float(np.abs(np.linalg.eigvals(A3)).max())
    covered = 0
    for seed in range(runs):
        X, Y = ar_pairs(A3, 300, noise=0.3, seed=seed)
        spec = ks.dmd.exact(X, Y, residuals=False, modes=None)
        ci = bootstrap(spec, X, Y, {"rho": spectral_radius}, n_boot=n_boot, level=0.90, seed=seed)["rho"]
        covered += ci.low <= rho <= ci.high
    return {"runs": runs, "n_boot": n_boot, "nominal": 0.90, "coverage": covered / runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--coverage-runs", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    env = environment()
    print(json.dumps(env, indent=1))
    X3, Y3 = ar_pairs(A3, 300, noise=0.3, seed=0)
    Xw, Yw = wide_pairs(2048, 384, seed=0)
    rows = [time_case("planted AR, D=3", X3, Y3, "exact", args.n_boot),
            time_case("residual-stream size", Xw, Yw, "exact", args.n_boot),
            time_case("residual-stream size", Xw, Yw, "whitened", args.n_boot)]
    print("\n| case | kernel | N × D | B | koopscope (s) | naive refits (s) | naive / koopscope |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['method']} | {r['N']} × {r['D']} | {r['n_boot']} | {r['koopscope_s']:.2f} | "
              f"{r['naive_s']:.2f} | {r['ratio']:.2f}× |")
    cov = coverage(args.coverage_runs, 100)
    print(f"\ncoverage of the nominal 90 % interval of ρ (planted AR, N = 300, B = 100, {cov['runs']} runs): "
          f"{cov['coverage']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "timings": rows, "coverage": cov}, f, indent=1)


if __name__ == "__main__":
    main()
