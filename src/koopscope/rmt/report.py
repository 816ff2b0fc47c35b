"""The result of a weight-spectrum check: a per-matrix table, a summary, and its JSON document (``rmt.json``).

Document (``schema_version`` "1.0", ``kind`` "koopscope-rmt")::

    mode        "statistics" (one model) or "check" (an edit against its baseline)
    verdict     "healthy" or "flagged"
    model, baseline, policy, corrected (matrix names rewritten by RMTGuard.correct)
    summary     counts per family, flagged names, largest ratios, aggregate readings
    matrices    one object per matrix: MatrixStatistics of the model (the baseline in "check" mode)
    checks      one object per matrix: MatrixCheck ("check" mode)
    provenance  tool_version, created_at
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics as pystats
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from koopscope._atomic import check_output_path, write_text
from koopscope._version import __version__
from koopscope.rmt.discovery import FAMILIES

__all__ = ["RMTReport", "SCHEMA_VERSION", "KIND", "write_document"]

SCHEMA_VERSION = "1.0"
KIND = "koopscope-rmt"


def _finite_max(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return max(kept) if kept else None


@dataclass(frozen=True)
class RMTReport:
    """Per-matrix statistics, and for an edit the per-matrix checks, with the policy that judged them."""

    mode: str
    statistics: tuple[Any, ...]          # MatrixStatistics
    checks: tuple[Any, ...] = ()         # MatrixCheck
    policy: Any = None                   # Policy
    model: str | None = None
    baseline: str | None = None
    corrected: tuple[str, ...] = ()

    @classmethod
    def from_statistics(cls, statistics: Sequence[Any], *, model: str | None = None) -> RMTReport:
        return cls("statistics", tuple(statistics), model=model)

    @classmethod
    def from_checks(cls, checks: Sequence[Any], statistics: Sequence[Any], policy: Any, *, model: str | None = None,
                    baseline: str | None = None) -> RMTReport:
        return cls("check", tuple(statistics), tuple(checks), policy, model, baseline)

    def with_corrected(self, names: Sequence[str]) -> RMTReport:
        return dataclasses.replace(self, corrected=tuple(names))

    # ------------------------------------------------------------------------------------------ verdict
    @property
    def non_finite(self) -> list[str]:
        return [s.name for s in self.statistics if not s.finite]

    @property
    def flagged_matrices(self) -> list[str]:
        return [c.name for c in self.checks if c.flagged]

    @property
    def flagged(self) -> bool:
        """True when an edited matrix is flagged or a weight is non-finite."""
        return bool(self.flagged_matrices or self.non_finite)

    @property
    def verdict(self) -> str:
        return "flagged" if self.flagged else "healthy"

    def summary(self) -> dict[str, Any]:
        stats = [s for s in self.statistics if s.finite]
        by_family: dict[str, dict[str, Any]] = {}
        for family in FAMILIES:
            rows = [c for c in self.checks if c.family == family]
            n = sum(s.family == family for s in self.statistics)
            if n:
                by_family[family] = {"matrices": n, "edited": sum(c.changed for c in rows),
                                     "flagged": sum(c.flagged for c in rows)}
        alphas = [s.alpha for s in stats if s.alpha is not None]
        ranks = [s.stable_rank for s in stats if s.stable_rank is not None]
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "n_matrices": len(self.statistics),
            "by_family": by_family,
            "non_finite": self.non_finite,
            "spikes_total": sum(s.spikes or 0 for s in stats),
            "stable_rank_median": pystats.median(ranks) if ranks else None,
            "alpha_median": pystats.median(alphas) if alphas else None,
            "n_alpha": len(alphas),
        }
        if self.mode == "check":
            out.update({
                "n_edited": sum(c.changed for c in self.checks),
                "n_flagged": len(self.flagged_matrices),
                "flagged": self.flagged_matrices,
                "max_spike_ratio": _finite_max([c.spike_ratio for c in self.checks]),
                "max_growth_ratio": _finite_max([c.growth_ratio for c in self.checks if c.changed]),
                "corrected": list(self.corrected),
            })
        return out

    # ------------------------------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "mode": self.mode,
            "verdict": self.verdict,
            "model": self.model,
            "baseline": self.baseline,
            "policy": None if self.policy is None else self.policy.to_dict(),
            "summary": self.summary(),
            "matrices": [s.to_dict() for s in self.statistics],
            "checks": [c.to_dict() for c in self.checks],
            "corrected": list(self.corrected),
            "provenance": {"tool_version": __version__,
                           "created_at": datetime.now(UTC).isoformat(timespec="seconds")},
        }

    def fingerprint_section(self) -> dict[str, Any]:
        """The compact ``weights`` section of a KoopmanFingerprint (``fp.with_weights(report.fingerprint_section())``):
        verdict, policy, summary and one row per matrix (its readings, and in "check" mode its verdict)."""
        checks = {c.name: c for c in self.checks}
        rows = []
        for s in self.statistics:
            row = {"name": s.name, "family": s.family, "shape": list(s.shape), "sigma_max": s.sigma_max,
                   "noise_sigma": s.noise_sigma, "mp_edge": s.mp_edge, "spikes": s.spikes,
                   "stable_rank": s.stable_rank, "alpha": s.alpha, "finite": s.finite}
            c = checks.get(s.name)
            if c is not None:
                row.update({"sigma_edit": c.sigma_edit, "spike_ratio": c.spike_ratio,
                            "growth_ratio": c.growth_ratio if c.changed else None, "flagged": c.flagged,
                            "reason": c.reason})
            rows.append(row)
        return _json_safe({"verdict": self.verdict, "mode": self.mode, "model": self.model, "baseline": self.baseline,
                           "policy": None if self.policy is None else self.policy.to_dict(),
                           "summary": self.summary(), "matrices": rows})

    def to_json(self, path: str | Path) -> Path:
        """Write the document atomically (sorted keys, 2-space indent; non-finite numbers as null)."""
        return write_document(self.to_dict(), path)

    def table(self, *, limit: int | None = None) -> str:
        """A fixed-width per-matrix table (checks in "check" mode, readings otherwise)."""
        lines = self._check_lines() if self.mode == "check" else self._statistics_lines()
        shown = lines[1:] if limit is None else lines[1 : limit + 1]
        more = len(lines) - 1 - len(shown)
        return "\n".join([lines[0], *shown] + ([f"... {more} more matrices (see the JSON)"] if more > 0 else []))

    def _check_lines(self) -> list[str]:
        head = f"{'matrix':<44} {'family':<9} {'shape':>11} {'σ_max base':>10} {'edit':>10} {'growth/d':>9} " \
               f"{'spike/t':>8}  verdict"
        rows = [f"{_cut(c.name):<44} {c.family:<9} {_shape(c.shape):>11} {c.sigma_base:>10.4g} {c.sigma_edit:>10.4g} "
                f"{_num(c.growth_ratio if c.changed else None):>9} {_num(c.spike_ratio):>8}  "
                f"{('FLAG ' + c.reason) if c.flagged else c.reason}" for c in self.checks]
        return [head, *rows]

    def _statistics_lines(self) -> list[str]:
        head = f"{'matrix':<44} {'family':<9} {'shape':>11} {'σ_max':>9} {'σ̂ noise':>9} {'MP edge':>9} " \
               f"{'spikes':>6} {'st.rank':>8} {'α':>6}"
        rows = [f"{_cut(s.name):<44} {s.family:<9} {_shape(s.shape):>11} {_num(s.sigma_max):>9} "
                f"{_num(s.noise_sigma):>9} {_num(s.mp_edge):>9} {_num(s.spikes):>6} {_num(s.stable_rank):>8} "
                f"{_num(s.alpha):>6}" + ("" if s.finite else "  NON-FINITE") for s in self.statistics]
        return [head, *rows]


def write_document(doc: dict[str, Any], path: str | Path) -> Path:
    """Write a report document atomically: sorted keys, 2-space indent, non-finite numbers as null."""
    target = check_output_path(path, "out")
    write_text(target, json.dumps(_json_safe(doc), indent=2, sort_keys=True, allow_nan=False) + "\n")
    return target


def _cut(name: str, width: int = 44) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]


def _shape(shape: Sequence[int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def _num(x: float | int | None) -> str:
    if x is None:
        return "-"
    return str(x) if isinstance(x, int) else f"{x:.4g}"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
