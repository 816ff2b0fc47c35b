"""SpectralMonitor: per-layer M≈1, ρ, η_nl equal ks.profile on the same states; keys, alarms, files, skips."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest

import koopscope as ks
from koopscope.errors import ParameterError
from tests.shaping.models import tiny_gpt2

torch = pytest.importorskip("torch")


def ids(seed: int = 0, batch: int = 8, length: int = 48):
    return torch.randint(0, 64, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_values_equal_ks_profile_on_the_same_states() -> None:
    model = tiny_gpt2(n_layer=3).train()
    monitor = ks.shaping.SpectralMonitor(model, every=2, max_tokens=300)
    model(input_ids=ids())  # the training forward
    metrics = monitor.step()
    assert len(monitor.last_states) == 4 and monitor.last_states[0].shape == (300, 32)
    prof = ks.profile(monitor.last_states)
    for lp in prof.layers:
        key = f"koopscope/layer_{lp.index:02d}"
        assert metrics[f"{key}/near_unit_mass"] == lp.near_unit_mass
        assert metrics[f"{key}/spectral_radius"] == pytest.approx(lp.spectral_radius, rel=1e-12)
        assert metrics[f"{key}/eta_nl"] == pytest.approx(lp.eta_nl, rel=1e-12)
    assert metrics["koopscope/mean/near_unit_mass"] == pytest.approx(prof.risk, rel=1e-12)
    assert metrics["koopscope/max/spectral_radius"] == pytest.approx(prof.summary["spectral_radius"]["max"])
    model(input_ids=ids(1))
    assert monitor.step() == {}  # step 1: off
    monitor.remove()


def test_states_are_the_residual_stream_rows() -> None:
    model = tiny_gpt2(n_layer=2).eval()
    monitor = ks.shaping.SpectralMonitor(model, max_tokens=50)
    x = ids(batch=2, length=40)
    with torch.no_grad():  # the monitor reads forwards without gradients too
        hidden = model(input_ids=x, output_hidden_states=True).hidden_states
    monitor.step()
    b, t = monitor.schedule.rows(0)(2, 40, "cpu")
    for i in range(2):  # hidden_states[L] is after ln_f; states 0 .. L-1 must match
        np.testing.assert_array_equal(monitor.last_states[i], hidden[i][b, t].numpy())


def test_rank_r_matches_profile_at_rank_r() -> None:
    model = tiny_gpt2(n_layer=2).eval()
    monitor = ks.shaping.SpectralMonitor(model, rank=8, max_tokens=200, seed=2)
    model(input_ids=ids())
    metrics = monitor.step()
    prof = ks.profile(monitor.last_states, rank=8, seed=2)
    for lp in prof.layers:
        assert metrics[f"koopscope/layer_{lp.index:02d}/spectral_radius"] == pytest.approx(lp.spectral_radius)
        assert f"koopscope/layer_{lp.index:02d}/eta_nl" not in metrics


def test_alarm_and_files(tmp_path, caplog) -> None:
    model = tiny_gpt2(n_layer=2).eval()
    seen = []
    jsonl = ks.shaping.SpectralMonitor(model, every=1, alarm_metric="spectral_radius", alarm_threshold=0.0,
                                       path=tmp_path / "logs" / "spectra.jsonl", on_alarm=seen.append, max_tokens=200)
    table = ks.shaping.SpectralMonitor(model, every=1, path=tmp_path / "spectra.csv", max_tokens=200)
    with caplog.at_level(logging.WARNING, logger="koopscope.shaping"):
        steps = []
        for seed in range(2):
            model(input_ids=ids(seed))
            metrics = jsonl.step()
            steps.append(table.step())
        first = steps[0]
    assert metrics["koopscope/alarms"] == 2.0 and len(jsonl.alarms) == 4 and seen == jsonl.alarms
    assert seen[0].step == 0 and seen[0].layer == 0 and seen[0].metric == "spectral_radius"
    assert "SpectralMonitor alarm at step 1: layer 1 has spectral_radius" in caplog.text
    rows = [json.loads(line) for line in (tmp_path / "logs" / "spectra.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and rows[1]["koopscope/alarms"] == 2.0
    with open(tmp_path / "spectra.csv", newline="") as fh:
        table_rows = list(csv.DictReader(fh))
    assert len(table_rows) == 2 and float(table_rows[1]["koopscope/alarms"]) == 0.0
    assert float(table_rows[0]["koopscope/layer_01/spectral_radius"]) == first["koopscope/layer_01/spectral_radius"]


def test_skips_are_logged(caplog) -> None:
    model = tiny_gpt2(n_layer=2).eval()
    monitor = ks.shaping.SpectralMonitor(model, every=1)
    with caplog.at_level(logging.WARNING, logger="koopscope.shaping"):
        assert monitor.step() == {}
        with torch.no_grad():
            model.h[0].mlp.c_proj.bias[0] = float("nan")
        model(input_ids=ids())
        assert monitor.step() == {}
    assert monitor.skipped == "residual state 1 holds NaN or Inf values"
    assert "SpectralMonitor skipped step 0: no forward pass of the model ran since the previous step." in caplog.text


def test_bad_options() -> None:
    model = tiny_gpt2(n_layer=2)
    with pytest.raises(ParameterError, match=r"^The 'path' parameter of SpectralMonitor is 'out.txt', whose suffix is "
                                             r"neither '.jsonl' nor '.csv'; name the file e.g. 'spectra.jsonl'"):
        ks.shaping.SpectralMonitor(model, path="out.txt")
    with pytest.raises(ParameterError, match="^The 'every' parameter of SpectralMonitor must be an int in"):
        ks.shaping.SpectralMonitor(model, every=0)
    with pytest.raises(ParameterError, match="^The 'alarm_metric' parameter of SpectralMonitor is 'eta_nl' with "
                                             "rank=8, but η_nl is only computed at full rank"):
        ks.shaping.SpectralMonitor(model, rank=8, alarm_metric="eta_nl")
