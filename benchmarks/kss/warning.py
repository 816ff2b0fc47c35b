"""Does the layers' whitened spectrum warn of a divergence before it happens? (issue 6, diagnostic)

KSS can only prevent what the whitened operators of the layer transitions can see. This traces the benchmark's
uncontrolled runs (no normalisation, 64 × 2, GPT-2 init, the 24 trials of the ``regime`` plan) with
``ks.shaping.SpectralMonitor`` on every step (full-rank whitened DMD of each transition, 512 token states of the
step's own micro-batch, as a KSS step reads them) and asks, step by step, whether a reading separates the steps
that are followed by a divergence within ``--horizon`` steps from the steps that are not.

Readings per step: the largest spectral radius ρ over the transitions (what the KSS penalty acts on, |λ| > 1.05),
the layer-mean near-unit mass M≈1 and the largest η_nl; for comparison, readings that need no DMD: the mean norm
of the last residual state, the task loss and the gradient norm of the step. Each is scored by AUROC over all
(run, step) pairs before the run's end, pooled over runs (the pairs of one run are not independent: read the
numbers as a ranking of the readings, not as calibrated probabilities).

One difference from ``run.py``: every forward pass runs the last block at every position (``model(tokens)[:, -1]``,
the same logits to 1e-5), so that the monitor sees the last state; the trajectories can then differ from the
benchmark's by rounding, and so can the divergence of a run.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.kss.warning --workers 2 --out benchmarks/kss/results/warning.jsonl \\
        --markdown benchmarks/kss/results/warning.md

The rows of the recorded run are kept as ``results/warning.jsonl.gz`` (``score`` of those rows reproduces
``results/warning.md``).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks.divergence.sweep import append_row, pool_results, read_rows
from sklearn.metrics import roc_auc_score

from koopscope.shaping.loss import KSSConfig

from .run import ARCH, BATCH_SIZE, INIT, REGIME_LRS, SEEDS, STEPS, make_optimizer

__all__ = ["READINGS", "Trace", "main", "score", "trace"]

TOKENS = 512  # token states per step, as a KSS step reads them (SpectralShaping's max_tokens)
HORIZON = 10  # a step is "before a divergence" when the run diverges within this many steps
TAU_U = KSSConfig().tau_u  # 1.05, the KSS penalty's upper threshold
WINDOW = 100  # the early window of the run-level score: the largest reading over steps 1..WINDOW
READINGS = {  # name -> (label, needs DMD)
    "max_rho": ("largest whitened spectral radius ρ over transitions", True),
    "rho_shaped": ("largest ρ over the transitions KSS shapes (all but 0)", True),
    "mean_m": ("layer-mean near-unit mass M≈1", True),
    "max_eta": ("largest η_nl", True),
    "state_norm": ("mean norm of the last residual state", False),
    "loss": ("task loss of the step", False),
    "grad_norm": ("gradient norm of the step", False),
}


@dataclass(frozen=True)
class Trace:
    """One run to trace: the regime plan's model at learning rate ``lr`` and seed ``seed``."""

    lr: float
    seed: int
    steps: int = STEPS

    @property
    def key(self) -> str:
        return f"warning|{INIT}|none|w{ARCH[0]}|L{ARCH[1]}|lr{self.lr:.6g}|s{self.seed}|n{self.steps}"


def trace(spec: Trace) -> dict[str, Any]:
    """Train one uncontrolled run, reading the monitor on every step; the per-step readings and the outcome."""
    from benchmarks.divergence.models import ModelConfig, build_model
    from benchmarks.divergence.task import RecallTask
    from benchmarks.divergence.train import TrainConfig, check_divergence, global_grad_norm
    from torch.nn import functional as F

    import koopscope as ks

    task = RecallTask()
    cfg = TrainConfig(lr=spec.lr, steps=spec.steps, batch_size=BATCH_SIZE)
    model = build_model(ModelConfig("none", ARCH[0], ARCH[1], init=INIT), spec.seed)
    opt = make_optimizer(model, cfg)
    gen = task.generator(spec.seed)
    monitor = ks.shaping.SpectralMonitor(model, every=1, max_tokens=TOKENS, alarm_threshold=2.0,  # M≈1 ≤ 1: no alarms
                                         blocks=model.blocks, seed=spec.seed)
    rows: dict[str, list[float]] = {name: [] for name in READINGS}
    reason, start = None, time.perf_counter()
    model.train()
    try:
        for _ in range(cfg.steps):
            tokens, target = task.batch(gen, cfg.batch_size)  # (B, T), (B,)
            loss = F.cross_entropy(model(tokens)[:, -1], target)
            metrics = monitor.step()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad = global_grad_norm(model)
            last = monitor.last_states[-1] if monitor.last_states else None  # (N, D)
            layers = [k.split("/")[1] for k in metrics if k.endswith("/spectral_radius") and "/layer_" in k]
            rows["max_rho"].append(max((metrics[f"koopscope/{layer}/spectral_radius"] for layer in layers),
                                       default=math.nan))
            rows["rho_shaped"].append(max((metrics[f"koopscope/{layer}/spectral_radius"] for layer in layers
                                           if layer != "layer_00"), default=math.nan))
            rows["mean_m"].append(metrics.get("koopscope/mean/near_unit_mass", math.nan))
            rows["max_eta"].append(max((metrics.get(f"koopscope/{layer}/eta_nl", math.nan) for layer in layers),
                                       default=math.nan))
            rows["state_norm"].append(float(np.linalg.norm(last, axis=1).mean()) if last is not None else math.nan)
            rows["loss"].append(float(loss.detach()))
            rows["grad_norm"].append(grad)
            reason = check_divergence(rows["loss"][-1], grad, cfg.rule)
            if reason is not None:
                break
            opt.step()
    finally:
        monitor.remove()
    n = len(rows["loss"])
    return {"key": spec.key, "lr": spec.lr, "seed": spec.seed, "diverged": reason is not None,
            "diverged_step": n if reason is not None else None, "reason": reason, "steps_run": n,
            "readings": {k: [float(f"{v:.6g}") if math.isfinite(v) else str(v) for v in vals]
                         for k, vals in rows.items()},
            "seconds": round(time.perf_counter() - start, 2)}


def _auroc(y: Sequence[bool], s: Sequence[float]) -> float | None:
    y_arr = np.array(y, dtype=bool)
    return float(roc_auc_score(y_arr, s)) if 0 < y_arr.sum() < len(y_arr) else None


def score(rows: Sequence[dict[str, Any]], horizon: int = HORIZON, window: int = WINDOW) -> dict[str, Any]:
    """Two AUROCs per reading.

    ``steps``: "the run diverges within ``horizon`` steps" over all (run, step) pairs; the step that diverged is not
    scored (its reading is the divergence itself), nor are non-finite readings. ``early``: "the run diverges later",
    scored by the largest reading over its first ``window`` steps, over the runs still healthy after them: a
    warning early enough to act on.
    """
    out: dict[str, Any] = {"horizon": horizon, "window": window, "runs": len(rows),
                           "diverged": sum(bool(r["diverged"]) for r in rows)}
    for name in READINGS:
        y, s, y_run, s_run = [], [], [], []
        for r in rows:
            vals = [float(v) for v in r["readings"][name]]  # "inf" / "nan" strings too
            end = len(vals) - 1 if r["diverged"] else len(vals)  # the diverging step itself is left out
            for t in range(end):
                if math.isfinite(vals[t]):
                    y.append(bool(r["diverged"]) and end - t <= horizon)
                    s.append(vals[t])
            early = [v for v in vals[:window] if math.isfinite(v)]
            if end >= window and early:
                y_run.append(bool(r["diverged"]))
                s_run.append(max(early))
        out[name] = {"n_steps": len(y), "n_before": int(sum(y)), "auroc": _auroc(y, s),
                     "early": {"n_runs": len(y_run), "n_diverged": int(sum(y_run)), "auroc": _auroc(y_run, s_run)}}
    out["hinge"] = {outcome: _above_tau([r for r in rows if bool(r["diverged"]) == (outcome == "diverged")])
                    for outcome in ("stable", "diverged")}
    return out


def _above_tau(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Share of steps (before the end) on which the shaped transitions' ρ exceeds KSS's τ_u, and its median."""
    rho = np.array([float(v) for r in rows
                    for v in r["readings"]["rho_shaped"][: len(r["readings"]["rho_shaped"]) - bool(r["diverged"])]])
    rho = rho[np.isfinite(rho)]
    if not rho.size:
        return {"share": None, "median": None}
    return {"share": float(np.mean(rho > TAU_U)), "median": float(np.median(rho))}


def markdown(result: dict[str, Any]) -> str:
    early = next(iter(result[name]["early"] for name in READINGS))
    lines = [f"Runs: {result['runs']} ({result['diverged']} diverged). *Steps*: every step before the run's end, "
             f"positive when the run diverges within {result['horizon']} steps. *Early*: each run healthy after "
             f"{result['window']} steps ({early['n_runs']}, {early['n_diverged']} diverged later), scored by its "
             f"largest reading over steps 1–{result['window']}.", "",
             "| reading | needs DMD | steps scored (before a divergence) | AUROC, steps | AUROC, early |",
             "|---|---|---|---|---|"]
    for name, (label, dmd) in READINGS.items():
        e = result[name]
        lines.append(f"| {label} | {'yes' if dmd else 'no'} | {e['n_steps']} ({e['n_before']}) | {_num(e['auroc'])} "
                     f"| {_num(e['early']['auroc'])} |")
    h = result["hinge"]
    lines += ["", f"Steps on which the shaped transitions' ρ exceeds τ_u = {TAU_U} (where the KSS penalty acts): "
              f"{_pct(h['stable']['share'])} of the stable runs' steps (median ρ {_num(h['stable']['median'])}), "
              f"{_pct(h['diverged']['share'])} of the diverging runs' steps before the divergence (median ρ "
              f"{_num(h['diverged']['median'])})."]
    return "\n".join(lines) + "\n"


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f} %"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.kss.warning", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lrs", default=",".join(f"{v:g}" for v in REGIME_LRS))
    ap.add_argument("--seeds", default=SEEDS)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--horizon", type=int, default=HORIZON)
    ap.add_argument("--window", type=int, default=WINDOW)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/kss/results/warning.jsonl", help="one JSON row per run (resumable)")
    ap.add_argument("--markdown", default=None, help="write the table here too")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    specs = [Trace(float(lr), int(seed), args.steps) for lr in args.lrs.split(",") for seed in args.seeds.split(",")]
    done = {r["key"] for r in read_rows(out)} if out.exists() else set()
    out.parent.mkdir(parents=True, exist_ok=True)
    for row in pool_results([s for s in specs if s.key not in done], args.workers, trace):
        append_row(out, row)
    keys = {s.key for s in specs}
    rows = [r for r in read_rows(out) if r.get("key") in keys]
    table = markdown(score(rows, args.horizon, args.window))
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
