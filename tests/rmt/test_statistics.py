"""Per-matrix readings, the report, and the variance-profile standardisation."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from koopscope.rmt.bulk import bbp_threshold  # noqa: E402
from koopscope.rmt.discovery import find_matrices  # noqa: E402
from koopscope.rmt.singular import gram  # noqa: E402
from koopscope.rmt.statistics import FULL_SPECTRUM_MAX, matrix_statistics, read_model  # noqa: E402
from koopscope.rmt.variance import standardise  # noqa: E402


def _model(*weights: torch.Tensor) -> torch.nn.Sequential:
    layers = []
    for W in weights:
        layer = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, dtype=W.dtype)
        with torch.no_grad():
            layer.weight.copy_(W)
        layers.append(layer)
    return torch.nn.Sequential(*layers)


def _spiked(m: int, n: int, thetas: list[float], seed: int) -> torch.Tensor:
    """σ = 0.02 Gaussian noise plus orthogonal rank-1 spikes of strengths θ (in units of the BBP threshold)."""
    gen = torch.Generator().manual_seed(seed)
    W = 0.02 * torch.randn(m, n, generator=gen, dtype=torch.float64)
    U, _ = torch.linalg.qr(torch.randn(m, len(thetas), generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, len(thetas), generator=gen, dtype=torch.float64))
    theta = torch.tensor(thetas, dtype=torch.float64) * bbp_threshold((m, n), sigma=0.02)
    return W + (U * theta) @ V.T


def test_full_and_lanczos_paths_find_the_planted_spikes() -> None:
    small = _spiked(200, 400, [4.0, 3.0], seed=0)                   # full spectrum (short side <= 512)
    large = _spiked(FULL_SPECTRUM_MAX + 8, 1100, [4.0, 3.0], seed=1)  # top-k by Lanczos
    stats = matrix_statistics(find_matrices(_model(small, large)))
    assert [s.full_spectrum for s in stats] == [True, False]
    for s, W in zip(stats, (small, large), strict=True):
        dense = torch.linalg.svdvals(W)
        assert s.sigma_max == pytest.approx(float(dense[0]), rel=1e-6)
        assert s.spikes == 2
        # σ̂ within 3 % of the planted 0.02 (median: ~1 % spread; trimmed Frobenius: bias <= 2k/√(mn) ~ 2 %).
        assert s.noise_sigma == pytest.approx(0.02, rel=0.03)
        assert s.stable_rank == pytest.approx(float((dense**2).sum() / dense[0] ** 2), rel=1e-4)
    assert stats[0].alpha is not None and stats[1].alpha is None  # α needs the ESD


def test_non_finite_weights_are_a_finding_not_a_crash() -> None:
    W = 0.02 * torch.randn(64, 96, generator=torch.Generator().manual_seed(2))
    bad = W.clone()
    bad[3, 5] = float("inf")
    report = read_model(_model(W, bad), name="m")
    assert report.flagged and report.non_finite == ["1.weight"]
    assert report.statistics[0].finite and not report.statistics[1].finite
    assert "NON-FINITE" in report.table()


def test_a_nan_weight_and_a_gram_overflow_are_told_apart() -> None:
    # Full-spectrum readings check finiteness on the Gram matrix: a NaN weight is a finding, but a finite float32
    # weight whose Gram matrix overflows (entries ~3e18: row norms² up to 137 · 9e36, past float32's 3.4e38) is read
    # in float64 instead, with the right σ_max, the matrix's own ‖W‖_F and a NaN-free spike count.
    gen = torch.Generator().manual_seed(4)
    W = torch.randn(64, 96, generator=gen)
    nan, huge = W.clone(), 3e18 * W
    nan[0, 0] = float("nan")
    assert not bool(torch.isfinite(gram(huge)).all())                # the float32 Gram matrix does overflow
    stats = matrix_statistics(find_matrices(_model(W, nan, huge)))
    assert [s.finite for s in stats] == [True, False, True]
    assert stats[1].sigma_max is None and stats[1].spikes is None
    dense = torch.linalg.svdvals(huge.double())
    assert stats[2].full_spectrum and stats[2].sigma_max == pytest.approx(float(dense[0]), rel=1e-6)
    assert stats[2].frobenius == pytest.approx(float(torch.linalg.norm(huge.double())), rel=1e-6)
    # Readings are scale-invariant: the huge copy has W's spike count and α, and σ̂ scaled by 3e18.
    assert stats[2].spikes == stats[0].spikes and stats[2].alpha == pytest.approx(stats[0].alpha, rel=1e-6)
    assert stats[2].noise_sigma == pytest.approx(3e18 * stats[0].noise_sigma, rel=1e-6)


def test_report_document(tmp_path) -> None:
    report = read_model(_model(_spiked(80, 160, [3.0], seed=3)), name="tiny")
    path = report.to_json(tmp_path / "rmt.json")
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == "1.0" and doc["kind"] == "koopscope-rmt" and doc["verdict"] == "healthy"
    assert doc["summary"]["by_family"] == {"other": {"matrices": 1, "edited": 0, "flagged": 0}}
    assert doc["matrices"][0]["spikes"] == 1 and doc["model"] == "tiny"
    assert report.table().splitlines()[0].startswith("matrix")


def test_standardise_recovers_a_separable_profile() -> None:
    gen = torch.Generator().manual_seed(4)
    r = torch.exp(torch.randn(300, generator=gen, dtype=torch.float64))
    c = torch.exp(torch.randn(200, generator=gen, dtype=torch.float64))
    G = torch.randn(300, 200, generator=gen, dtype=torch.float64)
    D = r.sqrt()[:, None] * G * c.sqrt()[None, :]
    D[7] = 0.0                                                       # an unchanged row is dropped
    st = standardise(D)
    assert 7 not in st.rows.tolist() and st.Z.shape == (299, 200)
    assert torch.allclose((st.Z**2).mean(1), torch.ones(299, dtype=torch.float64), atol=1e-5)
    assert torch.allclose((st.Z**2).mean(0), torch.ones(200, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(st.unscale(st.Z), D[st.rows][:, st.cols])
    # The fitted profile follows the planted one: log-correlation over rows (each row mean has ~10 % noise from
    # 200 χ² draws, against a log-profile spread of 1).
    keep = torch.tensor([i for i in range(300) if i != 7])
    assert torch.corrcoef(torch.stack([st.r.log(), r[keep].log()]))[0, 1] > 0.98
