"""The :class:`KoopmanFingerprint`: a validated, immutable fingerprint document with its JSON and HTML forms.

The document itself (a dict, described in DESIGN.md, "The fingerprint", and by the shipped JSON Schema) is
the contract; the class is a thin, read-only view over it. Every way in (:meth:`from_dict`,
:meth:`from_json`, the builders in :mod:`koopscope.fingerprint.build`) validates the document, and so does
every way out (:meth:`to_json`, :meth:`to_html`), so an invalid fingerprint can be neither read nor written.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from koopscope._atomic import write_text
from koopscope.errors import DataError, ParameterError
from koopscope.fingerprint.schema import canonical_json, canonical_value, validate

__all__ = ["KoopmanFingerprint"]


def _complex(values: list[dict[str, float]]) -> np.ndarray:
    return np.array([v["re"] + 1j * v["im"] for v in values], dtype=np.complex128)


class KoopmanFingerprint:
    """A Koopman spectral fingerprint of a trajectory (``kind="trajectory"``) or a model (``kind="model"``).

    Build one with :func:`koopscope.fingerprint.from_trajectory` (or ``SpectralAuditor.fingerprint()``),
    :func:`koopscope.fingerprint.from_layers`, or read one with :meth:`from_json`.

    Attributes
    ----------
    document : dict
        A deep copy of the validated JSON-LD document (changing it does not change the fingerprint).
    kind, name, spectral_radius, stability_label, features, provenance, risk
        The document's fields of those names (``risk`` is None for a trajectory).
    """

    __slots__ = ("_document", "_text")

    def __init__(self, document: dict[str, Any], *, source: str = "the fingerprint") -> None:
        document = canonical_value(document)
        validate(document, source=source)
        self._document = document
        self._text = canonical_json(document)

    # -- ways in ---------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> KoopmanFingerprint:
        """Validate ``document`` and wrap it."""
        return cls(copy.deepcopy(document))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> KoopmanFingerprint:
        """Read and validate a fingerprint file; DataError (one sentence) if it is not a valid fingerprint."""
        p = Path(path)
        source = f"The fingerprint file {str(p)!r}"
        if not p.is_file():
            what = "is a directory" if p.is_dir() else "does not exist"
            raise DataError(f"{source} {what}; pass the path of a fingerprint .json file.")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{source} is not UTF-8 text; pass a fingerprint .json file.") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            what = "is empty" if not text.strip() else f"is not valid JSON (line {exc.lineno}, column {exc.colno})"
            raise DataError(f"{source} {what}, possibly truncated; regenerate it with koopscope.") from None
        return cls(document, source=source)

    # -- ways out --------------------------------------------------------------------------------------------
    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The canonical JSON text; with ``path``, also written there atomically."""
        if path is not None:
            write_text(path, self._text, argument="fingerprint output path")
        return self._text

    def to_html(self, path: str | os.PathLike[str]) -> Path:
        """Write the self-contained HTML report (see :mod:`koopscope.fingerprint.report`) atomically."""
        from koopscope.fingerprint.report import write_html

        return write_html(self.document, path)

    def with_gate(self, gate: dict[str, Any]) -> KoopmanFingerprint:
        """A copy with the ``gate`` section (a decision's ``as_dict()``) set."""
        return KoopmanFingerprint({**self.document, "gate": gate})

    def with_weights(self, weights: dict[str, Any]) -> KoopmanFingerprint:
        """A copy with the ``weights`` section set: ``koopscope.rmt.RMTReport.fingerprint_section()``."""
        return KoopmanFingerprint({**self.document, "weights": weights})

    # -- reading ---------------------------------------------------------------------------------------------
    @property
    def document(self) -> dict[str, Any]:
        return copy.deepcopy(self._document)

    @property
    def kind(self) -> str:
        return self._document["kind"]

    @property
    def name(self) -> str:
        return self._document["name"]

    @property
    def spectral_radius(self) -> float:
        return self._document["spectral_radius"]

    @property
    def stability_label(self) -> str:
        return self._document["stability_label"]

    @property
    def features(self) -> dict[str, Any]:
        return dict(self._document["features"])

    @property
    def provenance(self) -> dict[str, Any]:
        return copy.deepcopy(self._document["provenance"])

    @property
    def risk(self) -> float | None:
        return self._document.get("risk")

    @property
    def trust_flags(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._document["trust"]["flags"])

    @property
    def eigenvalues(self) -> np.ndarray | list[np.ndarray]:
        """complex128 (k,) for a trajectory; one such array per transition for a model."""
        eigs = self._document["eigenvalues"]
        return [_complex(layer) for layer in eigs] if self.kind == "model" else _complex(eigs)

    @property
    def statistics(self) -> tuple[str, ...]:
        """The statistics with a bootstrap interval, in sorted order (what a gate can decide on)."""
        return tuple(sorted(self._document["uncertainty"]["intervals"]))

    def interval(self, statistic: str = "spectral_radius") -> tuple[float, float, float]:
        """(estimate, low, high) of ``statistic`` from the document's bootstrap intervals."""
        intervals = self._document["uncertainty"]["intervals"]
        if statistic not in intervals:
            raise ParameterError(f"statistic={statistic!r} has no interval in this {self.kind} fingerprint; "
                                 f"expected one of {sorted(intervals)}.")
        ci = intervals[statistic]
        return ci["estimate"], ci["low"], ci["high"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KoopmanFingerprint) and self._text == other._text

    def __hash__(self) -> int:
        return hash(self._text)

    def __repr__(self) -> str:
        method = self._document["kernel"]["method"]
        return (f"KoopmanFingerprint(kind={self.kind!r}, name={self.name!r}, method={method!r}, "
                f"spectral_radius={self.spectral_radius:.6g}, stability_label={self.stability_label!r})")
