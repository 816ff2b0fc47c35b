"""`koopscope audit`, `gate` and `report` through their exit codes and exact error sentences."""

from __future__ import annotations

import json

import numpy as np
import pytest

from koopscope.cli import main
from koopscope.fingerprint import KoopmanFingerprint
from tests.fingerprint.planted import planted_trajectory


@pytest.fixture(scope="module")
def traj_npy(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("traj") / "planted.npy"
    np.save(path, planted_trajectory())
    return str(path)


@pytest.fixture(scope="module")
def fp_path(tmp_path_factory, traj_npy) -> str:
    out = tmp_path_factory.mktemp("fp") / "fp.json"
    assert main(["audit", traj_npy, "--out", str(out), "--kernel", "exact", "--n-boot", "40"]) == 0
    return str(out)


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and "Traceback" not in "\n".join(err)
    return err[-1]


def test_audit_writes_a_valid_fingerprint(fp_path, capsys) -> None:
    fp = KoopmanFingerprint.from_json(fp_path)
    assert fp.kind == "trajectory" and fp.name == "planted.npy"
    assert fp.document["kernel"]["method"] == "exact"
    assert fp.document["uncertainty"]["n_boot"] == 40
    assert fp.provenance["source"] == "planted.npy"


def test_audit_json_summary_and_html(tmp_path, traj_npy, capsys) -> None:
    out, html = tmp_path / "fp.json", tmp_path / "r.html"
    code = main(["audit", traj_npy, "--out", str(out), "--html", str(html), "--n-boot", "10", "--json",
                 "--name", "my <b>run</b>"])
    assert code == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "trajectory" and info["name"] == "my <b>run</b>"
    assert info["written"] == [str(out), str(html)]
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_audit_is_deterministic(tmp_path, traj_npy) -> None:
    texts = []
    for name in ("a.json", "b.json"):
        assert main(["audit", traj_npy, "--out", str(tmp_path / name), "--n-boot", "10", "--seed", "5"]) == 0
        doc = json.loads((tmp_path / name).read_text())
        doc["provenance"].pop("created_at")
        texts.append(json.dumps(doc, sort_keys=True))
    assert texts[0] == texts[1]


@pytest.mark.parametrize(("threshold", "code", "word"), [("1.0", 0, "PASS"), ("0.5", 1, "FAIL")])
def test_gate_pass_and_fail(fp_path, capsys, threshold: str, code: int, word: str) -> None:
    assert main(["gate", "--fingerprint", fp_path, "--threshold", threshold]) == code
    assert capsys.readouterr().out.startswith(f"{word}: planted.npy: spectral_radius 95% interval")


def test_gate_abstain_is_fail_closed_unless_asked(fp_path, capsys) -> None:
    fp = KoopmanFingerprint.from_json(fp_path)
    _, low, high = fp.interval()
    mid = f"{(low + high) / 2:.6f}"
    assert main(["gate", "--fingerprint", fp_path, "--threshold", mid]) == 3
    assert capsys.readouterr().out.startswith("ABSTAIN:")
    assert main(["gate", "--fingerprint", fp_path, "--threshold", mid, "--on-abstain", "pass"]) == 0
    assert main(["gate", "--fingerprint", fp_path, "--threshold", mid, "--json"]) == 3
    out = capsys.readouterr().out
    decision = json.loads(out[out.index("{"):])
    assert decision["verdict"] == "abstain" and decision["exit_code"] == 3


def test_gate_on_near_unit_mass(fp_path) -> None:
    assert main(["gate", "--fingerprint", fp_path, "--threshold", "0.9", "--statistic", "near_unit_mass"]) == 0


def test_report_writes_html(tmp_path, fp_path, capsys) -> None:
    out = tmp_path / "report.html"
    assert main(["report", fp_path, "--html", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert "application/ld+json" in out.read_text(encoding="utf-8")


# -- bad input: exit 2, one sentence, no traceback, nothing written ------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "abc", "-inf"])
def test_threshold_not_a_finite_number(fp_path, capsys, value: str) -> None:
    assert main(["gate", "--fingerprint", fp_path, f"--threshold={value}"]) == 2
    assert _error(capsys) == (f"koopscope: error: argument --threshold: expected a finite number, got {value!r} "
                              "(see 'koopscope gate --help')")


@pytest.mark.parametrize(("field", "value", "sentence"), [
    ("kind", "galaxy", "fails the fingerprint schema 1.0 at document['kind']: 'galaxy' is not one of ['trajectory', "
                       "'model']; regenerate it with koopscope or fix that field."),
    ("schema_version", "2.0", "has schema_version '2.0', expected one of ['1.0']; write it with this koopscope "
                              "version or upgrade koopscope to read it."),
])
def test_gate_on_an_invalid_fingerprint(tmp_path, fp_path, capsys, field: str, value: str, sentence: str) -> None:
    doc = json.loads(open(fp_path).read())
    doc[field] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["gate", "--fingerprint", str(bad), "--threshold", "1"]) == 2
    assert _error(capsys) == f"koopscope: error: The fingerprint file {str(bad)!r} {sentence}"


def test_report_on_a_truncated_file(tmp_path, fp_path, capsys) -> None:
    text = open(fp_path).read()
    bad = tmp_path / "cut.json"
    bad.write_text(text[:200])
    out = tmp_path / "r.html"
    assert main(["report", str(bad), "--html", str(out)]) == 2
    assert "is not valid JSON" in _error(capsys) and not out.exists()


def test_audit_of_a_trajectory_with_nan(tmp_path, capsys) -> None:
    traj = planted_trajectory()
    traj[5, 1] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, traj)
    out = tmp_path / "fp.json"
    assert main(["audit", str(path), "--out", str(out)]) == 2
    assert _error(capsys) == (f"koopscope: error: The trajectory {str(path)!r} passed to audit contains 1 NaN/Inf "
                              "value(s), the first at row 5, column 1; DMD needs finite snapshots: drop or impute "
                              "those rows first.")
    assert not out.exists()


def test_audit_of_an_empty_trajectory(tmp_path, capsys) -> None:
    path = tmp_path / "empty.npy"
    np.save(path, np.empty((0, 3)))
    out = tmp_path / "fp.json"
    assert main(["audit", str(path), "--out", str(out)]) == 2
    assert _error(capsys) == (f"koopscope: error: The trajectory {str(path)!r} passed to audit has 0 snapshot(s) "
                              "(shape (0, 3)); a fit needs at least 3 snapshots (2 pairs): record a longer "
                              "trajectory.")
    assert not out.exists()


def test_audit_into_a_missing_directory(tmp_path, traj_npy, capsys) -> None:
    out = tmp_path / "nowhere" / "fp.json"
    assert main(["audit", traj_npy, "--out", str(out)]) == 2
    assert _error(capsys) == (f"koopscope: error: The --out {str(out)!r} is in a directory that does not exist "
                              f"({str(out.parent)!r}); create the directory first or choose another path.")
    assert not out.parent.exists()


def test_audit_html_into_a_missing_directory_writes_nothing(tmp_path, traj_npy, capsys) -> None:
    out = tmp_path / "fp.json"
    assert main(["audit", traj_npy, "--out", str(out), "--html", str(tmp_path / "no" / "r.html")]) == 2
    assert "is in a directory that does not exist" in _error(capsys)
    assert not out.exists()  # the paths are checked before any work


def test_report_into_a_missing_directory(tmp_path, fp_path, capsys) -> None:
    out = tmp_path / "gone" / "r.html"
    assert main(["report", fp_path, "--html", str(out)]) == 2
    assert "is in a directory that does not exist" in _error(capsys) and not out.parent.exists()


def test_audit_missing_input(tmp_path, capsys) -> None:
    assert main(["audit", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "fp.json")]) == 2
    assert "does not exist" in _error(capsys)


def test_audit_bad_rank(tmp_path, traj_npy, capsys) -> None:
    assert main(["audit", traj_npy, "--out", str(tmp_path / "fp.json"), "--rank", "zero"]) == 2
    assert "expected an integer >= 1, 'full' or 'svht', got 'zero'" in _error(capsys)


# -- a model: an extraction store, one operator per layer transition ---------------------------------------------

@pytest.fixture(scope="module")
def planted_store(tmp_path_factory) -> tuple[str, list[float]]:
    """A complete store of 4 states whose transitions are planted maps with every |λ| = 0.5, 0.95, 1.2."""
    pytest.importorskip("zarr")
    from koopscope.store import TrajectoryStore
    from tests.store.appender import provenance

    rng = np.random.default_rng(0)
    radii = [0.5, 0.95, 1.2]
    states = [rng.standard_normal((400, 6))]
    for r in radii:
        Q = np.linalg.qr(rng.standard_normal((6, 6)))[0]  # (6, 6) orthogonal: every eigenvalue has modulus 1
        states.append(states[-1] @ (r * Q).T + 1e-3 * rng.standard_normal((400, 6)))
    path = tmp_path_factory.mktemp("store") / "planted.zarr"
    store = TrajectoryStore.create(path, n_states=4, width=6, n_rows=400, provenance=provenance(max_tokens=400),
                                   source_dtype="float32")
    store.append([s.astype(np.float32) for s in states])
    return str(path), radii


def test_audit_of_a_store_is_a_model_fingerprint(tmp_path, planted_store, capsys) -> None:
    path, radii = planted_store
    out = tmp_path / "model.json"
    assert main(["audit", path, "--out", str(out), "--n-boot", "30"]) == 0
    fp = KoopmanFingerprint.from_json(out)
    doc = fp.document
    assert fp.kind == "model" and fp.name == "sshleifer/tiny-gpt2"
    assert doc["kernel"]["method"] == "whitened"  # kernel auto on layer transitions: RKSP's kernel
    assert [layer["index"] for layer in doc["layers"]] == [0, 1, 2]
    # Whitening is a similarity transform of the operator when the state covariance is well conditioned,
    # so each layer keeps its planted modulus (to the noise and float32 storage: 1e-2).
    np.testing.assert_allclose([layer["spectral_radius"] for layer in doc["layers"]], radii, atol=1e-2)
    assert [layer["stability_label"] for layer in doc["layers"]] == ["contractive", "near-unit", "expansive"]
    assert fp.stability_label == "expansive" and fp.spectral_radius == pytest.approx(1.2, abs=1e-2)
    assert fp.risk == pytest.approx(1 / 3, abs=1e-9)  # near-unit mass 0, 1, 0 over the three layers
    prov = fp.provenance
    assert prov["model_id"] == "sshleifer/tiny-gpt2"
    assert prov["revision"] == "5f91d94bd9cd7190a9f3216ff93cd1dd95f2c7be"
    assert prov["captured_at"] == "2025-01-31T12:00:00Z" and prov["source"] == "planted.zarr"
    assert main(["gate", "--fingerprint", str(out), "--threshold", "1.0"]) == 1  # layer 2 grows
    assert main(["gate", "--fingerprint", str(out), "--threshold", "0.5", "--statistic", "risk"]) == 0


def test_audit_of_an_incomplete_store(tmp_path, capsys) -> None:
    pytest.importorskip("zarr")
    from koopscope.store import TrajectoryStore
    from tests.store.appender import provenance

    path = tmp_path / "cut.zarr"
    store = TrajectoryStore.create(path, n_states=2, width=3, n_rows=10, provenance=provenance(max_tokens=10),
                                   source_dtype="float32")
    store.append([np.zeros((4, 3), np.float32)] * 2)
    out = tmp_path / "fp.json"
    assert main(["audit", str(path), "--out", str(out)]) == 2
    assert "is incomplete" in _error(capsys) and not out.exists()
