"""Parameter and data validation with one-sentence messages.

Parameters are checked against declarative constraints (:class:`Interval`, :class:`Options`, a type)
in the style of scikit-learn's ``_parameter_constraints``; data are checked by :func:`check_pairs`, which
every kernel calls first. Messages name the argument, the value, what was expected and the fix.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from koopscope._backend import Array, backend_of, is_torch
from koopscope.errors import DataError, ParameterError

__all__ = [
    "Interval", "Options", "as_2d", "check_finite", "check_pairs", "check_param", "check_rank", "check_rank_limit",
    "check_seed",
]


@dataclass(frozen=True)
class Interval:
    """A real or integer interval; ``None`` bounds are infinite."""

    kind: type  # int or float
    lo: float | None
    hi: float | None
    closed: str = "both"  # "both", "left", "right", "neither"

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if not math.isfinite(float(value)):
            return False
        lo_ok = self.lo is None or (value >= self.lo if self.closed in ("both", "left") else value > self.lo)
        hi_ok = self.hi is None or (value <= self.hi if self.closed in ("both", "right") else value < self.hi)
        return bool(lo_ok and hi_ok)

    def __str__(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.lo is not None else "("
        right = "]" if self.closed in ("both", "right") and self.hi is not None else ")"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        noun = "an int" if self.kind is int else "a float"
        return f"{noun} in {left}{lo}, {hi}{right}"


@dataclass(frozen=True)
class Options:
    """A closed set of allowed values."""

    values: tuple[Any, ...]

    def __contains__(self, value: object) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


Constraint = Interval | Options | type | None


def _satisfies(value: object, constraint: Constraint) -> bool:
    if constraint is None:
        return value is None
    if isinstance(constraint, type):
        return isinstance(value, constraint) and not (constraint is not bool and isinstance(value, bool))
    return value in constraint


def _describe(constraint: Constraint) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, type):
        return f"an instance of {constraint.__name__}"
    return str(constraint)


def check_param(name: str, value: object, *constraints: Constraint, caller: str, fix: str = "") -> None:
    """Raise :class:`ParameterError` unless ``value`` satisfies one of ``constraints``.

    >>> check_param("rank", 0, Interval(int, 1, None), None, caller="exact")
    Traceback (most recent call last):
    ...
    koopscope.errors.ParameterError: The 'rank' parameter of exact must be an int in [1, inf) or None; got 0.
    """
    if any(_satisfies(value, c) for c in constraints):
        return
    expected = " or ".join(_describe(c) for c in constraints)
    tail = f"; {fix}" if fix else ""
    raise ParameterError(f"The {name!r} parameter of {caller} must be {expected}; got {value!r}{tail}.")


def check_seed(seed: object, caller: str) -> int:
    check_param("seed", seed, Interval(int, 0, 2**63 - 1), caller=caller, fix="pass a non-negative int")
    return int(seed)  # type: ignore[arg-type]


RankSpec = int | str | None


def check_rank(rank: object, energy: object, caller: str) -> None:
    """Validate the rank options shared by the projection kernels (never a magic 0/-1)."""
    check_param(
        "rank", rank, Interval(int, 1, None), Options(("svht", "full")), None, caller=caller,
        fix="use None or 'full' for full rank, an int r >= 1, or 'svht' for the Gavish-Donoho threshold",
    )
    check_param(
        "energy", energy, Interval(float, 0.0, 1.0, closed="right"), None, caller=caller,
        fix="give the fraction of squared singular-value energy to keep, e.g. 0.99",
    )
    if energy is not None and rank not in (None, "full"):
        raise ParameterError(
            f"The 'rank' and 'energy' parameters of {caller} are exclusive; got rank={rank!r} and "
            f"energy={energy!r}: pass only one of them."
        )


def check_rank_limit(rank: object, shape: tuple[int, ...], caller: str) -> None:
    """Refuse an int rank above min(N, D) of data of the given shape, naming both numbers."""
    limit = min(shape)
    if isinstance(rank, numbers.Integral) and not isinstance(rank, bool) and rank > limit:
        raise ParameterError(f"The 'rank' parameter of {caller} is {rank}, larger than min(N, D) = {limit} for data "
                             f"of shape {tuple(shape)}; lower rank to at most {limit} or pass more snapshots.")


def as_2d(name: str, x: object, caller: str) -> Array:
    """Type, dtype and dimension checks; returns a float64 array on the input's device."""
    if is_torch(x):
        dtype = str(x.dtype).removeprefix("torch.")  # type: ignore[attr-defined]
        kind = "c" if x.is_complex() else "b" if dtype == "bool" else "f" if x.is_floating_point() else "i"  # type: ignore[attr-defined]
        shape = tuple(x.shape)  # type: ignore[attr-defined]
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError):  # ragged lists and the like
            raise DataError(f"{name} passed to {caller} could not be read as a numeric array (ragged rows or "
                            "non-numeric entries); pass a (T, D) numpy array or torch tensor.") from None
        dtype, kind, shape = str(arr.dtype), arr.dtype.kind, arr.shape
        x = arr
    if kind == "b":
        raise DataError(f"{name} passed to {caller} has boolean dtype; DMD needs real-valued snapshots: cast with "
                        f"{name}.astype(float) if the 0/1 values are meant as numbers.")
    if kind == "c":
        raise DataError(f"{name} passed to {caller} has complex dtype {dtype}; koopscope's kernels take real "
                        "snapshots: stack the real and imaginary parts as features, e.g. "
                        f"np.hstack([{name}.real, {name}.imag]).")
    if kind not in "fiu":
        raise DataError(f"{name} passed to {caller} has dtype {dtype}; expected a real numeric array of shape (T, D).")
    if len(shape) != 2:
        hint = (f"for a scalar series pass {name}.reshape(-1, 1)" if len(shape) == 1 else
                "reshape it to (T, D); for a batch of trajectories form snapshot pairs per trajectory and "
                "concatenate them (pass X and Y)" if len(shape) == 3 else "pass a (T, D) array")
        raise DataError(f"{name} passed to {caller} must be a 2-D array of shape (T, D) with one snapshot per row; "
                        f"got a {len(shape)}-D array of shape {shape}: {hint}.")
    return backend_of(x).asarray(x)


def check_finite(name: str, x: Array, caller: str) -> None:
    """Raise :class:`DataError` naming the first NaN/Inf entry (checked on the array's own device)."""
    bad = ~(x.isfinite() if is_torch(x) else np.isfinite(x))
    count = int(bad.sum())
    if count:
        row, col = (int(i) for i in (bad.nonzero()[0] if is_torch(x) else np.argwhere(bad)[0]))
        raise DataError(f"{name} passed to {caller} contains {count} NaN/Inf value(s), the first at row {row}, column "
                        f"{col}; DMD needs finite snapshots: drop or impute those rows first.")


def check_pairs(X: object, Y: object = None, *, caller: str, min_pairs: int = 2,
                orientation: str = "check") -> tuple[Array, Array]:
    """Validate a trajectory ``X`` (T, D) or snapshot pairs ``X``, ``Y`` (N, D).

    Returns float64 arrays ``(X, Y)`` of shape (N, D) on the input's device, with row i of ``Y`` the
    successor of row i of ``X``. ``orientation="rows"`` disables the looks-transposed check for data
    that really have D > 10 T.
    """
    check_param("orientation", orientation, Options(("check", "rows")), caller=caller,
                fix="use 'check' (default) or 'rows' to accept D > 10*T")
    Xa = as_2d("X", X, caller)
    if Y is None:
        T, D = Xa.shape
        if T < 2:
            raise DataError(f"X passed to {caller} has {T} snapshot(s); a trajectory needs at least 2 rows "
                            "(snapshots) to form a pair: pass more snapshots.")
        full, Xa, Ya = Xa, Xa[:-1], Xa[1:]
        what = "trajectory"
    else:
        if is_torch(X) != is_torch(Y):
            raise DataError(f"X and Y passed to {caller} must both be numpy arrays or both torch tensors; got "
                            f"{type(X).__name__} and {type(Y).__name__}: convert one of them.")
        Ya = as_2d("Y", Y, caller)
        if tuple(Xa.shape) != tuple(Ya.shape):
            raise DataError(f"X and Y passed to {caller} must have the same shape (N, D); got X {tuple(Xa.shape)} "
                            f"and Y {tuple(Ya.shape)}: row i of Y must be the successor of row i of X.")
        if is_torch(Xa) and Xa.device != Ya.device:
            raise DataError(f"X and Y passed to {caller} are on different devices ({Xa.device} and {Ya.device}); "
                            "move them to the same device.")
        what = "pairs"
    N, D = Xa.shape
    if D == 0:
        shape = (N + 1, D) if what == "trajectory" else (N, D)
        raise DataError(f"X passed to {caller} has D = 0 features (shape {shape}); each snapshot needs at "
                        "least one feature.")
    if N < min_pairs:
        raise DataError(f"X passed to {caller} gives {N} snapshot pair(s); at least {min_pairs} are needed: "
                        "pass a longer trajectory or more pairs.")
    T = N + 1 if what == "trajectory" else N
    if orientation == "check" and D > 10 * T:
        raise DataError(f"X passed to {caller} has shape {(T, D) if what == 'trajectory' else (N, D)}, with D = {D} > "
                        f"10 x {T} snapshots, which looks transposed (rows must be snapshots): pass X.T, or "
                        "orientation='rows' if the rows really are snapshots.")
    if what == "trajectory":  # X and Y are overlapping views: check the trajectory once
        check_finite("X", full, caller)
        _check_not_degenerate(full, full, caller)
    else:
        check_finite("X", Xa, caller)
        check_finite("Y", Ya, caller)
        _check_not_degenerate(Xa, Ya, caller)
    return Xa, Ya


def _extent(x: Array) -> tuple[float, float]:
    """(max |x|, max over features of the range of x across snapshots), on the array's device."""
    if is_torch(x):
        return float(x.abs().max()), float((x.amax(dim=0) - x.amin(dim=0)).max())
    return float(np.abs(x).max()), float(np.ptp(x, axis=0).max())


def _check_not_degenerate(X: Array, Y: Array, caller: str) -> None:
    (sx, rx), (sy, ry) = _extent(X), _extent(Y)
    scale, spread = max(sx, sy), max(rx, ry)
    if scale == 0.0:
        raise DataError(f"X passed to {caller} is all zeros (rank 0); there are no dynamics to fit: check the "
                        "capture or the input.")
    if spread <= 1e-12 * scale:
        raise DataError(f"X passed to {caller} is constant (every snapshot equals the first, up to 1e-12 relative); "
                        "a constant state carries no dynamics: pass a trajectory that moves.")
