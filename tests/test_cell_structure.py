"""Structure surrogate (models/structure.py) against hand-computed values, and its anchoring to Table A2."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.structure import (
    STRUCTURE_MODELS,
    active_surface_area,
    cbm_exponent_for_tortuosity,
    coating_structure,
    conductivity_bruggeman,
    conductivity_percolation,
    effective_parameters,
    tortuosity_bruggeman,
    tortuosity_composition,
)


def test_coating_structure_of_the_paper_use_case_by_hand():
    s = coating_structure(0.94, 0.03, 0.03, 14.3, 2.95, 4.75, 1.80, 1.70)
    # h = 10 * 14.3 / 2.95; phi_i = rho_cal w_i / rho_i; eps = 1 - sum phi
    assert s["h_cal"] == pytest.approx(48.474576, rel=1e-7)
    assert s["phi_am"] == pytest.approx(2.95 * 0.94 / 4.75, rel=1e-12)  # 0.583789
    assert s["phi_ca"] == pytest.approx(0.0491667, rel=1e-5)
    assert s["phi_pb"] == pytest.approx(0.0520588, rel=1e-5)
    assert s["eps_cal"] == pytest.approx(0.314985, rel=1e-5)  # Table A2: 0.315


def test_coating_structure_equals_the_process_chain_calendering_step():
    from models.calendering import calendered_density, calendered_thickness, solid_volume_fractions
    from models.mixing import solids_density

    rng = np.random.default_rng(3)
    w_am, w_ca, w_pb = rng.normal(0.94, 0.01, 50), rng.normal(0.03, 0.001, 50), rng.normal(0.03, 0.001, 50)
    m_dry, eps_cal = rng.normal(14.3, 0.5, 50), rng.normal(0.315, 0.01, 50)
    rho_s = solids_density(w_am, w_ca, w_pb, 4.75, 1.8, 1.7)
    h_cal = calendered_thickness(m_dry, rho_s, eps_cal)
    rho_cal = calendered_density(m_dry, h_cal)
    phi = solid_volume_fractions(eps_cal, w_am, w_ca, w_pb, 4.75, 1.8, 1.7)
    s = coating_structure(w_am, w_ca, w_pb, m_dry, rho_cal, 4.75, 1.8, 1.7)
    np.testing.assert_allclose(s["eps_cal"], eps_cal, rtol=1e-12)
    np.testing.assert_allclose(s["h_cal"], h_cal, rtol=1e-12)
    for k, v in zip(("phi_am", "phi_ca", "phi_pb"), phi):
        np.testing.assert_allclose(s[k], v, rtol=1e-12)


def test_bruggeman_tortuosity_by_hand():
    assert tortuosity_bruggeman(0.315) == pytest.approx(0.315**-0.5)  # 1.78174
    assert tortuosity_bruggeman(0.315) == pytest.approx(1.781742, rel=1e-6)
    assert tortuosity_bruggeman(1.0) == 1.0


def test_composition_tortuosity_by_hand():
    # m = (0.6 * 1.5 + 0.1 * 8.5583) / 0.7 = 2.508329; tau = 0.3^(1 - m) = 6.147138
    assert tortuosity_composition(0.3, 0.6, 0.05, 0.05, 1.5, 8.5583) == pytest.approx(6.147138, rel=1e-6)


def test_composition_tortuosity_is_bruggeman_without_carbon_binder_matrix():
    eps = np.linspace(0.2, 0.5, 7)
    np.testing.assert_allclose(tortuosity_composition(eps, 1 - eps, 0.0, 0.0), tortuosity_bruggeman(eps),
                               rtol=1e-12)


def test_composition_tortuosity_depends_on_the_solid_fractions_not_only_porosity():
    eps = 0.3
    more_binder = tortuosity_composition(eps, 0.55, 0.05, 0.10)
    less_binder = tortuosity_composition(eps, 0.65, 0.03, 0.02)
    assert more_binder > less_binder > tortuosity_bruggeman(eps)
    # and with the solid composition fixed it falls with porosity
    taus = [tortuosity_composition(e, 0.85 * (1 - e), 0.075 * (1 - e), 0.075 * (1 - e)) for e in (0.2, 0.3, 0.4)]
    assert taus[0] > taus[1] > taus[2]


def test_conductivities_by_hand():
    # 0.0309 * 0.6^1.5 + 760 * 0.1^1.5
    assert conductivity_bruggeman(0.6, 0.05, 0.05, 0.0309, 760.0) == pytest.approx(24.047671, rel=1e-6)
    # 0.0309 * 0.6^1.5 + 760 * ((0.1 - 0.02) / 0.98)^2
    assert conductivity_percolation(0.6, 0.05, 0.05, 0.0309, 760.0, 0.02, 2.0) == pytest.approx(5.078917, rel=1e-6)
    # below the percolation threshold only the active material conducts
    assert conductivity_percolation(0.6, 0.005, 0.005, 0.0309, 760.0, 0.02) == pytest.approx(0.0309 * 0.6**1.5)


def test_active_surface_area_of_spheres_by_hand():
    assert active_surface_area(0.584, 5.5) == pytest.approx(3 * 0.584 / 5.5e-6)  # 3.185e5 1/m
    assert active_surface_area(0.584, 5.5) == pytest.approx(318545.45, rel=1e-7)


def test_effective_parameters_models_and_transport_efficiency():
    s = coating_structure(0.94, 0.03, 0.03, 14.3, 2.95, 4.75, 1.80, 1.70)
    args = (s["eps_cal"], s["phi_am"], s["phi_ca"], s["phi_pb"], 5.5, 0.0309, 760.0)
    b = effective_parameters(*args, model="bruggeman")
    c = effective_parameters(*args, model="composition")
    assert b["tau_eff"] == pytest.approx(s["eps_cal"] ** -0.5)
    assert c["tau_eff"] > 3 * b["tau_eff"]
    for r in (b, c):
        assert r["transport_efficiency"] == pytest.approx(s["eps_cal"] / r["tau_eff"])
        assert r["a_s"] == pytest.approx(3 * s["phi_am"] / 5.5e-6)
    with pytest.raises(ValueError, match="bruggeman, composition"):
        effective_parameters(*args, model="voxel")
    assert STRUCTURE_MODELS == ("bruggeman", "composition")


def test_anchored_exponent_reproduces_table_a2_tortuosity():
    s = coating_structure(0.94, 0.03, 0.03, 14.3, 2.95, 4.75, 1.80, 1.70)
    m = cbm_exponent_for_tortuosity(5.9449, s["eps_cal"], s["phi_am"], s["phi_ca"], s["phi_pb"])
    assert m == pytest.approx(8.5583, abs=5e-4)
    tau = tortuosity_composition(s["eps_cal"], s["phi_am"], s["phi_ca"], s["phi_pb"], 1.5, m)
    assert tau == pytest.approx(5.9449, rel=1e-10)
    with pytest.raises(ValueError, match="eps_cal"):
        cbm_exponent_for_tortuosity(5.9, 1.2, 0.5, 0.05, 0.05)


def test_shipped_structure_parameters_reproduce_table_a2():
    from twin.cell import load_cell_config, structure_parameters

    cfg = load_cell_config()
    sp = structure_parameters(cfg)
    assert sp.model == "composition"
    assert (sp.kappa_am, sp.kappa_cbm) == (cfg.a2("cathode", "kappa_am"), cfg.a2("cathode", "kappa_cbm"))
    s = coating_structure(0.94, 0.03, 0.03, 14.3, 2.95, 4.75, 1.80, 1.70)
    assert s["eps_cal"] == pytest.approx(cfg.a2("cathode", "porosity"), abs=5e-4)
    tau = tortuosity_composition(s["eps_cal"], s["phi_am"], s["phi_ca"], s["phi_pb"], sp.exponent_am,
                                 sp.exponent_cbm)
    assert tau == pytest.approx(cfg.a2("cathode", "tortuosity"), rel=1e-4)
    assert not math.isnan(tau)
