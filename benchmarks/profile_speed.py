"""Benchmark ks.profile on a GPT-2-small configuration at initialisation: end to end, stages, and the floor.

Issue 5, "Speed": GPT-2-small (12 layers, width 768) at initialisation, N = 2048 tokens, full rank, end to end
(capture, DMD, features) on this CPU: ≤ 15 s; the DMD-and-features stage ≤ 1.5× the eigen-solve floor measured
in the same run; a rank-32 randomized profile ≤ 3 s.

Model ``GPT2Model(GPT2Config())`` with ``torch.manual_seed(0)``, eval mode, float32; inputs
``ks.capture.random_tokens(16, 128, 50257, seed=0)`` (N = 2048 = every token). Each case: one warm-up, then the
median of ``--repeats`` runs (``time.perf_counter``), in one process:

- *end to end*: ``ks.profile(model, tokens)`` (capture + every layer's features);
- *capture*: ``ks.capture(model, tokens)`` alone;
- *DMD and features*: ``ks.profile(states)`` on the captured states;
- *eigen-solve floors*, for every transition's whitened operator Ã (768 × 768): ``np.linalg.eigvals`` (the
  eigenvalues alone, the floor of any full-rank spectrum) and ``np.linalg.eig`` + ``np.linalg.inv`` (right and
  left eigenvectors too, the floor of any method that reports κ(V) and ResDMD residuals, as the profile does);
- *rank 32*: ``ks.profile(states, rank=32)`` and end to end with rank 32.

    .venv/bin/python benchmarks/profile_speed.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _environment import environment  # type: ignore[import-not-found]

import koopscope as ks
from koopscope.dmd.whitened import whitened_galerkin, whitened_moments


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import torch
    from transformers import GPT2Config, GPT2Model

    env = environment("torch", "transformers")
    env["torch_threads"] = torch.get_num_threads()
    print(json.dumps(env, indent=1))
    torch.manual_seed(0)
    model = GPT2Model(GPT2Config()).eval()
    tokens = ks.capture.random_tokens(16, 128, 50257, seed=0)
    states = ks.capture(model, tokens)
    operators = []
    for X, Y in zip(states.states[:-1], states.states[1:], strict=True):
        X, Y = X.astype(np.float64), Y.astype(np.float64)
        _, _, Cxx, Cxy, _ = whitened_moments(X, Y, need_yy=False)
        operators.append(whitened_galerkin(Cxx, Cxy, None, N=X.shape[0], D=X.shape[1]).operator)
    rows = {
        "end to end (full rank)": median_time(lambda: ks.profile(model, tokens), args.repeats),
        "capture": median_time(lambda: ks.capture(model, tokens), args.repeats),
        "DMD and features (full rank)": median_time(lambda: ks.profile(states), args.repeats),
        "floor: eigvals": median_time(lambda: [np.linalg.eigvals(A) for A in operators], args.repeats),
        "floor: eig + inv (left and right vectors)": median_time(
            lambda: [np.linalg.inv(np.linalg.eig(A)[1]) for A in operators], args.repeats),
        "DMD and features (rank 32)": median_time(lambda: ks.profile(states, rank=32), args.repeats),
        "end to end (rank 32)": median_time(lambda: ks.profile(model, tokens, rank=32), args.repeats),
    }
    floor = rows["floor: eigvals"]
    print("\n| stage | median (s) | target |")
    print("|---|---|---|")
    targets = {"end to end (full rank)": "≤ 15 s", "end to end (rank 32)": "≤ 3 s",
               "DMD and features (full rank)": f"≤ 1.5 × eigvals floor = {1.5 * floor:.2f} s"}
    for name, t in rows.items():
        print(f"| {name} | {t:.2f} | {targets.get(name, '')} |")
    features = rows["DMD and features (full rank)"]
    print(f"\nDMD-and-features / eigvals floor = {features / floor:.2f}; / eig+inv floor = "
          f"{features / rows['floor: eig + inv (left and right vectors)']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "seconds": rows}, f, indent=1)


if __name__ == "__main__":
    main()
