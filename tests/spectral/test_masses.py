"""The RKSP mass partition: hand counts, inclusive boundaries, partition of unity, Spectrum input, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import koopscope as ks
from koopscope.spectral import SpectralBands, mass_partition, near_unit_mass


def test_hand_counted_masses():
    lam = np.array([1.2, 1.0, 0.95 + 0.1j, 0.95 - 0.1j, 0.85, 0.5, -0.3, 0.79])
    # |λ|: 1.2 exp; 1.0, 0.955, 0.955 near-unit; 0.85 intermediate; 0.5, 0.3, 0.79 contractive
    assert mass_partition(lam) == {"expansive_mass": 1 / 8, "near_unit_mass": 3 / 8, "intermediate_mass": 1 / 8,
                                   "contractive_mass": 3 / 8}
    assert ks.spectral.spectral_radius(lam) == 1.2


def test_band_edges_are_inclusive_as_written():
    lam = np.array([1.05, 0.90, 0.80, 1.0500001, 0.8999999, 0.7999999])
    assert ks.spectral.near_unit_mass(lam) == 2 / 6  # 1.05 and 0.90 in; 1.0500001 and 0.8999999 out
    assert ks.spectral.expansive_mass(lam) == 1 / 6  # only 1.0500001
    assert ks.spectral.contractive_mass(lam) == 1 / 6  # only 0.7999999 (0.80 is intermediate)
    assert ks.spectral.intermediate_mass(lam) == 2 / 6  # 0.80 and 0.8999999


@settings(max_examples=50, deadline=None)
@given(st.lists(st.complex_numbers(max_magnitude=3, allow_nan=False, allow_infinity=False), min_size=1, max_size=40),
       st.floats(0.01, 0.5), st.floats(0.01, 0.5))
def test_partition_of_unity(values, eps_u, eps_n):
    bands = SpectralBands(eps_u=eps_u, eps_n=eps_n, delta_c=min(0.99, eps_n + 0.1))
    masses = mass_partition(np.array(values), bands)
    assert all(0.0 <= m <= 1.0 for m in masses.values())
    assert sum(masses.values()) == pytest.approx(1.0, abs=1e-12)


def test_spectrum_input_and_residual_filtering():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 3))
    spec = ks.dmd.exact(X, X @ np.diag([1.0, 0.95, 0.5]).T)
    assert near_unit_mass(spec) == 2 / 3 and near_unit_mass(spec.filtered()) == 2 / 3
    assert ks.spectral.spectral_radius(spec) == pytest.approx(spec.spectral_radius)


@pytest.mark.parametrize("bad, fragment", [
    (np.array([]), "non-empty 1-D"),
    (np.ones((2, 2)), "non-empty 1-D"),
    (np.array([1.0, np.nan]), "finite"),
    (np.array(["a"]), "finite numbers"),
])
def test_bad_eigenvalues(bad, fragment):
    with pytest.raises(ks.DataError, match=fragment):
        near_unit_mass(bad)


def test_bad_bands():
    with pytest.raises(ks.ParameterError, match="'delta_c'"):
        SpectralBands(delta_c=0.05)  # below eps_n: the bands would overlap
    with pytest.raises(ks.ParameterError, match="'eps_u'"):
        SpectralBands(eps_u=-0.1)
    with pytest.raises(ks.ParameterError, match="empty"):
        near_unit_mass(np.array([1.0]), lo=1.1, hi=1.0)
