"""`koopscope rmt`: readings, certification of an edit (exit 0 / 1), correction, JSON, and bad input (exit 2)."""

from __future__ import annotations

import json

import pytest

from koopscope.cli import main

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def checkpoints(tmp_path):
    """A tiny GPT-2 saved as the baseline, and a copy with a rank-1 spike planted in block 1's MLP input."""
    from koopscope.capture.loading import load_model
    from koopscope.rmt import plant_spike

    loaded = load_model("tiny-gpt2")
    base, damaged = tmp_path / "base", tmp_path / "damaged"
    loaded.model.save_pretrained(base)
    weight = loaded.model.transformer.h[1].mlp.c_fc.weight          # Conv1D: stored (in, out)
    with torch.no_grad():
        weight.copy_(plant_spike(weight.T, 0.3, seed=1).T)
    loaded.model.save_pretrained(damaged)
    return base, damaged


def test_readings_of_one_model(tmp_path, capsys) -> None:
    out = tmp_path / "rmt.json"
    assert main(["rmt", "tiny-gpt2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "24 matrices (attention 16, ffn 8)" in text and "verdict: healthy" in text
    doc = json.loads(out.read_text())
    assert doc["kind"] == "koopscope-rmt" and doc["mode"] == "statistics" and len(doc["matrices"]) == 24
    assert all(m["sigma_max"] > 0 and m["noise_sigma"] > 0 for m in doc["matrices"])


def test_quantisation_of_a_model_is_certified_healthy(capsys) -> None:
    assert main(["rmt", "tiny-gpt2", "--quantize", "int4", "--group-size", "16", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["before"]["verdict"] == "healthy" and info["before"]["n_edited"] == 24


def test_damaged_edit_exits_1_and_names_the_module(checkpoints, tmp_path, capsys) -> None:
    base, damaged = checkpoints
    out = tmp_path / "rmt.json"
    assert main(["rmt", str(damaged), "--baseline", str(base), "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "FLAGGED transformer.h.1.mlp.c_fc.weight (ffn): spike" in text and "verdict: flagged" in text
    doc = json.loads(out.read_text())
    assert doc["verdict"] == "flagged" and doc["summary"]["flagged"] == ["transformer.h.1.mlp.c_fc.weight"]


def test_correct_writes_a_model_that_passes(checkpoints, tmp_path, capsys) -> None:
    base, damaged = checkpoints
    fixed = tmp_path / "fixed"
    # The edit was flagged, so the exit code stays 1 even though the written model is repaired.
    assert main(["rmt", str(damaged), "--baseline", str(base), "--correct", "--out-model", str(fixed),
                 "--out", str(tmp_path / "r.json")]) == 1
    assert "after correction: healthy" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["after_correction"]["verdict"] == "healthy"
    assert main(["rmt", str(fixed), "--baseline", str(base)]) == 0


@pytest.mark.parametrize(("argv", "words"), [
    (["rmt", "tiny-gpt2", "--correct"], "--correct needs --out-model"),
    (["rmt", "tiny-gpt2", "--group-size", "8"], "--group-size 8 needs --quantize"),
    (["rmt", "tiny-gpt2", "--baseline", "tiny-gpt2", "--quantize", "int8"], "--baseline and --quantize"),
    (["rmt", "no-such-model"], "is not a local directory"),
    (["rmt", "tiny-gpt2", "--baseline", "tiny-llama"], "do not match the baseline"),
    (["rmt", "tiny-gpt2", "--quantize", "int8", "--group-size", "7"], "group"),
])
def test_bad_input_exits_2_with_one_sentence(argv, words, capsys) -> None:
    assert main(argv) == 2
    assert words in _error(capsys)


def test_weights_section_joins_a_fingerprint_and_its_report(checkpoints, tmp_path, capsys) -> None:
    from koopscope.fingerprint import KoopmanFingerprint

    base, damaged = checkpoints
    fp, html = tmp_path / "profile.json", tmp_path / "report.html"
    assert main(["profile", "demo", "--tokens", "256", "--n-boot", "5", "--out", str(fp)]) == 0
    assert main(["rmt", str(damaged), "--baseline", str(base), "--fingerprint", str(fp), "--html", str(html)]) == 1
    weights = KoopmanFingerprint.from_json(fp).document["weights"]  # validated against the schema on read
    assert weights["verdict"] == "flagged" and weights["mode"] == "check" and len(weights["matrices"]) == 24
    flagged = [m["name"] for m in weights["matrices"] if m.get("flagged")]
    assert flagged == ["transformer.h.1.mlp.c_fc.weight"]
    page = html.read_text(encoding="utf-8")
    assert 'data-table="weights"' in page and 'class="flagged"' in page
    assert main(["rmt", "tiny-gpt2", "--html", str(html)]) == 2
    assert "--html renders the fingerprint" in _error(capsys)
