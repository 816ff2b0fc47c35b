"""A calibrated probability of divergence, fitted on labelled training runs: :class:`Calibrator`.

The RKSP risk score (near-unit mass M≈1 of a model's layer operators; reference/rksp_paper.md §2.4) ranks runs
well but is not itself a probability. A :class:`Calibrator` maps profile features (and optionally the learning
rate) of runs whose outcome is known to P(diverge), reports how well that probability ranks (AUROC with a
stratified bootstrap interval) and how well it is calibrated (ECE, reliability bins; see
:mod:`koopscope.gate.metrics`), and saves itself as JSON.

The runs file (JSONL)
---------------------
One JSON object per line, one line per training run; blank lines are skipped. The canonical row is ::

    {"id": "gpt2-nonorm-lr3e-3-s0", "group": "gpt2-nonorm",
     "features": {"risk": 0.41, "spectral_radius": 1.02, "kappa": 35.0},
     "hyperparameters": {"lr": 0.003}, "diverged": true}

* ``diverged`` (required): JSON ``true`` or ``false``.
* ``features``: any JSON object; nested objects are flattened with dots, so ``{"summary": {"near_unit_mass":
  {"mean": 0.3}}}`` gives the feature ``summary.near_unit_mass.mean``.
* Flat rows are accepted too: every top-level key other than ``id``, ``group``, ``diverged``, ``features``,
  ``hyperparameters`` and ``lr`` is a feature (``{"risk": 0.41, "lr": 0.003, "diverged": true}``). A name
  given both at the top level and under ``features`` is refused as ambiguous.
* The learning rate is ``hyperparameters.lr``, or a top-level ``lr``; it is read only with ``use_lr=True`` and
  must then be a positive finite number.
* ``id`` and ``group`` are optional labels; ``group`` (or any key) can name the cross-validation folds.

Only the features the calibrator asks for are read, and each must be a finite number in every run.

Methods
-------
* ``"isotonic"`` (default): the non-decreasing step function of one score (``features=("risk",)``) that
  minimises squared error, fitted by pool-adjacent-violators (:func:`pool_adjacent_violators`) on the distinct
  score values (ties averaged, weighted by count), and evaluated by linear interpolation between its knots,
  clipped to the end values outside the training range (sklearn's ``IsotonicRegression(out_of_bounds="clip")``).
  Higher scores mean more risk. **It does not take the learning rate**: ``use_lr=True`` with isotonic is
  refused, because a one-dimensional monotone fit cannot be monotone in both the score and the learning rate
  without choosing how they combine; use ``method="logistic"``, which makes that choice explicitly.
* ``"logistic"``: L2-regularised logistic regression, P = σ(b + Σ_j β_j z_j), on the standardised covariates z
  (each feature, then log10(lr) with ``use_lr=True``, centred by its mean and divided by its population
  standard deviation, 1 when that is 0). It minimises Σ_i logloss_i + ‖β‖² / (2C) (the intercept is not
  penalised), which is scikit-learn's ``LogisticRegression(C=C)`` on ``StandardScaler`` output, by L-BFGS-B
  from zero (deterministic). **P is non-decreasing in the learning rate by construction**: the coefficient of
  log10(lr) is bounded below by 0, so a fit whose data favour a negative slope stops at 0 (recorded as
  ``lr_coefficient_at_bound``) rather than claim that a larger learning rate is safer.

>>> runs = [{"features": {"risk": r}, "diverged": d}
...         for r, d in [(0.1, False), (0.2, False), (0.35, True), (0.4, False), (0.6, True), (0.8, True)]]
>>> cal = Calibrator("isotonic", n_boot=0).fit(runs)
>>> cal.predict_proba([0.1, 0.3, 0.4, 0.9]).round(3).tolist()
[0.0, 0.333, 0.5, 1.0]
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from koopscope._atomic import write_text
from koopscope._validation import Interval, Options, check_param, check_seed
from koopscope.errors import DataError, NotFittedError, NumericalError, ParameterError
from koopscope.gate.metrics import auroc, calibration_metrics
from koopscope.store.provenance import created_at, tool_version

__all__ = [
    "KIND", "METHODS", "MIN_RUNS", "SCHEMA_VERSION", "Calibrator", "cross_validated_proba", "fit_logistic",
    "isotonic_knots", "pool_adjacent_violators", "read_runs",
]

SCHEMA_VERSION: Final = "1.0"
KIND: Final = "koopscope-calibration"
METHODS: Final = ("isotonic", "logistic")
#: Fewer labelled runs than this cannot support a calibration (nor a cross-validated one).
MIN_RUNS: Final = 4
#: Top-level keys of a run row that are never features.
RESERVED_KEYS: Final = ("id", "group", "diverged", "features", "hyperparameters", "lr")
LR_COVARIATE: Final = "log10_lr"

#: Training runs: a list of run rows (dicts), a path to a JSONL runs file, or an array (n, k) with y.
Runs = Any


# ---------------------------------------------------------------------------------------------------------------
# Reading runs


def _kind(value: object) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__)


def _load_jsonl(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], list[str], str]:
    """(rows, a label per row naming its line, sha256 of the file) of a JSONL runs file."""
    data = Path(path).read_bytes()
    name = str(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"Line {line} of the runs file {name!r} is not UTF-8 text; the runs file must be JSONL, "
                        "one JSON object per line.") from None
    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    for number, line_text in enumerate(text.splitlines(), start=1):
        if not line_text.strip():
            continue
        try:
            row = json.loads(line_text)
        except json.JSONDecodeError as exc:
            raise DataError(f"Line {number} of the runs file {name!r} is not valid JSON ({exc.msg} at column "
                            f"{exc.colno}); the runs file must be JSONL, one JSON object per line.") from None
        if not isinstance(row, dict):
            raise DataError(f"Line {number} of the runs file {name!r} is a JSON {_kind(row)}, not an object; the "
                            "runs file must be JSONL with one object per run, such as "
                            '{"features": {"risk": 0.4}, "diverged": false}.')
        rows.append(row)
        labels.append(f"Line {number} of the runs file {name!r}")
    return rows, labels, hashlib.sha256(data).hexdigest()


def read_runs(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The run rows (one dict per non-blank line) of a JSONL runs file; see the module for the format.

    Raises :class:`~koopscope.errors.DataError` naming the line of the first line that is not a JSON object.
    """
    return _load_jsonl(path)[0]


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings flattened to dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def run_features(row: Mapping[str, Any], where: str = "The run") -> dict[str, Any]:
    """A run row's feature namespace: the dotted leaves of ``row["features"]`` and of its other top-level keys.

    >>> run_features({"features": {"risk": 0.4, "summary": {"kappa": 3.0}}, "seed": 1, "diverged": True})
    {'seed': 1, 'risk': 0.4, 'summary.kappa': 3.0}
    """
    nested = row.get("features", {})
    if not isinstance(nested, Mapping):
        raise DataError(f"{where} has 'features' as a JSON {_kind(nested)}, expected an object of named numbers; "
                        'write "features": {"risk": 0.4, ...}.')
    top = _flatten({k: v for k, v in row.items() if k not in RESERVED_KEYS})
    inner = _flatten(nested)
    clash = sorted(set(top) & set(inner))
    if clash:
        raise DataError(f"{where} gives the feature {clash[0]!r} both at the top level and under "
                        "'features', which is ambiguous; keep only one of them.")
    return {**top, **inner}


def _finite_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _feature_values(row: Mapping[str, Any], where: str, features: Sequence[str]) -> list[float]:
    space = run_features(row, where)
    values = []
    for name in features:
        if name not in space:
            have = ", ".join(repr(k) for k in sorted(space)[:8]) or "none"
            raise DataError(f"{where} has no feature {name!r} (its features: {have}); give every run "
                            "the same features, or choose features that all runs have.")
        value = space[name]
        if not _finite_number(value):
            what = "is not finite" if isinstance(value, numbers.Real) and not isinstance(value, bool) else \
                f"is a JSON {_kind(value)}"
            raise DataError(f"{where} has {name}={value!r}, which {what}; every feature must be a "
                            "finite number: fix or drop the run.")
        values.append(float(value))
    return values


def _run_lr(row: Mapping[str, Any], where: str) -> float:
    hyper = row.get("hyperparameters", {})
    if not isinstance(hyper, Mapping):
        raise DataError(f"{where} has 'hyperparameters' as a JSON {_kind(hyper)}, expected an object; write "
                        '"hyperparameters": {"lr": 0.003}.')
    value = hyper.get("lr", row.get("lr"))
    if value is None:
        raise DataError(f"{where} has no learning rate, which use_lr=True needs; add "
                        '"hyperparameters": {"lr": ...} (or a top-level "lr") to every run, or calibrate without '
                        "the learning rate.")
    return _check_lr(value, where)


def _check_lr(value: object, where: str) -> float:
    if not _finite_number(value) or float(value) <= 0.0:  # type: ignore[arg-type]
        raise DataError(f"{where} has the learning rate lr={value!r}; use_lr=True needs a positive "
                        "finite learning rate (its log10 is the covariate): fix or drop the run.")
    return float(value)  # type: ignore[arg-type]


def _diverged(row: Mapping[str, Any], where: str) -> bool:
    if "diverged" not in row:
        raise DataError(f"{where} has no 'diverged' key; every training run needs its outcome, "
                        '"diverged": true or "diverged": false.')
    value = row["diverged"]
    if not isinstance(value, bool):
        raise DataError(f"{where} has diverged={value!r} (a JSON {_kind(value)}), expected a JSON "
                        'boolean; write "diverged": true or "diverged": false.')
    return value


@dataclass(frozen=True)
class _Runs:
    """Validated training runs: covariate values A (n, k), outcomes y (n,), log10 lr (n,) or None."""

    A: np.ndarray
    y: np.ndarray
    log_lr: np.ndarray | None
    rows: list[dict[str, Any]] | None
    source: str
    source_sha256: str | None = None


def _is_rows(runs: object) -> bool:
    if isinstance(runs, (str, os.PathLike, np.ndarray)):
        return False
    return isinstance(runs, Sequence) and (len(runs) == 0 or all(isinstance(r, Mapping) for r in runs))


def _rows_of(runs: Any, caller: str) -> tuple[list[dict[str, Any]], list[str], str, str | None]:
    if isinstance(runs, (str, os.PathLike)):
        rows, labels, digest = _load_jsonl(runs)
        return rows, labels, f"The runs file {str(runs)!r}", digest
    if isinstance(runs, Mapping):
        raise DataError(f"runs passed to {caller} is a single mapping; pass a list of run rows (one dict per run), "
                        "a path to a JSONL runs file, or arrays X and y.")
    rows = list(runs)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(f"runs[{i}] passed to {caller} is a {type(row).__name__}, expected a mapping per run "
                            '(such as {"features": {"risk": 0.4}, "diverged": false}).')
    return [dict(r) for r in rows], [f"runs[{i}] passed to {caller}" for i in range(len(rows))], \
        f"The run list passed to {caller}", None


def _check_outcomes(y: np.ndarray, source: str) -> None:
    n, n_pos = int(y.size), int(y.sum())
    if n < MIN_RUNS:
        raise DataError(f"{source} has {n} run(s); a calibration needs at least {MIN_RUNS} labelled "
                        "runs, with both outcomes: add runs.")
    if n_pos in (0, n):
        word, missing = ("all", "did not diverge") if n_pos == n else ("none", "diverged")
        raise DataError(f"{source} has {n} runs and {word} of them diverged, so a probability of "
                        f"divergence cannot be calibrated from one class; add runs that {missing}.")


def _array_runs(X: Any, y: Any, lr: Any, k: int, use_lr: bool, caller: str) -> _Runs:
    A = _covariate_array(X, k, caller)
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.shape[0] != A.shape[0]:
        raise DataError(f"y passed to {caller} has shape {labels.shape}; expected ({A.shape[0]},), one outcome per "
                        "row of X.")
    if labels.dtype.kind != "b" and not (labels.dtype.kind in "iuf" and np.isin(labels, (0, 1)).all()):
        raise DataError(f"y passed to {caller} has values other than True/False or 1/0 (dtype {labels.dtype}); "
                        "pass True or 1 for a run that diverged.")
    log_lr = _lr_array(lr, A.shape[0], caller) if use_lr else None
    return _Runs(A, labels.astype(bool), log_lr, None, f"The array X passed to {caller}")


def _covariate_array(X: Any, k: int, caller: str) -> np.ndarray:
    A = np.asarray(X)
    if A.dtype.kind not in "iuf":
        raise DataError(f"X passed to {caller} has dtype {A.dtype}; expected real feature values.")
    A = A.astype(np.float64)
    if A.ndim == 1 and k == 1:
        A = A[:, None]
    if A.ndim != 2 or A.shape[1] != k:
        raise DataError(f"X passed to {caller} has shape {A.shape}; expected (n, {k}), one column per feature in "
                        "the calibrator's order.")
    if not np.isfinite(A).all():
        row, col = (int(i) for i in np.argwhere(~np.isfinite(A))[0])
        raise DataError(f"X passed to {caller} has the non-finite value {float(A[row, col])!r} at row {row}, column "
                        f"{col}; every feature must be a finite number: fix or drop the run.")
    return A


def _positive_array(name: str, values: Any, n: int, caller: str) -> np.ndarray:
    """``values`` (a positive number or (n,) array of them) broadcast to (n,) float64."""
    if values is None:
        raise DataError(f"{name} passed to {caller} is None, but the calibrator uses the learning rate; pass "
                        f"{name}, one positive learning rate per run (or a scalar for all).")
    arr = np.asarray(values)
    if arr.dtype.kind not in "iuf" or arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise DataError(f"{name} passed to {caller} has shape {arr.shape} and dtype {arr.dtype}; expected a "
                        f"positive number or an array of shape ({n},).")
    arr = np.broadcast_to(arr.astype(np.float64), (n,))
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{name} passed to {caller} has the value {float(arr[i])!r} at index {i}; learning rates "
                        "must be positive and finite (their log10 is the covariate).")
    return arr


def _lr_array(lr: Any, n: int, caller: str) -> np.ndarray:
    """log10 of the learning rates ``lr`` (a positive number or an (n,) array)."""
    return np.log10(_positive_array("lr", lr, n, caller))


def _training_runs(runs: Any, y: Any, lr: Any, features: Sequence[str], use_lr: bool, caller: str) -> _Runs:
    """Validated training runs from rows, a JSONL path, or arrays (X, y[, lr])."""
    if y is None and isinstance(runs, Iterable) and not isinstance(runs, (str, os.PathLike, np.ndarray, Mapping)):
        runs = list(runs)  # a generator of rows
    if y is not None or not (_is_rows(runs) or isinstance(runs, (str, os.PathLike, Mapping))):
        if y is None:
            raise DataError(f"y passed to {caller} is None with an array X; pass the outcomes y, or pass run rows "
                            "(dicts with 'diverged') instead of an array.")
        data = _array_runs(runs, y, lr, len(features), use_lr, caller)
    else:
        rows, labels, source, digest = _rows_of(runs, caller)
        A = np.array([_feature_values(r, w, features) for r, w in zip(rows, labels, strict=True)],
                     dtype=np.float64).reshape(len(rows), len(features))
        outcomes = np.array([_diverged(r, w) for r, w in zip(rows, labels, strict=True)], dtype=bool)
        log_lr = None
        if use_lr:
            if lr is not None:
                log_lr = _lr_array(lr, len(rows), caller)
            else:
                log_lr = np.log10([_run_lr(r, w) for r, w in zip(rows, labels, strict=True)]).astype(np.float64)
        data = _Runs(A, outcomes, log_lr, rows, source, digest)
    _check_outcomes(data.y, data.source)
    return data


# ---------------------------------------------------------------------------------------------------------------
# Isotonic regression


def pool_adjacent_violators(y: Any, weights: Any = None) -> np.ndarray:
    """The non-decreasing sequence closest to ``y`` in weighted least squares (pool-adjacent-violators).

    Scanning left to right, each value opens a block; while the block before it has a larger mean, the two are
    pooled into one block with their weighted mean. The result repeats each block's mean over its members.

    Parameters
    ----------
    y : array_like of shape (n,)
        Values in the order of the (sorted) covariate.
    weights : array_like of shape (n,), optional
        Positive weights (default 1).

    >>> pool_adjacent_violators([1.0, 3.0, 2.0, 4.0]).tolist()
    [1.0, 2.5, 2.5, 4.0]
    """
    values = np.asarray(y, dtype=np.float64)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    sums: list[float] = []   # Σ w·y of each block
    masses: list[float] = []  # Σ w of each block
    sizes: list[int] = []
    for value, weight in zip(values.tolist(), w.tolist(), strict=True):
        s, m, size = value * weight, weight, 1
        while sums and sums[-1] / masses[-1] > s / m:
            s, m, size = s + sums.pop(), m + masses.pop(), size + sizes.pop()
        sums.append(s)
        masses.append(m)
        sizes.append(size)
    return np.repeat(np.asarray(sums) / np.asarray(masses), sizes)


def isotonic_knots(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Knots (x_k, f_k) of the non-decreasing least-squares fit of y on x, interpolated linearly between them.

    Equal x values are pooled first (mean y, weight = their count); of each constant stretch of the fit only its
    two ends are kept, which leaves the interpolant unchanged.

    >>> kx, ky = isotonic_knots([0.1, 0.2, 0.2, 0.5, 0.9], [0, 1, 0, 0, 1])
    >>> kx.tolist(), ky.tolist()
    ([0.1, 0.2, 0.5, 0.9], [0.0, 0.3333333333333333, 0.3333333333333333, 1.0])
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ux, codes, counts = np.unique(x, return_inverse=True, return_counts=True)
    mean_y = np.bincount(codes, weights=y, minlength=ux.size) / counts
    fit = pool_adjacent_violators(mean_y, counts)
    keep = np.ones(ux.size, dtype=bool)
    keep[1:-1] = (fit[1:-1] != fit[:-2]) | (fit[1:-1] != fit[2:])
    return ux[keep], fit[keep]


# ---------------------------------------------------------------------------------------------------------------
# Logistic regression


def standardisation(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and population standard deviations of A (n, k); a constant column gets scale 1."""
    mean = A.mean(axis=0)
    scale = A.std(axis=0)
    scale[scale <= 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))] = 1.0
    return mean, scale


def fit_logistic(Z: Any, y: Any, *, C: float = 1.0, nonnegative: Sequence[int] = ()) -> tuple[float, np.ndarray]:
    """Intercept b and coefficients β minimising Σ_i logloss(y_i, σ(b + z_i·β)) + ‖β‖² / (2C), by L-BFGS-B.

    The objective is scikit-learn's ``LogisticRegression(C=C)`` (intercept unpenalised); it is minimised in the
    equivalent per-run form (divided by n) from β = 0, b = 0, so the fit is deterministic.

    Parameters
    ----------
    Z : array_like of shape (n, k)
        Covariates (standardised, for a well-conditioned problem).
    y : array_like of shape (n,)
        Outcomes, 1 or True for divergence.
    C : float, default=1.0
        Inverse L2 strength.
    nonnegative : sequence of int
        Columns whose coefficient is bounded below by 0.

    >>> b, beta = fit_logistic([[-1.0], [-0.5], [0.5], [1.0]], [0, 1, 0, 1], C=1e6)
    >>> abs(b) < 1e-9, round(float(beta[0]), 4)
    (True, 0.8392)
    """
    Z = np.asarray(Z, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    n, k = Z.shape
    penalty = 1.0 / (C * n)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        b, beta = theta[0], theta[1:]
        s = b + Z @ beta
        loss = float(np.mean(np.logaddexp(0.0, s) - t * s)) + 0.5 * penalty * float(beta @ beta)
        r = (expit(s) - t) / n
        return loss, np.concatenate([[r.sum()], Z.T @ r + penalty * beta])

    bounds = [(None, None)] * (k + 1)
    for j in nonnegative:
        bounds[1 + j] = (0.0, None)
    result = minimize(objective, np.zeros(k + 1), jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": 10_000, "maxcor": 20, "ftol": 1e-15, "gtol": 1e-11})
    theta = result.x
    _, grad = objective(theta)
    at_bound = np.zeros(k + 1, dtype=bool)
    for j in nonnegative:
        at_bound[1 + j] = theta[1 + j] == 0.0 and grad[1 + j] > 0.0
    if not np.isfinite(theta).all() or np.abs(grad[~at_bound]).max(initial=0.0) > 1e-6:
        raise NumericalError(f"The logistic fit did not converge (L-BFGS-B: {result.message}); the data may be "
                             "separable at this C: lower C to regularise more.")
    return float(theta[0]), theta[1:].copy()


# ---------------------------------------------------------------------------------------------------------------
# Fitted models as JSON-ready dicts, and their predictions


def _covariates(A: np.ndarray, log_lr: np.ndarray | None) -> np.ndarray:
    return A if log_lr is None else np.column_stack([A, log_lr])


def _fit_model(method: str, features: Sequence[str], A: np.ndarray, y: np.ndarray, log_lr: np.ndarray | None,
               C: float) -> dict[str, Any]:
    if method == "isotonic":
        kx, ky = isotonic_knots(A[:, 0], y)
        return {"score": features[0], "increasing": True, "x": kx.tolist(), "y": ky.tolist()}
    covariates = _covariates(A, log_lr)
    mean, scale = standardisation(covariates)
    lr_column = [covariates.shape[1] - 1] if log_lr is not None else []
    b, beta = fit_logistic((covariates - mean) / scale, y, C=C, nonnegative=lr_column)
    raw = beta / scale
    return {
        "covariates": [*features, *([LR_COVARIATE] if log_lr is not None else [])],
        "mean": mean.tolist(), "scale": scale.tolist(), "coef": beta.tolist(), "intercept": b, "C": float(C),
        "coef_original_units": raw.tolist(), "intercept_original_units": float(b - raw @ mean),
        "lr_coefficient_at_bound": bool(beta[-1] == 0.0) if lr_column else None,
    }


def _predict_model(method: str, model: Mapping[str, Any], A: np.ndarray, log_lr: np.ndarray | None) -> np.ndarray:
    if method == "isotonic":
        return np.interp(A[:, 0], np.asarray(model["x"]), np.asarray(model["y"]))
    Z = (_covariates(A, log_lr) - np.asarray(model["mean"])) / np.asarray(model["scale"])
    return expit(model["intercept"] + Z @ np.asarray(model["coef"]))


# ---------------------------------------------------------------------------------------------------------------
# Folds


def _group_codes(groups: Any, data: _Runs, caller: str) -> np.ndarray:
    n = data.y.size
    if groups is None:
        return np.arange(n)
    if isinstance(groups, str):
        if data.rows is None:
            raise ParameterError(f"groups={groups!r} passed to {caller} names a key of the run rows, but the runs "
                                 "are arrays; pass one group label per run instead.")
        missing = [i for i, row in enumerate(data.rows) if groups not in row]
        if missing:
            raise DataError(f"Run {missing[0]} passed to {caller} has no {groups!r} key, which names the "
                            "cross-validation groups; give every run a group or pass groups=None.")
        labels = [json.dumps(row[groups], sort_keys=True) for row in data.rows]
    else:
        labels = [json.dumps(g, sort_keys=True, default=str) for g in groups]
        if len(labels) != n:
            raise DataError(f"groups passed to {caller} has {len(labels)} labels for {n} runs; give one group "
                            "label per run.")
    return np.unique(labels, return_inverse=True)[1]


def fold_assignment(codes: np.ndarray, y: np.ndarray, n_folds: int | None, seed: int) -> np.ndarray:
    """The fold (n,) of each run; whole groups go to one fold.

    ``n_folds=None``: one fold per group (leave-one-group-out). Otherwise the groups are shuffled
    (``numpy.random.default_rng(seed)``), stably sorted by their divergence rate and dealt round-robin, which
    stratifies the folds by outcome.

    >>> fold_assignment(np.arange(6), np.array([0, 0, 0, 1, 1, 1], bool), 3, seed=0).tolist()
    [1, 2, 0, 0, 2, 1]
    """
    n_groups = int(codes.max()) + 1
    if n_folds is None:
        return codes.copy()
    order = np.random.default_rng(seed).permutation(n_groups)
    rate = np.bincount(codes, weights=y.astype(np.float64), minlength=n_groups) / np.bincount(codes)
    order = order[np.argsort(rate[order], kind="stable")]
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    fold_of_group[order] = np.arange(n_groups) % n_folds
    return fold_of_group[codes]


def _out_of_fold(data: _Runs, method: str, features: Sequence[str], C: float, folds: np.ndarray,
                 caller: str) -> np.ndarray:
    proba = np.empty(data.y.size)
    for f in np.unique(folds):
        test = folds == f
        train = ~test
        log_lr = data.log_lr
        _check_outcomes(data.y[train], f"The training runs of fold {int(f)} (all runs outside it) in {caller}")
        model = _fit_model(method, features, data.A[train], data.y[train],
                           None if log_lr is None else log_lr[train], C)
        proba[test] = _predict_model(method, model, data.A[test], None if log_lr is None else log_lr[test])
    return proba


def _check_folds(n_folds: object, codes: np.ndarray, caller: str) -> None:
    check_param("n_folds", n_folds, Interval(int, 2, None), None, caller=caller,
                fix="None holds out one group at a time")
    n_groups = int(codes.max()) + 1
    if n_folds is not None and n_folds > n_groups:  # type: ignore[operator]
        raise ParameterError(f"The 'n_folds' parameter of {caller} is {n_folds}, more than the {n_groups} groups "
                             f"of runs; use at most {n_groups} folds.")


# ---------------------------------------------------------------------------------------------------------------
# The calibrator


def _check_features(features: object, caller: str) -> tuple[str, ...]:
    names = (features,) if isinstance(features, str) else features
    ok = isinstance(names, Sequence) and len(names) > 0 and all(isinstance(f, str) and f for f in names)
    if not ok or len(set(names)) != len(names):  # type: ignore[arg-type]
        raise ParameterError(f"The 'features' parameter of {caller} must be a non-empty sequence of distinct "
                             f"feature names; got {features!r}: pass, for example, ('risk',).")
    return tuple(names)  # type: ignore[arg-type]


class Calibrator:
    """P(diverge) from profile features (and the learning rate) of labelled training runs.

    Parameters
    ----------
    method : {"isotonic", "logistic"}, default="isotonic"
        See the module: isotonic regression on one score, or L2-regularised logistic regression.
    features : sequence of str, default=("risk",)
        Feature names read from each run (dotted for nested ``features`` objects); one for isotonic.
    use_lr : bool, default=False
        Add log10 of the learning rate as a covariate, with a non-negative coefficient (logistic only).
    C : float, default=1.0
        Inverse L2 strength of the logistic fit (scikit-learn's ``C``); unused by isotonic.
    n_bins : int, default=10
        Equal-width bins of ECE and of the reliability data.
    n_boot : int, default=1000
        Stratified bootstrap replicates of the AUROC interval.
    level : float, default=0.95
        Confidence level of that interval.
    seed : int, default=0
        Seeds the bootstrap and the cross-validation folds.

    Attributes
    ----------
    model_ : dict
        The fitted model (isotonic knots, or logistic standardisation and coefficients).
    metrics_ : dict
        ``in_sample`` and, when asked, ``cross_validated`` metrics (:func:`koopscope.gate.metrics.calibration_metrics`),
        and ``covariate_auroc``, the AUROC of each raw covariate.
    provenance_ : dict
        n_runs, n_diverged, seed, tool, tool_version, created_at, source (and source_sha256 for a file).
    lr_range_ : [float, float] or None
        The smallest and largest training learning rates (with ``use_lr``).
    """

    def __init__(self, method: str = "isotonic", features: Sequence[str] | str = ("risk",), *, use_lr: bool = False,
                 C: float = 1.0, n_bins: int = 10, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> None:
        caller = "Calibrator"
        check_param("method", method, Options(METHODS), caller=caller,
                    fix="'isotonic' calibrates one score, 'logistic' combines features and the learning rate")
        check_param("use_lr", use_lr, bool, caller=caller, fix="pass True or False")
        check_param("C", C, Interval(float, 0.0, None, closed="neither"), caller=caller,
                    fix="the inverse L2 strength, such as 1.0")
        check_param("n_bins", n_bins, Interval(int, 1, None), caller=caller, fix="the default is 10")
        check_param("n_boot", n_boot, Interval(int, 0, None), caller=caller, fix="the default is 1000")
        check_param("level", level, Interval(float, 0.0, 1.0, closed="neither"), caller=caller,
                    fix="give a confidence level such as 0.95")
        self.seed = check_seed(seed, caller)
        self.features = _check_features(features, caller)
        if method == "isotonic" and use_lr:
            raise ParameterError("use_lr=True passed to Calibrator needs method='logistic', because isotonic "
                                 "regression calibrates one score and cannot be monotone in both the score and the "
                                 "learning rate; pass method='logistic' or use_lr=False.")
        if method == "isotonic" and len(self.features) != 1:
            raise ParameterError(f"The 'features' parameter of Calibrator names {len(self.features)} features "
                                 f"{self.features!r}, but method='isotonic' calibrates one score; pass one feature, "
                                 "or method='logistic' to combine several.")
        self.method, self.use_lr, self.C = method, use_lr, float(C)
        self.n_bins, self.n_boot, self.level = int(n_bins), int(n_boot), float(level)
        self.model_: dict[str, Any] | None = None
        self.metrics_: dict[str, Any] | None = None
        self.provenance_: dict[str, Any] | None = None
        self.lr_range_: list[float] | None = None

    def __repr__(self) -> str:
        return (f"Calibrator(method={self.method!r}, features={self.features!r}, use_lr={self.use_lr}, "
                f"C={self.C:g})")

    # -- fitting -------------------------------------------------------------------------------------------------

    def fit(self, runs: Runs, y: Any = None, *, lr: Any = None, groups: Any = None,
            n_folds: int | None = None) -> Calibrator:
        """Fit on labelled runs and record in-sample (and, when asked, cross-validated) metrics.

        Parameters
        ----------
        runs : list of dict, path, or array_like of shape (n, k)
            Run rows (see the module), a JSONL runs file, or the feature values in ``features`` order (then
            ``y`` is required, and ``lr`` with ``use_lr``).
        y : array_like of shape (n,), optional
            Outcomes for an array ``runs`` (True or 1: diverged).
        lr : float or array_like of shape (n,), optional
            Learning rates; overrides those of the rows.
        groups : str or sequence, optional
            Cross-validate with whole groups as folds: a row key (such as "group") or one label per run.
        n_folds : int, optional
            Cross-validate with this many folds (groups dealt to folds, stratified by outcome); with ``groups``
            and no ``n_folds``, one group is held out at a time. Neither: no cross-validation.

        Returns
        -------
        self
        """
        caller = "Calibrator.fit"
        data = _training_runs(runs, y, lr, self.features, self.use_lr, caller)
        cv = None
        if groups is not None or n_folds is not None:
            codes = _group_codes(groups, data, caller)
            _check_folds(n_folds, codes, caller)
            folds = fold_assignment(codes, data.y, n_folds, self.seed)
            oof = _out_of_fold(data, self.method, self.features, self.C, folds, caller)
            cv = {**self._metrics(data.y, oof), "n_folds": int(folds.max()) + 1,
                  "folds": "runs" if groups is None else "groups"}
        self.model_ = _fit_model(self.method, self.features, data.A, data.y, data.log_lr, self.C)
        covariates = _covariates(data.A, data.log_lr)
        names = [*self.features, *([LR_COVARIATE] if self.use_lr else [])]
        self.metrics_ = {
            "in_sample": self._metrics(data.y, _predict_model(self.method, self.model_, data.A, data.log_lr)),
            "cross_validated": cv,
            "covariate_auroc": {name: auroc(data.y, covariates[:, j]) for j, name in enumerate(names)},
        }
        self.lr_range_ = None if data.log_lr is None else [float(10 ** data.log_lr.min()),
                                                           float(10 ** data.log_lr.max())]
        self.provenance_ = {"n_runs": int(data.y.size), "n_diverged": int(data.y.sum()), "seed": self.seed,
                            "tool": "koopscope", "tool_version": tool_version(), "created_at": created_at(),
                            "source": data.source}
        if data.source_sha256 is not None:
            self.provenance_["source_sha256"] = data.source_sha256
        return self

    def _metrics(self, y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
        return calibration_metrics(y, proba, n_bins=self.n_bins, n_boot=self.n_boot, level=self.level,
                                   seed=self.seed)

    def _fitted(self, caller: str) -> dict[str, Any]:
        if self.model_ is None:
            raise NotFittedError(f"This Calibrator is not fitted, so {caller} cannot predict; call fit(runs) first "
                                 "or load a saved calibration with Calibrator.load(path).")
        return self.model_

    # -- prediction ----------------------------------------------------------------------------------------------

    def _inputs(self, features: Any, lr: Any, caller: str) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """(A (n, k), log10 lr (n,) or None, whether one run was given)."""
        k = len(self.features)
        if isinstance(features, Mapping):
            rows, single = [features], True
        elif _is_rows(features) and len(features) > 0:
            rows, single = list(features), False
        else:
            rows = None
            arr = np.asarray(features)
            single = arr.ndim == 0 or (arr.ndim == 1 and k > 1)
            A = _covariate_array(arr.reshape(1, -1) if single else arr, k, caller)
        if rows is not None:
            where = [("The run" if single else f"features[{i}]") + f" passed to {caller}" for i in range(len(rows))]
            A = np.array([_feature_values(r, w, self.features) for r, w in zip(rows, where, strict=True)],
                         dtype=np.float64).reshape(len(rows), k)
        if not self.use_lr:
            return A, None, single
        if lr is None and rows is not None:
            return A, np.log10([_run_lr(r, w) for r, w in zip(rows, where, strict=True)]), single
        return A, _lr_array(lr, A.shape[0], caller), single

    def predict_proba(self, features: Any, lr: Any = None) -> np.ndarray | float:
        """P(diverge) of runs.

        Parameters
        ----------
        features : dict, list of dict, or array_like
            One run row (gives a float), a list of rows, or feature values: (n, k) in ``features`` order; a 1-D
            array is n values of the one feature when there is one feature, else one run's k values.
        lr : float or array_like of shape (n,), optional
            Learning rates (``use_lr`` only); default: those of the rows.

        Returns
        -------
        ndarray of shape (n,), or float for one run
        """
        model = self._fitted("predict_proba")
        A, log_lr, single = self._inputs(features, lr, "Calibrator.predict_proba")
        p = _predict_model(self.method, model, A, log_lr)
        return float(p[0]) if single else p

    def largest_lr(self, features: Any, max_risk: float = 0.1, lr_grid: Any = None) -> float | None:
        """The largest learning rate on ``lr_grid`` up to which P(diverge) stays ≤ ``max_risk`` for this run.

        P is non-decreasing in the learning rate (module docstring), so the admissible rates are the grid's
        smallest ones, up to the returned value.

        Parameters
        ----------
        features : dict or array_like of shape (k,)
            One run's features (any learning rate in a row is ignored).
        max_risk : float in (0, 1), default=0.1
        lr_grid : array_like of positive floats, optional
            Candidate learning rates; default 241 log-spaced rates spanning the training learning rates (no
            extrapolation).

        Returns
        -------
        float, or None when even the smallest candidate exceeds ``max_risk``
        """
        model = self._fitted("largest_lr")
        caller = "Calibrator.largest_lr"
        if not self.use_lr:
            raise ParameterError("largest_lr needs a calibration that takes the learning rate; fit "
                                 "Calibrator(method='logistic', use_lr=True) instead.")
        check_param("max_risk", max_risk, Interval(float, 0.0, 1.0, closed="neither"), caller=caller,
                    fix="give the acceptable probability of divergence, such as 0.1")
        if lr_grid is None:
            if self.lr_range_ is None:
                raise ParameterError(f"lr_grid passed to {caller} is None and this calibration records no "
                                     "training learning rates; pass lr_grid.")
            grid = np.geomspace(self.lr_range_[0], self.lr_range_[1], 241)
        else:
            grid = np.unique(_positive_array("lr_grid", lr_grid, np.size(lr_grid), caller))
        one = dict(features) if isinstance(features, Mapping) else None
        if one is not None:
            one.pop("lr", None)
            one.pop("hyperparameters", None)
        A, _, single = self._inputs(one if one is not None else features, 1.0, caller)
        if not single and A.shape[0] != 1:
            raise DataError(f"features passed to {caller} describe {A.shape[0]} runs; pass one run.")
        p = _predict_model(self.method, model, np.repeat(A, grid.size, axis=0), np.log10(grid))
        over = np.flatnonzero(p > max_risk)
        last = grid.size if over.size == 0 else int(over[0])
        return None if last == 0 else float(grid[last - 1])

    # -- persistence ---------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The calibration as a JSON-ready dict (``schema_version`` "1.0", ``kind`` "koopscope-calibration")."""
        model = self._fitted("to_dict")
        return {"schema_version": SCHEMA_VERSION, "kind": KIND, "method": self.method,
                "features": list(self.features), "use_lr": self.use_lr,
                "options": {"C": self.C, "n_bins": self.n_bins, "n_boot": self.n_boot, "level": self.level,
                            "seed": self.seed},
                "model": model, "lr_range": self.lr_range_, "metrics": self.metrics_, "provenance": self.provenance_}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Calibrator:
        """A fitted Calibrator from :meth:`to_dict` output; refuses documents of another kind or version."""
        _check_document(document)
        options = document["options"]
        cal = cls(document["method"], tuple(document["features"]), use_lr=document["use_lr"], C=options["C"],
                  n_bins=options["n_bins"], n_boot=options["n_boot"], level=options["level"], seed=options["seed"])
        cal.model_ = dict(document["model"])
        cal.metrics_ = document.get("metrics")
        cal.provenance_ = document.get("provenance")
        cal.lr_range_ = document.get("lr_range")
        return cal

    def to_json(self) -> str:
        """The calibration as strict JSON text (no NaN), indented, newline-terminated."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the calibration to ``path`` as JSON, atomically (never pickle); returns the path."""
        return write_text(path, self.to_json(), argument="calibration path")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibrator:
        """Read a calibration written by :meth:`save` (or ``koopscope calibrate``)."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"The calibration file {str(path)!r} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                            "pass a file written by koopscope calibrate or Calibrator.save.") from None
        return cls.from_dict(document)


def _document_error(what: str) -> DataError:
    return DataError(f"The calibration document {what}; pass a file written by koopscope calibrate or "
                     "Calibrator.save.")


def _finite_list(value: object, length: int | None = None) -> bool:
    return (isinstance(value, list) and all(_finite_number(v) for v in value)
            and (length is None or len(value) == length))


def _check_document(document: object) -> None:
    if not isinstance(document, Mapping) or document.get("kind") != KIND:
        kind = document.get("kind") if isinstance(document, Mapping) else None
        raise _document_error(f"has kind {kind!r}, expected {KIND!r}")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise _document_error(f"has schema_version {document.get('schema_version')!r}, expected {SCHEMA_VERSION!r} "
                              "(written by another koopscope version)")
    missing = [key for key in ("method", "features", "use_lr", "options", "model") if key not in document]
    if missing:
        raise _document_error(f"has no {missing[0]!r} key")
    options = document["options"]
    absent = [key for key in ("C", "n_bins", "n_boot", "level", "seed") if not isinstance(options, Mapping)
              or key not in options]
    if absent or not isinstance(document["features"], list):
        raise _document_error(f"has no option {absent[0]!r}" if absent else "has features that are not a list")
    model, method = document["model"], document["method"]
    if not isinstance(model, Mapping) or method not in METHODS:
        raise _document_error(f"has method {method!r} with a model of type {type(model).__name__}")
    if method == "isotonic":
        x, y = model.get("x"), model.get("y")
        ok = _finite_list(x) and len(x) >= 1 and _finite_list(y, len(x))  # type: ignore[arg-type]
        if not ok or np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):  # type: ignore[arg-type]
            raise _document_error("has isotonic knots that are not finite, increasing lists of equal length")
    else:
        k = len(document["features"]) + bool(document["use_lr"])
        ok = all(_finite_list(model.get(key), k) for key in ("mean", "scale", "coef"))
        if not ok or not _finite_number(model.get("intercept")):
            raise _document_error(f"has logistic mean, scale or coef that are not {k} finite numbers each, or no "
                                  "finite intercept")


# ---------------------------------------------------------------------------------------------------------------
# Cross-validation for benchmarks


def cross_validated_proba(runs: Runs, groups: Any = None, *, y: Any = None, lr: Any = None,
                          method: str = "isotonic", features: Sequence[str] | str = ("risk",), use_lr: bool = False,
                          C: float = 1.0, n_folds: int | None = None, seed: int = 0) -> np.ndarray:
    """Out-of-fold P(diverge): each run is scored by a calibrator never trained on its fold.

    Folds are whole groups, so with one group per model configuration no run is scored by a calibration that
    saw that configuration.

    Parameters
    ----------
    runs, y, lr
        As in :meth:`Calibrator.fit`.
    groups : str or sequence, optional
        A row key (such as "group") or one label per run; default: each run its own group.
    method, features, use_lr, C
        As in :class:`Calibrator`.
    n_folds : int, optional
        Deal the groups into this many folds (stratified by outcome, seeded); default: hold out one group at a
        time (leave-one-group-out; leave-one-out without groups).
    seed : int, default=0

    Returns
    -------
    ndarray of shape (n,)

    >>> runs = [{"risk": r, "group": g, "diverged": d} for r, g, d in
    ...         [(0.1, "a", False), (0.7, "a", True), (0.2, "b", False), (0.8, "b", True), (0.3, "c", False),
    ...          (0.9, "c", True)]]
    >>> cross_validated_proba(runs, "group").round(2).tolist()  # fold "a" is scored by the fit on "b" and "c"
    [0.0, 0.8, 0.0, 1.0, 0.2, 1.0]
    """
    caller = "cross_validated_proba"
    cal = Calibrator(method, features, use_lr=use_lr, C=C, n_boot=0, seed=seed)
    data = _training_runs(runs, y, lr, cal.features, use_lr, caller)
    codes = _group_codes(groups, data, caller)
    _check_folds(n_folds, codes, caller)
    folds = fold_assignment(codes, data.y, n_folds, cal.seed)
    return _out_of_fold(data, method, cal.features, cal.C, folds, caller)
