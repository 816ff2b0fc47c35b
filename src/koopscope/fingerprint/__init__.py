"""Fingerprints (layer 5): the KoopmanFingerprint document, its JSON Schema, builders, and the HTML report.

A fingerprint is a JSON-LD document (DESIGN.md, "The fingerprint") validated against the JSON Schema shipped
in ``koopscope/fingerprint/schemas/`` whenever it is built, read or written. Build one from a trajectory
(:func:`from_trajectory`, or ``SpectralAuditor(...).fit(traj).fingerprint()``) or from a model's layer
transitions (:func:`from_layers`); write it with ``fp.to_json(path)`` (canonical, deterministic bytes) and
``fp.to_html(path)``; read it with ``KoopmanFingerprint.from_json(path)``.
"""

from koopscope.fingerprint.audit import audit_path, audit_trajectory
from koopscope.fingerprint.build import array_sha256, from_layers, from_trajectory, kernel_summary, spectrum_features
from koopscope.fingerprint.document import KoopmanFingerprint
from koopscope.fingerprint.schema import SCHEMA_VERSION, SUPPORTED_VERSIONS, canonical_json, load_schema, validate
from koopscope.fingerprint.stability import STABILITY_RULE, stability_label

__all__ = [
    "SCHEMA_VERSION", "STABILITY_RULE", "SUPPORTED_VERSIONS", "KoopmanFingerprint", "array_sha256", "audit_path",
    "audit_trajectory",
    "canonical_json", "from_layers", "from_trajectory", "kernel_summary", "load_schema", "spectrum_features",
    "stability_label", "validate",
]
