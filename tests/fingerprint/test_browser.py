"""The HTML report in a real browser: headless Chromium renders it, draws its charts and runs none of its text.

Three Chromium launches in all (each takes seconds): the DOM and a screenshot of a model report whose name,
flag message and model id carry script payloads, and the DOM of a trajectory report. Without Chromium on
PATH the tests skip, except under CI (``CI`` set to a true value), where a missing browser fails: CI installs
Debian's ``chromium``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from koopscope.fingerprint.report import write_html
from tests.fingerprint.test_report import Tree, charts, eig_points, model_document, trajectory_document

PAYLOAD = ("<script>document.body.setAttribute('data-pwned','1')</script>"
           "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">")
TIMEOUT_S = 60
WINDOW = (1280, 2400)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if _in_ci():
            pytest.fail("chromium is not on PATH under CI; install Debian's `chromium` package (.ci/run does).")
        pytest.skip("chromium is not on PATH; install it (apt-get install chromium) to run the browser tests")
    return path


def _run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
               *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}: {proc.stderr[-2000:]}"
    return proc


def _model() -> dict:
    doc = model_document(PAYLOAD, n_layers=3)
    doc["trust"]["flags"][0]["message"] = PAYLOAD
    doc["provenance"]["model_id"] = PAYLOAD
    return doc


@pytest.fixture(scope="module")
def model_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_html(_model(), tmp_path_factory.mktemp("report") / "model.html")


@pytest.fixture(scope="module")
def model_dom(chromium: str, model_page: Path, tmp_path_factory: pytest.TempPathFactory) -> Tree:
    proc = _run(chromium, tmp_path_factory.mktemp("profile"), "--dump-dom", model_page.as_uri())
    return Tree(proc.stdout)


@pytest.fixture(scope="module")
def model_screenshot(chromium: str, model_page: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    png = tmp_path_factory.mktemp("shot") / "model.png"
    _run(chromium, tmp_path_factory.mktemp("profile"), f"--screenshot={png}",
         f"--window-size={WINDOW[0]},{WINDOW[1]}", model_page.as_uri())
    assert png.is_file(), "chromium wrote no screenshot"
    return png


def test_the_model_report_renders_with_its_charts(model_dom):
    doc = _model()
    title = next(model_dom.root.iter("title")).all_text()
    assert title == f"{PAYLOAD} · Koopman fingerprint (model)"
    circles = charts(model_dom, "unit-circle")
    assert [int(c.attrs["data-layer"]) for c in circles] == [0, 1, 2]
    for svg, layer in zip(circles, doc["layers"], strict=True):
        assert len(eig_points(svg)) == len(layer["eigenvalues"])
        assert any("unit-circle" in (c.attrs.get("class") or "") for c in svg.iter("circle"))
    for statistic in ("near_unit_mass", "spectral_radius", "eta_nl"):
        (svg,) = charts(model_dom, f"depth-{statistic}")
        assert len([c for c in svg.iter("circle") if c.attrs.get("class") == "pt"]) == 3


def test_script_payloads_are_shown_as_text_and_never_run(model_dom):
    for node in model_dom.root.iter():
        assert "data-pwned" not in node.attrs, f"a payload ran: <{node.tag}> has data-pwned"
    assert [n.attrs.get("type") for n in model_dom.root.iter("script")] == ["application/ld+json"]
    assert not list(model_dom.root.iter("img"))
    assert next(model_dom.root.iter("h1")).all_text() == PAYLOAD  # the literal text, '<script>' included
    body = next(model_dom.root.iter("body")).all_text()
    assert body.count("<script>document.body.setAttribute('data-pwned','1')</script>") >= 3  # h1, flag, provenance


def test_the_screenshot_is_not_blank(model_screenshot):
    from PIL import Image

    with Image.open(model_screenshot) as image:
        assert image.size == WINDOW
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16).reshape(-1, 3)  # (H·W, 3)
    packed = pixels @ np.array([65536, 256, 1])  # 0xRRGGBB per pixel
    distinct = np.unique(packed).size
    background = np.isin(packed, [0xFFFFFF, 0xF5F6F8])  # the cards and the page
    assert distinct > 200, f"the screenshot has {distinct} distinct colours: the page did not render"
    assert (~background).mean() > 0.05, "the screenshot is almost all background"

    def near(colour: int) -> int:
        rgb = np.array([colour >> 16, (colour >> 8) & 0xFF, colour & 0xFF])
        return int((np.abs(pixels - rgb).max(axis=1) <= 24).sum())

    assert near(0xC0392B) > 500  # the red of the expansive badge and mass bar, drawn by CSS and SVG
    assert near(0x2F6FCA) > 500  # the accent blue of the near-unit mass and the depth charts


def test_the_trajectory_report_renders(chromium, tmp_path):
    doc = trajectory_document()
    page = write_html(doc, tmp_path / "trajectory.html")
    dom = Tree(_run(chromium, tmp_path / "profile", "--dump-dom", page.as_uri()).stdout)
    assert next(dom.root.iter("h1")).all_text() == "planted trajectory"
    (circle,) = charts(dom, "unit-circle")
    assert len(eig_points(circle)) == len(doc["eigenvalues"])
    assert len(charts(dom, "spectral-radius-interval")) == 1 and len(charts(dom, "mass-partition")) == 1
