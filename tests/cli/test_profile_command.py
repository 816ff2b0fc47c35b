"""`koopscope profile`: the demo, the written fingerprint, --json, and bad input (exit 2, one sentence)."""

from __future__ import annotations

import json

import pytest

from koopscope.cli import main
from koopscope.fingerprint import KoopmanFingerprint

pytest.importorskip("transformers")


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_profile_demo_prints_the_table_and_writes_a_model_fingerprint(tmp_path, capsys) -> None:
    out, html = tmp_path / "profile.json", tmp_path / "profile.html"
    assert main(["profile", "demo", "--tokens", "512", "--n-boot", "5", "--out", str(out), "--html", str(html)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("profile of demo: 4 transitions, 512 tokens, width 64, full rank whitened DMD")
    assert "layer    M≈1" in text and "verdict: risk " in text
    fp = KoopmanFingerprint.from_json(out)
    assert fp.kind == "model" and fp.name == "demo" and len(fp.document["layers"]) == 4
    assert fp.provenance["model_id"] == "demo"
    assert {"kappa", "kreiss", "eta_nl", "relative_update"} <= set(fp.document["layers"][0]["features"])
    assert html.read_text(encoding="utf-8").count('data-chart="unit-circle"') == 4


def test_profile_json_and_init(capsys) -> None:
    assert main(["profile", "tiny-llama", "--init", "--tokens", "256", "--json", "--rank", "8"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "tiny-llama" and len(info["layers"]) == 4
    assert all(layer["eta_nl"] is None for layer in info["layers"])  # rank r: η_nl is not computed
    assert set(info["summary"]["near_unit_mass"]) == {"mean", "max", "min", "std", "early", "middle", "late"}


@pytest.mark.parametrize(("argv", "message"), [
    (["profile", "no-such-model-xyz"], "no-such-model-xyz"),
    (["profile", "demo", "--lr", "-1"], "--lr is -1.0, expected a positive finite learning rate such as 3e-4."),
    (["profile", "demo", "--tokens", "1"], "argument --tokens: expected an integer >= 2, got '1'"),
])
def test_bad_input_exits_2(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert message in _error(capsys)


def test_output_directory_must_exist(tmp_path, capsys) -> None:
    out = tmp_path / "missing" / "p.json"
    assert main(["profile", "demo", "--out", str(out)]) == 2
    assert "is in a directory that does not exist" in _error(capsys) and not out.parent.exists()


def test_profile_with_a_calibration_reports_a_probability(tmp_path, capsys) -> None:
    rows = [{"features": {"risk": r}, "hyperparameters": {"lr": lr}, "diverged": d}
            for r, lr, d in [(0.1, 1e-4, False), (0.2, 3e-4, False), (0.3, 1e-3, False), (0.35, 3e-3, True),
                             (0.4, 1e-2, True), (0.5, 3e-2, True), (0.25, 1e-2, True), (0.45, 1e-4, False)]]
    runs = tmp_path / "runs.jsonl"
    runs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    calibration = tmp_path / "calibration.json"
    assert main(["calibrate", str(runs), "--out", str(calibration), "--method", "logistic", "--use-lr"]) == 0
    capsys.readouterr()
    argv = ["profile", "demo", "--tokens", "256", "--json", "--calibration", str(calibration)]
    assert main([*argv, "--lr", "1e-4"]) == 0
    low = json.loads(capsys.readouterr().out)
    assert main([*argv, "--lr", "3e-2"]) == 0
    high = json.loads(capsys.readouterr().out)
    assert low["calibrated"] and "probability of divergence (calibrated)" in low["verdict"]
    assert 0.0 <= low["risk"] < high["risk"] <= 1.0  # the same spectrum is riskier at a larger learning rate
