"""Smoke test of the KSS benchmark (benchmarks/kss): runs -> JSONL -> timing -> tables, end to end, in seconds, on a
width-32 two-block model at a sane and a planted absurd learning rate; and the loop against train.py's."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from benchmarks.divergence.models import ModelConfig, build_model  # noqa: E402
from benchmarks.divergence.sweep import read_rows  # noqa: E402
from benchmarks.divergence.task import RecallTask  # noqa: E402
from benchmarks.divergence.train import TrainConfig, train  # noqa: E402
from benchmarks.kss import analyze, run  # noqa: E402

METHODS = "none,clip1.0,kss0.15,kss0.15-every1-frac1"
COMMON = ["--arch", "32x2", "--lrs", "1e-3,30", "--seeds", "0", "--steps", "12", "--batch-size", "8",
          "--workers", "1"]
TABLE = ["--arch", "32x2", "--steps", "12", "--batch-size", "8", "--lrs", "1e-3,30"]


@pytest.fixture(scope="module")
def runs_file(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("kss") / "runs.jsonl"
    assert run.main(["--out", str(path), "--plan", "regime", "--methods", METHODS, "--timing-rounds", "1",
                     *COMMON]) == 0
    assert run.main(["--out", str(path), "--plan", "maxlr", "--norms", "pre_ln", *COMMON]) == 0
    return path


def _runs(path) -> list[dict]:
    return [r for r in read_rows(path) if r.get("kind") == "run"]


def test_one_complete_row_per_run_and_a_timing_row(runs_file) -> None:
    rows = _runs(runs_file)
    assert len(rows) == 4 * 2 + 3 * 2  # regime: 4 methods x 2 lrs; maxlr on Pre-LN: 3 methods x 2 lrs
    for row in rows:
        assert row["steps_run"] == len(row["curves"]["loss"]) == len(row["curves"]["step_ms"])
        assert row["m_near_unit_init"] is None or 0.0 <= row["m_near_unit_init"] <= 1.0
        if not row["diverged"]:
            assert 0.0 <= row["m_near_unit_end"] <= 1.0 and 0.0 <= row["accuracy"] <= 1.0
    shaped = {r["method"]: r["kss"]["n_shaped"] for r in rows if r["lr"] == 1e-3 and r["norm"] == "none"}
    assert shaped == {"none": 0, "clip1.0": 0, "kss0.15": 2, "kss0.15-every1-frac1": 12}  # steps 0, 10 / every step
    timing = [r for r in read_rows(runs_file) if r.get("kind") == "timing"]
    assert len(timing) == 1 and set(timing[0]["methods"]) == set(METHODS.split(","))
    assert timing[0]["methods"]["none"]["overhead_cycle"] == 0.0
    assert all(t["diverged_steps"] == 0 and math.isfinite(t["overhead_cycle"]) for t in timing[0]["methods"].values())


def test_planted_huge_learning_rate_diverges_and_sane_one_does_not(runs_file) -> None:
    for row in _runs(runs_file):
        if row["lr"] == 30:
            assert row["diverged"] and row["reason"] in ("loss", "grad_norm", "nonfinite")
            assert row["steps_run"] == row["diverged_step"] < 12
        else:
            assert not row["diverged"] and row["steps_run"] == 12


def test_resume_skips_finished_runs(runs_file) -> None:
    before = runs_file.read_text()
    assert run.main(["--out", str(runs_file), "--plan", "regime", "--methods", METHODS, "--timing-rounds", "1",
                     *COMMON]) == 0
    assert runs_file.read_text() == before


def test_tables_end_to_end(runs_file, tmp_path) -> None:
    out = tmp_path / "tables.md"
    assert analyze.main(["--runs", str(runs_file), "--markdown", str(out), *TABLE]) == 0
    result = analyze.analyse(analyze.select(read_rows(runs_file), arch=(32, 2), steps=12, batch_size=8), [1e-3, 30])
    control = {e["method"]: e for e in result["control"]}
    assert set(control) == set(METHODS.split(","))
    assert all(e["n"] == 2 and e["n_diverged"] == 1 for e in control.values())  # lr 30 diverges, 1e-3 does not
    assert control["kss0.15"]["reduction"] == 1.0 and control["kss0.15"]["overhead_cycle"] is not None
    maxlr = {e["norm"]: e for e in result["maxlr"]}
    assert set(maxlr["pre_ln"]["methods"]) == {"none", "kss0.15", "kss0.15-taskrule"}
    assert maxlr["pre_ln"]["methods"]["none"]["largest_stable"] == 1e-3
    assert maxlr["pre_ln"]["increase"] == 0.0
    met = {(t["method"], t["target"]): t["met"] for t in result["targets"]}
    assert met[("kss0.15", "divergence ≥ 3× lower than no control")] is False
    assert "KSS vs no control" in out.read_text()


def test_loop_without_control_is_train_py_exactly() -> None:
    """The benchmark's own loop with no control (and with a clip that never acts) reproduces train.py's curves."""
    task, cfg = RecallTask(), TrainConfig(lr=3e-3, steps=15, batch_size=8)
    ref = train(build_model(ModelConfig("none", 32, 2), 7), task, cfg, data_seed=7, eval_seed=99)
    for method in ("none", "clip1e9"):
        got = run.train_controlled(build_model(ModelConfig("none", 32, 2), 7), task, cfg, run.parse_method(method),
                                   data_seed=7, eval_seed=99, shaping_seed=7)
        assert got["losses"] == ref.losses and got["grad_norms"] == ref.grad_norms
        assert got["accuracy"] == ref.accuracy and got["final_loss"] == ref.final_loss


def test_clipping_and_kss_change_the_trajectory() -> None:
    task, cfg = RecallTask(), TrainConfig(lr=3e-2, steps=6, batch_size=8)
    curves = {m: run.train_controlled(build_model(ModelConfig("none", 32, 2), 3), task, cfg, run.parse_method(m),
                                      data_seed=3, eval_seed=99, shaping_seed=3)["losses"]
              for m in ("none", "clip0.01", "kss0.15-every1-frac1")}
    for method in ("clip0.01", "kss0.15-every1-frac1"):  # same start, then a different trajectory
        assert curves[method][0] == curves["none"][0] and curves[method][1:] != curves["none"][1:]


def test_task_rule_reads_the_task_gradient_and_trains_the_same(runs_file) -> None:
    rows = {r["method"]: r for r in _runs(runs_file) if r["norm"] == "pre_ln" and r["lr"] == 1e-3}
    plain, task_rule, none = rows["kss0.15"], rows["kss0.15-taskrule"], rows["none"]
    assert task_rule["curves"]["loss"] == pytest.approx(plain["curves"]["loss"], rel=1e-4)  # same optimiser input
    # Step 0 is shaped: the task-rule run logs the task gradient (as without KSS), the other task + penalty.
    assert task_rule["curves"]["grad_norm"][0] == pytest.approx(none["curves"]["grad_norm"][0], rel=1e-3)
    assert plain["curves"]["grad_norm"][0] != pytest.approx(none["curves"]["grad_norm"][0], rel=1e-3)


def test_largest_stable_and_method_names() -> None:
    grid = [(1e-3, 0, 3), (2e-3, 0, 3), (3e-3, 1, 3), (5e-3, 0, 3), (1e-2, 3, 3)]
    assert analyze.largest_stable(grid) == (2e-3, 5e-3)  # stable prefix, and stable anywhere
    assert analyze.largest_stable([(1e-3, 1, 3)]) == (None, None)
    m = run.parse_method("kss0.2-every5-frac1")
    assert (m.kind, m.alpha, m.every, m.layer_fraction, m.task_rule) == ("kss", 0.2, 5, 1.0, False)
    assert run.parse_method("kss0.15-taskrule").task_rule
    assert run.parse_method("clip1.0").clip == 1.0 and run.parse_method("none").kind == "none"
    with pytest.raises(ValueError, match="unknown method"):
        run.parse_method("sam0.05")
    assert len(run.REGIME_LRS) == 8 and run.REGIME_LRS[0] == 5e-3 and run.REGIME_LRS[-1] == 1e-2


def test_warning_traces_and_scores(tmp_path) -> None:
    from benchmarks.kss import warning

    out = tmp_path / "warning.jsonl"
    assert warning.main(["--lrs", "1e-3,30", "--seeds", "0", "--steps", "6", "--window", "2", "--out", str(out)]) == 0
    rows = {r["lr"]: r for r in read_rows(out)}
    assert not rows[1e-3]["diverged"] and rows[1e-3]["steps_run"] == 6
    assert rows[30.0]["diverged"]  # the planted absurd rate
    for row in rows.values():
        assert set(row["readings"]) == set(warning.READINGS)
        assert all(len(v) == row["steps_run"] for v in row["readings"].values())
    rho = [float(v) for v in rows[1e-3]["readings"]["max_rho"]]
    assert all(math.isfinite(v) and v > 0 for v in rho)  # the monitor read every step


def test_warning_score_on_planted_readings() -> None:
    from benchmarks.kss import warning

    def row(diverged: bool, values: list[float]) -> dict:
        return {"diverged": diverged, "readings": {name: values for name in warning.READINGS}}

    # The diverging run's reading climbs in its last 2 steps before the diverging step (which is not scored).
    rows = [row(True, [1.0, 1.0, 5.0, 6.0, 99.0]), row(False, [1.0, 2.0, 1.0, 1.0, 1.0])]
    result = warning.score(rows, horizon=2, window=2)
    entry = result["max_rho"]
    assert entry["n_steps"] == 4 + 5 and entry["n_before"] == 2
    assert entry["auroc"] == 1.0  # 5 and 6 above every other step
    assert entry["early"] == {"n_runs": 2, "n_diverged": 1, "auroc": 0.0}  # max over steps 1-2: 1.0 against 2.0
    assert result["hinge"]["stable"]["share"] == pytest.approx(1 / 5)  # 2.0 > 1.05 once
    assert result["hinge"]["diverged"]["median"] == pytest.approx(3.0)  # of 1, 1, 5, 6
