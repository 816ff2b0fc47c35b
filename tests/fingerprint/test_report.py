"""The HTML report: structure, charts, the embedded JSON-LD, escaping of hostile strings, determinism, atomicity.

The documents are built by hand (``trajectory_document``, ``model_document``; also used by test_browser.py and
tests/test_plot.py) and checked against the shipped schema, so the report is tested against the contract, not
against whatever the builders emit today; one test renders a real ``from_trajectory`` fingerprint as well.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from koopscope.errors import DataError, MissingDependencyError, ParameterError
from koopscope.fingerprint import figures, report
from koopscope.fingerprint.report import render_html, write_html

HOSTILE = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
SHA = "ab" * 32


# -- documents ------------------------------------------------------------------------------------------------------
def _eigenvalues(moduli: list[float], angles: list[float]) -> list[dict[str, float]]:
    """Conjugate pairs for non-zero angles, descending modulus."""
    out = []
    for r, a in zip(moduli, angles, strict=True):
        out.append({"re": r * math.cos(a), "im": r * math.sin(a)})
        if a:
            out.append({"re": r * math.cos(a), "im": -r * math.sin(a)})
    return out


def _features(eigs: list[dict[str, float]], residuals: list[float] | None, **extra: Any) -> dict[str, Any]:
    r = [math.hypot(z["re"], z["im"]) for z in eigs]
    n = len(r)
    return {
        "expansive_mass": sum(x > 1.05 for x in r) / n,
        "near_unit_mass": sum(0.90 <= x <= 1.05 for x in r) / n,
        "intermediate_mass": sum(0.80 <= x < 0.90 for x in r) / n,
        "contractive_mass": sum(x < 0.80 for x in r) / n,
        "spectral_radius": max(r), "n_eigenvalues": n,
        "n_spurious": 0 if residuals is None else sum(x > 0.1 for x in residuals), **extra,
    }


def _interval(estimate: float, half: float) -> dict[str, float]:
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half}


def _provenance() -> dict[str, Any]:
    return {"@type": "prov:Activity", "model_id": "org/tiny-model", "revision": "0123456789abcdef",
            "prompt_sha256": SHA, "token_ids_sha256": SHA, "data_sha256": SHA, "source": None, "tool": "koopscope",
            "tool_version": "0.1.0", "library_versions": {"numpy": "2.1.0", "scipy": "1.14.1"}, "seed": 0,
            "created_at": "2026-01-02T03:04:05Z"}


def _base(kind: str, name: str) -> dict[str, Any]:
    return {"@context": {"@vocab": "https://schema.org/", "ks": "https://w3id.org/koopscope/terms#"},
            "@type": "KoopmanFingerprint", "schema_version": "1.0", "kind": kind, "name": name,
            "kernel": {"method": "exact", "rank": 5, "reason": "method='exact' requested",
                       "options": {"svd": "gram", "residual_threshold": 0.1}},
            "stability_rule": "expansive above 1.05, contractive below 0.9, near-unit otherwise"}


def trajectory_document(name: str = "planted trajectory", *, gate: dict[str, Any] | None = None,
                        residuals: bool = True) -> dict[str, Any]:
    """A trajectory fingerprint: 5 eigenvalues (two pairs and a real one), one of them spurious."""
    eigs = _eigenvalues([0.99, 0.93, 0.6], [0.12, 0.55, 0.0])
    res = [0.002, 0.002, 0.03, 0.03, 0.4] if residuals else None
    doc = {
        **_base("trajectory", name),
        "eigenvalues": eigs, "residuals": res, "spectral_radius": 0.99, "stability_label": "near-unit",
        "features": _features(eigs, res, median_residual=0.03),
        "uncertainty": {"method": "percentile bootstrap", "n_boot": 200, "level": 0.95, "seed": 0, "n_pairs": 399,
                        "intervals": {"spectral_radius": _interval(0.99, 0.01),
                                      "near_unit_mass": _interval(0.8, 0.2)}},
        "trust": {"flags": [{"code": "few_pairs", "severity": "warning", "message": "only 399 pairs for D = 300"}]},
        "provenance": _provenance(),
    }
    if gate is not None:
        doc["gate"] = gate
    return doc


def model_document(name: str = "org/tiny-model", *, n_layers: int = 4, eta_nl: str = "all") -> dict[str, Any]:
    """A model fingerprint with ``n_layers`` transitions; ``eta_nl`` is "all", "some" (even layers) or "none"."""
    layers = []
    for i in range(n_layers):
        eigs = _eigenvalues([1.08 - 0.06 * i, 0.95, 0.85, 0.4], [0.0, 0.3, 1.1, 2.0])
        res = [0.25, 0.01, 0.01, 0.0005, 0.0005, 0.05, 0.05][:len(eigs)]
        extra = {}
        if eta_nl == "all" or (eta_nl == "some" and i % 2 == 0):
            extra["eta_nl"] = 0.1 + 0.05 * i
        rho = 1.08 - 0.06 * i
        layers.append({"index": i, "eigenvalues": eigs, "residuals": res, "spectral_radius": rho,
                       "stability_label": "expansive" if rho > 1.05 else "contractive" if rho < 0.9 else "near-unit",
                       "features": _features(eigs, res, **extra), "n_pairs": 2047,
                       "intervals": {"spectral_radius": _interval(rho, 0.02), "near_unit_mass": _interval(0.4, 0.1)}})
    features = _features(layers[0]["eigenvalues"], layers[0]["residuals"], n_layers=n_layers)
    doc = {
        **_base("model", name),
        "eigenvalues": [layer["eigenvalues"] for layer in layers],
        "residuals": [layer["residuals"] for layer in layers],
        "spectral_radius": 1.08, "stability_label": "expansive", "features": features,
        "uncertainty": {"method": "percentile bootstrap", "n_boot": 100, "level": 0.9, "seed": 3, "n_pairs": 2047,
                        "intervals": {"spectral_radius": _interval(1.08, 0.02), "risk": _interval(0.3, 0.05)}},
        "trust": {"flags": [
            {"code": "dominant_spurious", "severity": "warning", "layer": 0,
             "message": "transition 0: the eigenvalue of largest modulus has residual 0.25 > 0.1"},
            {"code": "no_gate", "severity": "info", "message": "no gate was run"},
        ]},
        "provenance": _provenance(), "layers": layers, "risk": 0.3,
    }
    return doc


def gate(verdict: str = "fail") -> dict[str, Any]:
    return {"statistic": "spectral_radius", "threshold": 1.0, "interval": _interval(0.99, 0.02), "verdict": verdict,
            "reason": "the interval [0.97, 1.01] straddles the threshold 1.0", "on_abstain": "fail"}


def check_schema(document: dict[str, Any]) -> None:
    """The fixture fits the shipped schema (the contract the report renders)."""
    import jsonschema

    from koopscope.fingerprint.schema import load_schema

    jsonschema.Draft202012Validator(load_schema("1.0")).validate(document)


# -- an HTML tree small enough for assertions --------------------------------------------------------------------
class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent, self.children, self.text = tag, attrs, parent, [], []

    def iter(self, tag: str | None = None):
        for child in self.children:
            if tag is None or child.tag == tag:
                yield child
            yield from child.iter(tag)

    def all_text(self) -> str:
        return "".join(self.text) + "".join(c.all_text() for c in self.children)


class Tree(HTMLParser):
    VOID = {"meta", "link", "br", "img", "input", "hr", "area", "base", "col", "embed", "source", "wbr"}
    SVG_EMPTY = {"line", "circle", "rect", "path", "polyline"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.current = self.root
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in self.VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, dict(attrs), self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.text.append(data)


def charts(tree: Tree, name: str) -> list[Node]:
    return [n for n in tree.root.iter("svg") if n.attrs.get("data-chart") == name]


def eig_points(svg: Node) -> list[Node]:
    return [c for c in svg.iter("circle") if "eig" in (c.attrs.get("class") or "").split()]


@pytest.fixture(scope="module")
def trajectory_html() -> str:
    return render_html(trajectory_document())


@pytest.fixture(scope="module")
def model_html() -> str:
    return render_html(model_document())


# -- fixtures fit the contract ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("document", [trajectory_document(), trajectory_document(gate=gate(), residuals=False),
                                      model_document(), model_document(eta_nl="some"), model_document(eta_nl="none"),
                                      trajectory_document(HOSTILE)], ids=lambda d: d["kind"])
def test_fixtures_fit_the_schema(document):
    check_schema(document)


# -- structure ---------------------------------------------------------------------------------------------------------
def test_trajectory_report_has_its_sections_and_one_svg_per_chart(trajectory_html):
    tree = Tree(trajectory_html)
    ids = {n.attrs.get("id") for n in tree.root.iter("section")}
    assert {"summary", "gate", "spectrum", "features", "trust", "kernel", "provenance"} <= ids
    assert "depth" not in ids and "layers" not in ids  # a trajectory has no layers
    names = sorted(n.attrs["data-chart"] for n in tree.root.iter("svg") if "data-chart" in n.attrs)
    assert names == ["mass-partition", "spectral-radius-interval", "unit-circle"]
    (circle,) = charts(tree, "unit-circle")
    assert "data-layer" not in circle.attrs
    assert circle.children[0].tag == "title"
    points = eig_points(circle)
    assert len(points) == 5
    assert sum("spurious" in p.attrs["class"] for p in points) == 1
    assert all(p.children and p.children[0].tag == "title" for p in points)  # tooltips
    title = next(tree.root.iter("title")).all_text()
    assert title.startswith("planted trajectory") and "trajectory" in title
    assert next(tree.root.iter("h1")).all_text() == "planted trajectory"


def test_model_report_has_one_unit_circle_per_layer_and_depth_charts(model_html):
    doc = model_document()
    tree = Tree(model_html)
    ids = {n.attrs.get("id") for n in tree.root.iter("section")}
    assert {"summary", "gate", "spectrum", "depth", "features", "layers", "trust", "kernel", "provenance"} <= ids
    circles = charts(tree, "unit-circle")
    assert [int(c.attrs["data-layer"]) for c in circles] == [layer["index"] for layer in doc["layers"]]
    for svg, layer in zip(circles, doc["layers"], strict=True):
        points = eig_points(svg)
        assert len(points) == len(layer["eigenvalues"])
        assert sum("spurious" in p.attrs["class"] for p in points) == layer["features"]["n_spurious"]
    for statistic in ("near_unit_mass", "spectral_radius", "eta_nl"):
        (svg,) = charts(tree, f"depth-{statistic}")
        assert svg.attrs["data-computed"] == "true"
        points = [c for c in svg.iter("circle") if c.attrs.get("class") == "pt"]
        assert len(points) == len(doc["layers"])
        assert all(p.children[0].tag == "title" for p in points)
    rows = list(next(n for n in tree.root.iter("section") if n.attrs.get("id") == "layers").iter("tr"))
    assert len(rows) == 1 + len(doc["layers"])


def test_points_are_coloured_by_their_residual(model_html):
    doc = model_document()
    svg = charts(Tree(model_html), "unit-circle")[0]
    points = eig_points(svg)
    residuals = doc["layers"][0]["residuals"]
    colours = sorted(p.attrs.get("stroke") if "spurious" in p.attrs["class"] else p.attrs["fill"] for p in points)
    assert colours == sorted(figures.residual_colour(r) for r in residuals)
    hollow = [p for p in points if "spurious" in p.attrs["class"]]
    assert [p.attrs["fill"] for p in hollow] == ["#ffffff"]


def test_unit_circle_geometry_places_points_by_their_eigenvalue(trajectory_html):
    doc = trajectory_document()
    chart = figures.unit_circle_charts(doc)[0]
    (svg,) = charts(Tree(trajectory_html), "unit-circle")
    unit = next(c for c in svg.iter("circle") if "unit-circle" in (c.attrs.get("class") or ""))
    scale = float(unit.attrs["r"])
    assert scale == pytest.approx((120 - 10) / chart.extent, abs=0.01)
    got = sorted((round((float(p.attrs["cx"]) - 120) / scale, 2), round((120 - float(p.attrs["cy"])) / scale, 2))
                 for p in eig_points(svg))
    want = sorted((round(z["re"], 2), round(z["im"], 2)) for z in doc["eigenvalues"])
    assert got == want
    radii = sorted(float(c.attrs["r"]) for c in svg.iter("circle") if "band-edge" in (c.attrs.get("class") or ""))
    assert radii == pytest.approx([0.90 * scale, 1.05 * scale], abs=0.01)


def test_eta_nl_is_never_invented():
    none = Tree(render_html(model_document(eta_nl="none")))
    (svg,) = charts(none, "depth-eta_nl")
    assert svg.attrs["data-computed"] == "false"
    assert not [c for c in svg.iter("circle")] and not list(svg.iter("polyline"))
    assert "not computed" in svg.all_text()
    layers = next(n for n in none.root.iter("section") if n.attrs.get("id") == "layers").all_text()
    assert layers.count("not computed") == 4

    some = Tree(render_html(model_document(eta_nl="some")))
    (svg,) = charts(some, "depth-eta_nl")
    assert svg.attrs["data-computed"] == "true"
    assert len([c for c in svg.iter("circle") if c.attrs.get("class") == "pt"]) == 2  # layers 0 and 2 only
    assert not list(svg.iter("polyline"))  # no line is drawn across a missing layer
    caption = svg.parent.all_text()
    assert "not computed for layers 1, 3" in caption

    features = next(n for n in Tree(render_html(trajectory_document())).root.iter("section")
                    if n.attrs.get("id") == "features").all_text()
    assert "η_nl" in features and "not computed" in features  # a trajectory without η_nl says so


def test_gate_section_shows_the_verdict_and_its_interval():
    tree = Tree(render_html(trajectory_document(gate=gate("abstain"))))
    section = next(n for n in tree.root.iter("section") if n.attrs.get("id") == "gate")
    text = " ".join(section.all_text().split())
    assert "abstain" in text and "threshold 1" in text and "0.97 – 1.01" in text
    assert "straddles the threshold" in text
    (svg,) = charts(tree, "gate-interval")
    assert svg.parent is section


def test_without_a_gate_the_report_says_so_and_shows_the_interval(trajectory_html):
    tree = Tree(trajectory_html)
    section = next(n for n in tree.root.iter("section") if n.attrs.get("id") == "gate")
    text = " ".join(section.all_text().split())
    assert "No gate was run" in text and "0.98 – 1" in text
    assert not charts(tree, "gate-interval")


def test_trust_flags_and_provenance_are_listed(model_html):
    text = " ".join(Tree(model_html).root.all_text().split())
    assert "dominant_spurious" in text and "largest modulus has residual 0.25" in text and "layer 0" in text
    assert SHA in text and "org/tiny-model" in text and "numpy 2.1.0" in text and "2026-01-02T03:04:05Z" in text
    doc = trajectory_document()
    doc["trust"]["flags"] = []
    assert "No trust flags were raised." in render_html(doc)


# -- the embedded JSON-LD --------------------------------------------------------------------------------------------
def _json_ld(tree: Tree) -> Any:
    scripts = list(tree.root.iter("script"))
    assert len(scripts) == 1 and scripts[0].attrs == {"type": "application/ld+json"}
    return json.loads(scripts[0].all_text())


@pytest.mark.parametrize("make", [trajectory_document, model_document])
def test_json_ld_round_trips_to_the_document(make):
    doc = make()
    assert _json_ld(Tree(render_html(doc))) == doc


def test_a_hostile_string_cannot_close_the_json_ld_script():
    payload = "</script><!-- <script>alert(3)</script> & </SCRIPT >"
    doc = trajectory_document(payload)
    doc["trust"]["flags"][0]["message"] = payload
    html = render_html(doc)
    assert html.lower().count("</script") == 1  # only the element's own end tag
    assert _json_ld(Tree(html)) == doc
    text = html[html.index('<script type="application/ld+json">'):]
    text = text[len('<script type="application/ld+json">'):text.index("</script>")]
    assert text == json.dumps(doc, sort_keys=True).replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "&", "\\u0026")


# -- safety ----------------------------------------------------------------------------------------------------------
def test_no_script_and_no_external_resource(model_html, trajectory_html):
    for html in (model_html, trajectory_html):
        tree = Tree(html)
        assert not list(tree.root.iter("link")) and not list(tree.root.iter("img"))
        assert not list(tree.root.iter("iframe")) and not list(tree.root.iter("object"))
        for node in tree.root.iter():
            for key, value in node.attrs.items():
                assert not key.startswith("on"), f"event handler {key} on <{node.tag}>"
                if key in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
                    assert value is not None and value.startswith(("#", "data:")), f"{key}={value!r}"
            if node.tag == "style":
                assert "url(" not in node.all_text() and "@import" not in node.all_text()
        (csp,) = [m for m in tree.root.iter("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"]
        assert csp.attrs["content"].startswith("default-src 'none'; style-src 'unsafe-inline'; img-src data:")
        assert "script-src" not in csp.attrs["content"]  # default-src 'none' forbids every script


def test_a_hostile_name_appears_only_escaped():
    doc = trajectory_document(HOSTILE)
    doc["provenance"]["model_id"] = HOSTILE
    doc["kernel"]["reason"] = HOSTILE
    html = render_html(doc)
    assert HOSTILE not in html and "<img" not in html and "alert(1)</script>" not in html
    escaped = "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
    assert html.count(escaped) >= 4  # <title>, <h1>, the kernel reason, the provenance table
    tree = Tree(html)
    assert len(list(tree.root.iter("script"))) == 1 and not list(tree.root.iter("img"))
    assert next(tree.root.iter("h1")).all_text() == HOSTILE  # shown as text, verbatim
    assert _json_ld(tree)["name"] == HOSTILE


def test_rendering_is_deterministic():
    doc = model_document()
    first = render_html(doc)
    assert render_html(copy.deepcopy(doc)) == first
    reordered = json.loads(json.dumps(doc, sort_keys=True))  # the same document with its keys in another order
    assert render_html(reordered) == first
    assert render_html(doc) == first


def test_an_invalid_document_is_refused():
    doc = trajectory_document()
    del doc["kernel"]
    with pytest.raises(DataError, match="render_html"):
        render_html(doc)


# -- writing ---------------------------------------------------------------------------------------------------------
def test_write_html_writes_the_rendered_page(tmp_path):
    doc = trajectory_document()
    path = write_html(doc, tmp_path / "report.html")
    assert path == tmp_path / "report.html"
    assert path.read_text(encoding="utf-8") == render_html(doc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_write_html_into_a_missing_directory_is_one_sentence(tmp_path):
    target = tmp_path / "nope" / "report.html"
    with pytest.raises(ParameterError) as info:
        write_html(trajectory_document(), target)
    message = str(info.value)
    assert str(target) in message and "does not exist" in message and "create the directory" in message
    assert message.endswith(".") and message.count(". ") == 0
    assert not (tmp_path / "nope").exists()


def test_write_html_leaves_no_partial_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("old report", encoding="utf-8")
    bad = trajectory_document()
    bad["kind"] = "galaxy"
    with pytest.raises(DataError):
        write_html(bad, target)  # rendering fails: nothing is written
    assert target.read_text(encoding="utf-8") == "old report"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_html(trajectory_document(), target)  # the rename fails: the temporary file is removed
    assert target.read_text(encoding="utf-8") == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_missing_jinja2_names_the_install_line(monkeypatch):
    report._environment.cache_clear()
    monkeypatch.setitem(sys.modules, "jinja2", None)
    try:
        with pytest.raises(MissingDependencyError, match="pip install jinja2"):
            render_html(trajectory_document())
    finally:
        report._environment.cache_clear()


def test_importing_the_report_does_not_import_jinja2_or_matplotlib():
    code = ("import sys, koopscope.fingerprint.report, koopscope.fingerprint.figures, koopscope.plot\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jinja2', 'matplotlib', 'markupsafe')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


# -- geometry (figures.py) -------------------------------------------------------------------------------------------
def test_residual_colour_scale():
    assert figures.residual_colour(0.0) == figures.residual_colour(1e-9) == figures.RESIDUAL_STOPS[0][1]
    assert figures.residual_colour(1e-2) == figures.RESIDUAL_STOPS[1][1]
    assert figures.residual_colour(0.1) == figures.RESIDUAL_STOPS[2][1]
    assert figures.residual_colour(5.0) == figures.RESIDUAL_STOPS[-1][1]
    assert figures.residual_colour(None) == figures.NO_RESIDUAL_COLOUR
    positions = [figures.residual_position(r) for r in np.logspace(-6, 1, 50)]
    assert positions == sorted(positions) and positions[0] == 0.0 and positions[-1] == 1.0


def test_spurious_threshold_comes_from_the_kernel_options():
    doc = trajectory_document()
    assert [p.spurious for p in figures.unit_circle_charts(doc)[0].points] == [False] * 4 + [True]
    doc["kernel"]["options"]["residual_threshold"] = 0.01
    assert [p.spurious for p in figures.unit_circle_charts(doc)[0].points] == [False, False, True, True, True]
    no_residuals = figures.unit_circle_charts(trajectory_document(residuals=False))[0]
    assert not no_residuals.has_residuals and no_residuals.n_spurious == 0
    assert {p.colour for p in no_residuals.points} == {figures.NO_RESIDUAL_COLOUR}


def test_the_plot_window_never_clips_an_eigenvalue():
    doc = trajectory_document()
    doc["eigenvalues"][0] = {"re": -2.5, "im": 0.0}
    chart = figures.unit_circle_charts(doc)[0]
    assert chart.extent == pytest.approx(2.7) and max(p.modulus for p in chart.points) < chart.extent


def test_depth_series_records_gaps_and_refuses_trajectories():
    series = figures.depth_series(model_document(eta_nl="some"), "eta_nl")
    assert series.values == (0.1, None, 0.2, None) and series.missing == (1, 3) and series.computed
    rho = figures.depth_series(model_document(), "spectral_radius")
    assert rho.low[0] == pytest.approx(1.06) and rho.axis.reference == (1.0,)
    with pytest.raises(ParameterError, match="statistic"):
        figures.depth_series(model_document(), "entropy")
    with pytest.raises(ParameterError, match="model fingerprint"):
        figures.depth_series(trajectory_document(), "near_unit_mass")
    assert figures.depth_profiles(trajectory_document()) == ()


# -- a real fingerprint ----------------------------------------------------------------------------------------------
def test_a_real_trajectory_fingerprint_renders(tmp_path):
    from koopscope import dmd
    from koopscope.fingerprint import from_trajectory

    rng = np.random.default_rng(0)
    A = np.array([[0.9, -0.2, 0.0], [0.2, 0.9, 0.0], [0.0, 0.0, 0.5]])
    traj = np.empty((120, 3))
    traj[0] = [1.0, 0.0, 1.0]
    for t in range(119):
        traj[t + 1] = A @ traj[t] + 0.01 * rng.standard_normal(3)
    fp = from_trajectory(dmd.fit(traj, method="exact"), traj[:-1], traj[1:], n_boot=10, name=HOSTILE)
    path = fp.to_html(tmp_path / "fp.html")
    html = Path(path).read_text(encoding="utf-8")
    tree = Tree(html)
    assert _json_ld(tree) == fp.document and HOSTILE not in html
    assert len(eig_points(charts(tree, "unit-circle")[0])) == len(fp.document["eigenvalues"])


def test_a_real_model_fingerprint_renders():
    from koopscope import dmd
    from koopscope.fingerprint import from_layers

    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 4))
    layers = []
    for scale in (1.1, 0.95, 0.7):
        Y = scale * X @ np.linalg.qr(rng.standard_normal((4, 4)))[0] + 0.01 * rng.standard_normal((200, 4))
        layers.append((dmd.fit(X, Y, method="exact"), X, Y))
        X = Y
    fp = from_layers(layers, name="real model", n_boot=10, layer_features=[{"eta_nl": 0.1}, {}, {"eta_nl": 0.3}])
    tree = Tree(render_html(fp.document))
    assert _json_ld(tree) == fp.document
    assert [int(c.attrs["data-layer"]) for c in charts(tree, "unit-circle")] == [0, 1, 2]
    (eta,) = charts(tree, "depth-eta_nl")
    assert len([c for c in eta.iter("circle") if c.attrs.get("class") == "pt"]) == 2
