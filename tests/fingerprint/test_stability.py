"""Stability labels: the documented rules at and around the band edges 0.90 and 1.05."""

from __future__ import annotations

import pytest

from koopscope.fingerprint import stability_label
from koopscope.fingerprint.stability import CONTRACTIVE_BELOW, EXPANSIVE_ABOVE


@pytest.mark.parametrize(("rho", "label"), [
    (0.0, "contractive"), (0.8999, "contractive"), (0.90, "near-unit"), (1.0, "near-unit"), (1.05, "near-unit"),
    (1.0501, "expansive"), (3.0, "expansive"),
])
def test_point_labels(rho: float, label: str) -> None:
    assert stability_label(rho) == label


@pytest.mark.parametrize(("rho", "low", "high", "label"), [
    (0.5, 0.4, 0.6, "contractive"),
    (0.95, 0.92, 0.99, "near-unit"),
    (1.2, 1.1, 1.3, "expansive"),
    (0.89, 0.85, 0.91, "uncertain"),  # straddles 0.90
    (1.04, 1.01, 1.07, "uncertain"),  # straddles 1.05
    (1.0, 0.5, 1.5, "uncertain"),  # spans all three regions
])
def test_interval_labels(rho: float, low: float, high: float, label: str) -> None:
    assert stability_label(rho, low, high) == label


def test_band_edges_are_the_paper_defaults() -> None:
    assert (CONTRACTIVE_BELOW, EXPANSIVE_ABOVE) == (0.90, 1.05)
