"""Each process-step equation (paper eq. 8-16) against values computed by hand."""

import math

import numpy as np
import pytest

from models import calendering, coating, drying, mixing

W = dict(w_am=0.94, w_ca=0.03, w_pb=0.03, rho_am=4.75, rho_ca=1.80, rho_pb=1.70)


def test_solids_density_eq8():
    # 0.94/4.75 + 0.03/1.8 + 0.03/1.7 = 0.197895 + 0.016667 + 0.017647 = 0.232209 cm3/g -> 4.30647 g/cm3
    assert mixing.solids_density(**W) == pytest.approx(1 / 0.2322085, rel=1e-6)
    assert mixing.solids_density(**W) == pytest.approx(4.31, abs=0.005)  # Table A1


def test_slurry_density_eq9():
    # 0.7 * 0.2322085 + 0.3 / 1.03 = 0.162546 + 0.291262 = 0.453808 cm3/g -> 2.20358 g/cm3
    rho_s = mixing.solids_density(**W)
    assert mixing.slurry_density(0.7, rho_s, 1.03) == pytest.approx(1 / 0.4538078, rel=1e-6)
    assert mixing.slurry_density(0.7, rho_s, 1.03) == pytest.approx(2.20, abs=0.005)


def test_slurry_density_limits():
    assert mixing.slurry_density(1.0, 4.3, 1.03) == pytest.approx(4.3)
    assert mixing.slurry_density(0.0, 4.3, 1.03) == pytest.approx(1.03)


def test_wet_thickness_eq10_units():
    # 696 cm3/h / (1 m/min * 125 mm) = 696 cm3/h / (6000 cm/h * 12.5 cm) = 0.00928 cm = 92.8 um
    assert coating.wet_thickness(696.0, 1.0, 125.0) == pytest.approx(92.8, rel=1e-12)
    # 1 m/min and 1 m wide at 60 L/h: 60000 cm3/h / (6000 cm/h * 100 cm) = 0.1 cm = 1000 um
    assert coating.wet_thickness(60000.0, 1.0, 1000.0) == pytest.approx(1000.0)


def test_wet_mass_loading_eq11():
    # 2.2 g/cm3 * 92.8e-4 cm = 0.020416 g/cm2 = 20.416 mg/cm2
    assert coating.wet_mass_loading(2.2, 92.8) == pytest.approx(20.416)


def test_dry_mass_loading_eq12():
    assert drying.dry_mass_loading(20.5, 0.7) == pytest.approx(14.35)


def test_dry_thickness_and_density_eq13_eq14():
    # 14.3 mg/cm2 / (4.31 g/cm3 * (1 - 0.439)) = 14.3e-3 / 2.41791 cm = 5.9142e-3 cm = 59.14 um
    h = drying.dry_thickness(14.3, 4.31, 0.439)
    assert h == pytest.approx(59.142, abs=1e-3)
    assert drying.dry_density(14.3, h) == pytest.approx(4.31 * (1 - 0.439))


def test_calendered_porosity_eq15():
    # 0.176 + (0.439 - 0.176) * exp(-84/129) = 0.176 + 0.263 * 0.52138 = 0.31312
    assert calendering.calendered_porosity(0.439, 84.0, 0.176, 129.0) == pytest.approx(
        0.176 + 0.263 * math.exp(-84 / 129), rel=1e-12)
    assert calendering.calendered_porosity(0.439, 0.0, 0.176, 129.0) == pytest.approx(0.439)
    assert calendering.calendered_porosity(0.439, 1e6, 0.176, 129.0) == pytest.approx(0.176)


def test_line_load_for_porosity_inverts_eq15():
    q = calendering.line_load_for_porosity(0.315, 0.439, 0.176, 129.0)
    assert calendering.calendered_porosity(0.439, q, 0.176, 129.0) == pytest.approx(0.315)
    assert np.isnan(calendering.line_load_for_porosity(0.17, 0.439, 0.176, 129.0))  # below eps_min


def test_compaction_resistance_linear_in_loading():
    assert calendering.compaction_resistance(14.3, 18.45, 7.7308) == pytest.approx(129.0, abs=0.01)
    assert calendering.compaction_resistance(0.0, 18.45, 7.7308) == pytest.approx(18.45)


def test_calendered_thickness_and_density():
    # 14.3 / (4.31 * 0.685) * 10 = 48.436 um; density = 4.31 * 0.685 = 2.95235 g/cm3
    h = calendering.calendered_thickness(14.3, 4.31, 0.315)
    assert h == pytest.approx(48.436, abs=1e-3)
    assert calendering.calendered_density(14.3, h) == pytest.approx(2.95235, rel=1e-6)


def test_solid_volume_fractions_eq16():
    # share of AM volume: 0.197895 / 0.2322085 = 0.852228; * (1 - 0.315) = 0.583776
    am, ca, pb = calendering.solid_volume_fractions(0.315, **W)
    assert am == pytest.approx(0.685 * 0.197895 / 0.2322085, rel=1e-5)
    assert ca == pytest.approx(0.685 * 0.0166667 / 0.2322085, rel=1e-5)
    assert pb == pytest.approx(0.685 * 0.0176471 / 0.2322085, rel=1e-5)
    assert am + ca + pb == pytest.approx(0.685)


def test_steps_are_vectorized():
    v = np.array([600.0, 696.0, 800.0])
    h = coating.wet_thickness(v, 1.0, 125.0)
    assert h.shape == (3,)
    assert h[1] == pytest.approx(92.8)
