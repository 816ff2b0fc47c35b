"""``koopscope upload``: publish a fingerprint to a Hugging Face dataset repository in one atomic commit.

The work is :mod:`koopscope.fingerprint.hub`'s: :func:`~koopscope.fingerprint.hub.plan_upload` decides the
commit without the network (path ``fingerprints/<model>/<revision>/<kind>_<timestamp>.json``, size, SHA-256,
message), and :func:`~koopscope.fingerprint.hub.upload` makes it. ``--dry-run`` prints the plan and creates
no Hub client at all. The uploaded bytes are the validated fingerprint's canonical JSON.
"""

from __future__ import annotations

import argparse
from typing import Any

from koopscope.cli._common import EXIT_OK, emit, emit_json, progress
from koopscope.errors import ParameterError
from koopscope.fingerprint import hub

NAME = "upload"
HELP = "publish a fingerprint JSON to a Hugging Face dataset repo in one atomic commit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.json", help="a fingerprint written by koopscope audit or profile")
    parser.add_argument("--hub-dataset", required=True, metavar="ORG/NAME",
                        help="the Hugging Face dataset repository, created if missing (e.g. my-org/fingerprints)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the planned commit (paths, sizes, SHA-256) and upload nothing")
    parser.add_argument("--private", action="store_true",
                        help="create the dataset private if it does not exist yet (an existing one keeps its "
                             "visibility)")
    parser.add_argument("--revision", default=None, metavar="BRANCH",
                        help="branch of the dataset repository to commit to, created from main if missing "
                             "(default: main)")
    parser.add_argument("--message", default=None, metavar="TEXT",
                        help="commit message, one line (default: 'Add <kind> fingerprint of <model>')")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a summary")


def run(args: argparse.Namespace) -> int:
    from koopscope.fingerprint import KoopmanFingerprint

    hub.check_dataset_id(args.hub_dataset, argument="--hub-dataset")
    hub.check_branch(args.revision, argument="--revision")
    fingerprint = KoopmanFingerprint.from_json(args.file)
    plan = hub.plan_upload(fingerprint, args.hub_dataset, private=args.private, branch=args.revision,
                           commit_message=_message(args.message))
    if args.dry_run:
        _output(args, {"dry_run": True, "uploaded": False, **plan.to_dict()}, format_plan(plan, dry_run=True))
        return EXIT_OK
    api = hub.default_api(plan)  # refuses offline mode, a missing extra or a missing token before any output
    progress(f"upload: committing {len(plan.files)} file(s), {plan.total_size} bytes, to the dataset "
             f"{plan.repo_id!r} (branch {plan.branch or 'main'})")
    result = hub.upload(plan, api=api)
    _output(args, {"dry_run": False, "uploaded": True, **plan.to_dict(), **result.to_dict()},
            format_result(plan, result))
    return EXIT_OK


def _output(args: argparse.Namespace, summary: dict[str, Any], text: str) -> None:
    if args.json:
        emit_json(summary)
    else:
        emit(text)


def _message(text: str | None) -> str | None:
    """``--message`` for :func:`~koopscope.fingerprint.hub.plan_upload`; a blank or multi-line one is refused."""
    if text is not None and (not text.strip() or "\n" in text.strip()):
        raise ParameterError(f"--message is {text!r}, expected one non-empty line; pass e.g. --message "
                             "'Add gpt2 fingerprint', or leave it out for the default.")
    return text


def format_plan(plan: hub.UploadPlan, *, dry_run: bool) -> str:
    """The planned commit: repository, branch, message, and one line per file with its size and SHA-256."""
    head = "dry run: nothing uploaded; the commit would be" if dry_run else "commit"
    lines = [
        head,
        f"dataset    {plan.repo_id} (created {'private' if plan.private else 'public'} if missing)",
        f"branch     {plan.branch or 'main'}",
        f"message    {plan.commit_message}",
        f"files      {len(plan.files)} ({plan.total_size} bytes)",
    ]
    lines += [f"  {f.path_in_repo}  {f.size} bytes  sha256 {f.sha256}" for f in plan.files]
    return "\n".join(lines)


def format_result(plan: hub.UploadPlan, result: Any) -> str:
    """The plan as committed, and where the commit is."""
    lines = [format_plan(plan, dry_run=False), f"url        {result.commit_url or '-'}",
             f"commit     {result.commit_oid or '-'}"]
    return "\n".join(lines)
