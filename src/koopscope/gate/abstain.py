"""The AbstainGate: pass, fail or abstain on a fingerprint statistic, judged by its bootstrap interval.

Given a statistic s (spectral radius by default; near-unit mass; risk for model fingerprints), a threshold
τ and the percentile-bootstrap interval [low, high] of s recorded in the fingerprint, the verdict is

* **pass** when high < τ: the whole interval lies under the threshold;
* **fail** when low > τ: the whole interval lies over it;
* **abstain** when the interval straddles τ (low ≤ τ ≤ high), or when the data cannot support a decision:
  fewer than :data:`MIN_PAIRS` snapshot pairs, or any trust flag of severity "warning" or "error" (too few
  pairs for the dimension, a spurious dominant eigenvalue, a majority of spurious eigenvalues, no
  bootstrap replicates, or a profiler's flags).

Abstaining is fail-closed by default: ``on_abstain="fail"`` maps it to exit code 3 (DESIGN.md), which a CI
job treats as a failure; ``on_abstain="pass"`` maps it to 0. The verdict itself stays "abstain" either way,
so the record says what happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from koopscope._validation import Options, as_2d, check_param
from koopscope.dmd import fit
from koopscope.errors import ParameterError
from koopscope.fingerprint import KoopmanFingerprint, from_trajectory

__all__ = ["EXIT_CODES", "MIN_PAIRS", "AbstainGate", "Decision"]

#: Below this many snapshot pairs no interval is trusted, whatever the dimension.
MIN_PAIRS: Final = 10

#: DESIGN.md, "Command line": 0 pass, 1 fail, 3 abstain under the fail-closed policy.
EXIT_CODES: Final = {"pass": 0, "fail": 1, "abstain": 3}


@dataclass(frozen=True)
class Decision:
    """A gate's verdict with everything needed to audit it."""

    verdict: str  # "pass" | "fail" | "abstain"
    statistic: str
    threshold: float
    estimate: float | None
    low: float | None
    high: float | None
    reason: str
    on_abstain: str = "fail"

    @property
    def exit_code(self) -> int:
        """0 pass, 1 fail, 3 abstain (fail-closed) or 0 abstain (``on_abstain="pass"``)."""
        if self.verdict == "abstain" and self.on_abstain == "pass":
            return EXIT_CODES["pass"]
        return EXIT_CODES[self.verdict]

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def as_dict(self) -> dict[str, Any]:
        """The fingerprint's ``gate`` section."""
        interval = None if self.low is None else {"estimate": self.estimate, "low": self.low, "high": self.high}
        return {"statistic": self.statistic, "threshold": self.threshold, "interval": interval,
                "verdict": self.verdict, "reason": self.reason, "on_abstain": self.on_abstain}


def _check_threshold(threshold: object) -> float:
    ok = isinstance(threshold, (int, float, np.floating, np.integer)) and not isinstance(threshold, bool)
    if not ok or not math.isfinite(float(threshold)):  # type: ignore[arg-type]
        raise ParameterError(f"threshold={threshold!r} passed to AbstainGate is not a finite number; give the "
                             "statistic's limit, e.g. 1.0 for the spectral radius.")
    return float(threshold)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AbstainGate:
    """Decide pass / fail / abstain on ``statistic`` against ``threshold`` from its bootstrap interval.

    Parameters
    ----------
    threshold : float
        The limit τ: pass when the whole interval is under it, fail when it is over it.
    statistic : str, default="spectral_radius"
        A statistic with an interval in the fingerprint: "spectral_radius", "near_unit_mass", or "risk"
        (model fingerprints).
    on_abstain : {"fail", "pass"}, default="fail"
        The exit code of an abstention: fail-closed (3) or pass (0).

    >>> import numpy as np, koopscope as ks
    >>> rng = np.random.default_rng(0)
    >>> A = np.array([[0.9, -0.2, 0.0], [0.2, 0.9, 0.0], [0.0, 0.0, 0.5]])  # ρ(A) = 0.922
    >>> traj = np.empty((200, 3)); traj[0] = 1.0
    >>> for t in range(199): traj[t + 1] = A @ traj[t] + 1e-3 * rng.standard_normal(3)
    >>> decision = ks.gate.AbstainGate(threshold=1.0).decide(traj)
    >>> decision.verdict, decision.exit_code, round(decision.low, 3), round(decision.high, 3)
    ('pass', 0, 0.921, 0.922)
    """

    threshold: float
    statistic: str = "spectral_radius"
    on_abstain: str = "fail"

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", _check_threshold(self.threshold))
        check_param("on_abstain", self.on_abstain, Options(("fail", "pass")), caller="AbstainGate",
                    fix="'fail' is fail-closed (exit 3), 'pass' lets an abstention through (exit 0)")
        if not isinstance(self.statistic, str) or not self.statistic:
            raise ParameterError(f"statistic={self.statistic!r} passed to AbstainGate is not a statistic name; "
                                 "give one such as 'spectral_radius', 'near_unit_mass' or 'risk'.")

    def decide(self, evidence: KoopmanFingerprint | Any, *, kernel: str = "auto", n_boot: int = 200,
               seed: int = 0) -> Decision:
        """The verdict on a fingerprint, or on a trajectory (T, D), which is first fitted and fingerprinted.

        ``kernel``, ``n_boot`` and ``seed`` apply only to a trajectory (``koopscope.dmd.fit`` and the
        bootstrap of :func:`koopscope.fingerprint.from_trajectory`).
        """
        if not isinstance(evidence, KoopmanFingerprint):
            evidence = _fingerprint_trajectory(evidence, kernel=kernel, n_boot=n_boot, seed=seed)
        return self._decide(evidence)

    def _decide(self, fp: KoopmanFingerprint) -> Decision:
        estimate, low, high = fp.interval(self.statistic)
        document = fp.document
        n_pairs = document["uncertainty"]["n_pairs"]
        blocking = [f for f in document["trust"]["flags"] if f["severity"] in ("warning", "error")]
        interval = f"[{low:.4g}, {high:.4g}]"

        def decision(verdict: str, reason: str) -> Decision:
            return Decision(verdict, self.statistic, self.threshold, estimate, low, high, reason, self.on_abstain)

        if n_pairs < MIN_PAIRS:
            return decision("abstain", f"only {n_pairs} snapshot pairs (at least {MIN_PAIRS} are needed to decide)")
        if blocking:
            codes = ", ".join(sorted({f["code"] for f in blocking}))
            return decision("abstain", f"the data cannot support a decision: trust flags {codes} "
                                       f"({blocking[0]['message']})")
        level = document["uncertainty"]["level"]
        name = f"{self.statistic} {level:.0%} interval {interval}"
        if high < self.threshold:
            return decision("pass", f"{name} lies under the threshold {self.threshold:g}")
        if low > self.threshold:
            return decision("fail", f"{name} lies over the threshold {self.threshold:g}")
        return decision("abstain", f"{name} straddles the threshold {self.threshold:g}")


def _fingerprint_trajectory(traj: Any, *, kernel: str, n_boot: int, seed: int) -> KoopmanFingerprint:
    traj = as_2d("evidence", traj, caller="AbstainGate.decide")
    spectrum = fit(traj, method=kernel, seed=seed)
    return from_trajectory(spectrum, traj[:-1], traj[1:], n_boot=n_boot, seed=seed)
