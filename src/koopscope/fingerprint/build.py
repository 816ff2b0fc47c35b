"""Building fingerprint documents from fitted spectra: one trajectory, or a model's layer transitions.

:func:`from_trajectory` turns one :class:`~koopscope.dmd.Spectrum` and the pairs it was fitted on into a
``kind="trajectory"`` fingerprint; :func:`from_layers` turns one spectrum per transition ℓ → ℓ+1 into a
``kind="model"`` fingerprint with per-layer sections, aggregates and a risk. Both attach percentile-bootstrap
intervals (:mod:`koopscope.spectral.bootstrap`), a stability label (:mod:`.stability`), trust flags and
provenance, and return a validated :class:`~koopscope.fingerprint.KoopmanFingerprint`.

Trust flags (``trust.flags``; a gate abstains on any flag of severity "warning" or "error"):

* ``few_pairs`` (warning): fewer than 2·D snapshot pairs for a D-dimensional operator (the kernel's
  coordinates: delay-embedded for hankel, lifted for edmd);
* ``dominant_spurious`` (warning): the eigenvalue of largest modulus, which sets the spectral radius, has a
  ResDMD residual above the spectrum's threshold;
* ``spurious_majority`` (warning): more than half of the eigenvalues are flagged spurious;
* ``no_interval`` (warning): no bootstrap replicates were drawn (``n_boot=0``), so nothing bounds the statistics;
* ``bootstrap_bias`` (warning): the spectral radius lies outside its own bootstrap interval, i.e. the
  replicates are shifted from the estimate by more than their spread: the estimator is strongly biased at
  this number of pairs per dimension, and neither the estimate nor the interval supports a decision;
* ``no_residuals`` (info): the kernel computed no residuals, so spurious eigenvalues cannot be flagged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from koopscope._backend import backend_of
from koopscope.dmd.spectrum import Spectrum
from koopscope.errors import DataError
from koopscope.fingerprint.document import KoopmanFingerprint
from koopscope.fingerprint.jsonld import CONTEXT, DOCUMENT_TYPE
from koopscope.fingerprint.schema import SCHEMA_VERSION
from koopscope.fingerprint.stability import STABILITY_RULE, stability_label
from koopscope.spectral.bootstrap import ConfidenceInterval, bootstrap_layers, kernel_pairs
from koopscope.spectral.masses import mass_partition, near_unit_mass, spectral_radius
from koopscope.store.provenance import created_at, library_versions, tool_version

__all__ = ["BOOTSTRAP_METHOD", "array_sha256", "from_layers", "from_trajectory", "kernel_summary", "spectrum_flags",
           "spectrum_features"]

BOOTSTRAP_METHOD = ("percentile bootstrap over snapshot pairs (rows resampled with replacement, the kernel "
                    "refitted at its original rank; koopscope.spectral.bootstrap)")

# Provenance fields copied from a capture's record when present (store/provenance.py, PROVENANCE_KEYS).
_CAPTURE_FIELDS = ("revision_requested", "revision_resolved", "tokenizer", "max_tokens", "layers",
                   "capture_convention")


def _numpy(a: Any) -> np.ndarray:
    return np.asarray(backend_of(a).to_numpy(a))


def array_sha256(*arrays: np.ndarray) -> str:
    """SHA-256 (hex) over arrays: tag ``koopscope-arrays-v1``, then per array its dtype, shape and C-order bytes."""
    h = hashlib.sha256(b"koopscope-arrays-v1")
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _complex_list(eigenvalues: np.ndarray) -> list[dict[str, float]]:
    return [{"re": float(z.real), "im": float(z.imag)} for z in np.asarray(eigenvalues, dtype=np.complex128)]


def _residual_list(spectrum: Spectrum) -> list[float | None] | None:
    if spectrum.residuals is None:
        return None
    return [float(r) if np.isfinite(r) else None for r in spectrum.residuals]


def spectrum_features(spectrum: Spectrum) -> dict[str, float | int | None]:
    """The scalar features of one spectrum: the RKSP masses, ρ, counts, and residual summaries.

    ``median_residual`` and ``filtered_near_unit_mass`` (the near-unit mass of the eigenvalues ResDMD keeps)
    are None without residuals; the latter is also None when every eigenvalue is flagged.
    """
    lam = np.asarray(spectrum.eigenvalues)
    features: dict[str, float | int | None] = {
        **mass_partition(lam), "spectral_radius": spectrum.spectral_radius,
        "n_eigenvalues": int(lam.size), "n_spurious": spectrum.n_spurious,
        "median_residual": None, "filtered_near_unit_mass": None,
    }
    if spectrum.residuals is not None:
        finite = spectrum.residuals[np.isfinite(spectrum.residuals)]
        features["median_residual"] = float(np.median(finite)) if finite.size else None
        kept = lam[~spectrum.spurious]
        features["filtered_near_unit_mass"] = near_unit_mass(kept) if kept.size else None
    return features


def _option_value(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)  # e.g. an EDMD Dictionary: summarised by its repr


def kernel_summary(spectrum: Spectrum) -> dict[str, Any]:
    """``{"method", "rank", "reason", "options"}`` with every option as a JSON scalar (others by their repr)."""
    options = {str(k): _option_value(v) for k, v in spectrum.options.items() if k != "reason"}
    return {"method": spectrum.method, "rank": int(spectrum.rank), "reason": spectrum.reason, "options": options}


def _flag(code: str, severity: str, message: str, layer: int | None = None) -> dict[str, Any]:
    flag: dict[str, Any] = {"code": code, "severity": severity, "message": message}
    if layer is not None:
        flag["layer"] = layer
    return flag


def spectrum_flags(spectrum: Spectrum, n_pairs: int, dim: int, layer: int | None = None) -> list[dict[str, Any]]:
    where = "" if layer is None else f"transition {layer}: "
    flags = []
    if n_pairs < 2 * dim:
        flags.append(_flag("few_pairs", "warning", f"{where}{n_pairs} snapshot pairs for a {dim}-dimensional "
                           f"operator; at least 2·D = {2 * dim} pairs are needed for a reliable estimate", layer))
    if spectrum.residuals is None:
        flags.append(_flag("no_residuals", "info", f"{where}the {spectrum.method} kernel computed no ResDMD "
                           "residuals, so spurious eigenvalues are not flagged", layer))
        return flags
    spurious = spectrum.spurious
    if spurious.size and spurious[0]:
        flags.append(_flag("dominant_spurious", "warning", f"{where}the eigenvalue of largest modulus has ResDMD "
                           f"residual {float(spectrum.residuals[0]):.3g} > {spectrum.residual_threshold:g}, so the "
                           "spectral radius may be spurious", layer))
    if spurious.size and spurious.mean() > 0.5:
        flags.append(_flag("spurious_majority", "warning", f"{where}{int(spurious.sum())} of {spurious.size} "
                           "eigenvalues are flagged spurious by ResDMD", layer))
    return flags


def _bias_flag(ci: ConfidenceInterval, n_pairs: int, dim: int, layer: int | None = None) -> list[dict[str, Any]]:
    if not ci.excludes_estimate:
        return []
    where = "" if layer is None else f"transition {layer}: "
    side = "above" if ci.bias > 0 else "below"
    return [_flag("bootstrap_bias", "warning", f"{where}the bootstrap replicates of the spectral radius lie {side} "
                  f"its estimate {ci.estimate:.4g} (interval [{ci.low:.4g}, {ci.high:.4g}], bias {ci.bias:+.3g}): "
                  f"with {n_pairs} pairs for {dim} dimensions the estimate is strongly biased", layer)]


def _provenance(source: Mapping[str, Any] | None, data_sha256: str, seed: int) -> dict[str, Any]:
    source = dict(source or {})
    revision = source.get("revision") or source.get("revision_resolved") or source.get("revision_requested")
    record: dict[str, Any] = {
        "@type": "prov:Activity",
        "model_id": source.get("model_id"),
        "revision": revision,
        "prompt_sha256": source.get("prompt_sha256"),
        "token_ids_sha256": source.get("token_ids_sha256"),
        "data_sha256": data_sha256,
        "source": source.get("source"),
        "tool": "koopscope",
        "tool_version": tool_version(),
        "library_versions": library_versions(),
        "seed": int(seed),
        "created_at": created_at(),
    }
    record.update({k: source[k] for k in _CAPTURE_FIELDS if source.get(k) is not None})
    if source.get("created_at"):
        record["captured_at"] = source["created_at"]
    return record


def _uncertainty(intervals: Mapping[str, ConfidenceInterval], n_boot: int, level: float, seed: int,
                 n_pairs: int) -> dict[str, Any]:
    return {"method": BOOTSTRAP_METHOD, "n_boot": n_boot, "level": level, "seed": seed, "n_pairs": n_pairs,
            "intervals": {name: ci.as_dict() for name, ci in intervals.items()}}


def _check_spectrum(spectrum: object, where: str) -> Spectrum:
    if not isinstance(spectrum, Spectrum):
        raise DataError(f"{where} is a {type(spectrum).__name__}, expected a koopscope Spectrum; fit one with "
                        "koopscope.dmd.fit.")
    if spectrum.eigenvalues.size == 0:
        raise DataError(f"{where} has no eigenvalues (rank 0), so it has no spectral radius to record; fit the "
                        "data at a rank of at least 1.")
    return spectrum


def _label(ci: ConfidenceInterval, n_boot: int) -> str:
    return stability_label(ci.estimate) if n_boot == 0 else stability_label(ci.estimate, ci.low, ci.high)


def _base(kind: str, name: str, spectrum: Spectrum) -> dict[str, Any]:
    return {"@context": CONTEXT, "@type": DOCUMENT_TYPE, "schema_version": SCHEMA_VERSION, "kind": kind,
            "name": name, "kernel": kernel_summary(spectrum), "stability_rule": STABILITY_RULE}


def from_trajectory(spectrum: Spectrum, X: Any, Y: Any, *, name: str | None = None,
                    source: Mapping[str, Any] | None = None, n_boot: int = 200, level: float = 0.95,
                    seed: int = 0) -> KoopmanFingerprint:
    """The ``kind="trajectory"`` fingerprint of a spectrum fitted on the snapshot pairs (X, Y).

    Parameters
    ----------
    spectrum : Spectrum
        The fit, e.g. ``koopscope.dmd.fit(traj)``.
    X, Y : array_like of shape (N, D)
        The pairs it was fitted on (for a trajectory ``traj``: ``traj[:-1]``, ``traj[1:]``).
    name : str, optional
        What was audited; default ``source["source"]`` or ``"trajectory"``.
    source : mapping, optional
        Provenance fields: ``model_id``, ``revision``, ``prompt_sha256``, ``token_ids_sha256``, ``source`` (a
        file name) and the capture fields of a store's provenance record.
    n_boot, level, seed
        The bootstrap of the spectral radius and the near-unit mass (:func:`koopscope.spectral.bootstrap`).

    >>> import numpy as np, koopscope as ks
    >>> traj = np.empty((60, 2)); traj[0] = [1.0, 0.0]
    >>> for t in range(59): traj[t + 1] = np.array([[0.5, -0.2], [0.2, 0.5]]) @ traj[t]
    >>> fp = from_trajectory(ks.dmd.exact(traj), traj[:-1], traj[1:], n_boot=20)
    >>> fp.kind, fp.stability_label, round(fp.spectral_radius, 4)
    ('trajectory', 'contractive', 0.5385)
    """
    spectrum = _check_spectrum(spectrum, "The spectrum passed to from_trajectory")
    X, Y = _numpy(X), _numpy(Y)
    stats = {"spectral_radius": lambda lams: spectral_radius(lams[0]),
             "near_unit_mass": lambda lams: near_unit_mass(lams[0])}
    intervals = bootstrap_layers([(spectrum, X, Y)], stats, n_boot=n_boot, level=level, seed=seed)
    Xk, _, _, _ = kernel_pairs(spectrum, X, Y)
    flags = spectrum_flags(spectrum, Xk.shape[0], Xk.shape[1])
    flags += _bias_flag(intervals["spectral_radius"], Xk.shape[0], Xk.shape[1])
    if n_boot == 0:
        flags.append(_flag("no_interval", "warning", "no bootstrap replicates were drawn (n_boot=0), so the "
                           "statistics have no interval"))
    source = dict(source or {})
    document = {
        **_base("trajectory", name or source.get("source") or "trajectory", spectrum),
        "eigenvalues": _complex_list(spectrum.eigenvalues),
        "residuals": _residual_list(spectrum),
        "spectral_radius": spectrum.spectral_radius,
        "stability_label": _label(intervals["spectral_radius"], n_boot),
        "features": spectrum_features(spectrum),
        "uncertainty": _uncertainty(intervals, n_boot, level, seed, Xk.shape[0]),
        "trust": {"flags": flags},
        "provenance": _provenance(source, array_sha256(X, Y), seed),
    }
    return KoopmanFingerprint(document)


def _layer_stats(n_layers: int) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "spectral_radius": lambda lams: max(spectral_radius(lam) for lam in lams),
        "near_unit_mass": lambda lams: float(np.mean([near_unit_mass(lam) for lam in lams])),
    }
    for i in range(n_layers):
        stats[f"layer_{i}/spectral_radius"] = lambda lams, i=i: spectral_radius(lams[i])
        stats[f"layer_{i}/near_unit_mass"] = lambda lams, i=i: near_unit_mass(lams[i])
    return stats


def _mean_features(per_layer: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    keys = [k for k in per_layer[0] if all(isinstance(f.get(k), (int, float)) for f in per_layer)]
    features: dict[str, Any] = {k: float(np.mean([f[k] for f in per_layer])) for k in keys}
    features.update(spectral_radius=max(f["spectral_radius"] for f in per_layer),
                    mean_spectral_radius=float(np.mean([f["spectral_radius"] for f in per_layer])),
                    n_eigenvalues=int(sum(f["n_eigenvalues"] for f in per_layer)),
                    n_spurious=int(sum(f["n_spurious"] for f in per_layer)), n_layers=len(per_layer))
    return features


def from_layers(layers: Sequence[tuple[Spectrum, Any, Any]], *, name: str | None = None,
                source: Mapping[str, Any] | None = None, indices: Sequence[int] | None = None,
                layer_features: Sequence[Mapping[str, Any]] | None = None,
                flags: Sequence[Mapping[str, Any]] = (), risk: float | None = None, n_boot: int = 200,
                level: float = 0.95, seed: int = 0) -> KoopmanFingerprint:
    """The ``kind="model"`` fingerprint of one spectrum per layer transition ℓ → ℓ+1.

    Parameters
    ----------
    layers : sequence of (Spectrum, X, Y)
        Per transition: its fit and the pairs (N, D) of (state ℓ, state ℓ+1) it was fitted on; every
        transition has the same N token rows (a joint bootstrap resamples them once per replicate).
    name : str, optional
        Default: ``source["model_id"]``, else ``"model"``.
    source : mapping, optional
        Provenance fields, as in :func:`from_trajectory` (a capture's provenance record fits as is).
    indices : sequence of int, optional
        The block index of each transition (default 0, 1, ...).
    layer_features : sequence of mappings, optional
        Extra numeric features per transition (e.g. ``eta_nl``, ``relative_update``), merged into its
        ``features``; numeric ones present in every layer are averaged into the model's features.
    flags : sequence of mappings
        Extra trust flags ``{"code", "severity", "message"[, "layer"]}`` (e.g. from a profiler).
    risk : float in [0, 1], optional
        A calibrated risk; default the layer-mean near-unit mass (RKSP), whose interval is then recorded too.
    n_boot, level, seed
        The joint bootstrap (:func:`koopscope.spectral.bootstrap_layers`).
    """
    if not layers:
        raise DataError("layers passed to from_layers is empty; give one (spectrum, X, Y) per layer transition.")
    indices = list(range(len(layers))) if indices is None else [int(i) for i in indices]
    extras = list(layer_features) if layer_features is not None else [{} for _ in layers]
    if len(indices) != len(layers) or len(extras) != len(layers):
        raise DataError(f"from_layers got {len(layers)} layers but {len(indices)} indices and {len(extras)} "
                        "layer_features; give one of each per layer transition.")
    fits = [(_check_spectrum(spec, f"The spectrum of transition {i} passed to from_layers"), _numpy(X), _numpy(Y))
            for i, (spec, X, Y) in zip(indices, layers, strict=True)]
    intervals = bootstrap_layers(fits, _layer_stats(len(fits)), n_boot=n_boot, level=level, seed=seed)
    sections, all_flags = [], []
    for pos, ((spec, X, Y), index, extra) in enumerate(zip(fits, indices, extras, strict=True)):
        Xk, _, _, _ = kernel_pairs(spec, X, Y)
        all_flags += spectrum_flags(spec, Xk.shape[0], Xk.shape[1], layer=index)
        rho_ci = intervals.pop(f"layer_{pos}/spectral_radius")
        mass_ci = intervals.pop(f"layer_{pos}/near_unit_mass")
        all_flags += _bias_flag(rho_ci, Xk.shape[0], Xk.shape[1], layer=index)
        sections.append({
            "index": index, "eigenvalues": _complex_list(spec.eigenvalues), "residuals": _residual_list(spec),
            "spectral_radius": spec.spectral_radius, "stability_label": _label(rho_ci, n_boot),
            "features": {**spectrum_features(spec), **dict(extra)}, "n_pairs": Xk.shape[0],
            "kernel": kernel_summary(spec),
            "intervals": {"spectral_radius": rho_ci.as_dict(), "near_unit_mass": mass_ci.as_dict()},
        })
    all_flags += [dict(f) for f in flags]
    if n_boot == 0:
        all_flags.append(_flag("no_interval", "warning", "no bootstrap replicates were drawn (n_boot=0), so the "
                               "statistics have no interval"))
    features = _mean_features([s["features"] for s in sections])
    if risk is None:
        risk = features["near_unit_mass"]
        intervals["risk"] = intervals["near_unit_mass"]
    source = dict(source or {})
    document = {
        **_base("model", name or source.get("model_id") or "model", fits[0][0]),
        "eigenvalues": [s["eigenvalues"] for s in sections],
        "residuals": [s["residuals"] for s in sections],
        "spectral_radius": features["spectral_radius"],
        "stability_label": _label(intervals["spectral_radius"], n_boot),
        "features": features,
        "uncertainty": _uncertainty(intervals, n_boot, level, seed, fits[0][1].shape[0]),
        "trust": {"flags": all_flags},
        "provenance": _provenance(source, array_sha256(*(a for _, X, Y in fits for a in (X, Y))), seed),
        "layers": sections,
        "risk": float(risk),
    }
    return KoopmanFingerprint(document)
