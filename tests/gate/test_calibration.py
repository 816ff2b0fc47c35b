"""Calibrator: isotonic and logistic fits against scikit-learn, recovery, largest_lr, persistence, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from koopscope.errors import DataError, NotFittedError, ParameterError
from koopscope.gate.calibration import (
    KIND,
    SCHEMA_VERSION,
    Calibrator,
    cross_validated_proba,
    fold_assignment,
    isotonic_knots,
    pool_adjacent_violators,
    read_runs,
    run_features,
)

sklearn_isotonic = pytest.importorskip("sklearn.isotonic")
sklearn_linear = pytest.importorskip("sklearn.linear_model")


def logistic_runs(n: int, *, seed: int = 0, intercept: float = 1.5, risk_coef: float = 6.0, lr_coef: float = 1.5,
                  groups: int = 0) -> list[dict[str, Any]]:
    """Runs drawn from P(diverge) = σ(intercept + risk_coef·risk + lr_coef·log10 lr) with risk ~ U(0, 1) and
    log10 lr ~ U(−4, −2); canonical rows (features, hyperparameters, diverged, id, and group when asked)."""
    rng = np.random.default_rng(seed)
    risk = rng.random(n)
    kappa = rng.lognormal(1.0, 0.5, n)
    lr = 10 ** rng.uniform(-4, -2, n)
    logit = intercept + risk_coef * risk + lr_coef * np.log10(lr)
    diverged = rng.random(n) < 1 / (1 + np.exp(-logit))
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"id": f"run-{i}", "features": {"risk": float(risk[i]), "kappa": float(kappa[i])},
                               "hyperparameters": {"lr": float(lr[i])}, "diverged": bool(diverged[i])}
        if groups:
            row["group"] = f"config-{i % groups}"
        rows.append(row)
    return rows


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _tied_data(seed: int, n: int = 150) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.round(rng.random(n), 2)  # ties
    y = rng.random(n) < x
    y[:2] = [True, False]
    return x, y


# -- isotonic ------------------------------------------------------------------------------------------------------


def test_pool_adjacent_violators_by_hand() -> None:
    assert pool_adjacent_violators([1.0, 3.0, 2.0, 4.0]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert pool_adjacent_violators([3.0, 2.0, 1.0]).tolist() == [2.0, 2.0, 2.0]
    assert pool_adjacent_violators([0.0, 1.0], [1.0, 3.0]).tolist() == [0.0, 1.0]
    assert pool_adjacent_violators([1.0, 0.0], [1.0, 3.0]).tolist() == [0.25, 0.25]


@pytest.mark.parametrize("seed", range(4))
def test_pool_adjacent_violators_equals_sklearn_weighted(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, w = rng.normal(size=200).cumsum() * 0.1 + rng.normal(size=200), rng.uniform(0.1, 3.0, 200)
    expected = sklearn_isotonic.isotonic_regression(y, sample_weight=w)
    np.testing.assert_allclose(pool_adjacent_violators(y, w), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_isotonic_equals_sklearn_clip(seed: int) -> None:
    x, y = _tied_data(seed)
    reference = sklearn_isotonic.IsotonicRegression(out_of_bounds="clip").fit(x, y.astype(float))
    cal = Calibrator("isotonic", n_boot=0).fit(x, y)
    query = np.concatenate([np.linspace(-0.2, 1.2, 701), x])
    np.testing.assert_allclose(cal.predict_proba(query), reference.predict(query), rtol=0, atol=1e-12)
    kx, ky = isotonic_knots(x, y)
    np.testing.assert_allclose(kx, reference.X_thresholds_, rtol=0, atol=0)
    np.testing.assert_allclose(ky, reference.y_thresholds_, rtol=0, atol=1e-12)
    assert np.all(np.diff(cal.predict_proba(np.linspace(0, 1, 101))) >= 0)


# -- logistic ------------------------------------------------------------------------------------------------------


def _sklearn_logistic(covariates: np.ndarray, y: np.ndarray, C: float):
    mean, scale = covariates.mean(axis=0), covariates.std(axis=0)
    model = sklearn_linear.LogisticRegression(C=C, tol=1e-12, max_iter=100_000)
    return model.fit((covariates - mean) / scale, y), mean, scale


@pytest.mark.parametrize("C", [0.05, 1.0, 50.0])
def test_logistic_matches_sklearn(C: float) -> None:
    rows = logistic_runs(300, seed=1)
    cal = Calibrator("logistic", ("risk", "kappa"), use_lr=True, C=C, n_boot=0).fit(rows)
    covariates = np.array([[r["features"]["risk"], r["features"]["kappa"], math.log10(r["hyperparameters"]["lr"])]
                           for r in rows])
    y = np.array([r["diverged"] for r in rows])
    reference, mean, scale = _sklearn_logistic(covariates, y, C)
    assert cal.model_["lr_coefficient_at_bound"] is False
    np.testing.assert_allclose(cal.model_["coef"], reference.coef_[0], rtol=0, atol=1e-6)
    assert cal.model_["intercept"] == pytest.approx(reference.intercept_[0], abs=1e-6)
    np.testing.assert_allclose(cal.model_["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(cal.predict_proba(rows), reference.predict_proba((covariates - mean) / scale)[:, 1],
                               rtol=0, atol=1e-7)


def test_logistic_without_lr_matches_sklearn_on_arrays() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 2)) * [1.0, 10.0] + [0.0, 3.0]
    y = rng.random(200) < 1 / (1 + np.exp(-(X[:, 0] - 0.1 * X[:, 1])))
    cal = Calibrator("logistic", ("a", "b"), n_boot=0).fit(X, y)
    reference, mean, scale = _sklearn_logistic(X, y, 1.0)
    np.testing.assert_allclose(cal.model_["coef"], reference.coef_[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(cal.predict_proba(X), reference.predict_proba((X - mean) / scale)[:, 1], atol=1e-7)
    assert cal.model_["lr_coefficient_at_bound"] is None


def test_logistic_recovers_a_known_model_and_is_calibrated() -> None:
    rows = logistic_runs(4000, seed=2)
    cal = Calibrator("logistic", use_lr=True, C=1e4, n_boot=200).fit(rows)
    model = cal.model_
    assert model["covariates"] == ["risk", "log10_lr"]
    np.testing.assert_allclose(model["coef_original_units"], [6.0, 1.5], rtol=0.15)
    assert model["intercept_original_units"] == pytest.approx(1.5, abs=0.5)
    in_sample = cal.metrics_["in_sample"]
    assert in_sample["ece"] < 0.03
    assert 0.8 < in_sample["auroc"]["low"] < in_sample["auroc"]["estimate"] < in_sample["auroc"]["high"] < 0.95
    assert set(cal.metrics_["covariate_auroc"]) == {"risk", "log10_lr"}
    assert cal.provenance_["n_runs"] == 4000 and cal.provenance_["n_diverged"] == sum(r["diverged"] for r in rows)


def test_probability_is_non_decreasing_in_lr_even_when_data_say_otherwise() -> None:
    rows = logistic_runs(400, seed=3, intercept=-8.0, lr_coef=-2.0)  # larger learning rates diverge less in these data
    cal = Calibrator("logistic", use_lr=True, n_boot=0).fit(rows)
    assert cal.model_["coef"][-1] == 0.0 and cal.model_["lr_coefficient_at_bound"] is True
    p = cal.predict_proba(np.full((50, 1), 0.5), lr=np.geomspace(1e-5, 1e-1, 50))
    assert np.all(np.diff(p) >= 0)
    free = Calibrator("logistic", use_lr=True, n_boot=0).fit(logistic_runs(400, seed=3, lr_coef=2.0))
    p = free.predict_proba(np.full((50, 1), 0.5), lr=np.geomspace(1e-5, 1e-1, 50))
    assert np.all(np.diff(p) > 0)


# -- largest_lr ----------------------------------------------------------------------------------------------------


def _constructed(intercept: float = 0.0) -> Calibrator:
    """P = σ(intercept + risk + 2·log10 lr), with identity standardisation."""
    document = {"schema_version": SCHEMA_VERSION, "kind": KIND, "method": "logistic", "features": ["risk"],
                "use_lr": True, "options": {"C": 1.0, "n_bins": 10, "n_boot": 0, "level": 0.95, "seed": 0},
                "model": {"covariates": ["risk", "log10_lr"], "mean": [0.0, 0.0], "scale": [1.0, 1.0],
                          "coef": [1.0, 2.0], "intercept": intercept},
                "lr_range": [1e-4, 1.0]}
    return Calibrator.from_dict(document)


def test_largest_lr_on_a_constructed_case() -> None:
    cal = _constructed()
    # P ≤ 0.1  ⇔  0.5 + 2 log10 lr ≤ logit(0.1)  ⇔  lr ≤ 10^((logit(0.1) − 0.5) / 2) = 0.04481
    threshold = 10 ** ((math.log(0.1 / 0.9) - 0.5) / 2)
    grid = np.geomspace(1e-4, 1.0, 41)  # 10^(−4 + k/10)
    best = cal.largest_lr({"risk": 0.5}, max_risk=0.1, lr_grid=grid)
    assert best == grid[26] and grid[26] <= threshold < grid[27]
    assert cal.largest_lr(np.array([0.5]), max_risk=0.1, lr_grid=grid[::-1]) == best  # grid order is irrelevant
    assert cal.predict_proba({"risk": 0.5}, lr=best) <= 0.1 < cal.predict_proba({"risk": 0.5}, lr=grid[27])
    default = cal.largest_lr({"risk": 0.5, "hyperparameters": {"lr": 1.0}}, max_risk=0.1)  # row lr ignored
    assert default == pytest.approx(threshold, rel=0.04) and default <= threshold
    assert cal.largest_lr({"risk": 10.0}, max_risk=0.1, lr_grid=grid) is None  # even 1e-4 is too risky
    assert cal.largest_lr({"risk": -20.0}, max_risk=0.1, lr_grid=grid) == 1.0  # every rate is admissible


def test_largest_lr_on_a_fitted_calibration() -> None:
    cal = Calibrator("logistic", use_lr=True, n_boot=0).fit(logistic_runs(600, seed=4))
    assert cal.lr_range_[0] >= 1e-4 and cal.lr_range_[1] <= 1e-2
    best = cal.largest_lr({"risk": 0.3}, max_risk=0.2)
    assert cal.lr_range_[0] <= best <= cal.lr_range_[1]
    assert cal.predict_proba({"risk": 0.3}, lr=best) <= 0.2
    assert cal.largest_lr({"risk": 0.5}, max_risk=0.2) < best


def test_largest_lr_needs_the_learning_rate() -> None:
    cal = Calibrator("logistic", n_boot=0).fit(logistic_runs(50))
    with pytest.raises(ParameterError) as info:
        cal.largest_lr({"risk": 0.5})
    assert str(info.value) == ("largest_lr needs a calibration that takes the learning rate; fit "
                               "Calibrator(method='logistic', use_lr=True) instead.")


# -- determinism, persistence, input forms ----------------------------------------------------------------------


def _without_time(document: dict[str, Any]) -> str:
    document = json.loads(json.dumps(document))
    document["provenance"].pop("created_at")
    return json.dumps(document, sort_keys=True)


@pytest.mark.parametrize("method", ["isotonic", "logistic"])
def test_determinism_for_a_seed(method: str) -> None:
    rows = logistic_runs(200, seed=6, groups=5)
    fits = [Calibrator(method, n_boot=200, seed=s).fit(rows, groups="group") for s in (3, 3, 4)]
    assert _without_time(fits[0].to_dict()) == _without_time(fits[1].to_dict())
    assert fits[0].metrics_["in_sample"]["auroc"] != fits[2].metrics_["in_sample"]["auroc"]
    assert fits[0].model_ == fits[2].model_  # the seed drives the bootstrap, not the fit


@pytest.mark.parametrize(("method", "use_lr"), [("isotonic", False), ("logistic", True)])
def test_save_load_round_trip(tmp_path, method: str, use_lr: bool) -> None:
    rows = logistic_runs(120, seed=7, groups=4)
    cal = Calibrator(method, use_lr=use_lr, n_boot=100).fit(rows, groups="group", n_folds=2)
    path = cal.save(tmp_path / "calibration.json")
    document = json.loads(path.read_text(encoding="utf-8"))  # plain JSON, no pickle
    assert document["schema_version"] == "1.0" and document["kind"] == "koopscope-calibration"
    assert document["method"] == method and document["features"] == ["risk"]
    assert set(document["provenance"]) >= {"n_runs", "n_diverged", "seed", "tool_version", "created_at"}
    assert document["metrics"]["cross_validated"]["n_folds"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.json"]  # atomic: no temporary file left
    loaded = Calibrator.load(path)
    probe = logistic_runs(300, seed=8)
    assert np.array_equal(loaded.predict_proba(probe), cal.predict_proba(probe))
    assert loaded.to_dict() == cal.to_dict()


def test_input_forms_agree() -> None:
    nested = logistic_runs(40, seed=9)
    flat = [{"risk": r["features"]["risk"], "lr": r["hyperparameters"]["lr"], "diverged": r["diverged"]}
            for r in nested]
    x = np.array([r["risk"] for r in flat])
    y = np.array([r["diverged"] for r in flat])
    lr = np.array([r["lr"] for r in flat])
    fits = [Calibrator("logistic", use_lr=True, n_boot=0).fit(runs, y, lr=lrs)
            for runs, y, lrs in [(nested, None, None), (flat, None, None), (x, y, lr), (x[:, None], y.astype(int), lr)]]
    for cal in fits[1:]:
        assert cal.model_ == fits[0].model_
    p = fits[0].predict_proba(nested)
    assert fits[0].predict_proba(nested[3]) == p[3]
    assert np.array_equal(fits[0].predict_proba(x, lr=lr), p)


def test_nested_features_are_dotted() -> None:
    row = {"features": {"summary": {"near_unit_mass": {"mean": 0.3}}}, "diverged": True, "seed": 2}
    assert run_features(row) == {"seed": 2, "summary.near_unit_mass.mean": 0.3}
    rows = [{"features": {"summary": {"m": {"mean": v}}}, "diverged": d}
            for v, d in [(0.1, False), (0.2, False), (0.7, True), (0.9, True)]]
    cal = Calibrator(features=("summary.m.mean",), n_boot=0).fit(rows)
    assert cal.predict_proba({"features": {"summary": {"m": {"mean": 0.95}}}}) == 1.0


def test_read_runs_skips_blank_lines(tmp_path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text('{"risk": 0.1, "diverged": false}\n\n  \n{"risk": 0.9, "diverged": true}\n', encoding="utf-8")
    assert read_runs(path) == [{"risk": 0.1, "diverged": False}, {"risk": 0.9, "diverged": True}]


# -- cross-validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["isotonic", "logistic"])
def test_cross_validated_proba_never_scores_its_own_group(method: str) -> None:
    rows = logistic_runs(90, seed=10, groups=6)
    oof = cross_validated_proba(rows, "group", method=method)
    for g in range(6):
        name = f"config-{g}"
        train = [r for r in rows if r["group"] != name]
        test = [r for r in rows if r["group"] == name]
        expected = Calibrator(method, n_boot=0).fit(train).predict_proba(test)
        np.testing.assert_array_equal(oof[[r["group"] == name for r in rows]], expected)
    labels = [r["group"] for r in rows]
    np.testing.assert_array_equal(cross_validated_proba(rows, labels, method=method), oof)


def test_folds_hold_whole_groups_and_are_stratified() -> None:
    codes = np.repeat(np.arange(10), 3)
    y = np.repeat(np.arange(10) % 2 == 0, 3)
    folds = fold_assignment(codes, y, 5, seed=0)
    for g in range(10):
        assert len(set(folds[codes == g])) == 1
    for f in range(5):
        assert y[folds == f].sum() == 3 and (~y[folds == f]).sum() == 3
    rows = logistic_runs(60, seed=11)
    a = cross_validated_proba(rows, n_folds=4, seed=1)
    assert np.array_equal(a, cross_validated_proba(rows, n_folds=4, seed=1))
    assert a.shape == (60,) and np.all((a >= 0) & (a <= 1))


def test_cross_validation_refuses_a_one_class_training_fold() -> None:
    rows = [{"risk": r, "group": g, "diverged": d} for r, g, d in
            [(0.1, "a", False), (0.2, "a", False), (0.3, "a", False), (0.8, "b", True), (0.9, "b", True),
             (0.4, "c", False), (0.7, "c", False)]]
    with pytest.raises(DataError) as info:
        cross_validated_proba(rows, "group")
    assert str(info.value).startswith("The training runs of fold ")
    assert "cannot be calibrated from one class" in str(info.value)


# -- bad input: one sentence each ----------------------------------------------------------------------------------


R2, R4 = "runs[2] passed to Calibrator.fit ", "runs[4] passed to Calibrator.fit "
GOOD = [{"risk": 0.1, "diverged": False}, {"risk": 0.4, "diverged": True}, {"risk": 0.2, "diverged": False},
        {"risk": 0.9, "diverged": True}]


def _message(exc_type, call) -> str:
    with pytest.raises(exc_type) as info:
        call()
    text = str(info.value)
    assert "\n" not in text and text.endswith(".")
    return text


def test_not_jsonl_names_the_line(tmp_path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text('{"risk": 0.1, "diverged": false}\n\n{"risk": 0.4, diverged: true}\n', encoding="utf-8")
    assert _message(DataError, lambda: Calibrator().fit(path)) == (
        f"Line 3 of the runs file {str(path)!r} is not valid JSON (Expecting property name enclosed in double "
        "quotes at column 15); the runs file must be JSONL, one JSON object per line.")
    path.write_text('[{"risk": 0.1, "diverged": false}]\n', encoding="utf-8")
    assert _message(DataError, lambda: read_runs(path)) == (
        f"Line 1 of the runs file {str(path)!r} is a JSON list, not an object; the runs file must be JSONL with one "
        'object per run, such as {"features": {"risk": 0.4}, "diverged": false}.')
    path.write_bytes(b'{"risk": 0.1, "diverged": false}\n\xff\xfe\n')
    assert _message(DataError, lambda: read_runs(path)) == (
        f"Line 2 of the runs file {str(path)!r} is not UTF-8 text; the runs file must be JSONL, one JSON object per "
        "line.")


@pytest.mark.parametrize(("runs", "message"), [
    ([*GOOD, {"risk": 0.3}],
     R4 + "has no 'diverged' key; every training run needs its outcome, \"diverged\": true or \"diverged\": "
     "false."),
    ([*GOOD, {"risk": 0.3, "diverged": 1}],
     R4 + "has diverged=1 (a JSON int), expected a JSON boolean; write \"diverged\": true or \"diverged\": false."),
    ([*GOOD, {"risk": 0.3, "diverged": "yes"}],
     R4 + "has diverged='yes' (a JSON string), expected a JSON boolean; write \"diverged\": true or "
     "\"diverged\": false."),
    ([*GOOD, {"kappa": 0.3, "diverged": True}],
     R4 + "has no feature 'risk' (its features: 'kappa'); give every run the same features, or choose features "
     "that all runs have."),
    ([*GOOD, {"risk": float("nan"), "diverged": True}],
     R4 + "has risk=nan, which is not finite; every feature must be a finite number: fix or drop the run."),
    ([*GOOD, {"risk": None, "diverged": True}],
     R4 + "has risk=None, which is a JSON null; every feature must be a finite number: fix or drop the run."),
    ([*GOOD, {"risk": 0.2, "features": {"risk": 0.3}, "diverged": True}],
     R4 + "gives the feature 'risk' both at the top level and under 'features', which is ambiguous; keep only "
     "one of them."),
    ([{**r, "diverged": True} for r in GOOD],
     "The run list passed to Calibrator.fit has 4 runs and all of them diverged, so a probability of divergence "
     "cannot be calibrated from one class; add runs that did not diverge."),
    ([{**r, "diverged": False} for r in GOOD],
     "The run list passed to Calibrator.fit has 4 runs and none of them diverged, so a probability of divergence "
     "cannot be calibrated from one class; add runs that diverged."),
    (GOOD[:3],
     "The run list passed to Calibrator.fit has 3 run(s); a calibration needs at least 4 labelled runs, with both "
     "outcomes: add runs."),
    ({"risk": 0.3, "diverged": True},
     "runs passed to Calibrator.fit is a single mapping; pass a list of run rows (one dict per run), a path to a "
     "JSONL runs file, or arrays X and y."),
])
def test_bad_rows(runs, message: str) -> None:
    assert _message(DataError, lambda: Calibrator().fit(runs)) == message


@pytest.mark.parametrize(("lr", "message"), [
    (0.0, R2 + "has the learning rate lr=0.0; use_lr=True needs a positive finite learning rate (its log10 is "
          "the covariate): fix or drop the run."),
    (-1e-3, R2 + "has the learning rate lr=-0.001; use_lr=True needs a positive finite learning rate (its log10 "
            "is the covariate): fix or drop the run."),
    (None, R2 + "has no learning rate, which use_lr=True needs; add \"hyperparameters\": {\"lr\": ...} (or a "
           "top-level \"lr\") to every run, or calibrate without the learning rate."),
])
def test_bad_learning_rate(lr, message: str) -> None:
    runs = [{**r, "hyperparameters": {"lr": 1e-3}} for r in GOOD]
    runs[2]["hyperparameters"] = {} if lr is None else {"lr": lr}
    assert _message(DataError, lambda: Calibrator("logistic", use_lr=True).fit(runs)) == message
    Calibrator("logistic").fit(runs)  # the learning rate is read only with use_lr


def test_bad_parameters() -> None:
    assert _message(ParameterError, lambda: Calibrator("isotonic", use_lr=True)) == (
        "use_lr=True passed to Calibrator needs method='logistic', because isotonic regression calibrates one score "
        "and cannot be monotone in both the score and the learning rate; pass method='logistic' or use_lr=False.")
    assert _message(ParameterError, lambda: Calibrator("isotonic", ("risk", "kappa"))) == (
        "The 'features' parameter of Calibrator names 2 features ('risk', 'kappa'), but method='isotonic' calibrates "
        "one score; pass one feature, or method='logistic' to combine several.")
    assert _message(ParameterError, lambda: Calibrator("platt")).startswith(
        "The 'method' parameter of Calibrator must be one of 'isotonic', 'logistic'; got 'platt'")
    assert _message(ParameterError, lambda: Calibrator("logistic", C=0.0)).startswith(
        "The 'C' parameter of Calibrator must be a float in (0, inf); got 0.0")
    assert _message(ParameterError, lambda: Calibrator(features=())).startswith(
        "The 'features' parameter of Calibrator must be a non-empty sequence")


def test_not_fitted_and_bad_documents(tmp_path) -> None:
    assert _message(NotFittedError, lambda: Calibrator().predict_proba([0.1])) == (
        "This Calibrator is not fitted, so predict_proba cannot predict; call fit(runs) first or load a saved "
        "calibration with Calibrator.load(path).")
    document = Calibrator(n_boot=0).fit(GOOD).to_dict()
    assert _message(DataError, lambda: Calibrator.from_dict({**document, "schema_version": "9.0"})) == (
        "The calibration document has schema_version '9.0', expected '1.0' (written by another koopscope version); "
        "pass a file written by koopscope calibrate or Calibrator.save.")
    assert _message(DataError, lambda: Calibrator.from_dict({**document, "kind": "koopscope-fingerprint"})) == (
        "The calibration document has kind 'koopscope-fingerprint', expected 'koopscope-calibration'; pass a file "
        "written by koopscope calibrate or Calibrator.save.")
    broken = {**document, "model": {**document["model"], "y": [0.5, 0.1, 1.0, 1.0]}}
    assert "isotonic knots" in _message(DataError, lambda: Calibrator.from_dict(broken))
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    assert _message(DataError, lambda: Calibrator.load(bad)).startswith(f"The calibration file {str(bad)!r} is not "
                                                                         "valid JSON")


def test_save_into_a_missing_directory(tmp_path) -> None:
    cal = Calibrator(n_boot=0).fit(GOOD)
    target = tmp_path / "missing" / "calibration.json"
    assert _message(ParameterError, lambda: cal.save(target)) == (
        f"The calibration path {str(target)!r} is in a directory that does not exist ({str(target.parent)!r}); "
        "create the directory first or choose another path.")


def test_calibration_does_not_import_sklearn() -> None:
    code = ("import sys, koopscope.gate.calibration, koopscope.gate.metrics, koopscope.cli.calibrate\n"
            "print(any(m.split('.')[0] == 'sklearn' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"
