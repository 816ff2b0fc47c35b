r"""The weight of the Koopman loss over training: zero during warm-up, then min → max by a fixed rule.

With w_0 = ``min_weight``, w_1 = ``max_weight``, W = ``warmup_steps``, S = ``total_steps`` and the post-warm-up
progress p = clip((s − W) / (S − W), 0, 1) at step s (counted from 0):

* s < W: w(s) = 0 (gradient warm-up: no Koopman loss);
* ``"linear"``:      w = w_0 + (w_1 − w_0) p;
* ``"exponential"``: w = w_0 (w_1 / w_0)^p, the geometric interpolation (needs w_0 > 0);
* ``"step"``:        w = w_0 + (w_1 − w_0) · j / 3, with j the number of the marks 25 %, 50 %, 75 % that p has
  reached: w_0 until p = 0.25, then one third of the way up, two thirds from p = 0.5, and w_1 from p = 0.75.

Steps past S keep w_1.

>>> sched = LossWeightSchedule("step", 0.0, 0.3, total_steps=110, warmup_steps=10)
>>> [round(sched(s), 6) for s in (0, 10, 35, 60, 85, 200)]
[0.0, 0.0, 0.1, 0.2, 0.3, 0.3]
"""

from __future__ import annotations

from dataclasses import dataclass

from koopscope._validation import Interval, Options, check_param
from koopscope.errors import ParameterError

__all__ = ["KINDS", "LossWeightSchedule"]

KINDS = ("linear", "exponential", "step")
STEP_MARKS = (0.25, 0.50, 0.75)  # design: steps at 25 / 50 / 75 % of the post-warm-up span


@dataclass(frozen=True)
class LossWeightSchedule:
    """Koopman-loss weight w(step); see the module docstring for the three rules and their exact values."""

    kind: str = "linear"
    min_weight: float = 0.01
    max_weight: float = 0.1
    total_steps: int = 1000
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        caller = "LossWeightSchedule"
        check_param("kind", self.kind, Options(KINDS), caller=caller, fix="choose the interpolation rule")
        for name in ("min_weight", "max_weight"):
            check_param(name, getattr(self, name), Interval(float, 0.0, None), Interval(int, 0, None),
                        caller=caller, fix="weights are finite and non-negative")
        if self.max_weight < self.min_weight:
            raise ParameterError(f"The 'max_weight' parameter of {caller} is {self.max_weight!r}, below "
                                 f"min_weight={self.min_weight!r}; the weight rises from min_weight to max_weight: "
                                 "swap them.")
        if self.kind == "exponential" and self.min_weight <= 0:
            raise ParameterError(f"The 'min_weight' parameter of {caller} must be > 0 for kind='exponential' (a "
                                 f"geometric interpolation from 0 stays at 0); got {self.min_weight!r}: pass a "
                                 "positive start such as 1e-3, or use kind='linear'.")
        check_param("total_steps", self.total_steps, Interval(int, 1, None), caller=caller,
                    fix="the number of training steps the schedule spans")
        check_param("warmup_steps", self.warmup_steps, Interval(int, 0, self.total_steps - 1), caller=caller,
                    fix=f"warm-up must end before total_steps={self.total_steps}")

    def progress(self, step: int) -> float:
        """p in [0, 1]: the fraction of the post-warm-up span reached at ``step``."""
        return min(1.0, max(0.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)))

    def __call__(self, step: int) -> float:
        check_param("step", step, Interval(int, 0, None), caller="LossWeightSchedule",
                    fix="steps are counted from 0")
        if step < self.warmup_steps:
            return 0.0
        p, lo, hi = self.progress(step), float(self.min_weight), float(self.max_weight)
        if self.kind == "linear":
            return lo + (hi - lo) * p
        if self.kind == "exponential":
            return lo ** (1.0 - p) * hi**p  # = w_0 (w_1 / w_0)^p, exact at both ends
        reached = sum(p >= mark for mark in STEP_MARKS)  # 0..3
        return lo + (hi - lo) * reached / len(STEP_MARKS)
