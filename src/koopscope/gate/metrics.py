"""How well a probability of divergence ranks and is calibrated: AUROC with its bootstrap interval, ECE, reliability.

Pure numpy functions of the labels ``y_true`` (n,) (bool, or 0/1) and a score or probability (n,).

AUROC (Hanley & McNeil 1982) is the Mann–Whitney probability that a diverged run scores higher than a run that
did not diverge, ties counted 1/2: AUROC = (1 / n₊n₋) Σ_{i∈+} Σ_{j∈−} (1[s_i > s_j] + ½ 1[s_i = s_j]). It is
computed by counting, exactly, from the distinct score values, so it equals ``sklearn.metrics.roc_auc_score``.

Its interval is the percentile bootstrap (Efron & Tibshirani 1993, §13.3; the convention of
:mod:`koopscope.spectral.bootstrap`) with **stratified** resampling: each replicate draws n₊ diverged runs from
the diverged runs and n₋ others from the others, with replacement, so both classes are present in every replicate
and the class balance is held fixed.

ECE (Guo et al. 2017) uses **equal-width bins on [0, 1]**, ``n_bins`` = 10 by default, with edges
``np.linspace(0, 1, n_bins + 1)``: bin k holds the probabilities p with edge_k < p ≤ edge_{k+1}, the first bin
also holds p = 0 (the bins of ``sklearn.calibration.calibration_curve(strategy="uniform")``). With n_k runs in
bin k, mean predicted probability p̄_k and observed frequency ȳ_k of divergence,
ECE = Σ_k (n_k / n) |ȳ_k − p̄_k|; empty bins contribute nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from koopscope._validation import Interval, check_param, check_seed
from koopscope.errors import DataError
from koopscope.spectral.bootstrap import ConfidenceInterval, percentile_interval

__all__ = [
    "auroc", "auroc_interval", "bin_index", "calibration_metrics", "expected_calibration_error", "reliability_diagram",
]


def _labels(y_true: Any, caller: str) -> np.ndarray:
    """``y_true`` as a bool array (n,), refusing anything but bools or 0/1 numbers."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise DataError(f"y_true passed to {caller} has shape {y.shape}; expected one label per run, shape (n,).")
    if y.dtype.kind == "b":
        return y
    if y.dtype.kind not in "iuf" or not np.isin(y, (0, 1)).all():
        raise DataError(f"y_true passed to {caller} has values other than 0/1 or True/False (dtype {y.dtype}); "
                        "pass 1 or True for a run that diverged and 0 or False otherwise.")
    return y == 1


def _scores(name: str, scores: Any, n: int, caller: str) -> np.ndarray:
    s = np.asarray(scores)
    if s.dtype.kind not in "iuf" or s.ndim != 1 or s.shape[0] != n:
        raise DataError(f"{name} passed to {caller} has shape {s.shape} and dtype {s.dtype}; expected a real array "
                        f"of shape ({n},), one number per label.")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        first = int(np.flatnonzero(~np.isfinite(s))[0])
        raise DataError(f"{name} passed to {caller} has a non-finite value {float(s[first])!r} at index {first}; "
                        "every run needs a finite number.")
    return s


def _both_classes(y: np.ndarray, caller: str) -> tuple[int, int]:
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"y_true passed to {caller} has {n_pos} diverged and {n_neg} other runs; the AUROC needs "
                        "both classes: add runs of the missing class.")
    return n_pos, n_neg


def _auroc_from_counts(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUROC from the counts (U,) of diverged and other runs at each distinct score, in ascending score order.

    AUROC = Σ_v pos_v (2 neg_{<v} + neg_v) / (2 n₊ n₋), in integer arithmetic up to the final division.
    """
    below = np.cumsum(neg) - neg  # (U,) other runs strictly below each score
    twice_wins = int(np.dot(pos, 2 * below + neg))  # 2 × (wins + ties/2)
    return twice_wins / (2.0 * int(pos.sum()) * int(neg.sum()))


def auroc(y_true: Any, score: Any) -> float:
    """Area under the ROC curve: P(score of a diverged run > score of another), ties counted 1/2.

    Parameters
    ----------
    y_true : array_like of shape (n,)
        True (or 1) for a run that diverged; both classes must be present.
    score : array_like of shape (n,)
        Higher means more risk (a raw score or a probability).

    Returns
    -------
    float in [0, 1]

    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8])  # pairs: 1 win, 1 tie, 2 wins of 4
    0.875
    """
    y = _labels(y_true, "auroc")
    s = _scores("score", score, y.size, "auroc")
    _both_classes(y, "auroc")
    _, codes = np.unique(s, return_inverse=True)
    size = int(codes.max()) + 1
    return _auroc_from_counts(np.bincount(codes[y], minlength=size), np.bincount(codes[~y], minlength=size))


def auroc_interval(y_true: Any, score: Any, *, n_boot: int = 1000, level: float = 0.95,
                   seed: int = 0) -> ConfidenceInterval:
    """AUROC with its stratified percentile-bootstrap interval at ``level``.

    Each of the ``n_boot`` replicates draws n₊ indices among the diverged runs, then n₋ among the others (with
    replacement, from ``numpy.random.default_rng(seed)``, in that order) and recomputes the AUROC; the interval
    is the (a/2, 1 − a/2) percentile interval of the replicates, a = 1 − level. ``n_boot=0`` gives the
    degenerate interval [estimate, estimate].

    Returns
    -------
    ConfidenceInterval
        ``estimate`` (the AUROC of the data), ``low``, ``high`` and the bootstrap ``bias``.

    >>> y = [0, 0, 0, 1, 0, 1, 1, 1]
    >>> ci = auroc_interval(y, [0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.9], n_boot=200)
    >>> ci.estimate, ci.low <= ci.estimate <= ci.high <= 1.0
    (0.9375, True)
    """
    check_param("n_boot", n_boot, Interval(int, 0, None), caller="auroc_interval", fix="the default is 1000")
    check_param("level", level, Interval(float, 0.0, 1.0, closed="neither"), caller="auroc_interval",
                fix="give a confidence level such as 0.95")
    seed = check_seed(seed, "auroc_interval")
    y = _labels(y_true, "auroc_interval")
    s = _scores("score", score, y.size, "auroc_interval")
    n_pos, n_neg = _both_classes(y, "auroc_interval")
    _, codes = np.unique(s, return_inverse=True)
    size = int(codes.max()) + 1
    pos_codes, neg_codes = codes[y], codes[~y]
    estimate = _auroc_from_counts(np.bincount(pos_codes, minlength=size), np.bincount(neg_codes, minlength=size))
    if n_boot == 0:
        return ConfidenceInterval(estimate, estimate, estimate)
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_boot)
    for b in range(n_boot):
        pos = np.bincount(pos_codes[rng.integers(0, n_pos, size=n_pos)], minlength=size)
        neg = np.bincount(neg_codes[rng.integers(0, n_neg, size=n_neg)], minlength=size)
        replicates[b] = _auroc_from_counts(pos, neg)
    low, high = percentile_interval(replicates, level)
    return ConfidenceInterval(estimate, low, high, bias=float(replicates.mean() - estimate))


def _probabilities(proba: Any, n: int, caller: str) -> np.ndarray:
    p = _scores("proba", proba, n, caller)
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        bad = float(p[(p < 0.0) | (p > 1.0)][0])
        raise DataError(f"proba passed to {caller} has the value {bad!r} outside [0, 1]; pass probabilities, e.g. "
                        "Calibrator.predict_proba(...), not raw scores.")
    return p


def _check_bins(n_bins: object, caller: str) -> int:
    check_param("n_bins", n_bins, Interval(int, 1, None), caller=caller, fix="the default is 10 equal-width bins")
    return int(n_bins)  # type: ignore[arg-type]


def bin_index(proba: Any, n_bins: int = 10) -> np.ndarray:
    """The equal-width bin (0 … n_bins − 1) of each probability: edge_k < p ≤ edge_{k+1}, p = 0 in bin 0.

    >>> bin_index([0.0, 0.1, 0.1001, 0.95, 1.0], n_bins=10)
    array([0, 0, 1, 9, 9])
    """
    n_bins = _check_bins(n_bins, "bin_index")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], np.asarray(proba, dtype=np.float64), side="left")


def _bins(y: np.ndarray, p: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    k = bin_index(p, n_bins)
    count = np.bincount(k, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(k, weights=p, minlength=n_bins) / count
        observed = np.bincount(k, weights=y.astype(np.float64), minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {"lower": edges[:-1], "upper": edges[1:], "count": count, "mean_predicted": mean_predicted,
            "observed_frequency": observed}


def _ece(bins: dict[str, np.ndarray]) -> float:
    count = bins["count"]
    full = count > 0
    gaps = np.abs(bins["observed_frequency"][full] - bins["mean_predicted"][full])
    return float(np.dot(count[full], gaps) / count.sum()) if count.sum() else 0.0


def _validated(y_true: Any, proba: Any, n_bins: object, caller: str) -> tuple[np.ndarray, np.ndarray, int]:
    n_bins = _check_bins(n_bins, caller)
    y = _labels(y_true, caller)
    return y, _probabilities(proba, y.size, caller), n_bins


def reliability_diagram(y_true: Any, proba: Any, *, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Per equal-width bin: its edges, count, mean predicted probability and observed frequency of divergence.

    Returns
    -------
    dict of str to ndarray
        ``lower``, ``upper`` (n_bins,) the bin edges; ``count`` (n_bins,) int; ``mean_predicted`` and
        ``observed_frequency`` (n_bins,), NaN for an empty bin.

    >>> r = reliability_diagram([0, 1, 1, 1], [0.2, 0.3, 0.7, 0.9], n_bins=2)
    >>> r["count"].tolist(), r["mean_predicted"].tolist(), r["observed_frequency"].tolist()
    ([2, 2], [0.25, 0.8], [0.5, 1.0])
    """
    return _bins(*_validated(y_true, proba, n_bins, "reliability_diagram"))


def expected_calibration_error(y_true: Any, proba: Any, *, n_bins: int = 10) -> float:
    """ECE = Σ_k (n_k / n) |ȳ_k − p̄_k| over ``n_bins`` equal-width bins of [0, 1] (empty bins count 0).

    >>> round(expected_calibration_error([0, 1, 1, 1], [0.2, 0.3, 0.7, 0.9], n_bins=2), 12)  # ½·0.25 + ½·0.2
    0.225
    """
    return _ece(_bins(*_validated(y_true, proba, n_bins, "expected_calibration_error")))


def _none_if_nan(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def calibration_metrics(y_true: Any, proba: Any, *, n_bins: int = 10, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 0) -> dict[str, Any]:
    """The JSON-ready report of probabilities against labels: AUROC with its interval, ECE and reliability bins.

    Returns
    -------
    dict
        ``n_runs``, ``n_diverged``, ``auroc`` (``estimate``, ``low``, ``high``, ``bias``, ``level``,
        ``n_boot``, ``resampling``), ``ece``, ``n_bins``, ``binning`` and ``reliability`` (one dict per bin:
        ``lower``, ``upper``, ``count``, ``mean_predicted``, ``observed_frequency``; None for an empty bin).

    >>> m = calibration_metrics([0, 1, 1, 1], [0.2, 0.3, 0.7, 0.9], n_bins=2, n_boot=0)
    >>> m["auroc"]["estimate"], round(m["ece"], 12), m["reliability"][1]["count"]
    (1.0, 0.225, 2)
    """
    y, p, n_bins = _validated(y_true, proba, n_bins, "calibration_metrics")
    ci = auroc_interval(y, p, n_boot=n_boot, level=level, seed=seed)
    r = _bins(y, p, n_bins)
    bins = [{"lower": float(lo), "upper": float(hi), "count": int(c), "mean_predicted": mp, "observed_frequency": of}
            for lo, hi, c, mp, of in zip(r["lower"], r["upper"], r["count"], _none_if_nan(r["mean_predicted"]),
                                         _none_if_nan(r["observed_frequency"]), strict=True)]
    return {
        "n_runs": int(y.size), "n_diverged": int(y.sum()),
        "auroc": {**ci.as_dict(), "level": float(level), "n_boot": int(n_boot), "resampling": "stratified"},
        "ece": _ece(r), "n_bins": n_bins,
        "binning": "equal-width on [0, 1], bins (lower, upper] with 0 in the first, weighted by count",
        "reliability": bins,
    }
