"""KSS against no control and gradient clipping (issue 6): train the divergence sweep's models on its task under
each control, append one JSON row per run to a JSONL file, then time the controls against each other in one
process.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.kss.run --workers 2                      # the full benchmark (resumable)
    .venv/bin/python -m benchmarks.kss.run --plan regime --methods none,kss0.15 --lrs 5e-3 --seeds 42 \\
        --steps 100 --out /tmp/kss.jsonl --no-timing                         # a subset
    .venv/bin/python -m benchmarks.kss.run --dry-run                        # list the runs still to do

**Plans.** ``regime`` (RKSP Table 3): no normalisation, 8 log-spaced learning rates in [5e-3, 1e-2] × seeds 42,
123, 456 = 24 trials per method, methods ``none``, ``clip1.0``, ``kss0.10``, ``kss0.15``, ``kss0.20`` (every 10
steps, half the layers: the paper's schedule), and two extra, stronger rows: ``kss0.15-every1-frac1`` (every
step, all layers) and ``kss1.0-every1-frac1`` (also α = 1, beyond the paper's α range), and a diagnostic one,
``kss0.15-taskrule`` (see Methods). ``maxlr`` (RKSP Table 5): Pre-LN, RMSNorm and no normalisation, ``none``,
``kss0.15`` and ``kss0.15-taskrule`` on a per-norm learning-rate grid × 3 seeds. ``all`` (default): both, and
the overhead timing (of every method but the diagnostic ones).

**Methods** (``--methods``, comma list): ``none``; ``clipC`` (``torch.nn.utils.clip_grad_norm_`` to C after the
backward pass, e.g. ``clip1.0``); ``kssA`` with optional ``-everyK`` and ``-fracF`` (``ks.shaping.SpectralShaping``
with α = A, every = K (default 10), layer_fraction = F (default 0.5), rank 32, ``blocks=model.blocks``, seeded with
the run's seed; the penalty is added to the task loss); ``-resR`` penalises only the eigenvalues with a ResDMD
residual of at most R (``residual_threshold``, run 4). A ``-taskrule`` suffix (diagnostic rows) makes the
divergence rule read the gradient of the task loss alone on shaped steps (two backward passes: the task loss on a
retained graph, then the penalty); the optimiser still gets the sum.

**The loop** mirrors ``benchmarks/divergence/train.py`` (which has no hook for a penalty or clipping) exactly:
the same model (``build_model``), data stream (``task.generator(seed)``, batch 16), AdamW (fused, β = 0.9, 0.999,
weight decay 0.01, constant learning rate, no warmup), 500 steps, divergence rule (``check_divergence``: loss > 50,
gradient norm > 500, or non-finite, checked after the backward pass and before the optimiser step, on the task
loss and the global norm of the gradient the optimiser would use, *before* clipping) and held-out evaluation
(512 sequences, ``EVAL_SEED + seed``). One difference, forced by KSS: on a KSS on-step that shapes the last transition
(state L − 1 → L), the forward pass runs the last block at every position (``model(tokens)[:, -1]``) instead of
the last position only, because ``GPT.forward(last_only=True)`` calls ``forward_last`` on the last block, which
bypasses the forward hooks the KSS tap reads its states from (the other transitions' states are read from the
usual forward). The logits are the same to 1e-5 (tested in the divergence smoke test); the extra compute is part
of KSS's measured cost.

**Recorded per run:** outcome (diverged, step, reason), held-out accuracy and loss, M≈1 at initialisation and
at the end (``ks.profile(ks.capture(model, probe, blocks=model.blocks)).risk``, the layer-mean near-unit mass of
the full-rank whitened DMD at the 2048 token states of the sweep's probe batch; at the end means the weights
the run stopped with: after step 500, or at the step that diverged), the curves, the KSS penalties, and every
step's wall time (batch draw to optimiser step).

**Overhead timing** (after the training runs, in this process, one thread): one fresh copy of the same model per
method (same weights), each with its own optimiser, trained at a stable learning rate (1e-3) in interleaved
10-step cycles (one KSS cycle at every = 10), the method order rotated each round, after a warm-up cycle. Per
method: the median over all timed steps, and the median over cycles of the cycle time / 10 (the amortised step,
which is what a KSS run costs: at every = 10 nine steps in ten do no KSS work, so the median single step is an
off-step). Overhead = method / ``none`` − 1.

Rows are keyed (method, norm, init, width, depth, lr, seed, steps, batch); keys already in the output are
skipped, so an interrupted run resumes. Rows are written by the parent process only, one line at a time.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks._environment import environment
from benchmarks.divergence.sweep import DEFAULTS as SWEEP_DEFAULTS
from benchmarks.divergence.sweep import (
    EVAL_SEED,
    PROBE_SEED,
    PROBE_SEQUENCES,
    append_row,
    pool_results,
    read_rows,
    worker_init,
)

__all__ = ["Method", "RunSpec", "main", "parse_method", "plan", "run_one", "time_methods", "train_controlled"]

ROW_VERSION = 1
# The configuration: the sweep's smallest architecture (64 x 2, in DEFAULTS["archs"]) and its steps / batch.
ARCH = (64, 2)
INIT = "gpt2"
STEPS = SWEEP_DEFAULTS["steps"]  # 500
BATCH_SIZE = SWEEP_DEFAULTS["batch_size"]  # 16
SEEDS = SWEEP_DEFAULTS["seeds"]  # "42,123,456" (RKSP §4)
KSS_RANK = 32  # RKSP App. D
# The rows, then two extra, stronger ones: the paper's α on every step and all layers, and α = 1 (beyond the
# paper's range, 0.01-0.20) on every step and all layers.
# A last, diagnostic row: the paper's KSS with the divergence rule reading the task gradient alone (not timed).
REGIME_METHODS = "none,clip1.0,kss0.10,kss0.15,kss0.20,kss0.15-every1-frac1,kss1.0-every1-frac1,kss0.15-taskrule"
REGIME_LRS = tuple(float(f"{v:.3g}") for v in np.geomspace(5e-3, 1e-2, 8))  # RKSP Table 3: lr 0.005-0.01
MAXLR_METHODS = "none,kss0.15,kss0.15-taskrule"
MAXLR_GRIDS = {  # per norm, around the sweep's stability edge at 64 x 2 (GPT-2 init, 3 seeds each): no norm stable
    # at 3e-3, all diverged at 1e-2; Pre-LN and RMSNorm stable at 0.3, all diverged at 1
    "none": (1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 7e-3, 1e-2),
    "pre_ln": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0),
    "rmsnorm": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0),
}
TIMING_LR = 1e-3  # stable for every method: the timed models must not diverge
TIMING_CYCLE = 10  # one KSS cycle at every = 10
STABLE_DIVERGENCE = 0.2  # RKSP: a learning rate is stable below 20 % divergence

_METHOD = re.compile(r"^(?:(?P<none>none)|clip(?P<clip>[0-9.]+(?:e-?[0-9]+)?)|kss(?P<alpha>[0-9.]+)"
                     r"(?:-every(?P<every>[0-9]+))?(?:-frac(?P<frac>[0-9.]+))?(?:-res(?P<res>[0-9.]+))?(?P<task>-taskrule)?)$")


@dataclass(frozen=True)
class Method:
    """One control: none, gradient clipping to ``clip``, or KSS with α, every, layer_fraction."""

    name: str
    kind: str  # "none" | "clip" | "kss"
    clip: float | None = None
    alpha: float | None = None
    every: int = 10
    layer_fraction: float = 0.5
    task_rule: bool = False  # KSS only: the divergence rule reads the task gradient (the penalty's is not counted)
    residual_threshold: float | None = None  # KSS only: penalise the eigenvalues with a ResDMD residual up to this


def parse_method(text: str) -> Method:
    """``none``, ``clip1.0``, ``kss0.15``, ``kss0.15-every1-frac1-res0.1-taskrule`` -> :class:`Method` (else
    ValueError)."""
    m = _METHOD.match(text.strip())
    if m is None:
        raise ValueError(f"unknown method {text!r}: use none, clipC (clip1.0), kssA (kss0.15), kssA-everyK-fracF")
    if m["none"]:
        return Method("none", "none")
    if m["clip"]:
        return Method(text.strip(), "clip", clip=float(m["clip"]))
    every = int(m["every"]) if m["every"] else 10
    frac = float(m["frac"]) if m["frac"] else 0.5
    if every < 1 or not 0 < frac <= 1:
        raise ValueError(f"method {text!r}: every must be >= 1 and frac in (0, 1]")
    return Method(text.strip(), "kss", alpha=float(m["alpha"]), every=every, layer_fraction=frac,
                  task_rule=bool(m["task"]), residual_threshold=float(m["res"]) if m["res"] else None)


@dataclass(frozen=True)
class RunSpec:
    """One training run."""

    method: str
    norm: str
    init: str
    width: int
    depth: int
    lr: float
    seed: int
    steps: int
    batch_size: int

    @property
    def key(self) -> str:
        return (f"{self.method}|{self.init}|{self.norm}|w{self.width}|L{self.depth}|lr{self.lr:.6g}|s{self.seed}"
                f"|n{self.steps}|b{self.batch_size}")

    @property
    def cost(self) -> float:
        """Relative cost, for scheduling (KSS on every step costs the most, then the stable normalised runs)."""
        m = parse_method(self.method)
        extra = 3.0 if m.kind == "kss" and m.every == 1 else 1.2 if m.kind == "kss" else 1.0
        return self.width ** 2 * self.depth * self.steps * self.batch_size * extra * (1.0 if self.norm == "none"
                                                                                      else 2.0)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def plan(which: str, *, methods: Sequence[str] | None = None, norms: Sequence[str] | None = None,
         lrs: Sequence[float] | None = None, seeds: Sequence[int], arch: tuple[int, int] = ARCH, init: str = INIT,
         steps: int = STEPS, batch_size: int = BATCH_SIZE) -> list[RunSpec]:
    """The runs of a plan (``regime``, ``maxlr`` or ``all``), most expensive first, without duplicates.

    ``methods``, ``norms`` and ``lrs`` override the plan's own (``lrs`` then applies to every norm)."""
    parts: list[tuple[Sequence[str], Sequence[str], dict[str, Sequence[float]]]] = []
    if which in ("regime", "all"):
        n = list(norms or ["none"])
        parts.append((methods or _names(REGIME_METHODS), n, {k: lrs or REGIME_LRS for k in n}))
    if which in ("maxlr", "all"):
        n = list(norms or MAXLR_GRIDS)
        parts.append((methods or _names(MAXLR_METHODS), n, {k: lrs or MAXLR_GRIDS.get(k, REGIME_LRS) for k in n}))
    if not parts:
        raise ValueError(f"unknown plan {which!r}: regime, maxlr or all")
    width, depth = arch
    specs: dict[str, RunSpec] = {}
    for ms, ns, grid in parts:
        for method in ms:
            parse_method(method)
            for norm in ns:
                for lr in grid[norm]:
                    for seed in seeds:
                        spec = RunSpec(method, norm, init, width, depth, float(lr), int(seed), steps, batch_size)
                        specs.setdefault(spec.key, spec)
    return sorted(specs.values(), key=lambda s: -s.cost)


# -- training ----------------------------------------------------------------------------------------------------
def make_shaping(model: Any, method: Method, seed: int) -> Any:
    """The KSS regulariser of ``method`` on ``model`` (None for the other methods)."""
    if method.kind != "kss":
        return None
    import koopscope as ks

    return ks.shaping.SpectralShaping(model, alpha=method.alpha, every=method.every,
                                      layer_fraction=method.layer_fraction, rank=KSS_RANK, blocks=model.blocks,
                                      residual_threshold=method.residual_threshold, seed=seed)


def make_optimizer(model: Any, cfg: Any) -> Any:
    """AdamW exactly as ``benchmarks/divergence/train.py`` builds it."""
    import torch

    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                             fused=True)


class Stepper:
    """One training step of ``train.py``'s loop plus a control; ``step()`` -> (task loss, grad norm, reason)."""

    def __init__(self, model: Any, task: Any, cfg: Any, method: Method, data_seed: int, shaping_seed: int) -> None:
        self.model, self.task, self.cfg, self.method = model, task, cfg, method
        self.opt = make_optimizer(model, cfg)
        self.gen = task.generator(data_seed)
        self.shaping = make_shaping(model, method, shaping_seed)
        self.penalties: list[float] = []  # α · mean KSS loss of each shaped step
        self.skipped = 0  # KSS on-steps that were skipped (non-finite states, ...)
        self.divergence_diagnosis: dict[str, Any] | None = None  # set when a shaped step diverges

    def step(self) -> tuple[float, float, str | None]:
        import torch
        from benchmarks.divergence.train import check_divergence, global_grad_norm
        from torch.nn import functional as F

        tokens, target = self.task.batch(self.gen, self.cfg.batch_size)  # (B, T), (B,)
        shaping = self.shaping
        shaped = shaping is not None and shaping.on_step
        n_blocks = len(self.model.blocks)
        if shaped and n_blocks - 1 in shaping.planned_transitions:
            logits = self.model(tokens)[:, -1]  # (B, V): the last block through its hooks, for the KSS tap
        else:
            logits = self.model(tokens, last_only=True)  # (B, V), as train.py
        loss = F.cross_entropy(logits, target)
        penalty = None
        if shaping is not None:
            penalty = shaping(self.model)
            if shaping.last.active:
                self.penalties.append(float(shaping.last.penalty))
            elif shaping.last.skipped:
                self.skipped += 1
        active = shaped and shaping.last.active
        self.opt.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        if active and self.method.task_rule:  # the rule reads the task gradient; the optimiser gets both
            loss.backward(retain_graph=True)
            grad_norm = global_grad_norm(self.model)
            penalty.backward()
            reason = check_divergence(loss_value, grad_norm, self.cfg.rule)
        else:
            (loss if penalty is None else loss + penalty).backward(retain_graph=active)  # kept for the diagnosis
            grad_norm = global_grad_norm(self.model)
            reason = check_divergence(loss_value, grad_norm, self.cfg.rule)
            if reason is not None and active:
                # The rule read the gradient the optimiser would use (task + penalty). Diagnosis only: would the
                # task gradient alone have tripped it too?
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                task_grad = global_grad_norm(self.model)
                self.divergence_diagnosis = {
                    "task_grad_norm": task_grad, "total_grad_norm": grad_norm,
                    "task_only_reason": check_divergence(loss_value, task_grad, self.cfg.rule)}
        if reason is None:
            if self.method.kind == "clip":
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.method.clip)
            self.opt.step()
        return loss_value, grad_norm, reason

    def close(self) -> None:
        if self.shaping is not None:
            self.shaping.remove()


def train_controlled(model: Any, task: Any, cfg: Any, method: Method, data_seed: int, eval_seed: int,
                     shaping_seed: int) -> dict[str, Any]:
    """``train.py``'s ``train`` with ``method``'s control: the curves, outcome and per-step times of one run."""
    from benchmarks.divergence.train import evaluate

    start = time.perf_counter()
    stepper = Stepper(model, task, cfg, method, data_seed, shaping_seed)
    losses: list[float] = []
    grads: list[float] = []
    times: list[float] = []
    reason = None
    model.train()
    try:
        for _ in range(cfg.steps):
            t0 = time.perf_counter()
            loss, grad, reason = stepper.step()
            times.append(time.perf_counter() - t0)
            losses.append(loss)
            grads.append(grad)
            if reason is not None:
                break
    finally:
        stepper.close()
    diverged = reason is not None
    model.eval()
    acc, final = (None, None) if diverged else evaluate(model, task, eval_seed, cfg.eval_size)
    return {"losses": losses, "grad_norms": grads, "step_seconds": times, "diverged": diverged,
            "diverged_step": len(losses) if diverged else None, "reason": reason, "accuracy": acc,
            "final_loss": final, "penalties": stepper.penalties, "kss_skipped": stepper.skipped,
            "divergence_diagnosis": stepper.divergence_diagnosis,
            "seconds": time.perf_counter() - start}


def near_unit_mass(model: Any, probe: np.ndarray, seed: int) -> tuple[float | None, str | None]:
    """(M≈1, None) of ``model`` at its current weights, or (None, why) when the profile cannot be computed."""
    import torch

    import koopscope as ks

    try:
        with torch.no_grad():
            states = ks.capture(model, probe, blocks=model.blocks, max_tokens=2048, seed=seed, batch_size=64)
            if not all(np.isfinite(s).all() for s in states.states):
                return None, "non-finite residual states"
            risk = float(ks.profile(states).risk)
    except Exception as err:  # noqa: BLE001 - a diverged model may break the linear algebra; record why
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return (risk, None) if math.isfinite(risk) else (None, "non-finite risk")


def _round(values: Sequence[float], digits: int = 5) -> list[float | str]:
    return [float(f"{v:.{digits}g}") if math.isfinite(v) else str(v) for v in values]


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Build, profile at init, train under the control, profile at the end; the row of one run."""
    from benchmarks.divergence.models import ModelConfig, build_model
    from benchmarks.divergence.task import RecallTask
    from benchmarks.divergence.train import TrainConfig

    method = parse_method(spec.method)
    task = RecallTask()
    model = build_model(ModelConfig(spec.norm, spec.width, spec.depth, init=spec.init), spec.seed)
    probe = task.batch(task.generator(PROBE_SEED + spec.seed), PROBE_SEQUENCES)[0].numpy()  # (32, 64)
    t0 = time.perf_counter()
    m_init, why_init = near_unit_mass(model, probe, spec.seed)
    t_profile = time.perf_counter() - t0
    res = train_controlled(model, task, TrainConfig(lr=spec.lr, steps=spec.steps, batch_size=spec.batch_size),
                           method, data_seed=spec.seed, eval_seed=EVAL_SEED + spec.seed, shaping_seed=spec.seed)
    m_end, why_end = near_unit_mass(model, probe, spec.seed)
    times = np.array(res["step_seconds"])
    return {
        "row_version": ROW_VERSION, "kind": "run", "key": spec.key, **asdict(spec), "method_spec": asdict(method),
        "diverged": res["diverged"], "diverged_step": res["diverged_step"], "reason": res["reason"],
        "steps_run": len(res["losses"]), "accuracy": res["accuracy"], "final_loss": res["final_loss"],
        "m_near_unit_init": m_init, "m_near_unit_end": m_end,
        "profile_notes": {k: v for k, v in (("init", why_init), ("end", why_end)) if v},
        "kss": {"n_shaped": len(res["penalties"]), "n_skipped": res["kss_skipped"],
                "penalty_mean": float(np.mean(res["penalties"])) if res["penalties"] else None,
                "penalty_max": float(np.max(res["penalties"])) if res["penalties"] else None,
                "divergence_diagnosis": res["divergence_diagnosis"]},
        "step_time": {"median": float(np.median(times)), "mean": float(np.mean(times))} if times.size else {},
        "curves": {"loss": _round(res["losses"]), "grad_norm": _round(res["grad_norms"]),
                   "step_ms": _round([1e3 * t for t in res["step_seconds"]], 3)},
        "seconds": {"profile_init": round(t_profile, 3), "train": round(res["seconds"], 3)},
    }


# -- overhead timing ---------------------------------------------------------------------------------------------
def time_methods(methods: Sequence[str], *, norm: str = "none", init: str = INIT, arch: tuple[int, int] = ARCH,
                 seed: int = 42, lr: float = TIMING_LR, rounds: int = 40, cycle: int = TIMING_CYCLE,
                 batch_size: int = BATCH_SIZE) -> dict[str, Any]:
    """Interleaved step times of ``methods`` on copies of one model, in this process (module docstring)."""
    import torch
    from benchmarks.divergence.models import ModelConfig, build_model
    from benchmarks.divergence.task import RecallTask
    from benchmarks.divergence.train import TrainConfig

    task = RecallTask()
    base = build_model(ModelConfig(norm, arch[0], arch[1], init=init), seed)
    cfg = TrainConfig(lr=lr, steps=rounds * cycle, batch_size=batch_size)
    steppers = {}
    for name in methods:
        model = copy.deepcopy(base)
        model.train()
        steppers[name] = Stepper(model, task, cfg, parse_method(name), data_seed=seed, shaping_seed=seed)
    steps: dict[str, list[float]] = {name: [] for name in methods}
    cycles: dict[str, list[float]] = {name: [] for name in methods}
    diverged: dict[str, int] = {name: 0 for name in methods}
    names = list(methods)
    start = time.perf_counter()
    for r in range(rounds + 1):  # round 0 is the warm-up
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            stepper, times = steppers[name], []
            for _ in range(cycle):
                t0 = time.perf_counter()
                _, _, reason = stepper.step()
                times.append(time.perf_counter() - t0)
                diverged[name] += reason is not None
            if r > 0:
                steps[name].extend(times)
                cycles[name].append(sum(times))
    for stepper in steppers.values():
        stepper.close()
    ref_step, ref_cycle = float(np.median(steps[names[0]])), float(np.median(cycles[names[0]]))
    out = {}
    for name in names:
        med_step, med_cycle = float(np.median(steps[name])), float(np.median(cycles[name])) / cycle
        out[name] = {"median_step_ms": 1e3 * med_step, "mean_step_ms": 1e3 * float(np.mean(steps[name])),
                     "median_cycle_step_ms": 1e3 * med_cycle,
                     "overhead_median_step": med_step / ref_step - 1.0,
                     "overhead_cycle": med_cycle / (ref_cycle / cycle) - 1.0,
                     "overhead_mean_step": float(np.mean(steps[name])) / float(np.mean(steps[names[0]])) - 1.0,
                     "diverged_steps": diverged[name]}
    return {"reference": names[0], "norm": norm, "init": init, "width": arch[0], "depth": arch[1], "seed": seed,
            "lr": lr, "rounds": rounds, "cycle": cycle, "batch_size": batch_size,
            "torch_threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - start, 2),
            "methods": out}


# -- driver ------------------------------------------------------------------------------------------------------
def _progress(i: int, n: int, row: dict[str, Any], start: float) -> str:
    outcome = (f"diverged at step {row['diverged_step']} ({row['reason']})" if row["diverged"]
               else f"stable, accuracy {row['accuracy']:.3f}")
    m_end = row["m_near_unit_end"]
    return (f"[{i}/{n}] {row['key']}: {outcome}; M≈1 end {'n/a' if m_end is None else f'{m_end:.3f}'}; "
            f"{row['seconds']['train']:.1f} s; elapsed {(time.perf_counter() - start) / 60:.1f} min")


def timing_key(methods: Sequence[str], args: argparse.Namespace) -> str:
    return (f"timing|{args.init}|none|{args.arch}|lr{TIMING_LR:g}|r{args.timing_rounds}|b{args.batch_size}|"
            + ",".join(methods))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.kss.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", default="all", choices=("regime", "maxlr", "all"))
    ap.add_argument("--out", default="benchmarks/kss/results/runs.jsonl", help="JSONL file (appended)")
    ap.add_argument("--methods", default=None, help=f"comma list (regime default {REGIME_METHODS})")
    ap.add_argument("--norms", default=None, help="comma list (regime: none; maxlr: pre_ln,rmsnorm,none)")
    ap.add_argument("--lrs", default=None, help="comma list, for every norm (default: the plan's grids)")
    ap.add_argument("--seeds", default=SEEDS)
    ap.add_argument("--arch", default=f"{ARCH[0]}x{ARCH[1]}", help="WIDTHxDEPTH (default %(default)s)")
    ap.add_argument("--init", default=INIT, choices=("gpt2", "pytorch"))
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="run at most this many of the remaining runs")
    ap.add_argument("--timing", action=argparse.BooleanOptionalAction, default=True,
                    help="after the runs, time the regime's methods against each other (default on)")
    ap.add_argument("--timing-rounds", type=int, default=40)
    ap.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    width, _, depth = args.arch.lower().partition("x")
    arch = (int(width), int(depth))
    methods = _names(args.methods) if args.methods else None
    try:
        for m in methods or ():
            parse_method(m)
        specs = plan(args.plan, methods=methods, norms=_names(args.norms) if args.norms else None,
                     lrs=_floats(args.lrs) if args.lrs else None, seeds=_ints(args.seeds), arch=arch,
                     init=args.init, steps=args.steps, batch_size=args.batch_size)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    out = Path(args.out)
    rows = read_rows(out)
    done = {row["key"] for row in rows}
    remaining = [s for s in specs if s.key not in done]
    todo = remaining[:args.limit]
    timing_methods = [m for m in methods or _names(REGIME_METHODS) if not parse_method(m).task_rule]
    tkey = timing_key(timing_methods, args)
    do_timing = args.timing and tkey not in done and args.plan != "maxlr"
    print(f"{len(specs)} runs planned, {len(specs) - len(remaining)} already in {out}, {len(todo)} to run with "
          f"{args.workers} worker(s); timing {'to do' if do_timing else 'skipped'}", file=sys.stderr)
    if args.dry_run:
        for s in todo:
            print(s.key)
        return 0
    if not todo and not do_timing:
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    append_row(out, {"environment": environment("torch"), "workers": args.workers,
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "n_todo": len(todo)})
    start = time.perf_counter()
    for i, row in enumerate(pool_results(todo, args.workers, run_one), 1):
        append_row(out, row)
        print(_progress(i, len(todo), row, start), file=sys.stderr, flush=True)
    if do_timing:
        worker_init()
        print(f"timing {','.join(timing_methods)} ({args.timing_rounds} interleaved 10-step rounds)",
              file=sys.stderr, flush=True)
        result = time_methods(timing_methods, init=args.init, arch=arch, rounds=args.timing_rounds,
                              batch_size=args.batch_size)
        append_row(out, {"row_version": ROW_VERSION, "kind": "timing", "key": tkey,
                         "loadavg": list(os.getloadavg()), **result})
        for name, t in result["methods"].items():
            print(f"  {name}: median step {t['median_step_ms']:.2f} ms ({100 * t['overhead_median_step']:+.1f} %), "
                  f"per cycle {t['median_cycle_step_ms']:.2f} ms/step ({100 * t['overhead_cycle']:+.1f} %)",
                  file=sys.stderr)
    minutes = (time.perf_counter() - start) / 60
    append_row(out, {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "n_runs": len(todo),
                     "minutes": round(minutes, 2), "loadavg_end": list(os.getloadavg())})
    print(f"done: {len(todo)} runs in {minutes:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
