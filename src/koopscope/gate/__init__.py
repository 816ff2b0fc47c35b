"""Decisions (layer 6): the AbstainGate, which passes, fails or abstains on a fingerprint's bootstrap interval.

>>> import koopscope as ks
>>> ks.gate.AbstainGate(threshold=1.0).on_abstain
'fail'
"""

from koopscope.gate.abstain import EXIT_CODES, MIN_PAIRS, AbstainGate, Decision
from koopscope.gate.calibration import Calibrator, cross_validated_proba, read_runs
from koopscope.gate.metrics import auroc, auroc_interval, expected_calibration_error, reliability_diagram

__all__ = [
    "EXIT_CODES", "MIN_PAIRS", "AbstainGate", "Calibrator", "Decision", "auroc", "auroc_interval",
    "cross_validated_proba", "expected_calibration_error", "read_runs", "reliability_diagram",
]
