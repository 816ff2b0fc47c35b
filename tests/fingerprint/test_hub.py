"""Publishing fingerprints to a Hugging Face dataset: the pure plan, the one commit, and the error sentences.

No test touches the network: the api is a recording stand-in, ``HF_HUB_OFFLINE=1`` is set (and
huggingface_hub's own offline switch is on) for every test, and ``HfApi`` itself is replaced by a class that
fails the test if it is ever constructed without being asked for.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from koopscope.errors import DataError, MissingDependencyError, ParameterError
from koopscope.fingerprint import KoopmanFingerprint
from koopscope.fingerprint.hub import (
    HubError,
    PlannedFile,
    UploadPlan,
    check_branch,
    check_dataset_id,
    classify_error,
    compact_timestamp,
    offline_variable,
    path_in_repo,
    path_segment,
    plan_upload,
    upload,
)

hf = pytest.importorskip("huggingface_hub")
hf_constants = pytest.importorskip("huggingface_hub.constants")
hf_errors = pytest.importorskip("huggingface_hub.errors")

OID = "0123456789abcdef0123456789abcdef01234567"
DATASET = "my-org/koopman-fingerprints"
CREATED = "2026-11-21T03:00:00Z"
FEATURES = {"near_unit_mass": 0.5, "expansive_mass": 0.0, "contractive_mass": 0.25, "intermediate_mass": 0.25,
            "spectral_radius": 0.99, "n_eigenvalues": 4, "n_spurious": 0}
RESIDUALS = [0.01, 0.02, 0.03, 0.04]
EIGS = [{"re": 0.99, "im": 0.0}, {"re": 0.5, "im": 0.5}, {"re": 0.5, "im": -0.5}, {"re": 0.1, "im": 0.0}]


# ------------------------------------------------------------------------------------------ shared helpers


def make_document(kind: str = "trajectory", *, model_id: str | None = "openai-community/gpt2",
                  revision: str | None = None, name: str = "gpt2 audit", created_at: str = CREATED) -> dict[str, Any]:
    """A hand-written fingerprint document that fits the 1.0 schema."""
    doc: dict[str, Any] = {
        "@context": {"@vocab": "https://schema.org/"}, "@type": "KoopmanFingerprint", "schema_version": "1.0",
        "kind": kind, "name": name,
        "kernel": {"method": "exact", "rank": 4, "reason": "a hand-written test fixture", "options": {}},
        "eigenvalues": copy.deepcopy(EIGS), "residuals": None, "spectral_radius": 0.99,
        "stability_label": "near-unit", "features": dict(FEATURES),
        "uncertainty": {"method": "none", "n_boot": 0, "level": 0.9, "seed": 0, "n_pairs": 99, "intervals": {}},
        "trust": {"flags": []},
        "provenance": {"model_id": model_id, "revision": revision, "prompt_sha256": None, "token_ids_sha256": None,
                       "data_sha256": "0" * 64, "tool": "koopscope", "tool_version": "0.1.0",
                       "library_versions": {"numpy": "2.0.0"}, "seed": 0, "created_at": created_at},
    }
    if kind == "model":
        doc["eigenvalues"] = [copy.deepcopy(EIGS), copy.deepcopy(EIGS)]
        doc["residuals"] = [list(RESIDUALS), list(RESIDUALS)]
        doc["layers"] = [{"index": i, "eigenvalues": copy.deepcopy(EIGS), "residuals": list(RESIDUALS),
                          "spectral_radius": 0.99, "stability_label": "near-unit", "features": dict(FEATURES),
                          "n_pairs": 99} for i in range(2)]
        doc["risk"] = 0.2
    return doc


def write_document(path: Path, document: dict[str, Any]) -> Path:
    """The document on disk in a non-canonical form (one line, unsorted keys), as a user might have it."""
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def make_fingerprint(tmp_path: Path, name: str = "fp.json", **kwargs: Any) -> KoopmanFingerprint:
    """A fingerprint read back from a file with :meth:`KoopmanFingerprint.from_json`."""
    return KoopmanFingerprint.from_json(write_document(tmp_path / name, make_document(**kwargs)))


class RecordingApi:
    """A stand-in for ``huggingface_hub.HfApi`` that records calls; ``fail`` maps a method to the error it raises."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail = fail or {}

    def _record(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.calls.append((name, args, kwargs))
        if name in self.fail:
            raise self.fail[name]

    def create_repo(self, repo_id: str, **kwargs: Any) -> str:
        self._record("create_repo", (repo_id,), kwargs)
        return f"https://huggingface.co/datasets/{repo_id}"

    def create_branch(self, repo_id: str, **kwargs: Any) -> None:
        self._record("create_branch", (repo_id,), kwargs)

    def create_commit(self, repo_id: str, operations: Any, **kwargs: Any) -> SimpleNamespace:
        self._record("create_commit", (repo_id, list(operations)), kwargs)
        return SimpleNamespace(commit_url=f"https://huggingface.co/datasets/{repo_id}/commit/{OID}", oid=OID)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected call of api.{name}")

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


class ForbiddenHfApi:
    """Replaces ``huggingface_hub.HfApi``: constructing one fails the test (nothing may reach the network)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a real HfApi was constructed in a test")


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces: HF_HUB_OFFLINE=1, huggingface_hub's own offline switch on, HfApi forbidden."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("KOOPSCOPE_DEBUG", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HfApi", ForbiddenHfApi)


def http_error(status: int, message: str = "Client Error") -> Exception:
    """A real ``HfHubHTTPError`` with a stand-in response of ``status`` (no request is made)."""
    response = SimpleNamespace(status_code=status, headers={}, request=None)
    return hf_errors.HfHubHTTPError(f"{status} {message} for url: https://huggingface.co/api/x", response=response)


def plan_for(tmp_path: Path, **kwargs: Any) -> UploadPlan:
    return plan_upload(make_fingerprint(tmp_path), DATASET, **kwargs)


# ---------------------------------------------------------------------------------------------------- paths


@pytest.mark.parametrize(("text", "segment"), [
    ("gpt2", "gpt2"),
    ("openai-community/gpt2", "openai-community--gpt2"),
    ("  meta-llama/Llama-3.2-1B  ", "meta-llama--Llama-3.2-1B"),
    ("/home/me/models/ckpt-7/", "home--me--models--ckpt-7"),
    ("C:\\models\\run.1", "C_--models--run.1"),
    ("./runs/./a", "runs--a"),
    ("my model (v2)", "my_model__v2_"),
    ("été", "_t_"),
    (".hidden", "_hidden"),
    ("../x", "__--x"),
    ("refs/pr/3", "refs--pr--3"),
    ("a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2", "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2"),
])
def test_path_segment_rule(text: str, segment: str) -> None:
    assert path_segment(text, what="name") == segment


def test_long_segments_are_cut_and_stay_distinct() -> None:
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    sa, sb = path_segment(a, what="name"), path_segment(b, what="name")
    assert len(sa) == len(sb) == 200
    assert sa != sb
    assert sa == "x" * 183 + "-" + hashlib.sha256(a.encode()).hexdigest()[:16]


@pytest.mark.parametrize("text", ["", "   ", ".", "..", "...", "/", "./..", "/../"])
def test_path_segment_refuses_empty_and_dots(text: str) -> None:
    with pytest.raises(DataError) as info:
        path_segment(text, what="provenance.model_id")
    assert str(info.value) == (
        f"The fingerprint's provenance.model_id is {text!r}, which leaves no usable folder name (empty or only dots "
        "once '/' and unsafe characters are replaced); set provenance.model_id to a model id like 'org/model' or a "
        "plain label, then upload again.")


@pytest.mark.parametrize(("created_at", "compact"), [
    ("2026-11-21T03:00:00Z", "20261121T030000Z"),
    ("1999-01-02T23:59:58.123456Z", "19990102T235958.123456Z"),
])
def test_compact_timestamp(created_at: str, compact: str) -> None:
    assert compact_timestamp(created_at) == compact


@pytest.mark.parametrize("bad", ["2026-11-21 03:00:00", "2026-11-21T03:00:00+01:00", "", None, 20261121])
def test_compact_timestamp_refuses_other_forms(bad: object) -> None:
    with pytest.raises(DataError) as info:
        compact_timestamp(bad)
    assert str(info.value) == (
        f"The fingerprint's provenance.created_at is {bad!r}, expected an ISO-8601 UTC time like 2026-11-21T03:00:00Z; "
        "write the fingerprint again with koopscope, which stamps it.")


@pytest.mark.parametrize(("kwargs", "path"), [
    ({}, "fingerprints/openai-community--gpt2/unversioned/trajectory_20261121T030000Z.json"),
    ({"kind": "model", "revision": "main"}, "fingerprints/openai-community--gpt2/main/model_20261121T030000Z.json"),
    ({"revision": "refs/pr/3"}, "fingerprints/openai-community--gpt2/refs--pr--3/trajectory_20261121T030000Z.json"),
    ({"revision": "  "}, "fingerprints/openai-community--gpt2/unversioned/trajectory_20261121T030000Z.json"),
    ({"model_id": None, "name": "traj.npy"}, "fingerprints/traj.npy/unversioned/trajectory_20261121T030000Z.json"),
    ({"model_id": "", "name": "my run"}, "fingerprints/my_run/unversioned/trajectory_20261121T030000Z.json"),
    ({"created_at": "2026-01-02T03:04:05.5Z"},
     "fingerprints/openai-community--gpt2/unversioned/trajectory_20260102T030405.5Z.json"),
])
def test_path_in_repo_layout(kwargs: dict[str, Any], path: str) -> None:
    assert path_in_repo(make_document(**kwargs)) == path


def test_path_in_repo_refuses_a_name_of_dots_when_there_is_no_model_id() -> None:
    with pytest.raises(DataError, match=r"^The fingerprint's name is '\.\.', which leaves no usable folder name"):
        path_in_repo(make_document(model_id=None, name=".."))


def test_path_in_repo_refuses_an_unknown_kind() -> None:
    doc = make_document()
    doc["kind"] = "weights"
    with pytest.raises(DataError) as info:
        path_in_repo(doc)
    assert str(info.value) == ("The fingerprint's kind is 'weights', expected 'trajectory' or 'model'; pass a "
                               "fingerprint written by koopscope audit or koopscope profile.")


# --------------------------------------------------------------------------------------------------- checks


@pytest.mark.parametrize("dataset", ["my-org/koopman-fingerprints", "a/b", "User_1/fp.v2", "o/n-1.x_y"])
def test_check_dataset_id_accepts_hub_ids(dataset: str) -> None:
    assert check_dataset_id(dataset) == dataset


@pytest.mark.parametrize("dataset", [
    "fingerprints", "a/b/c", "/name", "org/", "org/na me", "-org/name", "org/name-", "org/.name", "org/na--me",
    "org/na..me", "org/name.git", "org/" + "n" * 93, "org/näme", "", None,
])
def test_check_dataset_id_refuses_others(dataset: object) -> None:
    with pytest.raises(ParameterError) as info:
        check_dataset_id(dataset, argument="--hub-dataset")
    assert str(info.value) == (
        f"--hub-dataset is {dataset!r}, expected ORG/NAME, a Hugging Face dataset id with exactly one '/' whose two "
        "parts use only letters, digits, '-', '_' and '.' (not starting or ending with '-' or '.', no '--' or '..', "
        "at most 96 characters in all); pass e.g. --hub-dataset my-org/koopman-fingerprints.")


@pytest.mark.parametrize(("branch", "kept"), [
    (None, None), ("main", None), ("fingerprints", "fingerprints"), ("runs/2026-11", "runs/2026-11"),
])
def test_check_branch_accepts(branch: str | None, kept: str | None) -> None:
    assert check_branch(branch) == kept


@pytest.mark.parametrize("branch", ["", "-x", "a..b", "a//b", "x/", "x.lock", "a b", "/x", ".x"])
def test_check_branch_refuses(branch: str) -> None:
    with pytest.raises(ParameterError) as info:
        check_branch(branch, argument="--revision")
    assert str(info.value) == (
        f"--revision is {branch!r}, expected a branch name of letters, digits, '-', '_', '.' and '/' (not starting or "
        "ending with '-', '.' or '/', no '..' or '//'); pass e.g. --revision fingerprints, or leave it out to commit "
        "to main.")


@pytest.mark.parametrize(("env", "variable"), [
    ({}, None), ({"HF_HUB_OFFLINE": "0"}, None), ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=1"),
    ({"HF_HUB_OFFLINE": "true"}, "HF_HUB_OFFLINE=true"), ({"TRANSFORMERS_OFFLINE": "YES"}, "TRANSFORMERS_OFFLINE=YES"),
])
def test_offline_variable(env: dict[str, str], variable: str | None) -> None:
    assert offline_variable(env) == variable


# ----------------------------------------------------------------------------------------------------- plan


def test_plan_holds_the_canonical_bytes_their_size_and_sha256(tmp_path: Path) -> None:
    fp = make_fingerprint(tmp_path)
    raw = (tmp_path / "fp.json").read_bytes()
    canonical = fp.to_json().encode("utf-8")
    assert raw != canonical  # the file on disk is not canonical; the upload is
    plan = plan_upload(fp, DATASET)
    (f,) = plan.files
    assert f.data == canonical
    assert f.size == len(canonical) == plan.total_size
    assert f.sha256 == hashlib.sha256(canonical).hexdigest()
    assert f.path_in_repo == "fingerprints/openai-community--gpt2/unversioned/trajectory_20261121T030000Z.json"
    assert (plan.repo_id, plan.repo_type, plan.private, plan.branch) == (DATASET, "dataset", False, None)
    assert plan.commit_message == "Add trajectory fingerprint of openai-community/gpt2"
    assert f"- {f.path_in_repo} ({f.size} bytes, sha256 {f.sha256})" in plan.commit_description.splitlines()
    assert plan.commit_description.startswith("Uploaded by koopscope ")


def test_plan_is_frozen_deterministic_and_json_ready(tmp_path: Path) -> None:
    a = plan_for(tmp_path, private=True, branch="fingerprints")
    b = plan_for(tmp_path, private=True, branch="fingerprints")
    assert a == b
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.private = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.files[0].sha256 = "0"  # type: ignore[misc]
    doc = json.loads(json.dumps(a.to_dict()))
    assert doc["private"] is True and doc["branch"] == "fingerprints" and doc["repo_type"] == "dataset"
    assert doc["files"] == [{"path_in_repo": a.files[0].path_in_repo, "size": a.files[0].size,
                             "sha256": a.files[0].sha256}]
    assert "data" not in repr(a.files[0])


def test_plan_model_fingerprint_with_revision(tmp_path: Path) -> None:
    fp = make_fingerprint(tmp_path, kind="model", revision="607a30d783dfa663caf39e06633721c8d4cfcd7e")
    plan = plan_upload(fp, DATASET, commit_message="  Add gpt2 at a pinned commit ")
    assert plan.files[0].path_in_repo == (
        "fingerprints/openai-community--gpt2/607a30d783dfa663caf39e06633721c8d4cfcd7e/model_20261121T030000Z.json")
    assert plan.commit_message == "Add gpt2 at a pinned commit"


def test_plan_several_fingerprints_in_one_commit(tmp_path: Path) -> None:
    fps = [make_fingerprint(tmp_path, "a.json"), make_fingerprint(tmp_path, "b.json", kind="model")]
    plan = plan_upload(fps, DATASET)
    assert [f.path_in_repo.rsplit("/", 1)[1] for f in plan.files] == ["trajectory_20261121T030000Z.json",
                                                                        "model_20261121T030000Z.json"]
    assert plan.commit_message == "Add 2 koopscope fingerprints"


def test_plan_refuses_two_fingerprints_at_one_path(tmp_path: Path) -> None:
    fp = make_fingerprint(tmp_path)
    with pytest.raises(ParameterError) as info:
        plan_upload([fp, fp], DATASET)
    assert str(info.value) == (
        "fingerprints 0 and 1 both map to 'fingerprints/openai-community--gpt2/unversioned/"
        "trajectory_20261121T030000Z.json' (same model, revision, kind and created_at); upload them in separate "
        "commits or drop the duplicate.")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"dataset": "nope"}, "dataset is 'nope', expected ORG/NAME"),
    ({"branch": "a..b"}, "branch is 'a..b', expected a branch name"),
    ({"commit_message": " "}, "commit_message is ' ', expected one non-empty line"),
    ({"commit_message": "two\nlines"}, "commit_message is 'two\\nlines', expected one non-empty line"),
])
def test_plan_refuses_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    kwargs = {"dataset": DATASET, **kwargs}
    with pytest.raises(ParameterError) as info:
        plan_upload(make_fingerprint(tmp_path), **kwargs)
    assert str(info.value).startswith(message)


def test_plan_refuses_no_fingerprints() -> None:
    with pytest.raises(ParameterError, match=r"^fingerprints is empty, expected at least one fingerprint"):
        plan_upload([], DATASET)


def test_plan_needs_neither_huggingface_hub_nor_an_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fp = make_fingerprint(tmp_path)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # `import huggingface_hub` now fails
    assert plan_upload(fp, DATASET).files[0].size > 0


def test_importing_hub_is_light() -> None:
    code = "import sys, koopscope.fingerprint.hub, koopscope.cli.upload; print('huggingface_hub' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------------- upload


def test_upload_makes_exactly_one_commit_with_the_planned_bytes(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    api = RecordingApi()
    result = upload(plan, api=api)
    assert api.names == ["create_repo", "create_commit"]
    _, repo_args, repo_kwargs = api.calls[0]
    assert repo_args == (DATASET,)
    assert repo_kwargs == {"repo_type": "dataset", "private": False, "exist_ok": True, "token": None}
    _, (repo_id, operations), commit_kwargs = api.calls[1]
    assert repo_id == DATASET
    assert len(operations) == 1
    (op,) = operations
    assert isinstance(op, hf.CommitOperationAdd)
    assert op.path_in_repo == plan.files[0].path_in_repo
    assert op.path_or_fileobj == plan.files[0].data
    assert hashlib.sha256(op.path_or_fileobj).hexdigest() == plan.files[0].sha256
    assert op.upload_info.sha256.hex() == plan.files[0].sha256  # huggingface_hub's own hash agrees
    assert op.upload_info.size == plan.files[0].size
    assert commit_kwargs == {"commit_message": plan.commit_message, "commit_description": plan.commit_description,
                             "repo_type": "dataset", "revision": None, "token": None}
    assert result.to_dict() == {"repo_id": DATASET, "branch": "main", "commit_oid": OID,
                                "commit_url": f"https://huggingface.co/datasets/{DATASET}/commit/{OID}",
                                "paths": [plan.files[0].path_in_repo]}


def test_upload_forwards_private_branch_and_token(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, private=True, branch="fingerprints")
    api = RecordingApi()
    result = upload(plan, api=api, token="hf_test")
    assert api.names == ["create_repo", "create_branch", "create_commit"]
    assert api.calls[0][2] == {"repo_type": "dataset", "private": True, "exist_ok": True, "token": "hf_test"}
    assert api.calls[1][1:] == ((DATASET,), {"branch": "fingerprints", "repo_type": "dataset", "exist_ok": True,
                                            "token": "hf_test"})
    assert api.calls[2][2]["revision"] == "fingerprints"
    assert api.calls[2][2]["token"] == "hf_test"
    assert result.branch == "fingerprints"


def test_upload_several_files_is_still_one_commit(tmp_path: Path) -> None:
    fps = [make_fingerprint(tmp_path, "a.json"), make_fingerprint(tmp_path, "b.json", kind="model")]
    plan = plan_upload(fps, DATASET)
    api = RecordingApi()
    upload(plan, api=api)
    assert api.names.count("create_commit") == 1
    operations = api.calls[-1][1][1]
    assert [(op.path_in_repo, op.path_or_fileobj) for op in operations] == [(f.path_in_repo, f.data)
                                                                            for f in plan.files]


def test_default_api_refuses_offline_before_building_a_client(tmp_path: Path) -> None:
    with pytest.raises(HubError) as info:
        upload(plan_for(tmp_path))  # HfApi is forbidden: reaching it would fail differently
    assert str(info.value) == (
        f"Uploading to the Hugging Face dataset {DATASET!r} needs the network, but HF_HUB_OFFLINE=1 is set; unset "
        "HF_HUB_OFFLINE and run again when the Hub is reachable.")


def test_default_api_refuses_no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the hub's own switch and the forbidden HfApi stay in place
    monkeypatch.setattr(hf, "get_token", lambda: None)
    with pytest.raises(HubError) as info:
        upload(plan_for(tmp_path))
    assert str(info.value) == (
        f"Uploading to the Hugging Face dataset {DATASET!r} needs a Hugging Face token with write access, and none "
        "was found; log in with `hf auth login` (or `huggingface-cli login`), or set HF_TOKEN to a token with write "
        "access.")


@pytest.mark.parametrize("explicit", [True, False])
def test_default_api_builds_hfapi_with_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 explicit: bool) -> None:
    built: list[RecordingApi] = []
    tokens: list[str] = []

    def factory(*, token: str) -> RecordingApi:
        tokens.append(token)
        built.append(RecordingApi())
        return built[-1]

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf, "HfApi", factory)
    monkeypatch.setattr(hf, "get_token", lambda: "hf_from_login")
    upload(plan_for(tmp_path), token="hf_explicit" if explicit else None)
    assert tokens == ["hf_explicit" if explicit else "hf_from_login"]
    assert built[0].names == ["create_repo", "create_commit"]


def test_missing_huggingface_hub_gives_the_pip_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_for(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    for api in (None, RecordingApi()):
        with pytest.raises(MissingDependencyError) as info:
            upload(plan, api=api)
        assert str(info.value) == ("Uploading fingerprints needs huggingface_hub, which is not installed; install the "
                                   'hub extra with `pip install "koopscope[hub]"`.')


AUTH = ("The Hugging Face Hub refused the upload to the Hugging Face dataset 'my-org/koopman-fingerprints' with HTTP "
        "{status} (HfHubHTTPError: {status} Client Error for url: https://huggingface.co/api/x); the token is missing, "
        "invalid or cannot write to 'my-org': log in with `hf auth login` (or `huggingface-cli login`), or set "
        "HF_TOKEN to a token with write access for 'my-org'.")
REJECTED = ("The Hugging Face Hub rejected the upload to the Hugging Face dataset 'my-org/koopman-fingerprints' with "
            "HTTP {status} (HfHubHTTPError: {status} Client Error for url: https://huggingface.co/api/x); check the "
            "dataset name, the branch and your write access, then run again.")
UNREACHABLE = ("Could not reach the Hugging Face Hub to upload to the Hugging Face dataset "
               "'my-org/koopman-fingerprints' ({detail}); check the network connection, any proxy and HF_ENDPOINT, "
               "then run again (the commit is atomic, so nothing was half-uploaded).")


class TransportError(Exception):
    """Named like httpx's base class of network errors."""


class ConnectError(TransportError):
    """Named like httpx's connection error."""


@pytest.mark.parametrize("method", ["create_repo", "create_commit"])
@pytest.mark.parametrize(("error", "expected"), [
    (http_error(401), AUTH.format(status=401)),
    (http_error(403), AUTH.format(status=403)),
    (http_error(404), REJECTED.format(status=404)),
    (http_error(500), REJECTED.format(status=500)),
    (ConnectionError("[Errno 111] Connection refused"),
     UNREACHABLE.format(detail="ConnectionError: [Errno 111] Connection refused")),
    (TimeoutError("timed out."), UNREACHABLE.format(detail="TimeoutError: timed out")),
    (ConnectError("[Errno -3] Temporary failure in name resolution"),
     UNREACHABLE.format(detail="ConnectError: [Errno -3] Temporary failure in name resolution")),
])
def test_api_errors_become_one_sentence(tmp_path: Path, method: str, error: Exception, expected: str) -> None:
    api = RecordingApi(fail={method: error})
    with pytest.raises(HubError) as info:
        upload(plan_for(tmp_path), api=api)
    assert str(info.value) == expected
    assert info.value.__cause__ is error
    assert api.names[-1] == method


def test_offline_mode_of_huggingface_hub_is_named(tmp_path: Path) -> None:
    api = RecordingApi(fail={"create_repo": hf_errors.OfflineModeIsEnabled("Cannot reach https://huggingface.co")})
    with pytest.raises(HubError) as info:
        upload(plan_for(tmp_path), api=api)
    assert str(info.value) == (
        "Uploading to the Hugging Face dataset 'my-org/koopman-fingerprints' needs the network, but huggingface_hub is "
        "in offline mode (HF_HUB_OFFLINE was set when it was imported); unset HF_HUB_OFFLINE and run again.")


def test_wrapped_errors_are_recognised_through_the_cause_chain(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    try:
        try:
            raise http_error(401)
        except Exception as inner:
            raise RuntimeError("commit failed") from inner
    except RuntimeError as outer:
        error = classify_error(outer, plan)
    assert str(error) == AUTH.format(status=401)


def test_real_httpx_connection_errors_are_recognised(tmp_path: Path) -> None:
    httpx2 = pytest.importorskip("httpx2")  # what huggingface_hub >= 1.x raises through
    for error in (httpx2.ConnectError("refused"), httpx2.ReadTimeout("slow")):
        assert str(classify_error(error, plan_for(tmp_path))).startswith("Could not reach the Hugging Face Hub")


def test_unexpected_errors_propagate_unchanged(tmp_path: Path) -> None:
    error = ValueError("a bug in the api")
    with pytest.raises(ValueError) as info:
        upload(plan_for(tmp_path), api=RecordingApi(fail={"create_commit": error}))
    assert info.value is error


def test_planned_file_from_bytes() -> None:
    f = PlannedFile.from_bytes("fingerprints/a/b/c.json", b"{}\n")
    assert (f.size, f.sha256) == (3, hashlib.sha256(b"{}\n").hexdigest())
