"""``ks.plot``: matplotlib figures of a fingerprint, for notebooks (the ``koopscope[plot]`` extra).

The same charts as the HTML report, from the same geometry (:mod:`koopscope.fingerprint.figures`): the
eigenvalues on the unit circle coloured by ResDMD residual, and per-layer statistics over depth. Every
function takes a :class:`~koopscope.fingerprint.KoopmanFingerprint` (anything with a ``.document``) or the
document dict, draws into ``ax`` when given (else a new figure) and returns the Axes or Figure.

>>> import koopscope as ks                                     # doctest: +SKIP
>>> ks.plot.unit_circle(fp)                                    # doctest: +SKIP
>>> ks.plot.depth_profile(fp, "spectral_radius")               # doctest: +SKIP
>>> ks.plot.report_figure(fp).savefig("fingerprint.png")       # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from koopscope.errors import MissingDependencyError, ParameterError
from koopscope.fingerprint import figures

__all__ = ["depth_profile", "report_figure", "residual_colormap", "unit_circle"]

INSTALL_LINE = 'pip install "koopscope[plot]"'
_ACCENT = "#2f6fca"
_SMALL_MULTIPLE_COLUMNS = 6


def _pyplot(caller: str) -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(f"ks.plot.{caller} needs matplotlib, which is not installed; install the plot "
                                     f"extra with `{INSTALL_LINE}`.") from None
    return plt


def _document(fp: Any, caller: str) -> Mapping[str, Any]:
    document = getattr(fp, "document", fp)
    if not isinstance(document, Mapping) or document.get("kind") not in ("trajectory", "model"):
        raise ParameterError(f"The 'fp' argument of ks.plot.{caller} is a {type(fp).__name__}, expected a "
                             "KoopmanFingerprint or its document dict; pass fp or fp.document.")
    return document


def _plain(text: str) -> str:
    """Text shown verbatim: matplotlib would read '$...$' in a user's name as mathtext."""
    return text.replace("$", r"\$")


def residual_colormap() -> tuple[Any, Any]:
    """(colormap, norm) of the residual colour scale: the stops of ``figures.RESIDUAL_STOPS`` on a log norm."""
    _pyplot("residual_colormap")
    from matplotlib.colors import LinearSegmentedColormap, LogNorm

    cmap = LinearSegmentedColormap.from_list("koopscope_residual", list(figures.RESIDUAL_STOPS))
    return cmap, LogNorm(*figures.RESIDUAL_RANGE)


def _select(charts: tuple[figures.UnitCircleChart, ...], document: Mapping[str, Any],
            layer: int | None) -> tuple[list[figures.EigenPoint], str]:
    if document["kind"] == "trajectory":
        if layer is not None:
            raise ParameterError(f"The 'layer' argument is {layer!r}, but a trajectory fingerprint has no layers; "
                                 "leave layer=None.")
        return list(charts[0].points), "eigenvalues"
    if layer is None:
        return [p for c in charts for p in c.points], f"all {len(charts)} transitions"
    found = [c for c in charts if c.layer == layer]
    if not found:
        raise ParameterError(f"The 'layer' argument is {layer!r}, expected a transition index of this fingerprint "
                             f"({[c.layer for c in charts]}); pass one of those or None for all of them.")
    return list(found[0].points), f"layer {layer}"


def unit_circle(fp: Any, ax: Any = None, layer: int | None = None, *, colorbar: bool = True) -> Any:
    """Eigenvalues on the complex plane with the unit circle and the near-unit band, coloured by residual.

    Parameters
    ----------
    fp : KoopmanFingerprint or dict
        The fingerprint.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    layer : int, optional
        For a model fingerprint, the transition index to draw; default all transitions together.
    colorbar : bool, default=True
        Add a colour bar of the residual scale (only when residuals were computed).

    Returns
    -------
    matplotlib Axes
        With two scatter collections: gid ``"eigenvalues"`` (filled) and ``"spurious"`` (hollow, residual
        above the threshold), and the circles as patches.
    """
    plt = _pyplot("unit_circle")
    from matplotlib.patches import Annulus, Circle

    document = _document(fp, "unit_circle")
    charts = figures.unit_circle_charts(document)
    points, what = _select(charts, document, layer)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.6), layout="constrained")
    lo, hi = figures.NEAR_UNIT_BAND
    extent = max(c.extent for c in charts) if layer is None else max(
        1.15, 1.08 * max((p.modulus for p in points), default=0.0))
    ax.add_patch(Annulus((0, 0), hi, hi - lo, facecolor=_ACCENT, alpha=0.07, edgecolor="none", gid="near-unit-band"))
    for radius, style in ((lo, "--"), (hi, "--")):
        ax.add_patch(Circle((0, 0), radius, fill=False, edgecolor="#8fa6c4", linestyle=style, linewidth=0.9))
    ax.add_patch(Circle((0, 0), 1.0, fill=False, edgecolor="#39424c", linewidth=1.3, gid="unit-circle"))
    ax.axhline(0, color="#c4cad2", linewidth=0.8, zorder=0)
    ax.axvline(0, color="#c4cad2", linewidth=0.8, zorder=0)
    threshold = figures.residual_threshold(document)
    kept = [p for p in points if not p.spurious]
    spurious = [p for p in points if p.spurious]
    ax.scatter([p.re for p in kept], [p.im for p in kept], c=[p.colour for p in kept] or None, s=30,
               edgecolors="white", linewidths=0.5, zorder=3, gid="eigenvalues", label="eigenvalue")
    ax.scatter([p.re for p in spurious], [p.im for p in spurious], facecolors="white",
               edgecolors=[p.colour for p in spurious] or None, s=30, linewidths=1.6, zorder=4, gid="spurious",
               label=f"spurious (residual > {threshold:g})")
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    ax.set_title(what)
    if spurious:
        ax.legend(loc="upper right", fontsize="small", frameon=True, framealpha=0.85, edgecolor="none")
    if colorbar and any(p.residual is not None for p in points):
        from matplotlib.cm import ScalarMappable

        cmap, norm = residual_colormap()
        ax.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="ResDMD residual", shrink=0.8)
    return ax


def depth_profile(fp: Any, statistic: str = "near_unit_mass", ax: Any = None) -> Any:
    """A per-layer statistic over depth (model fingerprints): ``near_unit_mass``, ``spectral_radius``, ``eta_nl``.

    Per-layer bootstrap intervals are drawn as vertical bars (gid ``"interval"``) where the fingerprint records
    them; layers without the statistic are gaps. When no layer records it (η_nl is optional), the axes say
    "not computed" and hold no data.

    Returns
    -------
    matplotlib Axes
        The series is the line with gid ``"series"``.
    """
    plt = _pyplot("depth_profile")
    from matplotlib.ticker import MaxNLocator

    series = figures.depth_series(_document(fp, "depth_profile"), statistic)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.2), layout="constrained")
    ax.set_xlabel("layer (transition index)")
    ax.set_ylabel(series.label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not series.computed:
        ax.text(0.5, 0.5, f"{series.label}: not computed", transform=ax.transAxes, ha="center", va="center",
                color="#8a939d", style="italic", gid="not-computed")
        ax.set_xlim(min(series.depth) - 0.5, max(series.depth) + 0.5)
        return ax
    if series.axis.band is not None:
        ax.axhspan(*series.axis.band, color=_ACCENT, alpha=0.08, linewidth=0)
    for value in series.axis.reference:
        ax.axhline(value, color="#6b7580", linestyle="--", linewidth=1.0)
    bars = [(d, a, b) for d, a, b in zip(series.depth, series.low, series.high, strict=True)
            if a is not None and b is not None]
    if bars:
        ax.vlines([d for d, _, _ in bars], [a for _, a, _ in bars], [b for _, _, b in bars], colors=_ACCENT,
                  alpha=0.45, linewidth=3, gid="interval")
    values = [math.nan if v is None else v for v in series.values]
    ax.plot(series.depth, values, color=_ACCENT, marker="o", linewidth=2, markersize=5, gid="series")
    if series.axis.floor is not None or series.axis.ceiling is not None:
        ax.set_ylim(bottom=series.axis.floor, top=series.axis.ceiling)
    if series.missing:
        ax.set_title(f"not computed for layers {', '.join(map(str, series.missing))}", fontsize="small")
    return ax


def _mass_bars(document: Mapping[str, Any], ax: Any) -> Any:
    shares = figures.mass_partition(document["features"])
    ax.barh([m.label for m in shares][::-1], [m.value for m in shares][::-1],
            color=[m.colour for m in shares][::-1], gid="mass-partition")
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of eigenvalues")
    ax.set_title("mass partition")
    return ax


def report_figure(fp: Any) -> Any:
    """The report as one matplotlib Figure.

    A trajectory: its unit circle and mass partition. A model: M≈1, ρ and η_nl over depth on the first row,
    then one unit circle per transition (small multiples, six per row).
    """
    plt = _pyplot("report_figure")
    document = _document(fp, "report_figure")
    title = _plain(f"{document['name']} · {document['kind']} · {document['stability_label']}, "
                   f"ρ = {document['spectral_radius']:.4g}")
    if document["kind"] == "trajectory":
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained",
                                          gridspec_kw={"width_ratios": [1.1, 1]})
        unit_circle(document, ax=left)
        _mass_bars(document, right)
        fig.suptitle(title)
        return fig
    charts = figures.unit_circle_charts(document)
    columns = min(len(charts), _SMALL_MULTIPLE_COLUMNS)
    rows = math.ceil(len(charts) / columns)
    fig = plt.figure(figsize=(2.2 * max(columns, 5), 3.4 + 2.3 * rows), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.4, 2.3 * rows])
    for ax, statistic in zip(top.subplots(1, 3), figures.DEPTH_STATISTICS, strict=True):
        depth_profile(document, statistic, ax=ax)
    axes = bottom.subplots(rows, columns, squeeze=False).ravel()
    for ax, chart in zip(axes, charts, strict=False):
        unit_circle(document, ax=ax, layer=chart.layer, colorbar=False)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(labelsize="x-small")
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    for ax in axes[len(charts):]:
        ax.set_visible(False)
    cmap, norm = residual_colormap()
    from matplotlib.cm import ScalarMappable

    bottom.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[:len(charts)]), label="ResDMD residual",
                    shrink=0.8)
    fig.suptitle(title)
    return fig
