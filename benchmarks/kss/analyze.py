"""The tables of the KSS benchmark (issue 6) beside RKSP's Tables 3 and 5, and the issue's targets.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.kss.analyze --runs benchmarks/kss/results/runs.jsonl \\
        --markdown benchmarks/kss/results/tables.md --json benchmarks/kss/results/analysis.json

**Control table** (RKSP Table 3): per method, over the runs of the regime (no normalisation, the 8 learning
rates of ``run.REGIME_LRS`` × the seeds): divergence rate with its exact (Clopper-Pearson) 95 % interval, the
reduction against no control (rate ratio) with Fisher's exact test (one-sided: fewer divergences than no
control), the held-out accuracy of the runs that did not diverge (mean ± s.d.; chance is 1/64 = 1.6 %), M≈1 at
the end (layer-mean near-unit mass of the final weights; mean ± s.e. over all runs, and over the stable runs) and
at initialisation, the median step at which the diverged runs stopped, and the step-time overhead from the
interleaved timing row: amortised (median 10-step cycle time, which contains one KSS step at every = 10) and the
median single step. The paper's row is printed beside each.

**Largest stable learning rate** (RKSP Table 5): per normalisation and method, the divergences at each grid
learning rate, and the largest learning rate with < 20 % divergence whose smaller grid rates are all stable too
(``stable prefix``); the largest stable rate anywhere on the grid is shown as well when it differs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks.divergence.sweep import json_safe
from scipy.stats import beta, fisher_exact

from .run import (
    ARCH,
    BATCH_SIZE,
    INIT,
    MAXLR_METHODS,
    REGIME_LRS,
    STABLE_DIVERGENCE,
    STEPS,
    _names,
    parse_method,
    read_rows,
)

__all__ = ["PAPER_T3", "PAPER_T5", "analyse", "main", "markdown", "select"]

# RKSP Table 3 (No-Norm, lr 0.005-0.01, 24 trials): div %, acc %, M≈1, overhead.
PAPER_T3 = {
    "none": ("66.7", "28.5", "0.85", "—"),
    "clip1.0": ("58.3", "30.8", "0.83", "<1 %"),
    "kss0.10": ("25.0", "42.3", "0.68", "9.5 %"),
    "kss0.15": ("12.5", "48.2", "0.58", "10.8 %"),
    "kss0.20": ("8.3", "46.5", "0.52", "11.2 %"),
}
# RKSP Table 5: largest stable lr (< 20 % divergence) without / with KSS.
PAPER_T5 = {"pre_ln": ("0.005", "0.008", "+60 %"), "rmsnorm": ("0.003", "0.005", "+67 %"),
            "none": ("0.002", "0.005", "+150 %")}
NORM_LABEL = {"pre_ln": "Pre-LN", "rmsnorm": "RMSNorm", "none": "no norm"}
REDUCTION_TARGET = 3.0  # issue 6: divergence at least 3x lower than no control
OVERHEAD_TARGET = 0.05  # issue 6: overhead <= 5 % at every = 10
CHANCE = 1.0 / 64


def _runs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("kind") == "run"]


def select(rows: Sequence[dict[str, Any]], init: str = INIT, arch: tuple[int, int] = ARCH, steps: int = STEPS,
           batch_size: int = BATCH_SIZE) -> list[dict[str, Any]]:
    """The run rows of one configuration (and the timing rows of the same one); the other rows are left out."""
    def same(r: dict[str, Any]) -> bool:
        return r["init"] == init and (r["width"], r["depth"]) == tuple(arch) and r["batch_size"] == batch_size

    return ([r for r in _runs(rows) if same(r) and r["steps"] == steps]
            + [r for r in rows if r.get("kind") == "timing" and same(r)])


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of k successes in n trials."""
    a = (1 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return low, high


def _mean_se(values: Sequence[float]) -> tuple[float | None, float | None, int]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return None, None, 0
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0, int(v.size)


def _mean_sd(values: Sequence[float]) -> tuple[float | None, float | None, int]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return None, None, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def _method_order(name: str) -> tuple[int, bool, int, float, float]:
    """none, clipping, KSS at the paper's schedule by α, stronger schedules, then the diagnostic task-rule rows."""
    m = parse_method(name)
    kind = {"none": 0, "clip": 1, "kss": 2}[m.kind]
    return kind, m.task_rule, -m.every, m.layer_fraction, (m.clip or 0.0) + (m.alpha or 0.0)


def control_table(rows: Sequence[dict[str, Any]], timing: dict[str, Any] | None,
                  lrs: Sequence[float] = REGIME_LRS) -> list[dict[str, Any]]:
    """One entry per method over the regime's runs (module docstring)."""
    lr_set = {float(f"{x:.6g}") for x in lrs}
    regime = [r for r in _runs(rows) if r["norm"] == "none" and float(f"{r['lr']:.6g}") in lr_set]
    methods = sorted({r["method"] for r in regime}, key=_method_order)
    base = [r for r in regime if r["method"] == "none"]
    k0, n0 = sum(r["diverged"] for r in base), len(base)
    out = []
    for name in methods:
        sub = [r for r in regime if r["method"] == name]
        k, n = sum(r["diverged"] for r in sub), len(sub)
        stable = [r for r in sub if not r["diverged"]]
        entry: dict[str, Any] = {"method": name, "n": n, "n_diverged": k, "div_rate": k / n if n else None,
                                 "div_ci": clopper_pearson(k, n) if n else None}
        if n0 and name != "none":
            rate0, rate = k0 / n0, k / n
            entry["reduction"] = (rate0 / rate) if rate > 0 else (math.inf if rate0 > 0 else None)
            entry["fisher_p"] = float(fisher_exact([[k, n - k], [k0, n0 - k0]], alternative="less")[1])
        entry["accuracy"] = _mean_sd([r["accuracy"] for r in stable])
        entry["m_end_all"] = _mean_se([r["m_near_unit_end"] for r in sub])
        entry["m_end_stable"] = _mean_se([r["m_near_unit_end"] for r in stable])
        entry["m_init"] = _mean_se([r["m_near_unit_init"] for r in sub])
        steps = [r["diverged_step"] for r in sub if r["diverged"]]
        entry["median_diverged_step"] = float(np.median(steps)) if steps else None
        entry["per_lr"] = {f"{lr:g}": [int(sum(r["diverged"] for r in sub if math.isclose(r["lr"], lr))),
                                       sum(1 for r in sub if math.isclose(r["lr"], lr))] for lr in lrs}
        diag = [r["kss"].get("divergence_diagnosis") for r in sub if r["diverged"]]
        diag = [d for d in diag if d]
        entry["diverged_on_shaped_step"] = len(diag)
        entry["task_gradient_alone_not_divergent"] = sum(1 for d in diag if d["task_only_reason"] is None)
        entry["train_step_ms_median"] = _mean_sd([1e3 * r["step_time"]["median"] for r in sub if r["step_time"]])[0]
        entry["train_step_ms_mean"] = _mean_sd([1e3 * r["step_time"]["mean"] for r in sub if r["step_time"]])[0]
        t = (timing or {}).get("methods", {}).get(name)
        entry["overhead_cycle"] = t["overhead_cycle"] if t else None
        entry["overhead_median_step"] = t["overhead_median_step"] if t else None
        entry["step_ms_cycle"] = t["median_cycle_step_ms"] if t else None
        entry["step_ms_median"] = t["median_step_ms"] if t else None
        entry["paper"] = PAPER_T3.get(name)
        out.append(entry)
    return out


def largest_stable(per_lr: Sequence[tuple[float, int, int]]) -> tuple[float | None, float | None]:
    """(largest lr of the stable prefix, largest stable lr anywhere) of sorted (lr, diverged, n) entries."""
    prefix = anywhere = None
    broken = False
    for lr, k, n in per_lr:
        ok = n > 0 and k / n < STABLE_DIVERGENCE
        if ok:
            anywhere = lr
            if not broken:
                prefix = lr
        else:
            broken = True
    return prefix, anywhere


def maxlr_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per normalisation: divergences per grid lr and the largest stable lr of each method of the ``maxlr`` plan."""
    runs = _runs(rows)
    out = []
    for norm in ("pre_ln", "rmsnorm", "none"):
        sub = [r for r in runs if r["norm"] == norm]
        methods = [m for m in _names(MAXLR_METHODS) if any(r["method"] == m for r in sub)]
        # Only the learning rates every method ran at (the regime's extra rates would bias one side).
        grids = [{r["lr"] for r in sub if r["method"] == m} for m in methods]
        if not all(grids) or len(methods) < 2:
            continue
        lrs = sorted(set.intersection(*grids))
        entry: dict[str, Any] = {"norm": norm, "lrs": lrs, "methods": {}, "paper": PAPER_T5.get(norm)}
        for m in methods:
            per_lr = [(lr, int(sum(r["diverged"] for r in sub if r["method"] == m and r["lr"] == lr)),
                       sum(1 for r in sub if r["method"] == m and r["lr"] == lr)) for lr in lrs]
            prefix, anywhere = largest_stable(per_lr)
            base = entry["methods"].get("none", {}).get("largest_stable")
            entry["methods"][m] = {"per_lr": per_lr, "largest_stable": prefix, "largest_stable_anywhere": anywhere,
                                   "increase": (prefix / base - 1.0) if m != "none" and prefix and base else None}
        entry["increase"] = entry["methods"].get("kss0.15", {}).get("increase")
        out.append(entry)
    return out


def targets(control: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's two targets, for every KSS row (the paper's headline is α = 0.15 at every = 10)."""
    out = []
    for e in control:
        m = parse_method(e["method"])
        if m.kind != "kss" or m.task_rule:  # the task-rule rows are diagnostics, not the benchmark's answer
            continue
        paper_schedule = m.every == 10 and m.layer_fraction == 0.5
        red = e.get("reduction")
        out.append({"method": e["method"], "paper_schedule": paper_schedule,
                    "target": f"divergence ≥ {REDUCTION_TARGET:g}× lower than no control", "value": red,
                    "met": red is not None and red >= REDUCTION_TARGET})
        if paper_schedule:
            for key, label in (("overhead_cycle", "amortised (10-step cycle)"),
                               ("overhead_median_step", "median single step")):
                v = e.get(key)
                out.append({"method": e["method"], "paper_schedule": True,
                            "target": f"overhead ≤ {100 * OVERHEAD_TARGET:g} % at every = 10, {label}", "value": v,
                            "met": v is not None and v <= OVERHEAD_TARGET})
    return out


def analyse(rows: Sequence[dict[str, Any]], lrs: Sequence[float] = REGIME_LRS) -> dict[str, Any]:
    """Both tables, the timing and the targets, for the rows of one configuration (see :func:`select`)."""
    timings = [r for r in rows if r.get("kind") == "timing"]
    timing = timings[-1] if timings else None
    control = control_table(rows, timing, lrs)
    return {"n_runs": len(_runs(rows)), "control": control, "maxlr": maxlr_table(rows), "timing": timing,
            "targets": targets(control)}


# -- markdown ----------------------------------------------------------------------------------------------------
def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}"


def _pm(t: tuple[float | None, float | None, int], scale: float = 1.0, digits: int = 2) -> str:
    mean, spread, n = t
    if mean is None:
        return "n/a"
    return f"{scale * mean:.{digits}f} ± {scale * spread:.{digits}f}"


def _overhead(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:+.1f} %"


def markdown(result: dict[str, Any]) -> str:
    lines = []
    control = result["control"]
    if control:
        lrs = [float(k) for k in control[0]["per_lr"]]
        lines += [f"### KSS vs no control and gradient clipping (no normalisation, lr {min(lrs):g} – {max(lrs):g})", "",
                  "| method | diverged | div % [95 % CI] | reduction vs none (Fisher p) | acc % (stable runs) "
                  "| M≈1 end, all runs | M≈1 end, stable runs | M≈1 init | median divergence step "
                  "| overhead, amortised | overhead, median step | paper: div % / acc % / M≈1 / overhead |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for e in control:
            ci = e["div_ci"]
            red = e.get("reduction")
            red_s = "—" if e["method"] == "none" else (
                f"{'∞' if red == math.inf else 'n/a' if red is None else f'{red:.2f}×'} (p = {e['fisher_p']:.3g})")
            acc = e["accuracy"]
            acc_s = "n/a (none stable)" if acc[0] is None else f"{_pm(acc, 100, 1)} (n = {acc[2]})"
            paper = " / ".join(e["paper"]) if e["paper"] else "—"
            ds = e["median_diverged_step"]
            lines.append(
                f"| {e['method']} | {e['n_diverged']}/{e['n']} | {_pct(e['div_rate'])} [{_pct(ci[0], 0)}, "
                f"{_pct(ci[1], 0)}] | {red_s} | {acc_s} | {_pm(e['m_end_all'])} | {_pm(e['m_end_stable'])} "
                f"| {_pm(e['m_init'])} | {'—' if ds is None else f'{ds:.0f}'} | {_overhead(e['overhead_cycle'])} "
                f"| {_overhead(e['overhead_median_step'])} | {paper} |")
        lines += ["", "Divergences per learning rate (diverged / runs):", "",
                  "| method | " + " | ".join(control[0]["per_lr"]) + " |",
                  "|---|" + "---|" * len(control[0]["per_lr"])]
        for e in control:
            lines.append(f"| {e['method']} | " + " | ".join(f"{k}/{n}" for k, n in e["per_lr"].values()) + " |")
        diag = [e for e in control if e["diverged_on_shaped_step"]]
        if diag:
            lines += ["", "KSS runs that diverged on a shaped step, and how many of those the task gradient alone "
                      "would not have flagged: " + "; ".join(
                          f"{e['method']} {e['task_gradient_alone_not_divergent']}/{e['diverged_on_shaped_step']}"
                          for e in diag) + "."]
    timing = result["timing"]
    if timing:
        lines += ["", f"Overhead timing: one process, {timing['torch_threads']} torch thread(s), {timing['norm']} "
                  f"{timing['width']}×{timing['depth']} ({timing['init']} init), lr {timing['lr']:g}, "
                  f"{timing['rounds']} interleaved rounds of {timing['cycle']} steps per method after one warm-up "
                  f"round, {timing['seconds']:.0f} s:", "",
                  "| method | median step (ms) | mean step (ms) | median cycle / 10 (ms) | overhead, amortised "
                  "| overhead, median step | overhead, mean step |", "|---|---|---|---|---|---|---|"]
        for name, t in timing["methods"].items():
            lines.append(f"| {name} | {t['median_step_ms']:.2f} | {t['mean_step_ms']:.2f} | "
                         f"{t['median_cycle_step_ms']:.2f} | {_overhead(t['overhead_cycle'])} | "
                         f"{_overhead(t['overhead_median_step'])} | {_overhead(t['overhead_mean_step'])} |")
    maxlr = result["maxlr"]
    if maxlr:
        lines += ["", "### Largest stable learning rate (< 20 % divergence), without and with KSS (every 10, half "
                  "the layers)", "",
                  "| norm | method | diverged per lr (grid below) | largest stable | vs no KSS "
                  "| paper: without / with / increase |", "|---|---|---|---|---|---|"]
        for e in maxlr:
            for name, m in e["methods"].items():
                s = "none stable" if m["largest_stable"] is None else f"{m['largest_stable']:g}"
                if m["largest_stable_anywhere"] not in (None, m["largest_stable"]):
                    s += f" (anywhere: {m['largest_stable_anywhere']:g})"
                inc = m["increase"]
                inc_s = "—" if name == "none" else "n/a" if inc is None else f"{100 * inc:+.0f} %"
                paper = " / ".join(e["paper"]) if e["paper"] and name == "none" else ""
                lines.append(f"| {NORM_LABEL[e['norm']]} | {name} | {' '.join(f'{k}/{n}' for _, k, n in m['per_lr'])} "
                             f"| {s} | {inc_s} | {paper} |")
        lines += ["", "Grids: " + "; ".join(f"{NORM_LABEL[e['norm']]} {', '.join(f'{x:g}' for x in e['lrs'])}"
                                            for e in maxlr) + "."]
    if result["targets"]:
        lines += ["", "### Targets (issue 6)", "", "| method | target | value | met? |", "|---|---|---|---|"]
        for t in result["targets"]:
            v = t["value"]
            if v is None:
                vs = "n/a"
            elif "overhead" in t["target"]:
                vs = f"{100 * v:+.1f} %"
            else:
                vs = "∞" if v == math.inf else f"{v:.2f}×"
            lines.append(f"| {t['method']} | {t['target']} | {vs} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.kss.analyze", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="benchmarks/kss/results/runs.jsonl")
    ap.add_argument("--markdown", default=None, help="also write the tables here")
    ap.add_argument("--json", default=None, help="write the full analysis here")
    ap.add_argument("--init", default=INIT, help="configuration to tabulate (default %(default)s)")
    ap.add_argument("--arch", default=f"{ARCH[0]}x{ARCH[1]}", help="WIDTHxDEPTH (default %(default)s)")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    ap.add_argument("--lrs", default=None, help="learning rates of the control table (default: the regime's 8)")
    args = ap.parse_args(argv)
    width, _, depth = args.arch.lower().partition("x")
    rows = select(read_rows(args.runs), args.init, (int(width), int(depth)), args.steps, args.batch_size)
    if not _runs(rows):
        print(f"no runs in {args.runs}", file=sys.stderr)
        return 2
    result = analyse(rows, [float(v) for v in args.lrs.split(",")] if args.lrs else REGIME_LRS)
    text = markdown(result)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(json_safe(result), indent=1, allow_nan=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
