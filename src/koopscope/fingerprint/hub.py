"""Publish Koopman fingerprints to a Hugging Face *dataset* repository, in one atomic commit.

Two steps, so that what will happen can be shown before anything does:

- :func:`plan_upload` is pure (no network, no ``huggingface_hub``): it turns fingerprints and a dataset id
  into a frozen :class:`UploadPlan` holding the repository id, the private flag, the branch, the commit
  message and, per file, its path in the repository, its size, its SHA-256 and its bytes.
- :func:`upload` executes a plan: ``create_repo(..., repo_type="dataset", exist_ok=True)`` (and
  ``create_branch(..., exist_ok=True)`` for a branch other than main), then **one** ``create_commit`` with
  one ``CommitOperationAdd`` per file. The ``api`` is injectable (any object with those methods), so tests
  use a recording stand-in and never touch the network.

The uploaded bytes are the fingerprint's canonical serialisation, ``fingerprint.to_json()`` encoded as
UTF-8, exactly: the plan's SHA-256 is the SHA-256 of what lands in the repository.

Layout in the repository::

    fingerprints/<model>/<revision>/<kind>_<timestamp>.json

- ``<model>``: ``provenance.model_id``, or the document's ``name`` when the model id is null or blank;
- ``<revision>``: ``provenance.revision``, or ``unversioned`` when it is null or blank;
- ``<kind>``: ``trajectory`` or ``model``;
- ``<timestamp>``: ``provenance.created_at`` in ISO-8601 basic form, ``2026-11-21T03:00:00Z`` ->
  ``20261121T030000Z`` (a fraction of a second is kept: ``20261121T030000.25Z``).

Path-segment rule (:func:`path_segment`), applied to ``<model>`` and ``<revision>``:

1. surrounding whitespace is stripped; the text is split on ``/`` and ``\\``, empty and ``.`` parts are
   dropped, and the parts are joined with ``--`` (as the Hub names its cache folders:
   ``org/model`` -> ``org--model``);
2. every character outside ``[A-Za-z0-9._-]`` becomes ``_``;
3. a result that is empty or made only of dots (``..``) is refused with :class:`~koopscope.errors.DataError`;
4. leading dots become ``_`` (no hidden folders);
5. a result longer than 200 characters keeps its first 183 and ends in ``-`` plus the first 16 hex digits
   of the SHA-256 of the original text, so long names stay distinct.

``huggingface_hub`` is imported inside :func:`upload` only; ``import koopscope`` stays light, and a plan
(``koopscope upload --dry-run``) needs neither the extra nor the network.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from koopscope._version import __version__
from koopscope.errors import DataError, HubError, MissingDependencyError, ParameterError

__all__ = [
    "INSTALL_LINE", "LOGIN_FIX", "ROOT", "UNVERSIONED",
    "HubError", "PlannedFile", "UploadPlan", "UploadResult",
    "check_branch", "check_dataset_id", "classify_error", "compact_timestamp", "default_api", "offline_variable",
    "path_in_repo", "path_segment", "plan_upload", "require_hub", "upload",
]

#: The exact line that installs the optional dependency of this module.
INSTALL_LINE = 'pip install "koopscope[hub]"'
#: How to authenticate, named in every authentication error.
LOGIN_FIX = "log in with `hf auth login` (or `huggingface-cli login`), or set HF_TOKEN to a token with write access"
#: The top folder of the layout.
ROOT = "fingerprints"
#: The ``<revision>`` segment of a fingerprint whose provenance has no revision.
UNVERSIONED = "unversioned"
REPO_TYPE = "dataset"
MAX_SEGMENT = 200

_SEGMENT_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_REPO_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_BRANCH = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_./-]*[A-Za-z0-9_])?")
_CREATED_AT = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?Z")
_TRUE = ("1", "ON", "YES", "TRUE")
_KINDS = ("trajectory", "model")
_CONNECTION_TYPES = frozenset({"ConnectionError", "TransportError", "NetworkError", "Timeout", "TimeoutException",
                               "TimeoutError", "ConnectTimeout", "OfflineModeIsEnabled"})


@dataclass(frozen=True)
class PlannedFile:
    """One file of a planned commit: where it goes and exactly which bytes.

    Attributes
    ----------
    path_in_repo : str
        ``fingerprints/<model>/<revision>/<kind>_<timestamp>.json``.
    size : int
        Length of ``data`` in bytes.
    sha256 : str
        Hex SHA-256 of ``data``.
    data : bytes
        The fingerprint's canonical bytes (``fingerprint.to_json()`` as UTF-8).
    """

    path_in_repo: str
    size: int
    sha256: str
    data: bytes = field(repr=False)

    @classmethod
    def from_bytes(cls, path: str, data: bytes) -> PlannedFile:
        """The file at ``path`` holding ``data``, its size and SHA-256 computed here."""
        return cls(path_in_repo=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(), data=bytes(data))

    def to_dict(self) -> dict[str, Any]:
        """``{"path_in_repo", "size", "sha256"}`` (the bytes are left out)."""
        return {"path_in_repo": self.path_in_repo, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class UploadPlan:
    """One commit to a Hugging Face dataset repository, decided but not made.

    Attributes
    ----------
    repo_id : str
        ``ORG/NAME`` of the dataset repository.
    private : bool
        Create the repository private when it does not exist (an existing one keeps its visibility).
    branch : str or None
        The branch committed to; None for ``main``.
    files : tuple of PlannedFile
        The files the commit adds (or replaces), distinct paths.
    commit_message : str
        One line.
    commit_description : str
        The commit's body: the koopscope version and each file's size and SHA-256.
    repo_type : str
        Always ``"dataset"``.
    """

    repo_id: str
    private: bool
    branch: str | None
    files: tuple[PlannedFile, ...]
    commit_message: str
    commit_description: str
    repo_type: str = REPO_TYPE

    @property
    def total_size(self) -> int:
        """Bytes in all files."""
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (file bytes left out)."""
        return {
            "repo_id": self.repo_id, "repo_type": self.repo_type, "private": self.private,
            "branch": self.branch or "main", "commit_message": self.commit_message,
            "commit_description": self.commit_description, "total_size": self.total_size,
            "files": [f.to_dict() for f in self.files],
        }


@dataclass(frozen=True)
class UploadResult:
    """What :func:`upload` made: the commit's URL and id, and the paths it added."""

    repo_id: str
    branch: str
    commit_url: str | None
    commit_oid: str | None
    paths: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "branch": self.branch, "commit_url": self.commit_url,
                "commit_oid": self.commit_oid, "paths": list(self.paths)}


# --------------------------------------------------------------------------------------------------- checks


def check_dataset_id(dataset: object, *, argument: str = "dataset") -> str:
    """``dataset`` if it is a Hub dataset id ``ORG/NAME``; :class:`ParameterError` naming ``argument`` otherwise.

    Both parts use letters, digits, ``-``, ``_`` and ``.``, do not start or end with ``-`` or ``.``; ``--``
    and ``..`` are not allowed, the name does not end in ``.git``, and the whole is at most 96 characters
    (the Hub's own rules).

    >>> check_dataset_id("my-org/koopman-fingerprints")
    'my-org/koopman-fingerprints'
    """
    text = dataset if isinstance(dataset, str) else None
    parts = text.split("/") if text is not None else []
    ok = (len(parts) == 2 and all(_REPO_PART.fullmatch(p) for p in parts) and "--" not in text
          and ".." not in text and not text.endswith(".git") and len(text) <= 96)
    if not ok:
        raise ParameterError(f"{argument} is {dataset!r}, expected ORG/NAME, a Hugging Face dataset id with "
                             "exactly one '/' whose two parts use only letters, digits, '-', '_' and '.' (not starting "
                             "or ending with '-' or '.', no '--' or '..', at most 96 characters in all); pass e.g. "
                             f"{argument} my-org/koopman-fingerprints.")
    return text


def check_branch(branch: object, *, argument: str = "branch") -> str | None:
    """``branch`` (None for main) if it is a usable branch name; :class:`ParameterError` naming ``argument``.

    Letters, digits, ``-``, ``_``, ``.`` and ``/``; not starting or ending with ``-``, ``.`` or ``/``; no
    ``..`` or ``//``; not ending in ``.lock``; at most 200 characters.

    >>> check_branch("fingerprints/v2") is None, check_branch(None) is None
    (False, True)
    """
    if branch is None:
        return None
    text = branch if isinstance(branch, str) else ""
    ok = (_BRANCH.fullmatch(text) is not None and ".." not in text and "//" not in text
          and not text.endswith(".lock") and len(text) <= 200)
    if not ok:
        raise ParameterError(f"{argument} is {branch!r}, expected a branch name of letters, digits, '-', '_', '.' and "
                             "'/' (not starting or ending with '-', '.' or '/', no '..' or '//'); pass e.g. "
                             f"{argument} fingerprints, or leave it out to commit to main.")
    return None if text == "main" else text


# ---------------------------------------------------------------------------------------------------- paths


def path_segment(text: str, *, what: str) -> str:
    """``text`` as one safe folder name, by the rule in the module docstring; ``what`` names it in errors.

    >>> path_segment("openai-community/gpt2", what="model")
    'openai-community--gpt2'
    >>> path_segment("my model (v2)", what="model")
    'my_model__v2_'
    >>> path_segment(".hidden", what="model")
    '_hidden'
    """
    parts = [p for p in re.split(r"[/\\]", text.strip()) if p not in ("", ".")]
    segment = _SEGMENT_UNSAFE.sub("_", "--".join(parts))
    if not segment.strip("."):
        raise DataError(f"The fingerprint's {what} is {text!r}, which leaves no usable folder name (empty or only dots "
                        f"once '/' and unsafe characters are replaced); set {what} to a model id like 'org/model' or a "
                        "plain label, then upload again.")
    dots = len(segment) - len(segment.lstrip("."))
    segment = "_" * dots + segment[dots:]
    if len(segment) > MAX_SEGMENT:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        segment = f"{segment[:MAX_SEGMENT - 17]}-{digest}"
    return segment


def compact_timestamp(created_at: object) -> str:
    """An ISO-8601 UTC time ``2026-11-21T03:00:00Z`` in basic form, ``20261121T030000Z``.

    >>> compact_timestamp("2026-11-21T03:00:00Z"), compact_timestamp("2026-11-21T03:00:00.25Z")
    ('20261121T030000Z', '20261121T030000.25Z')
    """
    match = _CREATED_AT.fullmatch(created_at) if isinstance(created_at, str) else None
    if match is None:
        raise DataError(f"The fingerprint's provenance.created_at is {created_at!r}, expected an ISO-8601 UTC time "
                        "like 2026-11-21T03:00:00Z; write the fingerprint again with koopscope, which stamps it.")
    y, mo, d, h, mi, s, frac = match.groups()
    return f"{y}{mo}{d}T{h}{mi}{s}{frac or ''}Z"


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def path_in_repo(document: Mapping[str, Any]) -> str:
    """``fingerprints/<model>/<revision>/<kind>_<timestamp>.json`` for a fingerprint document (a dict).

    >>> path_in_repo({"kind": "model", "name": "x", "provenance": {"model_id": "org/m", "revision": None,
    ...               "created_at": "2026-11-21T03:00:00Z"}})
    'fingerprints/org--m/unversioned/model_20261121T030000Z.json'
    """
    provenance = document.get("provenance") or {}
    kind = document.get("kind")
    if kind not in _KINDS:
        raise DataError(f"The fingerprint's kind is {kind!r}, expected 'trajectory' or 'model'; pass a fingerprint "
                        "written by koopscope audit or koopscope profile.")
    model_id = provenance.get("model_id")
    if _blank(model_id):
        model = path_segment(str(document.get("name") or ""), what="name")
    else:
        model = path_segment(str(model_id), what="provenance.model_id")
    revision = provenance.get("revision")
    rev = UNVERSIONED if _blank(revision) else path_segment(str(revision), what="provenance.revision")
    return f"{ROOT}/{model}/{rev}/{kind}_{compact_timestamp(provenance.get('created_at'))}.json"


# ----------------------------------------------------------------------------------------------------- plan


def _canonical_bytes(fingerprint: Any) -> bytes:
    text = fingerprint.to_json()
    return text if isinstance(text, bytes) else text.encode("utf-8")


def _as_list(fingerprints: Any) -> list[Any]:
    if hasattr(fingerprints, "document"):
        return [fingerprints]
    return list(fingerprints)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe(document: Mapping[str, Any]) -> str:
    provenance = document.get("provenance") or {}
    model = provenance.get("model_id")
    subject = model if not _blank(model) else document.get("name")
    revision = provenance.get("revision")
    at = "" if _blank(revision) else f"@{revision}"
    return _one_line(f"{document.get('kind')} fingerprint of {subject}{at}")


def plan_upload(fingerprints: Any, dataset: str, *, private: bool = False, branch: str | None = None,
                commit_message: str | None = None) -> UploadPlan:
    """Plan one commit that adds ``fingerprints`` to the Hub dataset ``dataset``; pure, no network.

    Parameters
    ----------
    fingerprints : KoopmanFingerprint or iterable of KoopmanFingerprint
        Validated fingerprints (anything with ``.document`` and ``.to_json()``); each becomes one file holding
        ``to_json()`` as UTF-8, at :func:`path_in_repo` of its document.
    dataset : str
        ``ORG/NAME`` of the dataset repository (:func:`check_dataset_id`).
    private : bool, default False
        Create the repository private if it does not exist yet.
    branch : str, optional
        Branch to commit to (created from main when missing); None or ``"main"`` for main.
    commit_message : str, optional
        One line; by default ``Add <kind> fingerprint of <model>[@<revision>]`` (or ``Add N koopscope
        fingerprints``).

    Returns
    -------
    UploadPlan

    Raises
    ------
    ParameterError
        A bad dataset id, branch or commit message, no fingerprints, or two that map to the same path.
    DataError
        A document whose model id, name, revision, kind or created_at gives no valid path.
    """
    repo_id = check_dataset_id(dataset)
    branch = check_branch(branch)
    items = _as_list(fingerprints)
    if not items:
        raise ParameterError("fingerprints is empty, expected at least one fingerprint; pass a KoopmanFingerprint "
                             "or a list of them.")
    files, seen = [], {}
    for i, fp in enumerate(items):
        planned = PlannedFile.from_bytes(path_in_repo(fp.document), _canonical_bytes(fp))
        if planned.path_in_repo in seen:
            raise ParameterError(f"fingerprints {seen[planned.path_in_repo]} and {i} both map to "
                                 f"{planned.path_in_repo!r} (same model, revision, kind and created_at); upload them "
                                 "in separate commits or drop the duplicate.")
        seen[planned.path_in_repo] = i
        files.append(planned)
    if commit_message is None:
        commit_message = f"Add {_describe(items[0].document)}" if len(items) == 1 else \
            f"Add {len(items)} koopscope fingerprints"
    elif not isinstance(commit_message, str) or not commit_message.strip() or "\n" in commit_message.strip():
        raise ParameterError(f"commit_message is {commit_message!r}, expected one non-empty line; pass a short "
                             "summary such as 'Add gpt2 fingerprint', or None for the default.")
    body = [f"Uploaded by koopscope {__version__}.", ""]
    body += [f"- {f.path_in_repo} ({f.size} bytes, sha256 {f.sha256})" for f in files]
    return UploadPlan(repo_id=repo_id, private=bool(private), branch=branch, files=tuple(files),
                      commit_message=commit_message.strip(), commit_description="\n".join(body))


# --------------------------------------------------------------------------------------------------- upload


def require_hub() -> ModuleType:
    """``huggingface_hub``, or :class:`MissingDependencyError` with the install line."""
    try:
        import huggingface_hub
    except ImportError:
        raise MissingDependencyError(f"Uploading fingerprints needs huggingface_hub, which is not installed; install "
                                     f"the hub extra with `{INSTALL_LINE}`.") from None
    return huggingface_hub


def offline_variable(environ: Mapping[str, str] | None = None) -> str | None:
    """``"HF_HUB_OFFLINE=1"`` (or ``TRANSFORMERS_OFFLINE=...``) when one of them switches the Hub off, else None.

    >>> offline_variable({"HF_HUB_OFFLINE": "1"}), offline_variable({"HF_HUB_OFFLINE": "0"})
    ('HF_HUB_OFFLINE=1', None)
    """
    env = os.environ if environ is None else environ
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = env.get(name, "")
        if value.strip().upper() in _TRUE:
            return f"{name}={value}"
    return None


def default_api(plan: UploadPlan, token: str | None = None) -> Any:
    """A real ``huggingface_hub.HfApi`` for ``plan``, after the checks that need no network.

    Raises
    ------
    HubError
        Offline mode is on (``HF_HUB_OFFLINE``), or there is no token (``token`` is None and
        ``huggingface_hub.get_token()`` finds none).
    MissingDependencyError
        ``huggingface_hub`` is not installed.
    """
    variable = offline_variable()
    if variable is not None:
        raise HubError(f"Uploading to the Hugging Face dataset {plan.repo_id!r} needs the network, but {variable} is "
                       f"set; unset {variable.split('=')[0]} and run again when the Hub is reachable.")
    hub = require_hub()
    token = token or hub.get_token()
    if not token:
        raise HubError(f"Uploading to the Hugging Face dataset {plan.repo_id!r} needs a Hugging Face token with write "
                       f"access, and none was found; {LOGIN_FIX}.")
    return hub.HfApi(token=token)


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status(exc: BaseException) -> int | None:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _detail(exc: BaseException) -> str:
    text = getattr(exc, "server_message", None) or (str(exc).strip().splitlines() or [""])[0]
    text = _one_line(text).rstrip(".;: ")
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def classify_error(exc: BaseException, plan: UploadPlan) -> HubError | None:
    """The :class:`HubError` that explains ``exc`` raised by the api, or None for an unexpected error (a bug).

    HTTP 401/403 -> authentication; any other HTTP status -> the Hub rejected the commit; a connection error
    or time-out (``ConnectionError``, httpx's ``TransportError``, requests' ``ConnectionError`` / ``Timeout``,
    huggingface_hub's ``OfflineModeIsEnabled``) -> the Hub cannot be reached. The exception's cause chain is
    searched, so a wrapped error is recognised too.
    """
    where = f"the Hugging Face dataset {plan.repo_id!r}"
    for err in _chain(exc):
        status = _status(err)
        if status in (401, 403):
            org = plan.repo_id.split("/")[0]
            return HubError(f"The Hugging Face Hub refused the upload to {where} with HTTP {status} ({_detail(err)}); "
                            f"the token is missing, invalid or cannot write to {org!r}: {LOGIN_FIX} for {org!r}.")
        if status is not None:
            return HubError(f"The Hugging Face Hub rejected the upload to {where} with HTTP {status} ({_detail(err)}); "
                            "check the dataset name, the branch and your write access, then run again.")
        names = {cls.__name__ for cls in type(err).__mro__}
        if isinstance(err, ConnectionError | TimeoutError) or names & _CONNECTION_TYPES:
            if "OfflineModeIsEnabled" in names:
                return HubError(f"Uploading to {where} needs the network, but huggingface_hub is in offline mode "
                                "(HF_HUB_OFFLINE was set when it was imported); unset HF_HUB_OFFLINE and run again.")
            return HubError(f"Could not reach the Hugging Face Hub to upload to {where} ({_detail(err)}); check the "
                            "network connection, any proxy and HF_ENDPOINT, then run again (the commit is atomic, so "
                            "nothing was half-uploaded).")
    return None


def upload(plan: UploadPlan, api: Any = None, token: str | None = None) -> UploadResult:
    """Make the commit ``plan`` describes: create the dataset repository if missing, then one ``create_commit``.

    Parameters
    ----------
    plan : UploadPlan
        From :func:`plan_upload`.
    api : object, optional
        An ``huggingface_hub.HfApi`` or a stand-in with ``create_repo``, ``create_branch`` and ``create_commit``;
        by default :func:`default_api` builds one (refusing offline mode and a missing token first).
    token : str, optional
        Passed to every api call (None: the api's own token, by default ``huggingface_hub.get_token()``).

    Returns
    -------
    UploadResult

    Raises
    ------
    HubError
        Offline, unauthenticated (no token, HTTP 401/403), unreachable, or the Hub rejected the commit.
    MissingDependencyError
        ``huggingface_hub`` is not installed.
    """
    if api is None:
        api = default_api(plan, token)
    hub = require_hub()
    operations = [hub.CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=f.data) for f in plan.files]
    try:
        api.create_repo(plan.repo_id, repo_type=plan.repo_type, private=plan.private, exist_ok=True, token=token)
        if plan.branch is not None:
            api.create_branch(plan.repo_id, branch=plan.branch, repo_type=plan.repo_type, exist_ok=True, token=token)
        info = api.create_commit(plan.repo_id, operations, commit_message=plan.commit_message,
                                 commit_description=plan.commit_description, repo_type=plan.repo_type,
                                 revision=plan.branch, token=token)
    except Exception as exc:
        error = classify_error(exc, plan)
        if error is None:
            raise
        raise error from exc
    return UploadResult(repo_id=plan.repo_id, branch=plan.branch or "main",
                        commit_url=getattr(info, "commit_url", None), commit_oid=getattr(info, "oid", None),
                        paths=tuple(f.path_in_repo for f in plan.files))
