"""Chart geometry of a fingerprint, shared by the HTML report and :mod:`koopscope.plot`.

Pure functions from a fingerprint document (the JSON-LD dict of schema 1.0) to what a chart shows, in data
coordinates: the eigenvalues on the complex plane with the unit circle and the near-unit band, and the
per-layer statistics over depth. Nothing here draws; the report turns the geometry into inline SVG and
``ks.plot`` into matplotlib artists, so both show the same points in the same colours.

Residual colour scale
---------------------
An eigenvalue is coloured by its ResDMD residual r (Colbrook & Townsend 2024) on a logarithmic scale:
t = (log10 r + 4) / 4, clipped to [0, 1], so r ≤ 1e-4 is the first stop and r ≥ 1 the last. The colour is
interpolated linearly in sRGB between the stops of :data:`RESIDUAL_STOPS`: deep blue (r ≤ 1e-4, a
well-resolved eigenpair), teal (1e-2), amber (0.1, the spurious threshold) and red (r ≥ 1). Eigenvalues
whose residual was not computed are grey (:data:`NO_RESIDUAL_COLOUR`). An eigenvalue with r above the
threshold (0.1 unless the kernel options record another) is *spurious* and is drawn hollow.

>>> residual_colour(1e-6), residual_colour(0.1), residual_colour(None)
('#1f4e99', '#e9a23b', '#8a8f98')
>>> [p.spurious for p in eigen_points([{"re": 0.9, "im": 0.1}, {"re": 0.5, "im": 0.0}], [0.01, 0.4])]
[False, True]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from koopscope.dmd.spectrum import RESIDUAL_THRESHOLD
from koopscope.errors import ParameterError
from koopscope.spectral.masses import SpectralBands

__all__ = [
    "DEPTH_STATISTICS",
    "MASS_COLOURS",
    "NEAR_UNIT_BAND",
    "NO_RESIDUAL_COLOUR",
    "RESIDUAL_RANGE",
    "RESIDUAL_STOPS",
    "STATISTIC_LABELS",
    "DepthAxis",
    "DepthSeries",
    "EigenPoint",
    "MassShare",
    "UnitCircleChart",
    "depth_profiles",
    "depth_series",
    "eigen_points",
    "mass_partition",
    "residual_colour",
    "residual_position",
    "residual_threshold",
    "unit_circle_charts",
]

#: Residuals at the two ends of the logarithmic colour scale.
RESIDUAL_RANGE: tuple[float, float] = (1e-4, 1.0)
#: (position t in [0, 1], sRGB hex) stops of the residual colour scale; t = 0.75 is r = 0.1.
RESIDUAL_STOPS: tuple[tuple[float, str], ...] = ((0.0, "#1f4e99"), (0.5, "#2a9d8f"), (0.75, "#e9a23b"),
                                                  (1.0, "#c0392b"))
#: Colour of an eigenvalue whose residual was not computed.
NO_RESIDUAL_COLOUR = "#8a8f98"
#: The near-unit band 0.90 ≤ |λ| ≤ 1.05 of RKSP (App. D.3), drawn as two circles around the unit circle.
NEAR_UNIT_BAND: tuple[float, float] = SpectralBands().near_unit

#: Human labels of the statistics a fingerprint records (features, intervals, depth profiles).
STATISTIC_LABELS: dict[str, str] = {
    "spectral_radius": "Spectral radius ρ = max |λ|",
    "near_unit_mass": "Near-unit mass M≈1",
    "expansive_mass": "Expansive mass M>1",
    "intermediate_mass": "Intermediate mass",
    "contractive_mass": "Contractive mass M<1",
    "n_eigenvalues": "Eigenvalues",
    "n_spurious": "Spurious eigenvalues (ResDMD)",
    "eta_nl": "Nonlinearity ratio η_nl",
    "median_residual": "Median ResDMD residual",
    "filtered_near_unit_mass": "Near-unit mass after the ResDMD filter",
    "mean_spectral_radius": "Mean spectral radius over layers",
    "n_layers": "Layer transitions",
    "risk": "Divergence risk",
}


@dataclass(frozen=True)
class DepthAxis:
    """How a per-layer statistic is drawn over depth: its label, fixed y limits (None: fit the data),
    reference lines and a shaded band."""

    label: str
    floor: float | None
    ceiling: float | None
    reference: tuple[float, ...] = ()
    band: tuple[float, float] | None = None


#: The per-layer statistics drawn over depth, in the order the report shows them.
DEPTH_STATISTICS: dict[str, DepthAxis] = {
    "near_unit_mass": DepthAxis("near-unit mass M≈1", 0.0, 1.0),
    "spectral_radius": DepthAxis("spectral radius ρ", None, None, reference=(1.0,), band=NEAR_UNIT_BAND),
    "eta_nl": DepthAxis("nonlinearity ratio η_nl", 0.0, None),
}

#: Colours of the four masses of the RKSP partition, from expansive to contractive.
MASS_COLOURS: dict[str, str] = {
    "expansive_mass": "#c0392b",
    "near_unit_mass": "#2f6fca",
    "intermediate_mass": "#9bb4d6",
    "contractive_mass": "#6c7a89",
}


def residual_threshold(document: Mapping[str, Any]) -> float:
    """The spurious threshold: ``kernel.options.residual_threshold`` when recorded, else 0.1 (RKSP App. D)."""
    value = document.get("kernel", {}).get("options", {}).get("residual_threshold")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return RESIDUAL_THRESHOLD


def residual_position(residual: float | None) -> float | None:
    """Position t in [0, 1] of a residual on the logarithmic colour scale (None when not computed)."""
    if residual is None:
        return None
    lo, hi = (math.log10(r) for r in RESIDUAL_RANGE)
    if residual <= 0:
        return 0.0
    return min(1.0, max(0.0, (math.log10(residual) - lo) / (hi - lo)))


def _mix(a: str, b: str, w: float) -> str:
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * w):02x}" for x, y in zip(ca, cb, strict=True))


def residual_colour(residual: float | None) -> str:
    """sRGB hex colour of a residual on the scale of :data:`RESIDUAL_STOPS` (grey when not computed)."""
    t = residual_position(residual)
    if t is None:
        return NO_RESIDUAL_COLOUR
    for (t0, c0), (t1, c1) in zip(RESIDUAL_STOPS, RESIDUAL_STOPS[1:], strict=False):
        if t <= t1:
            return _mix(c0, c1, (t - t0) / (t1 - t0))
    return RESIDUAL_STOPS[-1][1]


@dataclass(frozen=True)
class EigenPoint:
    """One eigenvalue λ = re + i·im on the complex plane, with its residual and colour."""

    re: float
    im: float
    residual: float | None
    colour: str
    spurious: bool

    @property
    def modulus(self) -> float:
        """|λ|."""
        return math.hypot(self.re, self.im)


def eigen_points(eigenvalues: Sequence[Mapping[str, float]], residuals: Sequence[float] | None,
                 threshold: float = RESIDUAL_THRESHOLD) -> tuple[EigenPoint, ...]:
    """The points of a spectrum: ``{"re", "im"}`` eigenvalues with their residuals (or None) and colours."""
    res: Sequence[float | None] = residuals if residuals is not None else [None] * len(eigenvalues)
    return tuple(
        EigenPoint(re=float(z["re"]), im=float(z["im"]), residual=None if r is None else float(r),
                   colour=residual_colour(r), spurious=r is not None and r > threshold)
        for z, r in zip(eigenvalues, res, strict=True)
    )


@dataclass(frozen=True)
class UnitCircleChart:
    """Eigenvalues of one spectrum (a trajectory, or one transition of a model) against the unit circle.

    ``extent`` is the half-width of the square plot window: at least 1.15, and 8 % beyond the largest |λ|
    so that no eigenvalue is ever clipped.
    """

    layer: int | None
    points: tuple[EigenPoint, ...]
    spectral_radius: float
    stability_label: str
    threshold: float
    band: tuple[float, float] = NEAR_UNIT_BAND

    @property
    def extent(self) -> float:
        return max(1.15, 1.08 * max((p.modulus for p in self.points), default=0.0))

    @property
    def n_spurious(self) -> int:
        return sum(p.spurious for p in self.points)

    @property
    def has_residuals(self) -> bool:
        return any(p.residual is not None for p in self.points)


def unit_circle_charts(document: Mapping[str, Any]) -> tuple[UnitCircleChart, ...]:
    """One chart for a trajectory fingerprint, one per transition (in ``layers`` order) for a model."""
    threshold = residual_threshold(document)
    if document["kind"] == "trajectory":
        return (UnitCircleChart(layer=None, points=eigen_points(document["eigenvalues"], document["residuals"],
                                                                threshold),
                                spectral_radius=float(document["spectral_radius"]),
                                stability_label=document["stability_label"], threshold=threshold),)
    return tuple(
        UnitCircleChart(layer=int(layer["index"]), points=eigen_points(layer["eigenvalues"], layer["residuals"],
                                                                       threshold),
                        spectral_radius=float(layer["spectral_radius"]), stability_label=layer["stability_label"],
                        threshold=threshold)
        for layer in document["layers"]
    )


@dataclass(frozen=True)
class DepthSeries:
    """A per-layer statistic over depth (transition index), with its bootstrap interval where recorded.

    ``values[i]`` is None where the fingerprint does not record the statistic for layer ``depth[i]``; such
    layers are gaps, never filled in.
    """

    statistic: str
    axis: DepthAxis
    depth: tuple[int, ...]
    values: tuple[float | None, ...]
    low: tuple[float | None, ...]
    high: tuple[float | None, ...]

    @property
    def label(self) -> str:
        return self.axis.label

    @property
    def computed(self) -> bool:
        """Whether any layer records the statistic."""
        return any(v is not None for v in self.values)

    @property
    def missing(self) -> tuple[int, ...]:
        """Layers that do not record the statistic."""
        return tuple(d for d, v in zip(self.depth, self.values, strict=True) if v is None)


def _layer_value(layer: Mapping[str, Any], statistic: str) -> float | None:
    value = layer[statistic] if statistic == "spectral_radius" else layer["features"].get(statistic)
    return None if value is None else float(value)


def depth_series(document: Mapping[str, Any], statistic: str) -> DepthSeries:
    """The series of ``statistic`` (a key of :data:`DEPTH_STATISTICS`) over the layers of a model fingerprint."""
    if statistic not in DEPTH_STATISTICS:
        raise ParameterError(f"The 'statistic' argument is {statistic!r}, expected one of "
                             f"{sorted(DEPTH_STATISTICS)}; pick one of those per-layer statistics.")
    if document["kind"] != "model":
        raise ParameterError(f"A depth profile needs a model fingerprint, got kind={document['kind']!r}, which has "
                             "no layers; profile a model (ks.profile or from_layers) to draw statistics over depth.")
    layers = document["layers"]
    intervals = [layer.get("intervals", {}).get(statistic) for layer in layers]
    return DepthSeries(
        statistic=statistic, axis=DEPTH_STATISTICS[statistic], depth=tuple(int(layer["index"]) for layer in layers),
        values=tuple(_layer_value(layer, statistic) for layer in layers),
        low=tuple(None if iv is None else float(iv["low"]) for iv in intervals),
        high=tuple(None if iv is None else float(iv["high"]) for iv in intervals),
    )


def depth_profiles(document: Mapping[str, Any]) -> tuple[DepthSeries, ...]:
    """M≈1, ρ and η_nl over depth for a model fingerprint; empty for a trajectory."""
    if document["kind"] != "model":
        return ()
    return tuple(depth_series(document, statistic) for statistic in DEPTH_STATISTICS)


@dataclass(frozen=True)
class MassShare:
    """One band of the RKSP mass partition: its feature name, label, share of eigenvalues and colour."""

    name: str
    label: str
    value: float
    colour: str


def mass_partition(features: Mapping[str, Any]) -> tuple[MassShare, ...]:
    """The four masses of ``features`` (they sum to 1), from expansive to contractive.

    >>> [m.value for m in mass_partition({"expansive_mass": 0.1, "near_unit_mass": 0.5,
    ...                                   "intermediate_mass": 0.1, "contractive_mass": 0.3})]
    [0.1, 0.5, 0.1, 0.3]
    """
    return tuple(MassShare(name=name, label=STATISTIC_LABELS[name], value=float(features[name]), colour=colour)
                 for name, colour in MASS_COLOURS.items())
