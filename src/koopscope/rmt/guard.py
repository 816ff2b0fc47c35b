"""Certify a weight edit (quantisation, pruning, merging) against its baseline: one flag rule, per-family ε
budgets, and a correction that clips only the outlying singular values.

The flag rule
-------------
For every matrix W_base → W_edit of shape (m, n), with ΔW = W_edit − W_base:

1. **Spike in the edit.** ΔW is standardised by its own separable variance profile
   (:func:`koopscope.rmt.variance.standardise`: Z = diag(r)^{-1/2} ΔW diag(c)^{-1/2}, unit mean square). If the edit
   is noise, however heteroscedastic across channels, σ₁(Z) lies under the Tracy–Widom threshold
   t = tw_threshold(1, shape(Z), α / n_edited), Johnstone's centring and scaling at the family-wise level α of
   the policy spread over the edited matrices (Bonferroni). A structured edit (a rank-1 spike, a corrupted
   group of weights spread over rows and columns) stays coherent after the scaling and exceeds it.
   ``spike_ratio`` = σ₁(Z) / t.
2. **Growth of σ_max beyond the Weyl deadband.** Weyl's inequality bounds the change of every singular value by
   ‖ΔW‖₂, and an edit whose energy is spread like noise has ‖ΔW‖₂ ≈ ρ(√m + √n), ρ = ‖ΔW‖_F / √(mn) its RMS
   (the Marchenko–Pastur edge). So the deadband is d = ρ(√m + √n), derived from the edit's own noise level:
   σ_max(W_edit) − σ_max(W_base) > d means the edit concentrated its energy along the top singular direction
   (e.g. one scaled row, which the profile in 1 absorbs). ``growth_ratio`` = (σ_max,edit − σ_max,base) / d.

A matrix is flagged when either ratio exceeds 1 + ε_f, ε_f the policy's budget for its family. Both ratios are
invariant to scaling W_base and W_edit together and to transposition. An unchanged matrix (ΔW = 0) is never
flagged, nor is an edit at the storage precision (RMS of ΔW under half a unit roundoff of the weights' dtype
times their RMS, reason "rounding"): such a ΔW is the rounding pattern of the weights, not a variance profile.
The model is flagged when any matrix is.

Policies (:data:`POLICIES`)
---------------------------
``conservative`` flags the most (α = 0.05, ε = 0), ``balanced`` is the default (α = 0.01, ε = 0.05, embeddings
and other 0.10, routers 0.02), ``aggressive`` tolerates the most (α = 0.001, ε = 0.10, embeddings and other 0.20,
routers 0.05). Routers get the tightest budgets (a router that moves re-routes every token); embeddings and heads
the loosest (vocabulary edits are common and local).

Correction
----------
:meth:`RMTGuard.correct` rewrites flagged matrices in place: a spike is removed by clipping the singular values
of Z above t back to 0.999·t (ΔW_clean = diag(√r) Z_clean diag(√c)); then, if σ_max still grows beyond the
deadband of the remaining edit, the singular values of W above σ_max,base are clipped to it (a deadband target
would move with the edit's RMS, which the clip itself lowers). Nothing else in the matrix
changes (the guard we replace rescaled the whole matrix). Tied storage is written once.

Cost
----
``prepare`` takes one decomposition per matrix for σ_max (``readings=True`` adds every reading of
:func:`~koopscope.rmt.statistics.matrix_statistics` from the same decomposition), ``check`` one for σ_max(W_edit)
and one for σ₁(Z): from the Gram matrix up to a short side of 1024, by block Lanczos above (warm-started from the
baseline's top singular vector for W_edit; :func:`koopscope.rmt.singular.largest_singular`).
``prepare`` keeps a copy of the baseline weights (on ``store_device``) to form ΔW, the memory of one model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

from koopscope._validation import Interval, Options, check_param, check_seed
from koopscope.capture._deps import require_torch
from koopscope.errors import DataError, NotFittedError, ParameterError
from koopscope.rmt.bulk import tw_threshold
from koopscope.rmt.discovery import FAMILIES, WeightMatrix, find_matrices
from koopscope.rmt.report import RMTReport
from koopscope.rmt.singular import largest_singular, top_singular
from koopscope.rmt.statistics import MatrixStatistics, by_shape, statistics_and_vectors
from koopscope.rmt.variance import standardise

__all__ = ["Policy", "POLICIES", "MatrixCheck", "RMTGuard", "MIN_SPIKE_DIM"]

#: Smallest short side of Z for the Tracy–Widom spike test (the asymptotics are poor below it); smaller edits are
#: judged by the growth test alone.
MIN_SPIKE_DIM = 8
#: Rounds of clip-and-re-standardise in the spike correction.
CLIP_ROUNDS = 20
#: Clipped values land this fraction under their threshold, so the re-check passes under ε = 0 despite rounding.
CLIP_MARGIN = 0.999
#: A clip round that leaves σ₁(Z) above this fraction of the previous round's has stalled (a noiseless edit).
STALL = 0.99


@dataclass(frozen=True)
class Policy:
    """A flagging policy: the family-wise false-alarm level of the spike test and the per-family ε budgets."""

    name: str
    alpha: float
    epsilon: Mapping[str, float]

    def __post_init__(self) -> None:
        check_param("alpha", self.alpha, Interval(float, 0.0, 0.5, closed="right"), caller="Policy")
        missing = sorted(set(FAMILIES) - set(self.epsilon))
        if missing or any(not (isinstance(v, (int, float)) and 0 <= v < 10) for v in self.epsilon.values()):
            raise ParameterError(f"The 'epsilon' parameter of Policy must give a budget in [0, 10) for every family "
                                 f"{', '.join(FAMILIES)}; got {dict(self.epsilon)!r}: add the missing families "
                                 f"{missing}.")
        object.__setattr__(self, "epsilon", MappingProxyType(dict(self.epsilon)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "alpha": self.alpha, "epsilon": dict(self.epsilon)}


def _budgets(attention: float, ffn: float, embedding: float, router: float, expert: float, other: float
             ) -> dict[str, float]:
    return {"attention": attention, "ffn": ffn, "embedding": embedding, "router": router, "expert": expert,
            "other": other}


POLICIES: Mapping[str, Policy] = MappingProxyType({
    "conservative": Policy("conservative", 0.05, _budgets(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)),
    "balanced": Policy("balanced", 0.01, _budgets(0.05, 0.05, 0.10, 0.02, 0.05, 0.10)),
    "aggressive": Policy("aggressive", 0.001, _budgets(0.10, 0.10, 0.20, 0.05, 0.10, 0.20)),
})


@dataclass(frozen=True)
class MatrixCheck:
    """The verdict on one matrix of an edit (``reason``: unchanged, rounding, noise, spike, growth or spike+growth)."""

    name: str
    family: str
    shape: tuple[int, int]
    changed: bool
    sigma_base: float
    sigma_edit: float
    edit_rms: float
    deadband: float
    growth_ratio: float
    spike: float | None
    spike_threshold: float | None
    spike_ratio: float | None
    epsilon: float
    flagged: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out


@dataclass
class _Baseline:
    matrices: list[WeightMatrix]
    weights: list[Any]                   # (m, n) copies
    sigma: list[float]
    right: list[Any]                     # (n,) top right singular vector or None
    resolution: list[float]              # storage-rounding RMS of each baseline matrix (_resolution)
    report: RMTReport
    meta: dict[str, Any] = field(default_factory=dict)


def _policy(policy: object) -> Policy:
    if isinstance(policy, Policy):
        return policy
    check_param("policy", policy, Options(tuple(POLICIES)), caller="RMTGuard",
                fix="use conservative, balanced or aggressive, or pass a Policy")
    return POLICIES[policy]  # type: ignore[index]


def _canonical(model: Any, embeddings: bool) -> list[WeightMatrix]:
    return [wm for wm in find_matrices(model, embeddings=embeddings) if wm.tied_to is None]


def _check_finite(wm: WeightMatrix, W: Any, which: str) -> None:
    torch = require_torch("RMTGuard")
    if not bool(torch.isfinite(W).all()):
        raise DataError(f"The {which} model's matrix {wm.name!r} contains NaN or Inf; the guard compares finite "
                        f"weights: the {which} model is broken (reload or re-run the edit).")


class RMTGuard:
    """Baseline-vs-edit certification of every weight matrix (rule, policies and correction in the module doc).

    Parameters
    ----------
    policy : {"conservative", "balanced", "aggressive"} or Policy, default="balanced"
    embeddings : bool, default=False
        Also check embedding tables (and LM heads tied to them).
    store_device : str, optional
        Where the baseline copy lives (default: the weights' own device).
    seed : int, default=0

    >>> guard = RMTGuard()                                  # doctest: +SKIP
    >>> guard.prepare(model)                                # doctest: +SKIP
    >>> report = guard.check(quantised)                     # doctest: +SKIP
    >>> report.flagged, report.table()                      # doctest: +SKIP
    """

    def __init__(self, policy: str | Policy = "balanced", *, embeddings: bool = False,
                 store_device: str | None = None, seed: int = 0) -> None:
        self.policy = _policy(policy)
        check_param("embeddings", embeddings, bool, caller="RMTGuard", fix="pass True or False")
        check_param("store_device", store_device, str, None, caller="RMTGuard", fix='pass e.g. "cpu" or None')
        self.embeddings, self.store_device, self.seed = embeddings, store_device, check_seed(seed, "RMTGuard")
        self._baseline: _Baseline | None = None

    # ----------------------------------------------------------------------------------------- baseline
    def prepare(self, baseline: Any, *, name: str | None = None, readings: bool = False) -> RMTReport:
        """Record a copy of the baseline's weights and σ_max (with its top right singular vector where Lanczos is
        used; one decomposition per matrix); with ``readings=True`` also every reading of
        :func:`~koopscope.rmt.statistics.matrix_statistics` (noise level, edges, spikes, stable rank, α). Returns the
        baseline's statistics report."""
        check_param("readings", readings, bool, caller="RMTGuard.prepare", fix="pass True or False")
        matrices = _canonical(baseline, self.embeddings)
        weights = []
        for wm in matrices:
            W = wm.matrix().detach()
            _check_finite(wm, W, "baseline")
            weights.append(W.to(self.store_device or W.device, copy=True))
        if readings:
            stats, right = statistics_and_vectors(matrices, seed=self.seed)
        else:
            stats, right = _sigma_only(matrices, weights, self.seed)
        sigma = [s.sigma_max for s in stats]
        report = RMTReport.from_statistics(stats, model=name)
        self._baseline = _Baseline(matrices, weights, sigma, right, [_resolution(W) for W in weights], report,
                                   {"name": name})
        return report

    def _require_baseline(self, caller: str) -> _Baseline:
        if self._baseline is None:
            raise NotFittedError(f"RMTGuard.{caller} needs a baseline; call guard.prepare(baseline_model) first.")
        return self._baseline

    def _edited(self, edited: Any, base: _Baseline) -> list[WeightMatrix]:
        matrices = _canonical(edited, self.embeddings)
        want = [(wm.name, wm.shape) for wm in base.matrices]
        got = [(wm.name, wm.shape) for wm in matrices]
        if got != want:
            diff = sorted(set(got) ^ set(want))[:3]
            raise DataError(f"The edited model's weight matrices do not match the baseline's ({len(got)} against "
                            f"{len(want)}; first differences {diff}); compare an edit with the model it was made "
                            "from.")
        return matrices

    # ----------------------------------------------------------------------------------------- check
    def check(self, edited: Any, *, name: str | None = None) -> RMTReport:
        """Apply the flag rule to every matrix of ``edited`` against the prepared baseline."""
        base = self._require_baseline("check")
        matrices = self._edited(edited, base)
        sigma_edit = self._sigma_edit(matrices, base)
        rms = [_rms(_delta(wm, W0)) for wm, W0 in zip(matrices, base.weights, strict=True)]
        changed = [i for i, r in enumerate(rms) if r > base.resolution[i]]
        spikes = self._spikes(matrices, base, changed)
        level = self.policy.alpha / max(len(changed), 1)
        checks = [self._verdict(wm, base.sigma[i], sigma_edit[i], rms[i], base.resolution[i], spikes.get(i), level)
                  for i, wm in enumerate(matrices)]
        return RMTReport.from_checks(checks, base.report.statistics, self.policy, model=name,
                                     baseline=base.meta.get("name"))

    def _sigma_edit(self, matrices: Sequence[WeightMatrix], base: _Baseline) -> list[float]:
        """σ_max of every edited matrix, batched by shape, Lanczos warm-started from the baseline's vectors."""
        torch = require_torch("RMTGuard.check")
        sigma = [0.0] * len(matrices)
        for wm in matrices:
            _check_finite(wm, wm.matrix().detach(), "edited")
        for _shape, idx in by_shape(matrices, lambda wm: wm.shape).items():
            A = [matrices[i].matrix().detach().to(base.weights[i].device) for i in idx]
            starts = [base.right[i] for i in idx]
            start = None if any(v is None for v in starts) else torch.stack(starts)
            values = largest_singular(A, start=start, seed=self.seed)[0].tolist()
            for b, i in enumerate(idx):
                sigma[i] = values[b]
        return sigma

    def _spikes(self, matrices: Sequence[WeightMatrix], base: _Baseline, changed: Sequence[int]
                ) -> dict[int, tuple[float, tuple[int, int]]]:
        """σ₁ of each standardised edit and the shape of its support, for supports big enough to test; one shape
        group of edits in memory at a time."""
        torch = require_torch("RMTGuard.check")
        out = {}
        for _shape, idx in by_shape(changed, lambda i: matrices[i].shape).items():
            members = [changed[j] for j in idx]
            Z = {i: standardise(_delta(matrices[i], base.weights[i])).Z for i in members}
            keys = list(Z)
            for _zshape, zidx in by_shape([Z[i] for i in keys], lambda z: z.shape).items():
                group = [keys[j] for j in zidx]
                if min(Z[group[0]].shape) < MIN_SPIKE_DIM:
                    continue
                stacked = torch.stack([Z[i] for i in group]).float()  # unit-variance entries: float32 suffices
                # tol 1e-3: σ₁(Z) within 1e-3 for sure (in practice ~1e-6), against a Tracy–Widom scale of ~1e-2.
                values = largest_singular(stacked, tol=1e-3, seed=self.seed)[0].tolist()
                out.update({i: (values[b], tuple(Z[i].shape)) for b, i in enumerate(group)})
        return out

    def _verdict(self, wm: WeightMatrix, sigma_base: float, sigma_edit: float, rms: float, resolution: float,
                 spike: tuple[float, tuple[int, int]] | None, level: float) -> MatrixCheck:
        m, n = wm.shape
        eps = float(self.policy.epsilon[wm.family])
        if spike is None and rms <= resolution:
            return MatrixCheck(wm.name, wm.family, wm.shape, False, sigma_base, sigma_edit, 0.0, 0.0, 0.0, None, None,
                               None, eps, False, "unchanged" if rms == 0.0 else "rounding")
        deadband = rms * (math.sqrt(m) + math.sqrt(n))
        growth = (sigma_edit - sigma_base) / deadband
        value = threshold = ratio = None
        if spike is not None:
            value, threshold = spike[0], tw_threshold(1.0, spike[1], level)
            ratio = value / threshold
        reasons = [r for r, hit in (("spike", ratio is not None and ratio > 1 + eps), ("growth", growth > 1 + eps))
                   if hit]
        return MatrixCheck(wm.name, wm.family, wm.shape, True, sigma_base, sigma_edit, rms, deadband, growth, value,
                           threshold, ratio, eps, bool(reasons), "+".join(reasons) or "noise")

    # ----------------------------------------------------------------------------------------- correct
    def correct(self, edited: Any, report: RMTReport | None = None, *, name: str | None = None) -> RMTReport:
        """Clip the outlying singular values of every flagged matrix of ``edited`` in place, then re-check.

        ``report`` is a :meth:`check` of this same ``edited`` model (computed when omitted). Returns the check of
        the corrected model, with the corrected matrices listed in ``report.corrected``.
        """
        torch = require_torch("RMTGuard.correct")
        base = self._require_baseline("correct")
        report = self.check(edited, name=name) if report is None else report
        matrices = {wm.name: (i, wm) for i, wm in enumerate(self._edited(edited, base))}
        fixed = []
        for row in report.checks:
            if not row.flagged:
                continue
            i, wm = matrices[row.name]
            W0 = base.weights[i].to(torch.float64)
            W = _clip_spike(W0, wm.matrix().detach().to(W0.device, torch.float64), row, self.seed)
            if _still_grows(W, W0, base.sigma[i], row, self.seed):
                W = _clip_growth(W, base.sigma[i], self.seed)
            with torch.no_grad():
                wm.matrix().copy_(W.to(wm.matrix().device, wm.matrix().dtype))
            fixed.append(row.name)
        after = self.check(edited, name=name)
        return after.with_corrected(fixed)


def _sigma_only(matrices: Sequence[WeightMatrix], weights: Sequence[Any], seed: int
                ) -> tuple[list[MatrixStatistics], list[Any]]:
    """σ_max and the top right singular vector of every matrix (batched by shape), as bare statistics."""
    require_torch("RMTGuard.prepare")
    stats: list[Any] = [None] * len(matrices)
    right: list[Any] = [None] * len(matrices)
    for _shape, idx in by_shape(matrices, lambda wm: wm.shape).items():
        values, vectors = largest_singular([weights[i] for i in idx], seed=seed)
        for b, i in enumerate(idx):
            wm = matrices[i]
            right[i] = None if vectors is None else vectors[b]
            stats[i] = MatrixStatistics(wm.name, wm.family, wm.shape, wm.tied_to, True, float(values[b]),
                                        (float(values[b]),), None, None, None, None, None, None, None, None, None,
                                        False)
    return stats, right


def _resolution(W0: Any) -> float:
    """The RMS below which an edit of W0 is storage rounding: half a unit roundoff of W0's dtype times its RMS."""
    torch = require_torch("RMTGuard")
    rms = float(torch.linalg.vector_norm(W0, dtype=torch.float64)) / math.sqrt(W0.numel())
    return 0.5 * torch.finfo(W0.dtype).eps * rms


def _delta(wm: WeightMatrix, W0: Any) -> Any:
    """ΔW = W_edit − W_base (m, n) in float32 (float64 for float64 weights): within a few ulps of ΔW itself, as
    float32 subtraction of nearby numbers is exact (Sterbenz)."""
    torch = require_torch("RMTGuard")
    dtype = torch.float64 if W0.dtype == torch.float64 else torch.float32
    return wm.matrix().detach().to(W0.device, dtype) - W0.to(dtype)


def _rms(delta: Any) -> float:
    torch = require_torch("RMTGuard")
    return float(torch.linalg.vector_norm(delta, dtype=torch.float64)) / math.sqrt(delta.numel())


def _clip_spike(W0: Any, W: Any, row: MatrixCheck, seed: int) -> Any:
    """W0 + ΔW with the singular values of the standardised ΔW clipped to the spike threshold.

    A spike also inflates the variance profile it is standardised by, so one clip leaves part of it; the clip is
    repeated on the re-standardised remainder (at most :data:`CLIP_ROUNDS` times). An edit that is exactly low
    rank has no noise to standardise against (a clipped rank-1 edit standardises to the same rank-1 Z): when a
    round no longer lowers σ₁(Z), the outlying components are removed entirely, down to the edit's noise level.
    """
    if row.spike_threshold is None or row.spike_ratio is None or row.spike_ratio <= 1:
        return W
    delta = W - W0                                                   # (m, n)
    target, previous = row.spike_threshold * CLIP_MARGIN, float("inf")
    for _ in range(CLIP_ROUNDS):
        if not bool(delta.any()):
            break
        st = standardise(delta)
        top = _above(st.Z, target, seed)
        if top is None:
            break
        floor = 0.0 if float(top[1][0]) > STALL * previous else target
        previous = float(top[1][0])
        delta[st.rows[:, None], st.cols[None, :]] = st.unscale(st.Z - _excess(top, target, floor))
    return W0 + delta


def _still_grows(W: Any, W0: Any, sigma_base: float, row: MatrixCheck, seed: int) -> bool:
    """Whether σ_max(W) exceeds σ_max,base by more than the deadband of the edit W − W0 (with the row's ε)."""
    rms = float((W - W0).pow(2).mean().sqrt())
    deadband = rms * (math.sqrt(W.shape[0]) + math.sqrt(W.shape[1]))
    sigma = float(top_singular(W[None], 1, seed=seed).values[0, 0])
    return sigma - sigma_base > deadband * (1 + row.epsilon) * CLIP_MARGIN


def _clip_growth(W: Any, target: float, seed: int) -> Any:
    """W with its singular values above ``target`` clipped to it."""
    top = _above(W, target, seed)
    return W if top is None else W - _excess(top, target, target)


def _above(A: Any, level: float, seed: int) -> tuple[Any, Any, Any] | None:
    """(U, s, V) for every singular value of A (m, n) above ``level``, or None when σ₁ <= level."""
    k = 1
    while True:
        top = top_singular(A[None], k, seed=seed)
        s = top.values[0]
        if float(s[0]) <= level:
            return None
        if float(s[-1]) <= level or k == min(A.shape):
            return top.left[0], s, top.right[0]
        k = min(2 * k, min(A.shape))


def _excess(top: tuple[Any, Any, Any], level: float, floor: float) -> Any:
    """Σ_i (σ_i − floor) u_i v_iᵀ over the triplets with σ_i > level: what to subtract to bring them to ``floor``."""
    U, s, V = top
    over = (s - floor) * (s > level)                                 # (k,)
    return (U * over[None, :]) @ V.T                                 # (m, n)
