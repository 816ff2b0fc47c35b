"""``koopscope upload``: the dry run, the one commit, and one sentence with exit code 2 for every error.

No test touches the network (see tests/fingerprint/test_hub.py): ``HF_HUB_OFFLINE=1``, huggingface_hub's own
offline switch, a forbidden ``HfApi``, and a recording stand-in api where a commit is made.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from koopscope.cli import main, upload
from koopscope.cli._common import ArgumentParser
from koopscope.errors import DataError, ParameterError
from koopscope.fingerprint import KoopmanFingerprint
from koopscope.fingerprint import hub as hub_module
from tests.fingerprint.test_hub import (
    AUTH,
    DATASET,
    OID,
    UNREACHABLE,
    RecordingApi,
    hf,
    http_error,
    make_document,
    offline_hub,  # noqa: F401  (autouse: the network guards apply here too)
    write_document,
)

PATH = "fingerprints/openai-community--gpt2/unversioned/trajectory_20261121T030000Z.json"


@pytest.fixture
def fp_file(tmp_path: Path) -> Path:
    return write_document(tmp_path / "fp.json", make_document())


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> RecordingApi:
    """The recording stand-in, returned wherever the command would build a real HfApi."""
    recorder = RecordingApi()
    monkeypatch.setattr(hub_module, "default_api", lambda plan, token=None: recorder)
    return recorder


def _canonical(path: Path) -> bytes:
    return KoopmanFingerprint.from_json(path).to_json().encode("utf-8")


def _one_line_error(out: str, err: str) -> str:
    """The error line: nothing on stdout, no traceback, and stderr ends with one line after any progress lines."""
    assert out == ""
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("koopscope: upload:")]
    assert len(lines) == 1, f"expected one error line on stderr, got {err!r}"
    assert err.strip().splitlines()[-1] == lines[0]
    return lines[0]


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``koopscope upload argv``, expect exit code 2, and return the sentence after ``koopscope: error: ``."""
    assert main(["upload", *argv]) == 2
    line = _one_line_error(*capsys.readouterr())
    assert line.startswith("koopscope: error: "), line
    return line.removeprefix("koopscope: error: ")


def _parse(argv: list[str]) -> Any:
    parser = ArgumentParser(prog="koopscope upload")
    upload.add_arguments(parser)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------- dry run


def test_dry_run_prints_the_plan_and_builds_no_api(fp_file: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def no_api(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("--dry-run built an api")

    monkeypatch.setattr(hub_module, "default_api", no_api)
    monkeypatch.setattr(hub_module, "upload", no_api)
    assert main(["upload", str(fp_file), "--hub-dataset", DATASET, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    data = _canonical(fp_file)
    assert out.splitlines() == [
        "dry run: nothing uploaded; the commit would be",
        f"dataset    {DATASET} (created public if missing)",
        "branch     main",
        "message    Add trajectory fingerprint of openai-community/gpt2",
        f"files      1 ({len(data)} bytes)",
        f"  {PATH}  {len(data)} bytes  sha256 {hashlib.sha256(data).hexdigest()}",
    ]
    assert err == ""


def test_dry_run_json(fp_file: Path, capsys: pytest.CaptureFixture[str], api: RecordingApi) -> None:
    argv = ["upload", str(fp_file), "--hub-dataset", DATASET, "--dry-run", "--json", "--private", "--revision", "fp"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    data = _canonical(fp_file)
    assert doc["dry_run"] is True and doc["uploaded"] is False
    assert (doc["repo_id"], doc["repo_type"], doc["private"], doc["branch"]) == (DATASET, "dataset", True, "fp")
    assert doc["files"] == [{"path_in_repo": PATH, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    assert api.calls == []


def test_dry_run_works_without_huggingface_hub(fp_file: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    assert main(["upload", str(fp_file), "--hub-dataset", DATASET, "--dry-run"]) == 0
    assert PATH in capsys.readouterr().out


def test_run_from_the_module_parser(fp_file: Path, capsys: pytest.CaptureFixture[str], api: RecordingApi) -> None:
    assert upload.run(_parse([str(fp_file), "--hub-dataset", DATASET, "--dry-run"])) == 0
    assert PATH in capsys.readouterr().out
    assert api.calls == []
    assert upload.run(_parse([str(fp_file), "--hub-dataset", DATASET])) == 0
    assert api.names == ["create_repo", "create_commit"]
    with pytest.raises(ParameterError, match=r"^--hub-dataset is 'nope', expected ORG/NAME"):
        upload.run(_parse([str(fp_file), "--hub-dataset", "nope"]))
    with pytest.raises(DataError, match=r"does not exist; pass the path of a fingerprint \.json file\.$"):
        upload.run(_parse([str(fp_file.with_name("missing.json")), "--hub-dataset", DATASET]))


# ------------------------------------------------------------------------------------------------ upload


def test_upload_makes_one_commit_with_the_canonical_bytes(fp_file: Path, capsys: pytest.CaptureFixture[str],
                                                          api: RecordingApi) -> None:
    assert main(["upload", str(fp_file), "--hub-dataset", DATASET]) == 0
    out, err = capsys.readouterr()
    data = _canonical(fp_file)
    assert data != fp_file.read_bytes()  # the canonical form, not the file's own bytes
    assert api.names == ["create_repo", "create_commit"]
    assert api.calls[0][2] == {"repo_type": "dataset", "private": False, "exist_ok": True, "token": None}
    _, (repo_id, operations), kwargs = api.calls[1]
    assert repo_id == DATASET
    assert [(op.path_in_repo, op.path_or_fileobj) for op in operations] == [(PATH, data)]
    assert kwargs["commit_message"] == "Add trajectory fingerprint of openai-community/gpt2"
    assert f"sha256 {hashlib.sha256(data).hexdigest()}" in kwargs["commit_description"]
    assert (kwargs["repo_type"], kwargs["revision"]) == ("dataset", None)
    assert out.splitlines()[0] == "commit"
    assert f"url        https://huggingface.co/datasets/{DATASET}/commit/{OID}" in out.splitlines()
    assert f"commit     {OID}" in out.splitlines()
    assert err == (f"koopscope: upload: committing 1 file(s), {len(data)} bytes, to the dataset {DATASET!r} "
                   "(branch main)\n")


def test_upload_forwards_private_branch_and_message(fp_file: Path, capsys: pytest.CaptureFixture[str],
                                                    api: RecordingApi) -> None:
    argv = ["upload", str(fp_file), "--hub-dataset", DATASET, "--private", "--revision", "runs/nov",
            "--message", "Add the November audit", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert api.names == ["create_repo", "create_branch", "create_commit"]
    assert api.calls[0][2]["private"] is True
    assert api.calls[1][2]["branch"] == "runs/nov"
    assert api.calls[2][2]["revision"] == "runs/nov"
    assert api.calls[2][2]["commit_message"] == "Add the November audit"
    assert doc["uploaded"] is True and doc["commit_oid"] == OID and doc["paths"] == [PATH]
    assert doc["branch"] == "runs/nov" and doc["private"] is True


def test_model_fingerprint_path(tmp_path: Path, capsys: pytest.CaptureFixture[str], api: RecordingApi) -> None:
    path = write_document(tmp_path / "m.json", make_document("model", model_id=None, name="tiny-gpt2",
                                                             revision="v1.0"))
    assert main(["upload", str(path), "--hub-dataset", DATASET, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paths"] == ["fingerprints/tiny-gpt2/v1.0/model_20261121T030000Z.json"]


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("dataset", ["fingerprints", "a/b/c", "org/", "-org/name", "org/na--me", "org/name.git",
                                     "org/na me"])
def test_bad_hub_dataset(fp_file: Path, dataset: str, capsys: pytest.CaptureFixture[str], api: RecordingApi) -> None:
    assert _fails([str(fp_file), f"--hub-dataset={dataset}"], capsys) == (
        f"--hub-dataset is {dataset!r}, expected ORG/NAME, a Hugging Face dataset id with exactly one '/' whose two "
        "parts use only letters, digits, '-', '_' and '.' (not starting or ending with '-' or '.', no '--' or '..', "
        "at most 96 characters in all); pass e.g. --hub-dataset my-org/koopman-fingerprints.")
    assert api.calls == []


def test_missing_hub_dataset_option(fp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _fails([str(fp_file)], capsys) == ("the following arguments are required: --hub-dataset "
                                              "(see 'koopscope upload --help')")


def test_bad_revision(fp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _fails([str(fp_file), "--hub-dataset", DATASET, "--revision", "a..b"], capsys) == (
        "--revision is 'a..b', expected a branch name of letters, digits, '-', '_', '.' and '/' (not starting or "
        "ending with '-', '.' or '/', no '..' or '//'); pass e.g. --revision fingerprints, or leave it out to commit "
        "to main.")


def test_bad_message(fp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _fails([str(fp_file), "--hub-dataset", DATASET, "--message", " "], capsys) == (
        "--message is ' ', expected one non-empty line; pass e.g. --message 'Add gpt2 fingerprint', or leave it out "
        "for the default.")


def _source(path: Path) -> str:
    return f"The fingerprint file {str(path)!r}"


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing.json"
    assert _fails([str(path), "--hub-dataset", DATASET], capsys) == (
        f"{_source(path)} does not exist; pass the path of a fingerprint .json file.")


def test_directory_instead_of_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _fails([str(tmp_path), "--hub-dataset", DATASET, "--dry-run"], capsys) == (
        f"{_source(tmp_path)} is a directory; pass the path of a fingerprint .json file.")


def test_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.json"
    path.write_text("koopman, not json\n", encoding="utf-8")
    assert _fails([str(path), "--hub-dataset", DATASET], capsys) == (
        f"{_source(path)} is not valid JSON (line 1, column 1), possibly truncated; regenerate it with koopscope.")


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.json"
    path.write_text("", encoding="utf-8")
    assert _fails([str(path), "--hub-dataset", DATASET], capsys) == (
        f"{_source(path)} is empty, possibly truncated; regenerate it with koopscope.")


def test_truncated_file(fp_file: Path, capsys: pytest.CaptureFixture[str], api: RecordingApi) -> None:
    text = KoopmanFingerprint.from_json(fp_file).to_json()
    fp_file.write_text(text[: len(text) // 2], encoding="utf-8")
    try:
        json.loads(fp_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
    assert _fails([str(fp_file), "--hub-dataset", DATASET], capsys) == (
        f"{_source(fp_file)} is not valid JSON ({where}), possibly truncated; regenerate it with koopscope.")
    assert api.calls == []


def test_file_failing_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str], api: RecordingApi) -> None:
    doc = make_document()
    del doc["kernel"]
    path = write_document(tmp_path / "bad.json", doc)
    assert _fails([str(path), "--hub-dataset", DATASET], capsys) == (
        f"{_source(path)} fails the fingerprint schema 1.0 at the document: 'kernel' is a required property; "
        "regenerate it with koopscope or fix that field.")
    assert api.calls == []


def test_unknown_schema_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_document(tmp_path / "future.json", {**make_document(), "schema_version": "9.9"})
    assert _fails([str(path), "--hub-dataset", DATASET, "--dry-run"], capsys) == (
        f"{_source(path)} has schema_version '9.9', expected one of ['1.0']; write it with this koopscope version or "
        "upgrade koopscope to read it.")


def test_offline(fp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # HF_HUB_OFFLINE=1 comes from the autouse guard; the real default_api refuses before building HfApi.
    assert _fails([str(fp_file), "--hub-dataset", DATASET], capsys) == (
        f"Uploading to the Hugging Face dataset {DATASET!r} needs the network, but HF_HUB_OFFLINE=1 is set; unset "
        "HF_HUB_OFFLINE and run again when the Hub is reachable.")


def test_no_token(fp_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # huggingface_hub's own switch and the forbidden HfApi stay on
    monkeypatch.setattr(hf, "get_token", lambda: None)
    assert _fails([str(fp_file), "--hub-dataset", DATASET], capsys) == (
        f"Uploading to the Hugging Face dataset {DATASET!r} needs a Hugging Face token with write access, and none "
        "was found; log in with `hf auth login` (or `huggingface-cli login`), or set HF_TOKEN to a token with write "
        "access.")


@pytest.mark.parametrize("status", [401, 403])
def test_token_refused(fp_file: Path, capsys: pytest.CaptureFixture[str], api: RecordingApi, status: int) -> None:
    api.fail["create_repo"] = http_error(status)
    assert _fails([str(fp_file), "--hub-dataset", DATASET], capsys) == AUTH.format(status=status)
    assert api.names == ["create_repo"]


def test_local_refusals_come_before_any_progress_line(fp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["upload", str(fp_file), "--hub-dataset", DATASET]) == 2  # offline: refused before committing
    assert capsys.readouterr().err.startswith("koopscope: error: Uploading to the Hugging Face dataset")


def test_connection_error(fp_file: Path, capsys: pytest.CaptureFixture[str], api: RecordingApi) -> None:
    api.fail["create_commit"] = ConnectionError("[Errno 101] Network is unreachable")
    assert _fails([str(fp_file), "--hub-dataset", DATASET], capsys) == UNREACHABLE.format(
        detail="ConnectionError: [Errno 101] Network is unreachable")


def test_missing_huggingface_hub(fp_file: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    assert _fails([str(fp_file), "--hub-dataset", DATASET], capsys) == (
        'Uploading fingerprints needs huggingface_hub, which is not installed; install the hub extra with `pip install '
        '"koopscope[hub]"`.')


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["upload", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--hub-dataset", "--dry-run", "--private", "--revision", "--message", "--json"):
        assert option in out


def test_entry_point_in_a_subprocess(fp_file: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KOOPSCOPE_DEBUG", "HF_TOKEN")} | {"HF_HUB_OFFLINE": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "koopscope.cli", "upload", str(fp_file), *args],
                              capture_output=True, text=True, env=env, timeout=120, check=False)

    dry = run("--hub-dataset", DATASET, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["files"][0]["path_in_repo"] == PATH
    for args in (["--hub-dataset", "nope"], ["--hub-dataset", DATASET]):  # a bad id; offline
        bad = run(*args)
        assert bad.returncode == 2
        assert _one_line_error(bad.stdout, bad.stderr).startswith("koopscope: error: ")
