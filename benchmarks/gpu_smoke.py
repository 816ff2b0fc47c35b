"""GPU timings of the torch paths (run on a CUDA machine): koopscope on CUDA tensors vs the same call on numpy."""

from __future__ import annotations

import time

import numpy as np
import torch

import koopscope as ks


def clock(f, repeats=3):
    f()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print("| case | shape | numpy CPU (s) | torch CUDA (s) | ratio | max eig diff |")
    print("|---|---|---|---|---|---|")
    cases = [("exact", (8192, 1024), {}), ("exact", (2048, 4096), {}),
             ("randomized", (8192, 1024), {"rank": 32}), ("whitened", (2049, 768), {}),
             ("whitened", (2049, 768), {"modes": None, "residuals": False})]
    for name, (T, D), kw in cases:
        A = np.linalg.qr(rng.standard_normal((D, D)))[0] * 0.95
        traj = np.empty((T, D))
        traj[0] = rng.standard_normal(D)
        for t in range(T - 1):
            traj[t + 1] = A @ traj[t] + rng.standard_normal(D)
        kernel = ks.dmd.VARIANTS[name]
        tc, ref = clock(lambda k=kernel, x=traj, o=kw: k(x, **o))
        g = torch.as_tensor(traj, device="cuda")
        tg, got = clock(lambda k=kernel, x=g, o=kw: k(x, **o))
        diff = np.abs(np.sort_complex(ref.eigenvalues) - np.sort_complex(got.eigenvalues)).max()
        print(f"| {name} {kw or ''} | ({T}, {D}) | {tc:.3f} | {tg:.3f} | {tc / tg:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
