"""Smoke test of the divergence benchmark (benchmarks/divergence): sweep -> JSONL -> analysis, end to end, in
seconds: two configurations (Pre-LN and no norm, width 32, 2 blocks) at a sane and a planted absurd learning rate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from benchmarks.divergence import analyze, sweep  # noqa: E402
from benchmarks.divergence.models import NORMS, ModelConfig, build_model  # noqa: E402
from benchmarks.divergence.predictors import spike_count  # noqa: E402
from benchmarks.divergence.task import RecallTask  # noqa: E402
from benchmarks.divergence.train import DivergenceRule, check_divergence  # noqa: E402

SMOKE = ["--norms", "pre_ln,none", "--inits", "gpt2", "--archs", "32x2", "--lrs", "1e-3,30",
         "--seeds", "0,1", "--steps", "12", "--batch-size", "8", "--grad-step", "5", "--var-window", "5",
         "--spike-window", "12", "--workers", "1"]


@pytest.fixture(scope="module")
def runs_file(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("divergence") / "runs.jsonl"
    assert sweep.main(["--out", str(path), *SMOKE]) == 0
    return path


def test_sweep_writes_one_complete_row_per_run(runs_file) -> None:
    rows = sweep.read_rows(runs_file)
    assert len(rows) == 8  # 2 norms x 2 lrs x 2 seeds
    for row in rows:
        assert {"key", "init", "norm", "width", "depth", "lr", "seed", "diverged", "diverged_step", "features",
                "healthy", "curves", "layers"} <= set(row)
        assert {"m_near_unit", "rho", "kappa", "m_log_kappa", "rel_update", "norm_growth", "grad_norm_1",
                "grad_norm_100", "grad_var_100", "spike_count"} <= set(row["features"])
        assert 0.0 <= row["features"]["m_near_unit"] <= 1.0
        assert len(row["layers"]["near_unit_mass"]) == 2  # one per transition
        assert len(row["curves"]["loss"]) == row["steps_run"]


def test_planted_huge_learning_rate_diverges_and_sane_one_does_not(runs_file) -> None:
    for row in sweep.read_rows(runs_file):
        if row["lr"] == 30:
            assert row["diverged"] and row["reason"] in ("loss", "grad_norm", "nonfinite")
            assert row["steps_run"] == row["diverged_step"] < 12  # stopped at the divergent step
        else:
            assert not row["diverged"] and row["steps_run"] == 12 and row["diverged_step"] is None


def test_resume_skips_finished_runs(runs_file) -> None:
    before = runs_file.read_text()
    assert sweep.main(["--out", str(runs_file), *SMOKE]) == 0
    assert runs_file.read_text() == before  # nothing run, nothing written


def test_analysis_end_to_end(runs_file, tmp_path) -> None:
    out = tmp_path / "analysis.json"
    assert analyze.main(["--runs", str(runs_file), "--n-boot", "50", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    overall = result["groups"]["gpt2"]["subsets"]["overall"]["auroc"]
    assert overall["lr"]["auroc"] == 1.0  # the planted learning rate separates the classes exactly
    assert overall["width"]["auroc"] == 0.5  # one width: all ties
    cal = overall["cal_rksp"]
    assert cal["n"] == 8 and 0.0 <= cal["auroc"] <= 1.0  # out-of-fold probabilities for every run
    assert {t["target"] for t in result["targets"]} >= {"overall AUROC of M≈1 ≥ 0.95"}


def test_auroc_ci_matches_sklearn_and_ranks_inf_highest() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(60) < 0.4
    s = rng.standard_normal(60) + y
    entry = analyze.auroc_ci(y, s, n_boot=200)
    assert entry["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert entry["low"] <= entry["auroc"] <= entry["high"]
    s_inf = s.copy()
    s_inf[y] = np.inf  # every diverged run reads +inf: perfect separation
    assert analyze.auroc_ci(y, s_inf, n_boot=20)["auroc"] == 1.0
    assert analyze.auroc_ci(np.ones(5, bool), np.arange(5.0))["auroc"] is None  # one class


def test_ceiling_is_the_best_group_constant_score() -> None:
    from sklearn.metrics import roc_auc_score

    # Model A diverges at 2 of its 3 learning rates, model B at 1: (A-pos, A-neg) and (B-pos, B-neg) pairs tie
    # whatever the score; ranking A above B wins the 4 (A-pos, B-neg) pairs and loses the (B-pos, A-neg) one.
    def row(model: int, lr: float, diverged: bool) -> dict:
        return {"init": "gpt2", "norm": "none", "width": 64, "depth": 2, "seed": model, "lr": lr, "diverged": diverged}

    rows = [row(0, 0.01, False), row(0, 0.1, True), row(0, 1.0, True),
            row(1, 0.01, False), row(1, 0.1, False), row(1, 1.0, True)]
    cap = analyze.ceiling(rows, analyze.MODEL_KEYS)
    assert cap == pytest.approx((2 * 0.5 + 4 + 0 + 2 * 0.5) / 9)
    y = [r["diverged"] for r in rows]
    for a, b in ((1.0, 0.0), (0.0, 1.0), (0.5, 0.5)):  # every order of the two models' scores
        assert roc_auc_score(y, [a if r["seed"] == 0 else b for r in rows]) <= cap + 1e-12
    assert analyze.ceiling(rows, analyze.LR_ARCH_KEYS + ("seed",)) == 1.0  # one run per group: no forced ties
    assert analyze.ceiling(rows[:1], analyze.MODEL_KEYS) is None  # one class
    within = analyze.ceilings(rows, ["none"])["within_norm"]["none"]
    assert within["lr_alone"] == pytest.approx(roc_auc_score(y, [r["lr"] for r in rows]))


def test_divergence_rule_and_spikes() -> None:
    rule = DivergenceRule()
    assert check_divergence(4.0, 3.0, rule) is None
    assert check_divergence(50.5, 3.0, rule) == "loss"
    assert check_divergence(4.0, 501.0, rule) == "grad_norm"
    assert check_divergence(math.nan, 3.0, rule) == "nonfinite"
    flat = [4.0] * 30
    assert spike_count(flat) == 0
    assert spike_count(flat[:10] + [9.0, 9.5] + flat[:10] + [math.inf]) == 2  # two onsets


@pytest.mark.parametrize("norm", NORMS)
def test_last_position_forward_equals_full_forward(norm: str) -> None:
    model = build_model(ModelConfig(norm, 32, 3, init="pytorch"), 0)
    tokens, _ = RecallTask().batch(torch.Generator().manual_seed(0), 4)
    with torch.no_grad():
        full, last = model(tokens)[:, -1], model(tokens, last_only=True)
    torch.testing.assert_close(last, full, rtol=1e-5, atol=1e-5)
