"""KoopmanFingerprint: the schema, canonical bytes, JSON-LD, reading and writing, and bad files."""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import numpy as np
import pytest

import koopscope as ks
from koopscope.errors import DataError, ParameterError
from koopscope.fingerprint import KoopmanFingerprint, load_schema
from koopscope.fingerprint.schema import canonical_json
from tests.fingerprint.planted import RHO_PLANTED, planted_layers, planted_trajectory

TIMESTAMPS = re.compile(r'"(created_at|captured_at)": "[^"]*"')


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_documents_validate_against_the_shipped_schema(trajectory_fp, model_fp) -> None:
    validator = jsonschema.Draft202012Validator(load_schema())
    for fp in (trajectory_fp, model_fp):
        assert list(validator.iter_errors(fp.document)) == []


def test_required_top_level_keys(trajectory_fp, model_fp) -> None:
    required = {"@context", "@type", "schema_version", "kind", "kernel", "eigenvalues", "spectral_radius",
                "stability_label", "features", "provenance"}
    assert required <= set(trajectory_fp.document)
    assert required | {"layers", "risk"} <= set(model_fp.document)
    for key in ("model_id", "revision", "prompt_sha256", "token_ids_sha256", "tool_version", "library_versions",
                "seed", "created_at"):
        assert key in trajectory_fp.provenance


def test_trajectory_fingerprint_records_the_planted_spectrum(trajectory_fp) -> None:
    assert trajectory_fp.kind == "trajectory"
    assert trajectory_fp.spectral_radius == pytest.approx(RHO_PLANTED, abs=2e-3)
    lam = trajectory_fp.eigenvalues
    assert lam.dtype == np.complex128 and lam.shape == (3,)
    np.testing.assert_allclose(np.sort(np.abs(lam)), np.sort(np.abs(np.linalg.eigvals(
        np.array([[0.9, -0.2, 0], [0.2, 0.9, 0], [0, 0, 0.5]])))), atol=3e-3)
    est, low, high = trajectory_fp.interval("spectral_radius")
    assert low <= est <= high and low < RHO_PLANTED < high
    assert trajectory_fp.stability_label == "near-unit"  # 0.90 ≤ 0.922 ≤ 1.05 and the whole interval inside
    assert trajectory_fp.features["near_unit_mass"] == pytest.approx(2 / 3)


def test_model_fingerprint_per_layer_sections(model_fp) -> None:
    doc = model_fp.document
    assert [layer["index"] for layer in doc["layers"]] == [0, 1, 2]
    radii = [layer["spectral_radius"] for layer in doc["layers"]]
    np.testing.assert_allclose(radii, [0.6, 0.85, 1.1], atol=5e-3)
    assert doc["spectral_radius"] == max(radii)
    assert [layer["stability_label"] for layer in doc["layers"]] == ["contractive", "contractive", "expansive"]
    assert doc["stability_label"] == "expansive"  # the model's ρ is its largest layer's
    assert doc["features"]["eta_nl"] == pytest.approx(0.2)  # the mean of 0.1, 0.2, 0.3
    assert doc["risk"] == pytest.approx(np.mean([layer["features"]["near_unit_mass"] for layer in doc["layers"]]))
    assert set(model_fp.statistics) == {"near_unit_mass", "risk", "spectral_radius"}
    assert len(model_fp.eigenvalues) == 3 and all(lam.shape == (4,) for lam in model_fp.eigenvalues)


def test_the_same_inputs_give_the_same_bytes_apart_from_timestamps() -> None:
    traj = planted_trajectory()
    texts = []
    for _ in range(2):
        fp = ks.fingerprint.from_trajectory(ks.dmd.exact(traj), traj[:-1], traj[1:], n_boot=20, seed=3)
        texts.append(TIMESTAMPS.sub("", fp.to_json()))
    assert texts[0] == texts[1]
    other = ks.fingerprint.from_trajectory(ks.dmd.exact(traj), traj[:-1], traj[1:], n_boot=20, seed=4)
    assert TIMESTAMPS.sub("", other.to_json()) != texts[0]  # the seed is part of the identity


def test_canonical_json_sorts_keys_and_rounds_floats() -> None:
    text = canonical_json({"b": 1 / 3, "a": [np.float64(-0.0), np.int64(2), (1.0, True)]})
    assert json.loads(text) == {"a": [0.0, 2, [1.0, True]], "b": 0.333333333333}
    assert text.index('"a"') < text.index('"b"') and text.endswith("}\n") and '\n  "a": [\n    0.0,' in text
    with pytest.raises(DataError, match="non-finite"):
        canonical_json({"x": float("nan")})


def test_round_trip_through_a_file_is_exact(tmp_path, model_fp) -> None:
    path = tmp_path / "fp.json"
    text = model_fp.to_json(path)
    assert path.read_text(encoding="utf-8") == text
    again = KoopmanFingerprint.from_json(path)
    assert again == model_fp and again.to_json() == text
    assert again.document == model_fp.document


def test_document_is_a_copy(trajectory_fp) -> None:
    doc = trajectory_fp.document
    doc["name"] = "changed"
    assert trajectory_fp.name == "planted"


WEIGHTS = {"verdict": "flagged", "mode": "check", "baseline": "base", "model": "edited",
           "policy": {"name": "balanced", "alpha": 0.01, "epsilon": {"ffn": 0.05}},
           "summary": {"n_matrices": 1, "flagged": ["h.0.mlp.weight"], "by_family": {"ffn": {"matrices": 1}}},
           "matrices": [{"name": "h.0.mlp.weight", "family": "ffn", "shape": [8, 4], "sigma_max": 1.5,
                         "spike_ratio": 3.2, "flagged": True, "reason": "spike"}]}


def test_json_ld_expands_to_schema_org_prov_and_koopscope_terms(model_fp) -> None:
    jsonld = pytest.importorskip("pyld.jsonld")
    expanded = jsonld.expand(model_fp.with_weights(WEIGHTS).document)  # the rmt section too
    iris: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            iris.update(k for k in node if not k.startswith("@"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(expanded)
    prov = "http://www.w3.org/ns/prov#"
    assert {prov + "wasGeneratedBy", prov + "endedAtTime", prov + "used"} <= iris
    assert "https://schema.org/name" in iris
    stray = {i for i in iris if i.startswith("https://schema.org/")} - {"https://schema.org/name",
                                                                        "https://schema.org/softwareVersion"}
    assert stray == set(), f"terms that fell through to schema.org: {stray}"
    assert expanded[0]["@type"] == ["https://w3id.org/koopscope/terms#KoopmanFingerprint"]
    assert "https://w3id.org/koopscope/terms#weights" in iris and "https://w3id.org/koopscope/terms#family" in iris


def test_weights_section_is_validated(model_fp) -> None:
    assert model_fp.with_weights(WEIGHTS).document["weights"]["verdict"] == "flagged"
    with pytest.raises(DataError):
        model_fp.with_weights({**WEIGHTS, "verdict": "fine"})


# -- bad documents and files --------------------------------------------------------------------------------

def _write(tmp_path, text: str):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_document_failing_the_schema_is_refused(tmp_path, trajectory_fp) -> None:
    doc = trajectory_fp.document
    doc["stability_label"] = "wobbly"
    with pytest.raises(DataError) as err:
        KoopmanFingerprint.from_json(_write(tmp_path, json.dumps(doc)))
    message = str(err.value)
    assert "fails the fingerprint schema 1.0 at document['stability_label']" in message
    assert "'wobbly' is not one of" in message and message.count(". ") == 0


def test_missing_required_key_is_refused(trajectory_fp) -> None:
    doc = trajectory_fp.document
    del doc["provenance"]
    with pytest.raises(DataError, match="'provenance' is a required property"):
        KoopmanFingerprint.from_dict(doc)


def test_trajectory_with_layers_is_refused(trajectory_fp, model_fp) -> None:
    doc = trajectory_fp.document
    doc["layers"] = model_fp.document["layers"]
    with pytest.raises(DataError, match="fails the fingerprint schema"):
        KoopmanFingerprint.from_dict(doc)


def test_unknown_schema_version_is_refused(tmp_path, trajectory_fp) -> None:
    doc = trajectory_fp.document
    doc["schema_version"] = "9.0"
    with pytest.raises(DataError, match=r"has schema_version '9.0', expected one of \['1.0'\]"):
        KoopmanFingerprint.from_json(_write(tmp_path, json.dumps(doc)))


def test_truncated_file_is_refused(tmp_path, trajectory_fp) -> None:
    text = trajectory_fp.to_json()
    with pytest.raises(DataError, match=r"is not valid JSON \(line \d+, column \d+\), possibly truncated"):
        KoopmanFingerprint.from_json(_write(tmp_path, text[: len(text) // 2]))


@pytest.mark.parametrize(("text", "match"), [
    ("", "is empty, possibly truncated"),
    ("[1, 2]", "is a JSON list, expected a JSON object"),
    ('{"a": 1}', "has schema_version None"),
])
def test_other_bad_files(tmp_path, text: str, match: str) -> None:
    with pytest.raises(DataError, match=re.escape(match)):
        KoopmanFingerprint.from_json(_write(tmp_path, text))


def test_missing_file_and_binary_file(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        KoopmanFingerprint.from_json(tmp_path / "nope.json")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="is not UTF-8 text"):
        KoopmanFingerprint.from_json(binary)


def test_writing_into_a_missing_directory_leaves_nothing(tmp_path, trajectory_fp) -> None:
    with pytest.raises(ParameterError, match="is in a directory that does not exist"):
        trajectory_fp.to_json(tmp_path / "missing" / "fp.json")
    assert list(tmp_path.iterdir()) == []


def test_an_invalid_document_cannot_be_built(trajectory_fp) -> None:
    doc = copy.deepcopy(trajectory_fp.document)
    doc["spectral_radius"] = -1.0
    with pytest.raises(DataError, match=r"document\['spectral_radius'\]: -1.0 is less than the minimum of 0"):
        KoopmanFingerprint(doc)


def test_interval_of_an_unknown_statistic(trajectory_fp) -> None:
    with pytest.raises(ParameterError, match=r"statistic='risk' has no interval in this trajectory fingerprint"):
        trajectory_fp.interval("risk")


def test_builders_refuse_empty_and_foreign_inputs() -> None:
    traj = planted_trajectory()
    with pytest.raises(DataError, match="expected a koopscope Spectrum"):
        ks.fingerprint.from_trajectory(np.eye(3), traj[:-1], traj[1:])
    with pytest.raises(DataError, match="layers passed to from_layers is empty"):
        ks.fingerprint.from_layers([])
    layers = planted_layers(n_layers=2)
    with pytest.raises(DataError, match="2 layers but 3 indices"):
        ks.fingerprint.from_layers(layers, indices=[0, 1, 2])


def test_edmd_dictionary_option_is_summarised_as_text() -> None:
    traj = planted_trajectory(T=120)
    spec = ks.dmd.edmd(traj, n_centers=8)
    fp = ks.fingerprint.from_trajectory(spec, traj[:-1], traj[1:], n_boot=5)
    assert isinstance(fp.document["kernel"]["options"]["dictionary"], str)
    assert fp.document["kernel"]["method"] == "edmd"
