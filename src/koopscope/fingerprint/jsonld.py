"""The JSON-LD context of a fingerprint: schema.org as the vocabulary, PROV-O for provenance.

A fingerprint is plain JSON to a program that ignores ``@context``, and linked data to one that reads it.
Its terms resolve as follows:

* schema.org (``@vocab``): ``name``, and any term not listed below;
* koopscope's own terms (``ks:``, https://w3id.org/koopscope/terms#): the spectral quantities;
* PROV-O (``prov:``): ``provenance`` is the fingerprint's ``prov:wasGeneratedBy`` activity, which
  ``prov:used`` the model (``model_id``) and ``prov:endedAtTime`` at ``created_at``; the software agent is
  schema.org's ``SoftwareApplication`` named by ``tool`` with its ``softwareVersion``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONTEXT", "DOCUMENT_TYPE", "KS", "PROV"]

KS = "https://w3id.org/koopscope/terms#"
PROV = "http://www.w3.org/ns/prov#"
DOCUMENT_TYPE = "KoopmanFingerprint"


def _ks(*terms: str) -> dict[str, str]:
    return {term: f"ks:{term}" for term in terms}


def _open(term: str) -> dict[str, Any]:
    # A property whose keys are open-ended (feature names, kernel options, statistic names, library names):
    # its own keys resolve in the koopscope vocabulary (a JSON-LD 1.1 property-scoped context).
    return {"@id": f"ks:{term}", "@context": {"@vocab": KS}}


CONTEXT: dict[str, Any] = {
    "@version": 1.1,
    "@vocab": "https://schema.org/",
    "ks": KS,
    "prov": PROV,
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    DOCUMENT_TYPE: f"ks:{DOCUMENT_TYPE}",
    **_ks("schema_version", "kind", "kernel", "method", "rank", "reason", "spectral_radius", "stability_label",
          "stability_rule", "uncertainty", "estimate", "low", "high", "level", "n_boot", "n_pairs", "trust", "flags",
          "code", "severity", "message", "layer", "layers", "index", "risk", "gate", "statistic", "threshold",
          "interval", "verdict", "on_abstain", "re", "im", "seed", "data_sha256", "prompt_sha256",
          "token_ids_sha256", "revision", "revision_requested", "revision_resolved", "source", "tokenizer",
          "max_tokens", "captured_at"),
    **{term: _open(term) for term in ("features", "options", "intervals", "library_versions", "capture_convention",
                                      "weights")},
    "eigenvalues": {"@id": "ks:eigenvalues", "@container": "@list"},
    "residuals": {"@id": "ks:residuals", "@container": "@list"},
    "provenance": {"@id": "prov:wasGeneratedBy"},
    "model_id": {"@id": "prov:used"},
    "created_at": {"@id": "prov:endedAtTime", "@type": "xsd:dateTime"},
    "tool": {"@id": "prov:wasAssociatedWith"},
    "tool_version": {"@id": "softwareVersion"},
}
