"""`koopscope calibrate` through its exit codes, its output and its exact error sentences."""

from __future__ import annotations

import json

import numpy as np
import pytest

from koopscope.cli import main
from koopscope.gate import Calibrator
from tests.gate.test_calibration import logistic_runs


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def runs_file(tmp_path_factory) -> str:
    return _write(tmp_path_factory.mktemp("runs") / "runs.jsonl", logistic_runs(120, seed=0, groups=6))


def _error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines and "Traceback" not in captured.err
    return lines[-1]


def test_calibrate_writes_and_prints(tmp_path, runs_file, capsys) -> None:
    out = tmp_path / "calibration.json"
    assert main(["calibrate", runs_file, "--out", str(out), "--n-boot", "200"]) == 0
    stdout = capsys.readouterr().out.splitlines()
    cal = Calibrator.load(out)
    n_diverged = cal.provenance_["n_diverged"]
    ci = cal.metrics_["in_sample"]["auroc"]
    assert stdout[0] == f"isotonic calibration of P(diverge) on 120 runs ({n_diverged} diverged), covariates risk"
    assert stdout[1] == (f"in-sample: AUROC {ci['estimate']:.3f} (95% CI [{ci['low']:.3f}, {ci['high']:.3f}], 200 "
                         f"stratified bootstrap replicates), ECE {cal.metrics_['in_sample']['ece']:.3f} (10 bins)")
    assert stdout[-1] == f"wrote {out}"
    assert cal.provenance_["source"] == f"The runs file {runs_file!r}" and len(cal.provenance_["source_sha256"]) == 64
    library = Calibrator(n_boot=200).fit(runs_file)
    probe = np.linspace(-0.1, 1.1, 50)
    assert np.array_equal(cal.predict_proba(probe), library.predict_proba(probe))
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.json"]


def test_calibrate_logistic_json_and_cross_validation(tmp_path, runs_file, capsys) -> None:
    out = tmp_path / "c.json"
    code = main(["calibrate", runs_file, "--out", str(out), "--method", "logistic", "--features", "risk,kappa",
                 "--use-lr", "--C", "10", "--n-boot", "50", "--group-key", "group", "--folds", "3", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "logistic" and summary["features"] == ["risk", "kappa"] and summary["use_lr"]
    assert summary["n_runs"] == 120 and summary["written"] == [str(out)]
    assert summary["cross_validated"]["n_folds"] == 3 and summary["in_sample"]["auroc"]["n_boot"] == 50
    assert set(summary["covariate_auroc"]) == {"risk", "kappa", "log10_lr"}
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["options"]["C"] == 10.0 and document["model"]["covariates"] == ["risk", "kappa", "log10_lr"]
    assert main(["calibrate", runs_file, "--out", str(out), "--group-key", "group"]) == 0
    text = capsys.readouterr().out
    assert "cross-validated (6 folds of groups): AUROC " in text


def test_calibrate_is_deterministic(tmp_path, runs_file) -> None:
    documents = []
    for name in ("a.json", "b.json"):
        assert main(["calibrate", runs_file, "--out", str(tmp_path / name), "--n-boot", "100", "--seed", "3"]) == 0
        document = json.loads((tmp_path / name).read_text())
        document["provenance"].pop("created_at")
        documents.append(json.dumps(document, sort_keys=True))
    assert documents[0] == documents[1]


GOOD = [{"features": {"risk": r}, "diverged": d, "hyperparameters": {"lr": 1e-3}}
        for r, d in [(0.1, False), (0.4, True), (0.2, False), (0.9, True)]]


@pytest.mark.parametrize(("text", "options", "message"), [
    ("".join(json.dumps(r) + "\n" for r in GOOD) + "{oops\n", [],
     "Line 5 of the runs file {path!r} is not valid JSON (Expecting property name enclosed in double quotes at "
     "column 2); the runs file must be JSONL, one JSON object per line."),
    (json.dumps(GOOD, indent=1), [],
     "Line 1 of the runs file {path!r} is not valid JSON (Expecting value at column 2); the runs file must be JSONL, "
     "one JSON object per line."),
    ('{"risk": 0.1}\n', [],
     "Line 1 of the runs file {path!r} has no 'diverged' key; every training run needs its outcome, "
     '"diverged": true or "diverged": false.'),
    ('{"risk": 0.1, "diverged": "false"}\n', [],
     "Line 1 of the runs file {path!r} has diverged='false' (a JSON string), expected a JSON boolean; write "
     '"diverged": true or "diverged": false.'),
    ('{"risk": 0.1, "diverged": false}\n{"kappa": 1.0, "diverged": true}\n', [],
     "Line 2 of the runs file {path!r} has no feature 'risk' (its features: 'kappa'); give every run the same "
     "features, or choose features that all runs have."),
    ('{"risk": 0.1, "diverged": false}\n{"risk": Infinity, "diverged": true}\n', [],
     "Line 2 of the runs file {path!r} has risk=inf, which is not finite; every feature must be a finite number: "
     "fix or drop the run."),
    ("".join(json.dumps({**r, "diverged": False}) + "\n" for r in GOOD), [],
     "The runs file {path!r} has 4 runs and none of them diverged, so a probability of divergence cannot be "
     "calibrated from one class; add runs that diverged."),
    ("".join(json.dumps(r) + "\n" for r in GOOD[:3]), [],
     "The runs file {path!r} has 3 run(s); a calibration needs at least 4 labelled runs, with both outcomes: add "
     "runs."),
    ("".join(json.dumps({**r, "hyperparameters": {"lr": -0.1}}) + "\n" for r in GOOD), ["--method", "logistic",
                                                                                         "--use-lr"],
     "Line 1 of the runs file {path!r} has the learning rate lr=-0.1; use_lr=True needs a positive finite learning "
     "rate (its log10 is the covariate): fix or drop the run."),
    ("".join(json.dumps(r) + "\n" for r in GOOD), ["--use-lr"],
     "use_lr=True passed to Calibrator needs method='logistic', because isotonic regression calibrates one score "
     "and cannot be monotone in both the score and the learning rate; pass method='logistic' or use_lr=False."),
])
def test_bad_input_exits_2_with_one_sentence(tmp_path, capsys, text: str, options: list[str], message: str) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "calibration.json"
    assert main(["calibrate", str(path), "--out", str(out), "--n-boot", "10", *options]) == 2
    assert _error(capsys) == "koopscope: error: " + message.format(path=str(path))
    assert not out.exists()


def test_output_directory_missing(tmp_path, runs_file, capsys) -> None:
    out = tmp_path / "missing" / "calibration.json"
    assert main(["calibrate", runs_file, "--out", str(out)]) == 2
    assert _error(capsys) == (f"koopscope: error: The --out {str(out)!r} is in a directory that does not exist "
                              f"({str(out.parent)!r}); create the directory first or choose another path.")


def test_missing_runs_file_and_bad_options(tmp_path, capsys) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["calibrate", str(missing), "--out", str(tmp_path / "c.json")]) == 2
    assert _error(capsys) == f"koopscope: error: cannot access {str(missing)!r}: No such file or directory."
    assert main(["calibrate", str(missing), "--out", str(tmp_path / "c.json"), "--method", "platt"]) == 2
    assert "invalid choice: 'platt'" in _error(capsys)
    assert main(["calibrate", str(missing), "--out", str(tmp_path / "c.json"), "--C", "0"]) == 2
    assert "expected a number > 0, got '0'" in _error(capsys)
