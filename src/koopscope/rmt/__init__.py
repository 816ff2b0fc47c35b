"""Weight-spectrum guard (layer 4): random-matrix health checks of every weight matrix, and baseline-vs-edit
certification with correction.

>>> import koopscope as ks                                        # doctest: +SKIP
>>> guard = ks.rmt.RMTGuard(policy="balanced")                    # doctest: +SKIP
>>> guard.prepare(model)                                          # doctest: +SKIP
>>> report = guard.check(quantised_model)                         # doctest: +SKIP
>>> print(report.table()); report.to_json("rmt.json")             # doctest: +SKIP

- Discovery (:mod:`.discovery`): matrices found by module type (``nn.Linear``, HF ``Conv1D``, embeddings on
  request, MoE routers and fused experts), fused q/k/v split, families, tied storage; zero matrices fail closed.
- Readings (:mod:`.statistics`): σ_max and top singular values by block Lanczos (:mod:`.singular`), the noise level
  (Gavish–Donoho median, MP-PCA, trimmed Frobenius), Marchenko–Pastur edges and Tracy–Widom thresholds
  (:mod:`.bulk`, :mod:`.tracy_widom`), sequential spike counts, stable rank, heavy-tail α (:mod:`.powerlaw`).
- Certification (:mod:`.guard`): one flag rule on ΔW (a spike above its own variance-profiled Tracy–Widom edge,
  or σ_max growth beyond the Weyl deadband), per-family ε budgets, three policies, correction by clipping.
- Edits to certify (:mod:`.edits`): round-to-nearest int8/int4 quantisation, planted damage.

Importing this package imports torch (``import koopscope`` does not: ``ks.rmt`` loads on first use).
"""

from __future__ import annotations

from koopscope.capture._deps import require_torch

require_torch("koopscope.rmt")

from koopscope.rmt.bulk import (  # noqa: E402
    NoiseEstimate,
    bbp_location,
    bbp_threshold,
    mp_edges,
    noise_estimate,
    noise_level,
    spike_count,
    stable_rank,
    tw_threshold,
)
from koopscope.rmt.discovery import FAMILIES, WeightMatrix, classify, find_matrices  # noqa: E402
from koopscope.rmt.edits import corrupt_group, plant_spike, quantize_model, quantize_rtn, scale_row  # noqa: E402
from koopscope.rmt.guard import POLICIES, MatrixCheck, Policy, RMTGuard  # noqa: E402
from koopscope.rmt.powerlaw import PowerLawFit, powerlaw_alpha  # noqa: E402
from koopscope.rmt.report import RMTReport  # noqa: E402
from koopscope.rmt.singular import TopSingular, singular_values, top_singular  # noqa: E402
from koopscope.rmt.statistics import MatrixStatistics, matrix_statistics, read_model  # noqa: E402
from koopscope.rmt.tracy_widom import tw1_cdf, tw1_quantile, tw1_sf  # noqa: E402
from koopscope.rmt.variance import Standardised, standardise  # noqa: E402

__all__ = [
    "FAMILIES", "POLICIES", "MatrixCheck", "MatrixStatistics", "NoiseEstimate", "Policy", "PowerLawFit", "RMTGuard",
    "RMTReport", "Standardised", "TopSingular", "WeightMatrix", "bbp_location", "bbp_threshold", "classify",
    "corrupt_group", "find_matrices", "matrix_statistics", "mp_edges", "noise_estimate", "noise_level",
    "plant_spike", "powerlaw_alpha", "quantize_model", "quantize_rtn", "read_model", "scale_row", "singular_values",
    "spike_count", "stable_rank", "standardise", "top_singular", "tw1_cdf", "tw1_quantile", "tw1_sf",
    "tw_threshold",
]
