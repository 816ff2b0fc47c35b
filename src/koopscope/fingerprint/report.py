"""The HTML report of a fingerprint: one self-contained, script-free page.

:func:`render_html` turns a fingerprint document into a single HTML file with inline CSS and inline SVG
charts: no JavaScript, no external URL, and a Content-Security-Policy that forbids scripts and network
access, so the file can be mailed, archived or opened from a CI artifact safely. Every string from the
document (the user's ``name``, flag messages, provenance fields) goes through Jinja2's autoescaping; the
only markup built in Python is the embedded JSON-LD, whose ``<``, ``>`` and ``&`` are written as ``\\u003c``,
``\\u003e`` and ``\\u0026`` so that no value can close its ``<script type="application/ld+json">`` element.

Chart geometry comes from :mod:`koopscope.fingerprint.figures` (shared with ``ks.plot``); this module only
maps it to SVG coordinates and formats every number. The same document always renders to the same bytes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from koopscope._atomic import write_text
from koopscope.errors import MissingDependencyError
from koopscope.fingerprint import figures
from koopscope.fingerprint.schema import validate

__all__ = ["CONTENT_SECURITY_POLICY", "format_number", "render_html", "write_html"]

#: Scripts, network, frames, forms and plugins are all forbidden; only inline styles and data: images load.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; " \
                          "form-action 'none'"

_UNIT_SIZE = 240.0  # viewBox side of a unit-circle chart
_UNIT_PAD = 10.0
_DEPTH_W, _DEPTH_H = 360.0, 200.0  # viewBox of a depth chart
_DEPTH_MARGIN = (14.0, 14.0, 34.0, 44.0)  # top, right, bottom, left
_LINE_W, _LINE_H = 640.0, 64.0  # viewBox of an interval chart
_BAR_W, _BAR_H = 360.0, 26.0  # viewBox of the mass-partition bar


def format_number(value: Any, digits: int = 4) -> str:
    """A number as the report prints it: ``digits`` significant digits, scientific outside [1e-3, 1e5).

    >>> format_number(1.0234567), format_number(0.5), format_number(3), format_number(2.5e-7), format_number(None)
    ('1.023', '0.5', '3', '2.500e-07', '—')
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _c(x: float) -> str:
    """An SVG coordinate: two decimals, no negative zero."""
    text = f"{x:.2f}"
    return "0.00" if text == "-0.00" else text


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] with a 1-2-2.5-5 step, about ``count`` of them."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    start = math.floor(lo / step + 1e-9) * step
    n = math.ceil((hi - start) / step - 1e-9)
    return [round(start + i * step, 10) for i in range(n + 1)]


def _tick_label(x: float) -> str:
    return f"{x:g}"


# -- unit circle ------------------------------------------------------------------------------------------------
def _point_title(p: figures.EigenPoint) -> str:
    sign = "−" if p.im < 0 else "+"
    residual = "residual not computed" if p.residual is None else f"residual {format_number(p.residual, 3)}"
    spurious = " (spurious)" if p.spurious else ""
    return (f"λ = {format_number(p.re)} {sign} {format_number(abs(p.im))}i · |λ| = {format_number(p.modulus)} · "
            f"{residual}{spurious}")


def _ring_path(centre: float, r_in: float, r_out: float) -> str:
    """An annulus as one even-odd path: the outer circle, then the inner one."""
    def circle(r: float) -> str:
        return (f"M{_c(centre - r)},{_c(centre)} a{_c(r)},{_c(r)} 0 1,0 {_c(2 * r)},0 "
                f"a{_c(r)},{_c(r)} 0 1,0 {_c(-2 * r)},0 Z")
    return f"{circle(r_out)} {circle(r_in)}"


def _unit_circle_view(chart: figures.UnitCircleChart, small: bool) -> dict[str, Any]:
    """SVG geometry of one unit-circle chart; ``small`` charts (a model's small multiples) are drawn at about
    150 px, a trajectory's single chart at about 460 px, so their points get larger radii in viewBox units."""
    half = _UNIT_SIZE / 2
    scale = (half - _UNIT_PAD) / chart.extent  # viewBox units per unit of λ
    n = len(chart.points)
    radius = (3.6 if n <= 48 else 2.8 if n <= 160 else 2.0) * (1.6 if small else 1.0)
    ordered = sorted(chart.points, key=lambda p: p.spurious)  # spurious (hollow) points on top
    points = [{"cx": _c(half + p.re * scale), "cy": _c(half - p.im * scale), "r": _c(radius), "colour": p.colour,
               "spurious": p.spurious, "title": _point_title(p), "edge": _c(radius / 6),
               "ring": _c(radius / 2.4)} for p in ordered]
    lo, hi = chart.band
    where = "the trajectory" if chart.layer is None else f"layer {chart.layer}"
    return {
        "layer": chart.layer,
        "size": _c(_UNIT_SIZE),
        "centre": _c(half),
        "axis_lo": _c(_UNIT_PAD / 2),
        "axis_hi": _c(_UNIT_SIZE - _UNIT_PAD / 2),
        "unit_r": _c(scale),
        "band_lo_r": _c(lo * scale),
        "band_hi_r": _c(hi * scale),
        "band_path": _ring_path(half, lo * scale, hi * scale),
        "points": points,
        "n_spurious": chart.n_spurious,
        "spectral_radius": format_number(chart.spectral_radius),
        "stability_label": chart.stability_label,
        "title": (f"Eigenvalues of {where} on the unit circle: {n} eigenvalues, {chart.n_spurious} spurious, "
                  f"spectral radius {format_number(chart.spectral_radius)}"),
    }


def _residual_legend() -> list[dict[str, str]]:
    """Swatches of the residual colour scale at log-spaced residuals, 1e-4 to 1."""
    steps = 24
    lo, hi = (math.log10(r) for r in figures.RESIDUAL_RANGE)
    width = 240.0 / steps
    out = []
    for i in range(steps):
        r = 10 ** (lo + (hi - lo) * (i + 0.5) / steps)
        out.append({"x": _c(i * width), "w": _c(width + 0.3), "colour": figures.residual_colour(r)})
    return out


# -- depth profiles ---------------------------------------------------------------------------------------------
def _y_range(series: figures.DepthSeries) -> tuple[float, float, list[float]]:
    """(lo, hi, ticks) of a depth chart: the fixed limits of its axis, else the data (and references) padded
    by 8 % and widened to round ticks."""
    axis = series.axis
    data = [v for v in (*series.values, *series.low, *series.high) if v is not None] + list(axis.reference)
    data += list(axis.band or ())
    lo = axis.floor if axis.floor is not None else min(data, default=0.0)
    hi = axis.ceiling if axis.ceiling is not None else max(data, default=1.0)
    pad = 0.08 * (hi - lo) if hi > lo else 0.5
    ticks = _ticks(lo if axis.floor is not None else lo - pad, hi if axis.ceiling is not None else hi + pad)
    lo = lo if axis.floor is not None else ticks[0]
    hi = hi if axis.ceiling is not None else ticks[-1]
    return lo, hi, [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9]


def _depth_view(series: figures.DepthSeries) -> dict[str, Any]:
    top, right, bottom, left = _DEPTH_MARGIN
    x0, x1, y0, y1 = left, _DEPTH_W - right, _DEPTH_H - bottom, top  # y0 is the bottom edge
    lo, hi, ticks = _y_range(series)
    d_lo, d_hi = min(series.depth), max(series.depth)
    inset = 10.0

    def x(d: float) -> float:
        return (x0 + x1) / 2 if d_hi == d_lo else x0 + inset + (d - d_lo) / (d_hi - d_lo) * (x1 - x0 - 2 * inset)

    def y(v: float) -> float:
        return y0 - (v - lo) / (hi - lo) * (y0 - y1)

    every = max(1, math.ceil(len(series.depth) / 8))
    view: dict[str, Any] = {
        "statistic": series.statistic,
        "label": series.label,
        "computed": series.computed,
        "missing": ", ".join(str(d) for d in series.missing),
        "w": _c(_DEPTH_W), "h": _c(_DEPTH_H), "x0": _c(x0), "x1": _c(x1), "y0": _c(y0), "y1": _c(y1),
        "pw": _c(x1 - x0), "ph": _c(y0 - y1),
        "mid_x": _c((x0 + x1) / 2), "mid_y": _c((y0 + y1) / 2), "label_y": _c(_DEPTH_H - 4),
        "yticks": [{"y": _c(y(t)), "label": _tick_label(t), "x": _c(x0 - 6)} for t in ticks],
        "xticks": [{"x": _c(x(d)), "label": str(d), "y": _c(y0 + 16)} for d in series.depth[::every]],
        "title": f"{series.label} over depth",
        "references": [], "band": None, "segments": [], "ci": [], "points": [],
    }
    if not series.computed:
        view["title"] = f"{series.label} over depth: not computed for this fingerprint"
        return view
    view["references"] = [{"y": _c(y(r)), "label": f"{r:g}"} for r in series.axis.reference if lo <= r <= hi]
    if series.axis.band is not None:
        b_lo, b_hi = (min(max(b, lo), hi) for b in series.axis.band)
        view["band"] = {"y": _c(y(b_hi)), "h": _c(y(b_lo) - y(b_hi))}
    run: list[str] = []
    for d, v in zip(series.depth, series.values, strict=True):
        if v is None:
            if len(run) > 1:
                view["segments"].append(" ".join(run))
            run = []
            continue
        run.append(f"{_c(x(d))},{_c(y(v))}")
    if len(run) > 1:
        view["segments"].append(" ".join(run))
    for d, v, a, b in zip(series.depth, series.values, series.low, series.high, strict=True):
        if a is not None and b is not None:
            view["ci"].append({"x": _c(x(d)), "y_lo": _c(y(a)), "y_hi": _c(y(b))})
        if v is not None:
            interval = "" if a is None or b is None else f" (interval {format_number(a)} to {format_number(b)})"
            view["points"].append({"cx": _c(x(d)), "cy": _c(y(v)),
                                   "title": f"layer {d}: {series.label} = {format_number(v)}{interval}"})
    return view


# -- interval and mass bar --------------------------------------------------------------------------------------
def _interval_view(chart: str, label: str, estimate: float, low: float | None, high: float | None,
                   marker: float, marker_label: str) -> dict[str, Any]:
    """A number line with the interval [low, high] as a bar, the estimate as a dot and a marker line."""
    values = [v for v in (estimate, low, high, marker) if v is not None]
    span = max(max(values) - min(values), 0.1)
    ticks = _ticks(min(values) - 0.15 * span, max(values) + 0.15 * span, 5)
    lo, hi = ticks[0], ticks[-1]
    x0, x1 = 12.0, _LINE_W - 12.0

    def x(v: float) -> float:
        return x0 + (v - lo) / (hi - lo) * (x1 - x0)

    has_interval = low is not None and high is not None
    text = f"{label} = {format_number(estimate)}"
    if has_interval:
        text += f", interval {format_number(low)} to {format_number(high)}"
    return {
        "chart": chart,
        "w": _c(_LINE_W), "h": _c(_LINE_H), "x0": _c(x0), "x1": _c(x1), "axis_y": _c(40.0),
        "ticks": [{"x": _c(x(t)), "label": _tick_label(t)} for t in ticks],
        "bar": {"x": _c(x(low)), "w": _c(max(x(high) - x(low), 1.5))} if has_interval else None,
        "estimate": {"x": _c(x(estimate)), "title": text},
        "marker": {"x": _c(x(marker)), "label": marker_label},
        "title": f"{text}; marker at {marker_label}",
    }


def _mass_view(features: Mapping[str, Any]) -> dict[str, Any]:
    shares = figures.mass_partition(features)
    total = sum(m.value for m in shares) or 1.0
    rects, x = [], 0.0
    for m in shares:
        w = m.value / total * _BAR_W
        if w > 0:
            rects.append({"x": _c(x), "w": _c(w), "colour": m.colour,
                          "title": f"{m.label}: {format_number(m.value)} ({100 * m.value:.1f} %)"})
        x += w
    legend = [{"label": m.label, "colour": m.colour, "value": f"{100 * m.value:.1f} %"} for m in shares]
    near_unit = next(m for m in shares if m.name == "near_unit_mass")
    return {"w": _c(_BAR_W), "h": _c(_BAR_H), "rects": rects, "legend": legend,
            "near_unit": f"{100 * near_unit.value:.1f} %",
            "title": "Mass partition: " + ", ".join(f"{m.label} {100 * m.value:.1f} %" for m in shares)}


# -- tables -----------------------------------------------------------------------------------------------------
_FEATURE_ORDER = ("spectral_radius", "near_unit_mass", "expansive_mass", "intermediate_mass", "contractive_mass",
                  "eta_nl", "n_eigenvalues", "n_spurious")
_PROVENANCE_ORDER = ("model_id", "revision", "source", "seed", "created_at", "tool", "tool_version",
                     "prompt_sha256", "token_ids_sha256", "data_sha256")


def _interval_text(interval: Mapping[str, float] | None) -> str:
    if interval is None:
        return ""
    return f"{format_number(interval['low'])} – {format_number(interval['high'])}"


def _feature_rows(features: Mapping[str, Any], intervals: Mapping[str, Any]) -> list[dict[str, str]]:
    names = [n for n in _FEATURE_ORDER if n in features or n == "eta_nl"]
    names += sorted(n for n in features if n not in _FEATURE_ORDER)
    names += sorted(n for n in intervals if n not in names)
    rows = []
    for name in names:
        value = features.get(name, intervals.get(name, {}).get("estimate"))
        rows.append({"name": name, "label": figures.STATISTIC_LABELS.get(name, name.replace("_", " ")),
                     "value": "not computed" if value is None else format_number(value),
                     "interval": _interval_text(intervals.get(name))})
    return rows


def _layer_rows(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for layer in document["layers"]:
        f = layer["features"]
        rows.append({
            "index": layer["index"], "label": layer["stability_label"],
            "rho": format_number(layer["spectral_radius"]),
            "rho_interval": _interval_text(layer.get("intervals", {}).get("spectral_radius")),
            "near_unit": format_number(f["near_unit_mass"]), "expansive": format_number(f["expansive_mass"]),
            "contractive": format_number(f["contractive_mass"]),
            "eta_nl": "not computed" if f.get("eta_nl") is None else format_number(f["eta_nl"]),
            "spurious": f"{format_number(f['n_spurious'])} / {format_number(f['n_eigenvalues'])}",
            "n_pairs": layer["n_pairs"],
        })
    return rows


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_number(value, 6)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _provenance_rows(provenance: Mapping[str, Any]) -> list[dict[str, Any]]:
    names = [n for n in _PROVENANCE_ORDER if n in provenance]
    names += sorted(n for n in provenance if n not in _PROVENANCE_ORDER and n != "library_versions")
    rows = [{"name": n, "value": _text(provenance[n]), "mono": n.endswith("sha256") or n == "revision"}
            for n in names]
    versions = provenance.get("library_versions") or {}
    if versions:
        rows.append({"name": "library_versions", "mono": True,
                     "value": ", ".join(f"{k} {versions[k]}" for k in sorted(versions))})
    return rows


# -- the page ---------------------------------------------------------------------------------------------------
def _summary(document: Mapping[str, Any]) -> dict[str, Any]:
    uncertainty = document["uncertainty"]
    ci = uncertainty["intervals"].get("spectral_radius")
    rho = float(document["spectral_radius"])
    low, high = (None, None) if ci is None else (float(ci["low"]), float(ci["high"]))
    level = f"{100 * uncertainty['level']:g} %"
    return {
        "rho": format_number(rho),
        "ci": _interval_text(ci),
        "level": level,
        "uncertainty": (f"{level} intervals from {uncertainty['n_boot']} bootstrap resamples of "
                        f"{uncertainty['n_pairs']} snapshot pairs (seed {uncertainty['seed']}); method: "
                        f"{uncertainty['method']}"
                        if uncertainty["n_boot"] else "No bootstrap was run (n_boot = 0), so there are no intervals"),
        "chart": _interval_view("spectral-radius-interval", "spectral radius ρ", rho, low, high, 1.0, "|λ| = 1"),
    }


def _gate(gate: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if gate is None:
        return None
    interval = gate.get("interval")
    statistic = gate["statistic"]
    label = figures.STATISTIC_LABELS.get(statistic, statistic.replace("_", " "))
    chart = None
    if interval is not None:
        chart = _interval_view("gate-interval", label, float(interval["estimate"]), float(interval["low"]),
                               float(interval["high"]), float(gate["threshold"]),
                               f"threshold {format_number(gate['threshold'])}")
    return {"verdict": gate["verdict"], "statistic": statistic, "label": label,
            "threshold": format_number(gate["threshold"]),
            "interval": _interval_text(interval), "reason": gate["reason"], "on_abstain": gate["on_abstain"],
            "chart": chart}


def _weights(weights: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The weight-spectrum section: verdict, one line of summary, one row per matrix (flagged first)."""
    if weights is None:
        return None
    summary = weights["summary"]
    check = weights["mode"] == "check"
    rows = [{"name": m["name"], "family": m["family"], "shape": "×".join(str(d) for d in m["shape"]),
             "sigma_max": format_number(m.get("sigma_max")), "spikes": _text(m.get("spikes")),
             "stable_rank": format_number(m.get("stable_rank")), "alpha": format_number(m.get("alpha")),
             "spike_ratio": format_number(m.get("spike_ratio")), "growth_ratio": format_number(m.get("growth_ratio")),
             "reason": m.get("reason") or ("non-finite" if m.get("finite") is False else ""),
             "flagged": bool(m.get("flagged")) or m.get("finite") is False}
            for m in weights["matrices"]]
    rows.sort(key=lambda r: not r["flagged"])
    families = ", ".join(f"{name} {v['matrices']}" for name, v in summary.get("by_family", {}).items())
    policy = weights.get("policy")
    return {"verdict": weights["verdict"], "check": check, "rows": rows, "families": families,
            "n": summary.get("n_matrices", len(rows)), "n_flagged": summary.get("n_flagged"),
            "n_edited": summary.get("n_edited"), "baseline": weights.get("baseline"),
            "policy": None if policy is None else f"{policy['name']} (α = {format_number(policy['alpha'])})"}


def _context(document: Mapping[str, Any]) -> dict[str, Any]:
    kind = document["kind"]
    kernel = document["kernel"]
    return {
        "csp": CONTENT_SECURITY_POLICY,
        "name": document["name"],
        "kind": kind,
        "schema_version": document["schema_version"],
        "stability_label": document["stability_label"],
        "stability_rule": document.get("stability_rule"),
        "risk": format_number(document["risk"]) if kind == "model" else None,
        "n_layers": len(document["layers"]) if kind == "model" else None,
        "summary": _summary(document),
        "masses": _mass_view(document["features"]),
        "gate": _gate(document.get("gate")),
        "weights": _weights(document.get("weights")),
        "circles": [_unit_circle_view(c, small=kind == "model") for c in figures.unit_circle_charts(document)],
        "threshold": format_number(figures.residual_threshold(document)),
        "band": [f"{b:g}" for b in figures.NEAR_UNIT_BAND],
        "legend": _residual_legend(),
        "depth": [_depth_view(s) for s in figures.depth_profiles(document)],
        "features": _feature_rows(document["features"], document["uncertainty"]["intervals"]),
        "layers": _layer_rows(document) if kind == "model" else [],
        "flags": sorted(document["trust"]["flags"],
                        key=lambda f: ({"error": 0, "warning": 1, "info": 2}[f["severity"]], f.get("layer", -1))),
        "kernel": {"method": kernel["method"], "rank": kernel["rank"], "reason": kernel["reason"] or "—",
                   "options": [{"name": k, "value": _text(kernel["options"][k])} for k in sorted(kernel["options"])]},
        "provenance": _provenance_rows(document["provenance"]),
        "tool_version": document["provenance"]["tool_version"],
        "json_ld": _json_ld(document),
    }


def _json_ld(document: Mapping[str, Any]) -> Any:
    """The document as JSON whose ``<``, ``>`` and ``&`` are escaped, safe inside a script element."""
    from markupsafe import Markup  # installed with jinja2

    text = json.dumps(document, sort_keys=True)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # the only Markup: JSON with no '<' left, so '</script' cannot occur


@cache
def _environment() -> Any:
    try:
        import jinja2
    except ImportError:
        raise MissingDependencyError("The HTML report needs jinja2, which is not installed; install it with "
                                     "`pip install jinja2`.") from None
    return jinja2.Environment(loader=jinja2.PackageLoader("koopscope.fingerprint", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def render_html(document: Mapping[str, Any]) -> str:
    """The HTML report of a fingerprint document, as one self-contained string.

    Parameters
    ----------
    document : dict
        A fingerprint document (``KoopmanFingerprint.document``); it is validated against the schema first.

    Returns
    -------
    str
        A complete HTML page: inline CSS, inline SVG charts, the document embedded as JSON-LD, no scripts and
        no external resources. The same document gives the same text.

    Raises
    ------
    DataError
        If ``document`` is not a valid fingerprint.
    MissingDependencyError
        If jinja2 is not installed.
    """
    validate(document, source="The document passed to render_html")
    return _environment().get_template("report.html.j2").render(_context(document))


def write_html(document: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the HTML report of ``document`` to ``path`` atomically and return the path.

    The page is rendered in full before anything is written, and written to a temporary sibling that is
    renamed over ``path``: a failure leaves no partial file. A ``path`` whose directory does not exist raises
    :class:`~koopscope.errors.ParameterError`.
    """
    text = render_html(document)
    return write_text(path, text, argument="HTML report path")

