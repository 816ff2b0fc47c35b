"""AUROC, its stratified bootstrap interval, ECE and reliability data against scikit-learn and hand values."""

from __future__ import annotations

import numpy as np
import pytest

from koopscope.errors import DataError, KoopscopeError, ParameterError
from koopscope.gate.metrics import (
    auroc,
    auroc_interval,
    bin_index,
    calibration_metrics,
    expected_calibration_error,
    reliability_diagram,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")
sklearn_calibration = pytest.importorskip("sklearn.calibration")


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    y = rng.random(n) < rng.uniform(0.1, 0.9)
    y[:2] = [True, False]
    score = np.round(rng.normal(size=n) + y, 1)  # rounding makes many ties, within and across classes
    assert len(np.unique(score)) < n
    assert auroc(y, score) == pytest.approx(sklearn_metrics.roc_auc_score(y, score), abs=1e-12)
    assert auroc(y.astype(int), score.tolist()) == auroc(y, score)


def test_auroc_hand_values() -> None:
    assert auroc([0, 1], [0.2, 0.2]) == 0.5
    assert auroc([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0
    assert auroc([1, 1, 0, 0], [1, 2, 3, 4]) == 0.0
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8]) == 0.875


def test_auroc_interval_brackets_estimate_and_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(200) < 0.3
    score = rng.normal(size=200) + 1.2 * y
    a = auroc_interval(y, score, n_boot=300, seed=7)
    b = auroc_interval(y, score, n_boot=300, seed=7)
    c = auroc_interval(y, score, n_boot=300, seed=8)
    assert a == b and a != c
    assert a.estimate == auroc(y, score)
    assert a.low < a.estimate < a.high
    assert 0.05 < a.high - a.low < 0.3
    wide = auroc_interval(y, score, n_boot=300, level=0.99, seed=7)
    assert wide.low <= a.low and wide.high >= a.high
    degenerate = auroc_interval(y, score, n_boot=0)
    assert degenerate.low == degenerate.high == degenerate.estimate


def test_auroc_interval_resamples_within_classes() -> None:
    # One diverged run among many: a plain bootstrap would draw replicates without it; stratified never does.
    y = np.zeros(30, dtype=bool)
    y[0] = True
    score = np.arange(30.0)
    ci = auroc_interval(y, score, n_boot=200, seed=0)
    assert ci.estimate == 0.0 and ci.low == 0.0 and ci.high == 0.0


def test_ece_hand_computed() -> None:
    # Bins of width 0.25 (right-closed): (0, .25] gets {0.1, 0.2}, (.25, .5] {0.3}, (.5, .75] none,
    # (.75, 1] {0.8, 0.9, 1.0}.  ECE = 2/6·|0.5 − 0.15| + 1/6·|0 − 0.3| + 3/6·|2/3 − 0.9| = 0.2833…
    y = [0, 1, 0, 1, 1, 0]
    p = [0.1, 0.2, 0.3, 0.8, 0.9, 1.0]
    expected = 2 / 6 * 0.35 + 1 / 6 * 0.3 + 3 / 6 * abs(2 / 3 - 0.9)
    assert expected_calibration_error(y, p, n_bins=4) == pytest.approx(expected, abs=1e-15)
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0
    assert expected_calibration_error([1, 1, 0, 0], [0.5, 0.5, 0.5, 0.5]) == 0.0


def test_bins_are_right_closed_with_zero_in_the_first() -> None:
    edges = np.linspace(0, 1, 11)
    assert bin_index(edges, 10).tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert bin_index([0.05, 0.95, 0.999], 10).tolist() == [0, 9, 9]


@pytest.mark.parametrize("n_bins", [1, 5, 10])
def test_reliability_matches_sklearn_calibration_curve(n_bins: int) -> None:
    rng = np.random.default_rng(n_bins)
    p = np.concatenate([rng.random(300), np.linspace(0, 1, 11)])
    y = rng.random(p.size) < p
    r = reliability_diagram(y, p, n_bins=n_bins)
    prob_true, prob_pred = sklearn_calibration.calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    full = r["count"] > 0
    np.testing.assert_allclose(r["observed_frequency"][full], prob_true, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["mean_predicted"][full], prob_pred, rtol=0, atol=1e-12)
    assert r["count"].sum() == p.size
    ece = expected_calibration_error(y, p, n_bins=n_bins)
    assert ece == pytest.approx(np.dot(r["count"][full], np.abs(prob_true - prob_pred)) / p.size, abs=1e-12)


def test_reliability_empty_bins_are_nan_and_none_in_the_report() -> None:
    r = reliability_diagram([0, 1, 1], [0.05, 0.95, 0.91], n_bins=10)
    assert r["count"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert np.isnan(r["mean_predicted"][1]) and np.isnan(r["observed_frequency"][5])
    report = calibration_metrics([0, 1, 1], [0.05, 0.95, 0.91], n_boot=50)
    assert report["reliability"][1] == {"lower": 0.1, "upper": 0.2, "count": 0, "mean_predicted": None,
                                        "observed_frequency": None}
    assert report["n_runs"] == 3 and report["n_diverged"] == 2 and report["auroc"]["estimate"] == 1.0
    assert report["auroc"]["resampling"] == "stratified" and report["auroc"]["n_boot"] == 50


@pytest.mark.parametrize(("call", "message"), [
    (lambda: auroc([1, 1, 1], [0.1, 0.2, 0.3]),
     "y_true passed to auroc has 3 diverged and 0 other runs; the AUROC needs both classes: add runs of the "
     "missing class."),
    (lambda: auroc([0, 1, 2], [0.1, 0.2, 0.3]),
     "y_true passed to auroc has values other than 0/1 or True/False (dtype int64); pass 1 or True for a run that "
     "diverged and 0 or False otherwise."),
    (lambda: auroc([0, 1], [0.1, float("nan")]),
     "score passed to auroc has a non-finite value nan at index 1; every run needs a finite number."),
    (lambda: auroc([0, 1], [0.1, 0.2, 0.3]),
     "score passed to auroc has shape (3,) and dtype float64; expected a real array of shape (2,), one number per "
     "label."),
    (lambda: expected_calibration_error([0, 1], [0.1, 1.5]),
     "proba passed to expected_calibration_error has the value 1.5 outside [0, 1]; pass probabilities, e.g. "
     "Calibrator.predict_proba(...), not raw scores."),
])
def test_bad_input_one_sentence(call, message: str) -> None:
    with pytest.raises(DataError) as info:
        call()
    assert str(info.value) == message


def test_bad_parameters() -> None:
    with pytest.raises(ParameterError, match=r"^The 'n_bins' parameter of reliability_diagram must be an int in "):
        reliability_diagram([0, 1], [0.1, 0.9], n_bins=0)
    with pytest.raises(ParameterError, match=r"^The 'n_boot' parameter of auroc_interval"):
        auroc_interval([0, 1], [0.1, 0.9], n_boot=-1)
    with pytest.raises(KoopscopeError, match=r"^The 'seed' parameter of auroc_interval"):
        auroc_interval([0, 1], [0.1, 0.9], seed=-1)
