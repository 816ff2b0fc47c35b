"""LossWeightSchedule: the documented value of every rule at chosen steps, and its parameter errors."""

from __future__ import annotations

import math

import pytest

from koopscope.errors import ParameterError
from koopscope.koopman import LossWeightSchedule
from tests.koopman.refusal import refused


def test_linear_values() -> None:
    s = LossWeightSchedule("linear", 0.1, 0.5, total_steps=120, warmup_steps=20)  # post-warm-up span: 100 steps
    assert [s(i) for i in (0, 19)] == [0.0, 0.0]  # warm-up: no Koopman loss
    assert s(20) == pytest.approx(0.1, abs=1e-15)
    assert s(45) == pytest.approx(0.2, abs=1e-15)  # p = 0.25
    assert s(70) == pytest.approx(0.3, abs=1e-15)
    assert s(120) == s(10_000) == pytest.approx(0.5, abs=1e-15)


def test_exponential_is_the_geometric_interpolation() -> None:
    s = LossWeightSchedule("exponential", 0.001, 0.1, total_steps=110, warmup_steps=10)
    assert s(9) == 0.0
    assert s(10) == 0.001 and s(110) == 0.1  # exact at both ends
    assert s(60) == pytest.approx(0.01, rel=1e-13)  # halfway: the geometric mean sqrt(0.001 · 0.1)
    assert s(35) == pytest.approx(0.001 * 100**0.25, rel=1e-13)
    ratios = [s(i + 1) / s(i) for i in range(10, 110)]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-12)  # a constant factor per step: 100^(1/100)
    assert ratios[0] == pytest.approx(100 ** 0.01, rel=1e-12)


def test_step_rises_at_25_50_75_percent() -> None:
    s = LossWeightSchedule("step", 0.0, 0.3, total_steps=100)
    assert [round(s(i), 12) for i in (0, 24, 25, 49, 50, 74, 75, 99, 100)] == [
        0.0, 0.0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.3]
    w = LossWeightSchedule("step", 0.2, 0.8, total_steps=44, warmup_steps=4)  # span 40: marks at 14, 24, 34
    assert [round(w(i), 12) for i in (3, 4, 13, 14, 23, 24, 33, 34)] == [0.0, 0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.8]


def test_progress() -> None:
    s = LossWeightSchedule(total_steps=11, warmup_steps=1)
    assert [s.progress(i) for i in (0, 1, 6, 11, 50)] == [0.0, 0.0, 0.5, 1.0, 1.0]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "cosine"}, "The 'kind' parameter of LossWeightSchedule must be one of 'linear', 'exponential', "
                         "'step'; got 'cosine'; choose the interpolation rule."),
    ({"min_weight": -0.1}, "The 'min_weight' parameter of LossWeightSchedule must be a float in [0, inf) or an int "
                           "in [0, inf); got -0.1; weights are finite and non-negative."),
    ({"max_weight": math.inf}, "The 'max_weight' parameter of LossWeightSchedule must be a float in [0, inf) or an "
                               "int in [0, inf); got inf; weights are finite and non-negative."),
    ({"min_weight": 0.5, "max_weight": 0.1}, "The 'max_weight' parameter of LossWeightSchedule is 0.1, below "
                                             "min_weight=0.5; the weight rises from min_weight to max_weight: swap "
                                             "them."),
    ({"kind": "exponential", "min_weight": 0.0}, "The 'min_weight' parameter of LossWeightSchedule must be > 0 for "
                                                 "kind='exponential' (a geometric interpolation from 0 stays at 0); "
                                                 "got 0.0: pass a positive start such as 1e-3, or use kind='linear'."),
    ({"total_steps": 0}, "The 'total_steps' parameter of LossWeightSchedule must be an int in [1, inf); got 0; the "
                         "number of training steps the schedule spans."),
    ({"total_steps": 10, "warmup_steps": 10}, "The 'warmup_steps' parameter of LossWeightSchedule must be an int in "
                                              "[0, 9]; got 10; warm-up must end before total_steps=10."),
])
def test_parameter_errors(kwargs: dict, message: str) -> None:
    refused(ParameterError, message, LossWeightSchedule, **kwargs)


def test_negative_step_is_refused() -> None:
    with pytest.raises(ParameterError, match="The 'step' parameter of LossWeightSchedule must be an int in"):
        LossWeightSchedule()(-1)
