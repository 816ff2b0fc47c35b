"""The fingerprint's JSON Schema (draft 2020-12, shipped in the package) and canonical JSON bytes.

:func:`validate` checks a document against the schema of its ``schema_version`` and raises
:class:`~koopscope.errors.DataError` with one sentence naming the first violation. :func:`canonical_json`
gives the bytes every writer uses: keys sorted, two-space indentation, floats rounded to
:data:`SIGNIFICANT_DIGITS` significant digits (so last-bit differences between BLAS builds do not change the
file), UTF-8, one trailing newline. The same document always gives the same bytes.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from typing import Any, Final

from koopscope.errors import DataError, MissingDependencyError

__all__ = ["SCHEMA_VERSION", "SIGNIFICANT_DIGITS", "SUPPORTED_VERSIONS", "canonical_json", "canonical_value",
           "load_schema", "validate"]

SCHEMA_VERSION: Final = "1.0"
SUPPORTED_VERSIONS: Final = ("1.0",)
SIGNIFICANT_DIGITS: Final = 12


@cache
def load_schema(version: str = SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema of fingerprint ``version``, read from the package data."""
    text = resources.files("koopscope.fingerprint").joinpath(f"schemas/fingerprint-{version}.schema.json")
    return json.loads(text.read_text(encoding="utf-8"))


def _validator(version: str) -> Any:
    try:
        import jsonschema
    except ImportError as exc:  # a core dependency; only a broken install lacks it
        raise MissingDependencyError("Validating a fingerprint needs jsonschema, which is missing; install it "
                                     "with: pip install 'jsonschema>=4.18'") from exc
    schema = load_schema(version)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _where(path: Any) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f"[{p!r}]" for p in path)
    return f"document{parts}" if parts else "the document"


def validate(document: Any, *, source: str = "the fingerprint") -> None:
    """Raise DataError unless ``document`` is a fingerprint of a supported schema version that fits its schema."""
    if not isinstance(document, dict):
        raise DataError(f"{source} is a JSON {type(document).__name__}, expected a JSON object with a "
                        "'schema_version' key; pass a koopscope fingerprint file.")
    version = document.get("schema_version")
    if version not in SUPPORTED_VERSIONS:
        raise DataError(f"{source} has schema_version {version!r}, expected one of {list(SUPPORTED_VERSIONS)}; "
                        "write it with this koopscope version or upgrade koopscope to read it.")
    errors = sorted(_validator(version).iter_errors(document), key=lambda e: (len(e.absolute_path),
                                                                               list(map(str, e.absolute_path))))
    if errors:
        first = errors[0]
        message = " ".join(first.message.split())
        if len(message) > 200:
            message = message[:197] + "..."
        raise DataError(f"{source} fails the fingerprint schema {version} at {_where(first.absolute_path)}: "
                        f"{message}; regenerate it with koopscope or fix that field.")


def _round(x: float) -> float | int:
    if not math.isfinite(x):
        raise DataError(f"A fingerprint holds the non-finite number {x!r}, which JSON cannot represent; "
                        "this is a bug in the code that built it.")
    value = float(f"{x:.{SIGNIFICANT_DIGITS}g}")
    return 0.0 if value == 0 else value  # no negative zero


def canonical_value(obj: Any) -> Any:
    """``obj`` with every float rounded to SIGNIFICANT_DIGITS digits, tuples as lists, numpy scalars as Python."""
    if isinstance(obj, dict):
        return {str(k): canonical_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical_value(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _round(obj)
    item = getattr(obj, "item", None)  # numpy scalar
    if callable(item):
        return canonical_value(item())
    raise DataError(f"A fingerprint value of type {type(obj).__name__} is not JSON ({obj!r:.60}); "
                    "convert it to a number, string, list or dict.")


def canonical_json(document: dict[str, Any]) -> str:
    """The canonical text of a document: sorted keys, 2-space indent, rounded floats, trailing newline."""
    return json.dumps(canonical_value(document), sort_keys=True, indent=2, ensure_ascii=False,
                      allow_nan=False) + "\n"
