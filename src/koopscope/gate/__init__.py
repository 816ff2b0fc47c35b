"""Decisions (layer 6): the AbstainGate, which passes, fails or abstains on a fingerprint's bootstrap interval.

>>> import koopscope as ks
>>> ks.gate.AbstainGate(threshold=1.0).on_abstain
'fail'
"""

from koopscope.gate.abstain import EXIT_CODES, MIN_PAIRS, AbstainGate, Decision

__all__ = ["EXIT_CODES", "MIN_PAIRS", "AbstainGate", "Decision"]
