"""Score every divergence predictor of a sweep by AUROC with a bootstrap interval, overall and within each
normalisation, separately under each initialisation (and pooled), and check the issue's targets.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.divergence.analyze --runs benchmarks/divergence/results/runs.jsonl \\
        --markdown benchmarks/divergence/results/tables.md --json benchmarks/divergence/results/analysis.json

**AUROC.** The point estimate is ``sklearn.metrics.roc_auc_score`` of the oriented score (sign × value, so that
higher means riskier for every predictor; an AUROC below 0.5 means the declared direction is wrong and the
opposite one scores 1 − AUROC). The 95 % interval is the seeded, stratified percentile bootstrap of
``koopscope.gate.auroc_interval`` (B = 1000; each replicate redraws the diverged and the stable runs separately,
so both classes are always present), and its point estimate is checked against sklearn's. Scores are converted
to average ranks first, so +inf (a gradient baseline read after the run diverged) ranks above every finite value
and ties stay ties. A subset with one class only has no AUROC: "n/a (one class)".

**Calibrated, learning-rate-aware predictors** (``koopscope.gate.cross_validated_proba``, logistic on
standardised covariates with a non-negative coefficient on log10 lr): out-of-fold probabilities with the folds
= whole configurations (init, normalisation, width, depth): every run is scored by a model fitted only on other
configurations, never on the run itself, its seeds, or its configuration at another learning rate. ``cal_rksp``
uses the RKSP features at init (M≈1, ρ, log10 κ(V)); ``cal_nodmd`` the baselines that need no DMD (log10 relative
update, norm growth, depth, width); ``cal_grad1`` log10 of the gradient norm at step 1 (one backward pass at init).
Under one initialisation the fit uses that initialisation's runs only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

import koopscope as ks

from .sweep import read_rows

__all__ = ["PREDICTORS", "Predictor", "analyse", "auroc_ci", "main", "markdown", "predictor_scores"]

N_BOOT = 1000
LEVEL = 0.95
KAPPA_LOG_CAP = 16.0  # log10 κ(V) of a numerically defective eigenbasis (κ = inf) reads as 16
PAPER_REGIME_MAX_LR = 0.1  # at and below this rate no normalised run of the sweep is expected to diverge
UPDATE_BINS = ((0.0, 0.05), (0.05, 0.2), (0.2, 0.5), (0.5, 1.0), (1.0, math.inf))  # per-layer relative update


@dataclass(frozen=True)
class Predictor:
    """One divergence predictor: where its value comes from and which direction is risky."""

    name: str
    label: str
    when: str
    sign: int = 1  # +1: higher = riskier; -1: lower = riskier
    family: str = "rksp"
    paper: str = ""  # RKSP Table 2: AUROC [95 % CI]


PREDICTORS: tuple[Predictor, ...] = (
    Predictor("m_near_unit", "M≈1", "init", paper="0.995 [0.986, 1.000]"),
    Predictor("m_log_kappa", "M≈1 · log10 κ(V)", "init", paper="0.873 [0.841, 0.905]"),
    Predictor("rho", "ρ", "init", paper="0.845 [0.808, 0.882]"),
    Predictor("kappa", "κ(V)", "init", paper="0.687 [0.638, 0.736]"),
    Predictor("grad_norm_1", "gradient norm, step 1", "step 1", family="gradient", paper="0.621 [0.568, 0.674]"),
    Predictor("grad_norm_100", "gradient norm, step 100", "step 100", family="gradient",
              paper="0.685 [0.635, 0.735]"),
    Predictor("grad_var_100", "gradient-norm variance, steps 1–100", "steps 1–100", family="gradient",
              paper="0.702 [0.654, 0.750]"),
    Predictor("spike_count", "loss-spike count, steps 1–500", "steps 1–500", family="gradient",
              paper="0.758 [0.712, 0.804]"),
    Predictor("lr", "learning rate alone", "config", family="baseline"),
    Predictor("depth", "depth alone", "config", family="baseline"),
    Predictor("width", "width alone", "config", family="baseline"),
    Predictor("rel_update", "relative update at init (smaller = riskier)", "init, no DMD", sign=-1,
              family="baseline"),
    Predictor("norm_growth", "residual-norm growth over depth at init", "init, no DMD", family="baseline"),
    Predictor("cal_rksp", "calibrated lr-aware: M≈1, ρ, log κ(V), lr (CV by configuration)", "init + lr",
              family="calibrated"),
    Predictor("cal_nodmd", "calibrated lr-aware, no DMD: rel. update, norm growth, depth, width, lr (CV)",
              "init + lr", family="calibrated"),
    Predictor("cal_grad1", "calibrated lr-aware: gradient norm at step 1, lr (CV)", "step 1 + lr",
              family="calibrated"),
)
CALIBRATED = {
    "cal_rksp": ("m_near_unit", "rho", "log_kappa"),
    "cal_nodmd": ("log_rel_update", "norm_growth", "depth", "log_width"),
    "cal_grad1": ("log_grad_norm_1",),
}
GRADIENT = tuple(p.name for p in PREDICTORS if p.family == "gradient")


def _number(value: Any) -> float:
    """A JSON value as float ("inf", "nan" strings included; None is nan)."""
    if value is None:
        return float("nan")
    return float(value)


def feature(row: dict[str, Any], name: str) -> float:
    """The value of ``name`` for one run: a config field, a recorded feature, or a derived covariate."""
    if name in ("lr", "depth", "width"):
        return float(row[name])
    f = row["features"]
    derived: dict[str, Callable[[], float]] = {
        "log_kappa": lambda: min(math.log10(_number(f["kappa"])), KAPPA_LOG_CAP),
        "log_rel_update": lambda: math.log10(_number(f["rel_update"])),
        "log_grad_norm_1": lambda: math.log10(_number(f["grad_norm_1"])),
        "log_width": lambda: math.log2(float(row["width"])),
    }
    if name in derived:
        return derived[name]()
    return _number(f[name])


def predictor_scores(rows: Sequence[dict[str, Any]], name: str) -> np.ndarray:
    """Raw values (n,) of one recorded predictor over ``rows``."""
    return np.array([feature(r, name) for r in rows], dtype=np.float64)


def auroc_ci(y: np.ndarray, score: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """AUROC of ``score`` (higher = riskier) with its stratified bootstrap interval; NaN scores are left out."""
    keep = ~np.isnan(score)
    y, score = y[keep].astype(bool), score[keep]
    out: dict[str, Any] = {"n": int(y.size), "n_diverged": int(y.sum())}
    if y.size == 0 or y.all() or not y.any():
        return {**out, "auroc": None, "low": None, "high": None}
    ranks = rankdata(score)  # average ranks: +inf ranks highest, ties stay ties
    estimate = float(roc_auc_score(y, ranks))
    ci = ks.gate.auroc_interval(y, ranks, n_boot=n_boot, level=LEVEL, seed=seed)
    if abs(ci.estimate - estimate) > 1e-12:
        raise AssertionError(f"koopscope AUROC {ci.estimate} != sklearn {estimate}")
    return {**out, "auroc": estimate, "low": float(ci.low), "high": float(ci.high)}


def _config(row: dict[str, Any]) -> str:
    return f"{row['init']}|{row['norm']}|w{row['width']}|L{row['depth']}"


def calibrated_scores(rows: Sequence[dict[str, Any]], covariates: Sequence[str]) -> tuple[np.ndarray, str]:
    """Out-of-fold P(diverge) (n,), folds = configurations; NaN everywhere (with the reason) when it cannot fit."""
    slim = [{"features": {c: feature(r, c) for c in covariates}, "lr": r["lr"], "diverged": bool(r["diverged"]),
             "group": _config(r)} for r in rows]
    n_groups = len({s["group"] for s in slim})
    nan = np.full(len(rows), np.nan)
    if n_groups < 2:
        return nan, "fewer than 2 configurations"
    try:
        return ks.gate.cross_validated_proba(slim, "group", method="logistic", features=tuple(covariates),
                                             use_lr=True), ""
    except (ks.KoopscopeError, ValueError) as err:
        return nan, str(err)


def _subsets(rows: Sequence[dict[str, Any]], norms: Sequence[str]) -> dict[str, list[int]]:
    subsets = {"overall": list(range(len(rows)))}
    for norm in norms:
        subsets[norm] = [i for i, r in enumerate(rows) if r["norm"] == norm]
    return subsets


def _healthy(rows: Sequence[dict[str, Any]], name: str) -> np.ndarray:
    return np.array([bool(r.get("healthy", {}).get(name, True)) for r in rows])


def analyse_group(rows: Sequence[dict[str, Any]], norms: Sequence[str], n_boot: int, seed: int) -> dict[str, Any]:
    """Every predictor's AUROC on one initialisation's runs (or the pooled runs), overall and per norm."""
    y = np.array([bool(r["diverged"]) for r in rows])
    scores = {p.name: p.sign * predictor_scores(rows, p.name) for p in PREDICTORS if p.family != "calibrated"}
    notes = {}
    for name, covariates in CALIBRATED.items():
        scores[name], notes[name] = calibrated_scores(rows, covariates)
    out: dict[str, Any] = {"n": len(rows), "n_diverged": int(y.sum()), "calibration_notes": notes, "subsets": {}}
    for subset, idx in _subsets(rows, norms).items():
        idx_arr = np.array(idx, dtype=int)
        table: dict[str, Any] = {}
        for p in PREDICTORS:
            table[p.name] = auroc_ci(y[idx_arr], scores[p.name][idx_arr], n_boot=n_boot, seed=seed)
            if p.family == "gradient":
                ok = idx_arr[_healthy([rows[i] for i in idx], p.name)] if idx else idx_arr
                table[p.name]["survivors"] = auroc_ci(y[ok], scores[p.name][ok], n_boot=n_boot, seed=seed)
        out["subsets"][subset] = {"n": len(idx), "n_diverged": int(y[idx_arr].sum()) if idx else 0, "auroc": table}
    out["ece"] = _ece(y, scores)
    out["by_lr"] = _by_lr(rows, y, scores, n_boot, seed)
    return out


BY_LR = ("m_near_unit", "m_log_kappa", "rho", "kappa", "rel_update", "norm_growth", "depth", "width", "grad_norm_1")


def _by_lr(rows: Sequence[dict[str, Any]], y: np.ndarray, scores: dict[str, np.ndarray], n_boot: int,
           seed: int) -> dict[str, Any]:
    """AUROC at each fixed learning rate, all norms together: what ranks the runs once lr is held fixed."""
    lrs = np.array([r["lr"] for r in rows])
    out = {}
    for lr in sorted(set(lrs.tolist())):
        idx = np.flatnonzero(lrs == lr)
        out[f"{lr:g}"] = {"n": int(idx.size), "n_diverged": int(y[idx].sum()),
                          "auroc": {name: auroc_ci(y[idx], scores[name][idx], n_boot=n_boot, seed=seed)
                                    for name in BY_LR}}
    return out


def _ece(y: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, float | None]:
    """ECE (10 equal-width bins) of M≈1 read as a probability (as the paper does) and of the calibrated ones."""
    out: dict[str, float | None] = {}
    for name in ("m_near_unit", *CALIBRATED):
        p = scores[name]
        ok = ~np.isnan(p)
        out[name] = float(ks.gate.expected_calibration_error(y[ok], np.clip(p[ok], 0, 1))) if ok.any() else None
    return out


def norm_table(rows: Sequence[dict[str, Any]], norms: Sequence[str]) -> list[dict[str, Any]]:
    """Per normalisation (RKSP Table 1 layout): runs, divergence rate, mean ± s.e. of the init features."""
    out = []
    for norm in norms:
        sub = [r for r in rows if r["norm"] == norm]
        if not sub:
            continue
        entry: dict[str, Any] = {"norm": norm, "n": len(sub), "div_pct": 100.0 * np.mean([r["diverged"] for r in sub])}
        for name in ("m_near_unit", "expansive_mass", "rho", "kappa", "rel_update", "norm_growth"):
            v = predictor_scores(sub, name)
            entry[name] = (float(np.mean(v)), float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0)
        acc = [r["accuracy"] for r in sub if r["accuracy"] is not None]
        entry["accuracy_pct"] = 100.0 * float(np.mean(acc)) if acc else None
        lrs = sorted({r["lr"] for r in sub})
        entry["div_by_lr"] = {lr: int(sum(r["diverged"] for r in sub if r["lr"] == lr)) for lr in lrs}
        entry["n_by_lr"] = {lr: sum(1 for r in sub if r["lr"] == lr) for lr in lrs}
        out.append(entry)
    return out


def _models(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per initialised model (init, norm, width, depth, seed): the init features do not depend on lr."""
    seen: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault((r["init"], r["norm"], r["width"], r["depth"], r["seed"]), r)
    return list(seen.values())


def hypothesis(rows: Sequence[dict[str, Any]], n_boot: int, seed: int) -> dict[str, Any]:
    """Is M≈1 a measure of how small the update at init is? Rank correlation over models, M≈1 where the update is
    not small, and M≈1 against the relative update in the paper's regime (lr ≤ 0.1)."""
    from scipy.stats import spearmanr

    models = _models(rows)
    m = predictor_scores(models, "m_near_unit")
    u = predictor_scores(models, "rel_update")
    rho, p = spearmanr(m, u) if len(models) > 2 and np.ptp(m) > 0 and np.ptp(u) > 0 else (float("nan"),) * 2
    lm = np.array([_number(v) for r in models for v in r["layers"]["near_unit_mass"]])
    lu = np.array([_number(v) for r in models for v in r["layers"]["rel_update"]])
    lrho, lp = spearmanr(lm, lu) if lm.size > 2 and np.ptp(lm) > 0 and np.ptp(lu) > 0 else (float("nan"),) * 2
    bins = {}
    for lo, hi in UPDATE_BINS:
        sel = (lu >= lo) & (lu < hi)
        if sel.any():
            bins[f"[{lo:g}, {hi:g})"] = {"n_layers": int(sel.sum()), "mean": float(lm[sel].mean()),
                                          "min": float(lm[sel].min()), "max": float(lm[sel].max())}
    small = [r for r in rows if "small_update" in r["features"].get("profile_flags", [])]
    large = [r for r in rows if "small_update" not in r["features"].get("profile_flags", [])]
    y_large = np.array([bool(r["diverged"]) for r in large])
    regime = [r for r in rows if r["lr"] <= PAPER_REGIME_MAX_LR]
    y_regime = np.array([bool(r["diverged"]) for r in regime])
    return {
        "n_models": len(models),
        "spearman_m_vs_rel_update": {"rho": float(rho), "p": float(p)},
        "layers": {"n": int(lm.size), "spearman": {"rho": float(lrho), "p": float(lp)}, "m_by_update": bins},
        "n_runs_small_update_flag": len(small),
        "m_near_unit_without_small_update": auroc_ci(y_large, predictor_scores(large, "m_near_unit"), n_boot=n_boot,
                                                     seed=seed) if large else None,
        "paper_regime": {name: auroc_ci(y_regime, sign * predictor_scores(regime, name), n_boot=n_boot, seed=seed)
                         for name, sign in (("m_near_unit", 1), ("rel_update", -1), ("rho", 1), ("lr", 1))}
        if regime else {},
        "paper_regime_div_by_norm": {n: [int(sum(r["diverged"] for r in regime if r["norm"] == n)),
                                         sum(1 for r in regime if r["norm"] == n)]
                                     for n in sorted({r["norm"] for r in regime})},
    }


def ceiling(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> float | None:
    """The largest AUROC any score that depends on ``rows`` only through ``keys`` can reach on these runs.

    A score constant on each group of runs sharing ``keys`` ties every diverged run of a group with every stable run
    of it (each such pair counts ½), whatever its value. Among such scores, ranking the groups by their own
    divergence fraction d_g / n_g is optimal (it orders the groups by the likelihood ratio d_g / s_g, the
    Neyman–Pearson order, which maximises the area under the ROC curve), so the AUROC of that in-sample oracle is
    the ceiling. With ``keys`` = the initialised model (init, norm, width, depth, seed) it bounds every feature read
    at initialisation, M≈1 included, since none of them sees the learning rate.
    """
    y = np.array([bool(r["diverged"]) for r in rows])
    if y.all() or not y.any():
        return None
    groups: dict[tuple, list[bool]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(bool(r["diverged"]))
    oracle = np.array([np.mean(groups[tuple(r[k] for k in keys)]) for r in rows])
    return float(roc_auc_score(y, oracle))


MODEL_KEYS = ("init", "norm", "width", "depth", "seed")  # what an init-time feature can depend on
LR_ARCH_KEYS = ("init", "norm", "width", "depth", "lr")  # learning rate and architecture, not the seed


def ceilings(rows: Sequence[dict[str, Any]], norms: Sequence[str]) -> dict[str, Any]:
    """Ceilings (:func:`ceiling`) overall for init-time features, and within each normalisation for scores of the
    learning rate and the architecture only, next to the learning rate alone."""
    within = {}
    for norm in norms:
        sub = [r for r in rows if r["norm"] == norm]
        y = np.array([bool(r["diverged"]) for r in sub])
        lr = float(roc_auc_score(y, [r["lr"] for r in sub])) if 0 < y.sum() < len(y) else None
        within[norm] = {"lr_alone": lr, "lr_and_architecture": ceiling(sub, LR_ARCH_KEYS)}
    return {"init_features": ceiling(rows, MODEL_KEYS), "within_norm": within}


def analyse(rows: Sequence[dict[str, Any]], n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """The whole analysis: per initialisation and pooled, plus the per-norm summary, the hypothesis, the targets."""
    from .models import NORMS

    norms = [n for n in NORMS if any(r["norm"] == n for r in rows)]
    inits = sorted({r["init"] for r in rows})
    groups = {init: [r for r in rows if r["init"] == init] for init in inits}
    if len(inits) > 1:
        groups["pooled"] = list(rows)
    result = {"n_runs": len(rows), "norms": norms, "inits": inits, "groups": {}}
    for name, sub in groups.items():
        result["groups"][name] = analyse_group(sub, norms, n_boot, seed)
        result["groups"][name]["norm_table"] = norm_table(sub, norms)
        result["groups"][name]["hypothesis"] = hypothesis(sub, n_boot, seed)
        result["groups"][name]["ceilings"] = ceilings(sub, norms)
    result["targets"] = targets(result)
    return result


def _auc(group: dict[str, Any], subset: str, name: str, survivors: bool = False) -> float | None:
    entry = group["subsets"].get(subset, {}).get("auroc", {}).get(name)
    if entry is None:
        return None
    if survivors:
        entry = entry.get("survivors", {})
    return entry.get("auroc")


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, checked under each initialisation."""
    checks = []
    for init in result["inits"]:
        g = result["groups"][init]
        m = _auc(g, "overall", "m_near_unit")
        cap = g["ceilings"]
        checks.append({"init": init, "target": "overall AUROC of M≈1 ≥ 0.95",
                       "value": {"m_near_unit": m, "ceiling_any_init_feature": cap["init_features"]},
                       "met": m is not None and m >= 0.95})
        for survivors in (False, True):
            grads = {n: _auc(g, "overall", n, survivors) for n in GRADIENT}
            best = max((v for v in grads.values() if v is not None), default=None)
            what = "survivors" if survivors else "as logged"
            checks.append({"init": init, "target": f"M≈1 above every gradient baseline overall ({what})",
                           "value": {"m_near_unit": m, "best_gradient": best},
                           "met": m is not None and best is not None and m > best})
        for norm in result["norms"]:
            cal, lr = _auc(g, norm, "cal_rksp"), _auc(g, norm, "lr")
            checks.append({"init": init, "target": f"{norm}: calibrated lr-aware AUROC ≥ 0.85 and above lr alone",
                           "value": {"cal_rksp": cal, "lr": lr,
                                     "ceiling_lr_and_architecture": cap["within_norm"][norm]["lr_and_architecture"]},
                           "met": cal is not None and lr is not None and cal >= 0.85 and cal > lr})
    return checks


def _fmt(entry: dict[str, Any] | None, ci: bool = True) -> str:
    if entry is None or entry.get("auroc") is None:
        if entry is not None and entry.get("n", 0) > 0:
            return "n/a (one class)"
        return "—"
    text = f"{entry['auroc']:.3f}"
    return f"{text} [{entry['low']:.2f}, {entry['high']:.2f}]" if ci else text


def markdown(result: dict[str, Any]) -> str:
    """The tables of RESULTS.md: per-norm summary, AUROC overall with the paper's numbers, per norm, targets."""
    lines: list[str] = []
    for name, g in result["groups"].items():
        title = "both initialisations pooled" if name == "pooled" else f"initialisation `{name}`"
        lines += [f"### {title}: {g['n']} runs, {g['n_diverged']} diverged", ""]
        lines += _norm_summary(g["norm_table"]) + [""]
        lines += _overall(g) + [""]
        lines += _per_norm(g, result["norms"]) + [""]
        lines += [f"ECE (10 equal-width bins): M≈1 read as a probability {_num(g['ece']['m_near_unit'])} (paper: "
                  f"0.283); calibrated RKSP {_num(g['ece']['cal_rksp'])}; calibrated no-DMD "
                  f"{_num(g['ece']['cal_nodmd'])}; calibrated step-1 gradient norm {_num(g['ece']['cal_grad1'])}.", ""]
        lines += _by_lr_table(g["by_lr"]) + [""]
        lines += _hypothesis(g["hypothesis"]) + [""]
        lines += _ceilings(g["ceilings"]) + [""]
        notes = {k: v for k, v in g["calibration_notes"].items() if v}
        if notes:
            lines += [f"Calibration notes: {notes}", ""]
    lines += ["### Targets", "", "| init | target | value | met? |", "|---|---|---|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['init']} | {t['target']} | {_value(t['value'])} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def _num(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_num(x)}" for k, x in v.items())
    return _num(v)


def _by_lr_table(by_lr: dict[str, Any]) -> list[str]:
    labels = {p.name: p.label for p in PREDICTORS}
    head = list(by_lr)
    lines = ["AUROC at a fixed learning rate (all normalisations together):", "",
             "| predictor | " + " | ".join(f"lr {lr} ({by_lr[lr]['n_diverged']}/{by_lr[lr]['n']})" for lr in head)
             + " |", "|---|" + "---|" * len(head)]
    for name in BY_LR:
        lines.append(f"| {labels[name]} | " + " | ".join(_fmt(by_lr[lr]["auroc"][name], ci=False) for lr in head)
                     + " |")
    return lines


def _hypothesis(h: dict[str, Any]) -> list[str]:
    sp = h["spearman_m_vs_rel_update"]
    rest = h["m_near_unit_without_small_update"] or {}
    lay = h["layers"]
    lines = [f"Update size at init: over the {lay['n']} layers of the {h['n_models']} initialised models, Spearman "
             f"ρ(M≈1_ℓ, relative update_ℓ) = {lay['spearman']['rho']:.3f} (p = {lay['spearman']['p']:.2g}); over the "
             f"models (layer means) {sp['rho']:.3f} (p = {sp['p']:.2g}). {h['n_runs_small_update_flag']} runs have a "
             f"layer flagged `small_update` (relative update < 5 %); M≈1 on the other runs: {_fmt(rest or None)} "
             f"(n = {rest.get('n')}).", "",
             "| layer's relative update ‖h_{ℓ+1} − h_ℓ‖/‖h_ℓ‖ | layers | M≈1_ℓ mean | min | max |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {b} | {e['n_layers']} | {e['mean']:.3f} | {e['min']:.3f} | {e['max']:.3f} |"
              for b, e in lay["m_by_update"].items()]
    lines.append("")
    regime = h["paper_regime"]
    if regime:
        div = ", ".join(f"{n} {d}/{k}" for n, (d, k) in h["paper_regime_div_by_norm"].items())
        lines += [f"Paper's regime (lr ≤ {PAPER_REGIME_MAX_LR:g}; diverged/runs: {div}): AUROC of M≈1 "
                  f"{_fmt(regime['m_near_unit'])}, relative update (smaller = riskier) {_fmt(regime['rel_update'])}, "
                  f"ρ {_fmt(regime['rho'])}, learning rate alone {_fmt(regime['lr'])}."]
    return lines


def _ceilings(c: dict[str, Any]) -> list[str]:
    within = c["within_norm"]
    lines = [f"Ceilings (in-sample oracles, `ceiling`): no feature read at initialisation can score above "
             f"**{_num(c['init_features'])}** on these runs (it cannot tell a model's learning rates apart). Within "
             "each normalisation, the best any score of the learning rate and the architecture alone can reach, "
             "next to the learning rate alone:", "",
             "| | " + " | ".join(within) + " |", "|---|" + "---|" * len(within),
             "| learning rate alone | " + " | ".join(_num(e["lr_alone"]) for e in within.values()) + " |",
             "| ceiling: learning rate and architecture | "
             + " | ".join(_num(e["lr_and_architecture"]) for e in within.values()) + " |"]
    return lines


def _norm_summary(table: list[dict[str, Any]]) -> list[str]:
    lines = ["| norm | n | div % | diverged / runs by lr | M≈1 | M>1 | ρ | κ(V) | rel. update | norm growth | acc % |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for e in table:
        by_lr = " ".join(f"{lr:g}:{e['div_by_lr'][lr]}/{e['n_by_lr'][lr]}" for lr in e["div_by_lr"])
        cells = [f"{e[k][0]:.3g}±{e[k][1]:.2g}" for k in ("m_near_unit", "expansive_mass", "rho", "kappa",
                                                          "rel_update", "norm_growth")]
        acc = "—" if e["accuracy_pct"] is None else f"{e['accuracy_pct']:.1f}"
        lines.append(f"| {e['norm']} | {e['n']} | {e['div_pct']:.1f} | {by_lr} | {' | '.join(cells)} | {acc} |")
    return lines


def _overall(g: dict[str, Any]) -> list[str]:
    table = g["subsets"]["overall"]["auroc"]
    lines = ["| predictor | when | AUROC [95 % CI] | survivors only (n) | paper (Table 2) |",
             "|---|---|---|---|---|"]
    for p in PREDICTORS:
        e = table[p.name]
        surv = e.get("survivors")
        s = f"{_fmt(surv)} ({surv['n']})" if surv else ""
        lines.append(f"| {p.label} | {p.when} | {_fmt(e)} | {s} | {p.paper} |")
    return lines


def _per_norm(g: dict[str, Any], norms: Sequence[str]) -> list[str]:
    head = [n for n in norms if n in g["subsets"]]
    lines = ["| predictor | " + " | ".join(f"{n} ({g['subsets'][n]['n_diverged']}/{g['subsets'][n]['n']})"
                                          for n in head) + " |", "|---|" + "---|" * len(head)]
    for p in PREDICTORS:
        lines.append(f"| {p.label} | " + " | ".join(_fmt(g["subsets"][n]["auroc"][p.name]) for n in head) + " |")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.divergence.analyze", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="benchmarks/divergence/results/runs.jsonl", help="JSONL written by the sweep")
    ap.add_argument("--n-boot", type=int, default=N_BOOT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the full analysis here")
    ap.add_argument("--markdown", default=None, help="write the tables here (they also go to stdout)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rows = read_rows(args.runs)
    if not rows:
        print(f"no runs in {args.runs}", file=sys.stderr)
        return 2
    result = analyse(rows, n_boot=args.n_boot, seed=args.seed)
    text = markdown(result)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
