"""``ks.plot``: the matplotlib figures draw the fingerprint's points in the report's colours (artists, not pixels)."""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_hex, to_rgba  # noqa: E402

import koopscope as ks  # noqa: E402
from koopscope.errors import MissingDependencyError, ParameterError  # noqa: E402
from koopscope.fingerprint import KoopmanFingerprint, figures  # noqa: E402
from tests.fingerprint.test_report import model_document, trajectory_document  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _collection(ax, gid):
    (found,) = [c for c in ax.collections if c.get_gid() == gid]
    return found


def _line(ax, gid):
    (found,) = [line for line in ax.get_lines() if line.get_gid() == gid]
    return found


def test_unit_circle_draws_every_eigenvalue_in_its_residual_colour():
    doc = trajectory_document()
    ax = ks.plot.unit_circle(doc)
    kept, spurious = _collection(ax, "eigenvalues"), _collection(ax, "spurious")
    assert len(kept.get_offsets()) == 4 and len(spurious.get_offsets()) == 1
    residuals = doc["residuals"]
    want = [to_rgba(figures.residual_colour(r)) for r in residuals[:4]]
    assert np.allclose(kept.get_facecolors(), want)
    assert np.allclose(spurious.get_edgecolors(), [to_rgba(figures.residual_colour(residuals[4]))])
    assert np.allclose(spurious.get_facecolors(), [to_rgba("white")])
    offsets = np.vstack([kept.get_offsets(), spurious.get_offsets()])
    assert np.allclose(offsets, [[z["re"], z["im"]] for z in doc["eigenvalues"]])
    assert ax.get_xlabel() == "Re λ" and ax.get_ylabel() == "Im λ"
    assert ax.get_aspect() == 1.0
    extent = figures.unit_circle_charts(doc)[0].extent
    assert ax.get_xlim() == pytest.approx((-extent, extent))
    (unit,) = [p for p in ax.patches if p.get_gid() == "unit-circle"]
    assert unit.get_radius() == 1.0
    assert len(ax.figure.axes) == 2  # the axes and the residual colour bar
    assert "spurious (residual > 0.1)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_without_residuals_points_are_grey_and_there_is_no_colour_bar():
    ax = ks.plot.unit_circle(trajectory_document(residuals=False))
    kept = _collection(ax, "eigenvalues")
    assert {to_hex(c) for c in kept.get_facecolors()} == {figures.NO_RESIDUAL_COLOUR}
    assert len(_collection(ax, "spurious").get_offsets()) == 0
    assert len(ax.figure.axes) == 1


def test_unit_circle_accepts_a_fingerprint_and_draws_into_a_given_axes():
    fp = KoopmanFingerprint(trajectory_document())
    fig, ax = plt.subplots()
    assert ks.plot.unit_circle(fp, ax=ax, colorbar=False) is ax
    assert ks.plot.unit_circle(SimpleNamespace(document=trajectory_document()), colorbar=False) is not ax
    assert len(fig.axes) == 1
    with pytest.raises(ParameterError, match="KoopmanFingerprint or its document"):
        ks.plot.unit_circle([1, 2, 3])


def test_unit_circle_of_a_model_per_layer_and_pooled():
    doc = model_document()
    n = [len(layer["eigenvalues"]) for layer in doc["layers"]]
    one = ks.plot.unit_circle(doc, layer=2)
    assert len(_collection(one, "eigenvalues").get_offsets()) + len(_collection(one, "spurious").get_offsets()) == n[2]
    assert one.get_title() == "layer 2"
    pooled = ks.plot.unit_circle(doc)
    total = len(_collection(pooled, "eigenvalues").get_offsets()) + len(_collection(pooled, "spurious").get_offsets())
    assert total == sum(n) and pooled.get_title() == "all 4 transitions"
    with pytest.raises(ParameterError, match=r"'layer' argument is 9.*\[0, 1, 2, 3\]"):
        ks.plot.unit_circle(doc, layer=9)
    with pytest.raises(ParameterError, match="trajectory fingerprint has no layers"):
        ks.plot.unit_circle(trajectory_document(), layer=0)


@pytest.mark.parametrize("statistic", ["near_unit_mass", "spectral_radius", "eta_nl"])
def test_depth_profile_draws_the_per_layer_values(statistic):
    doc = model_document(eta_nl="some")
    ax = ks.plot.depth_profile(doc, statistic)
    series = figures.depth_series(doc, statistic)
    line = _line(ax, "series")
    assert list(line.get_xdata()) == [0, 1, 2, 3]
    want = [math.nan if v is None else v for v in series.values]
    assert np.allclose(line.get_ydata(), want, equal_nan=True)
    assert ax.get_xlabel() == "layer (transition index)" and ax.get_ylabel() == series.label
    intervals = [c for c in ax.collections if c.get_gid() == "interval"]
    assert len(intervals) == (1 if statistic != "eta_nl" else 0)
    if statistic == "near_unit_mass":
        assert ax.get_ylim() == (0.0, 1.0)
    if statistic == "eta_nl":
        assert ax.get_title() == "not computed for layers 1, 3"


def test_depth_profile_says_not_computed_and_draws_nothing():
    ax = ks.plot.depth_profile(model_document(eta_nl="none"), "eta_nl")
    assert not [line for line in ax.get_lines() if line.get_gid() == "series"]
    assert [t.get_text() for t in ax.texts] == ["nonlinearity ratio η_nl: not computed"]


def test_depth_profile_refuses_trajectories_and_unknown_statistics():
    with pytest.raises(ParameterError, match="needs a model fingerprint"):
        ks.plot.depth_profile(trajectory_document())
    with pytest.raises(ParameterError, match="'statistic' argument is 'entropy'"):
        ks.plot.depth_profile(model_document(), "entropy")


def test_report_figure_of_a_model_has_depth_profiles_and_one_circle_per_layer():
    doc = model_document(name="$\\alpha$ model")  # a name matplotlib would read as mathtext
    fig = ks.plot.report_figure(doc)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    circles = [ax for ax in axes if any(c.get_gid() == "eigenvalues" for c in ax.collections)]
    depth = [ax for ax in axes if ax.get_xlabel() == "layer (transition index)"]
    assert [ax.get_title() for ax in circles] == [f"layer {i}" for i in range(4)]
    assert len(depth) == 3
    assert fig._suptitle.get_text().startswith("\\$\\alpha\\$ model · model")
    fig.canvas.draw()  # lays out and renders without error


def test_report_figure_of_a_trajectory():
    fig = ks.plot.report_figure(trajectory_document())
    titles = [ax.get_title() for ax in fig.axes]
    assert "eigenvalues" in titles and "mass partition" in titles
    (bars,) = [ax for ax in fig.axes if ax.get_title() == "mass partition"]
    assert sorted(round(p.get_width(), 6) for p in bars.patches) == [0.0, 0.0, 0.2, 0.8]
    fig.canvas.draw()


def test_missing_matplotlib_names_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "koopscope\[plot\]"'):
        ks.plot.unit_circle(trajectory_document())
