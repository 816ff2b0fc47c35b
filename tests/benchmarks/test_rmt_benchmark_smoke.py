"""Smoke test of benchmarks/rmt_vs_weightwatcher.py on a tiny GPT-2: both tools run, σ_max agrees, JSON is written."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("weightwatcher")

from benchmarks import rmt_vs_weightwatcher as bench  # noqa: E402

TINY = '{"n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 64, "vocab_size": 128}'


def test_benchmark_runs_and_agrees_with_weightwatcher(tmp_path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "rmt.json"
    assert bench.main(["--repeats", "1", "--models", "gpt2", "--gpt2-config", TINY, "--json", str(out)]) == 0
    row = json.loads(out.read_text())["results"][0]
    assert row["matrices"] == 8 and row["sigma_matched"] == 8
    assert row["sigma_max_max_rel_diff"] < 1e-4          # the agreement criterion
    assert row["int8_verdict"] == "healthy"
    assert row["ww_s"] > 0 and row["koopscope_s"] > 0 and row["full_svd_guard_s"] > 0
