"""AbstainGate: pass / fail / abstain from the interval, abstention on weak data, fail-closed exit codes."""

from __future__ import annotations

import numpy as np
import pytest

import koopscope as ks
from koopscope.errors import ParameterError
from koopscope.gate import EXIT_CODES, AbstainGate, Decision
from tests.fingerprint.planted import RHO_PLANTED, planted_trajectory


@pytest.fixture(scope="module")
def fp() -> ks.KoopmanFingerprint:
    traj = planted_trajectory()
    return ks.fingerprint.from_trajectory(ks.dmd.exact(traj), traj[:-1], traj[1:], n_boot=60)


def test_verdicts_follow_the_interval(fp) -> None:
    _, low, high = fp.interval()
    assert low < RHO_PLANTED < high
    assert AbstainGate(high + 0.01).decide(fp).verdict == "pass"
    assert AbstainGate(low - 0.01).decide(fp).verdict == "fail"
    straddle = AbstainGate((low + high) / 2).decide(fp)
    assert straddle.verdict == "abstain" and "straddles the threshold" in straddle.reason


def test_exit_codes_are_fail_closed_by_default(fp) -> None:
    _, low, high = fp.interval()
    mid = (low + high) / 2
    assert AbstainGate(1.0).decide(fp).exit_code == 0
    assert AbstainGate(0.5).decide(fp).exit_code == 1
    assert AbstainGate(mid).decide(fp).exit_code == 3
    lenient = AbstainGate(mid, on_abstain="pass").decide(fp)
    assert lenient.verdict == "abstain" and lenient.exit_code == 0 and lenient.passed
    assert EXIT_CODES == {"pass": 0, "fail": 1, "abstain": 3}


def test_other_statistics(fp, model_fp) -> None:
    m, low, high = fp.interval("near_unit_mass")
    assert m == pytest.approx(2 / 3)
    assert AbstainGate(0.9, statistic="near_unit_mass").decide(fp).verdict == "pass"
    risk = AbstainGate(0.5, statistic="risk").decide(model_fp)
    assert risk.statistic == "risk" and risk.verdict in ("pass", "fail", "abstain")
    with pytest.raises(ParameterError, match="statistic='risk' has no interval in this trajectory fingerprint"):
        AbstainGate(0.5, statistic="risk").decide(fp)


def test_too_few_pairs_abstains() -> None:
    traj = planted_trajectory(T=8)
    fp = ks.fingerprint.from_trajectory(ks.dmd.exact(traj), traj[:-1], traj[1:], n_boot=20)
    decision = AbstainGate(10.0).decide(fp)  # the interval is far under 10, but 7 pairs cannot support it
    assert decision.verdict == "abstain" and "only 7 snapshot pairs" in decision.reason


def test_trust_flags_make_it_abstain() -> None:
    # 12 pairs in 8 dimensions: fewer than 2·D, the few_pairs flag.
    rng = np.random.default_rng(0)
    traj = rng.standard_normal((13, 8)) * 0.1
    fp = ks.fingerprint.from_trajectory(ks.dmd.exact(traj), traj[:-1], traj[1:], n_boot=20)
    assert "few_pairs" in {f["code"] for f in fp.trust_flags}
    decision = AbstainGate(100.0).decide(fp)
    assert decision.verdict == "abstain" and "few_pairs" in decision.reason


def test_spurious_dominant_eigenvalue_abstains() -> None:
    # Pure noise: no linear dynamics, so ResDMD flags the eigenvalues that set the spectral radius.
    traj = np.random.default_rng(1).standard_normal((400, 3))
    fp = ks.fingerprint.from_trajectory(ks.dmd.exact(traj), traj[:-1], traj[1:], n_boot=20)
    codes = {f["code"] for f in fp.trust_flags}
    assert "dominant_spurious" in codes
    assert AbstainGate(10.0).decide(fp).verdict == "abstain"


def test_no_bootstrap_abstains() -> None:
    traj = planted_trajectory()
    fp = ks.fingerprint.from_trajectory(ks.dmd.exact(traj), traj[:-1], traj[1:], n_boot=0)
    assert AbstainGate(10.0).decide(fp).verdict == "abstain"


def test_decide_on_a_trajectory_fits_and_bootstraps() -> None:
    decision = AbstainGate(1.0).decide(planted_trajectory(), kernel="exact", n_boot=30)
    assert decision.verdict == "pass" and decision.low < RHO_PLANTED < decision.high


def test_decision_goes_into_the_fingerprint(fp) -> None:
    decision = AbstainGate(1.0).decide(fp)
    gated = fp.with_gate(decision.as_dict())
    assert gated.document["gate"]["verdict"] == "pass"
    assert gated.document["gate"]["interval"]["high"] == pytest.approx(decision.high)
    assert "gate" not in fp.document


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), "1.0", None, True])
def test_threshold_must_be_a_finite_number(threshold: object) -> None:
    with pytest.raises(ParameterError, match="passed to AbstainGate is not a finite number"):
        AbstainGate(threshold)  # type: ignore[arg-type]


def test_bad_on_abstain_and_statistic() -> None:
    with pytest.raises(ParameterError, match="on_abstain"):
        AbstainGate(1.0, on_abstain="maybe")
    with pytest.raises(ParameterError, match="is not a statistic name"):
        AbstainGate(1.0, statistic="")


def test_decision_dict_shape() -> None:
    d = Decision("abstain", "spectral_radius", 1.0, None, None, None, "only 3 snapshot pairs")
    assert d.as_dict()["interval"] is None and d.exit_code == 3
