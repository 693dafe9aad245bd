"""The process chain as a DAG of steps: assembly by names, overrides, errors, extension, and physical
properties that must hold for any input (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models
from models.chain import ChainError, ProcessChain, Step, step

BASE = dict(w_am=0.94, w_ca=0.03, w_pb=0.03, x_solids=0.7, rho_am=4.75, rho_ca=1.8, rho_pb=1.7, rho_solvent=1.03,
            flow_rate=696.0, web_speed=1.0, coating_width=125.0, line_load=84.0, eps_min=0.176,
            gamma_c_intercept=18.45, gamma_c_per_loading=7.7308, eps_dry=0.439)


@pytest.fixture(scope="module")
def chain():
    return models.build_chain()


def test_registered_steps_cover_the_cathode_chain(chain):
    for out in ("rho_solids", "rho_slurry", "h_wet", "m_wet", "m_dry", "h_dry", "rho_dry", "gamma_c", "eps_cal",
                "h_cal", "rho_cal", "phi_am", "phi_ca", "phi_pb"):
        assert chain.producer(out) is not None, out
    assert chain.producer("eps_dry") is None  # comes from a meta-model or the scenario


def test_plan_orders_steps_by_dependency(chain):
    order = [s.name for s in chain.plan(BASE)]
    assert order.index("solids_density") < order.index("slurry_density") < order.index("wet_mass_loading")
    assert order.index("dry_mass_loading") < order.index("compaction_resistance") < order.index(
        "calendered_porosity")


def test_missing_input_is_named_with_the_step_that_needs_it(chain):
    inputs = dict(BASE)
    del inputs["line_load"]
    with pytest.raises(ChainError, match=r"line_load \(needed by calendered_porosity \(eps_cal\)\)"):
        chain.evaluate(inputs)


def test_given_value_overrides_its_model(chain):
    out = chain.evaluate({**BASE, "gamma_c": 200.0})
    assert out["gamma_c"] == 200.0
    assert "compaction_resistance" not in [s.name for s in chain.plan({**BASE, "gamma_c": 200.0})]
    # and the override propagates: a stiffer electrode keeps more porosity
    assert out["eps_cal"] > chain.evaluate(BASE)["eps_cal"]


def test_two_producers_are_rejected():
    def a(x_solids):
        return x_solids

    with pytest.raises(ChainError, match="m_dry is produced by two steps"):
        ProcessChain([models.drying.dry_mass_loading.step, Step.from_callable(a, "drying", ["x_solids"], "m_dry")])


def test_adding_a_step_is_one_function():
    registry = []

    @step("slitting", outputs="h_cal", registry=registry)  # a toy post-process for the test: 2 % springback
    def springback_thickness(h_dry):
        return 0.98 * h_dry

    c = ProcessChain([models.drying.dry_mass_loading.step, models.drying.dry_thickness.step, *registry])
    out = c.evaluate(dict(m_wet=20.0, x_solids=0.7, rho_solids=4.3, eps_dry=0.44))
    assert out["h_cal"] == pytest.approx(0.98 * 10 * 14.0 / (4.3 * 0.56))
    assert springback_thickness(100.0) == pytest.approx(98.0)  # still a plain function


def test_metamodel_becomes_a_step(paper_scenario):
    from twin.montecarlo import chain_for

    c = chain_for(paper_scenario)
    assert c.producer("eps_dry").name == "eps_dry_metamodel"
    inputs = {k: v for k, v in BASE.items() if k != "eps_dry"}
    assert c.evaluate(inputs)["eps_dry"] == pytest.approx(0.439, abs=0.002)


def test_chunked_threaded_evaluation_equals_plain(chain):
    rng = np.random.default_rng(1)
    n = 10_000
    inputs = dict(BASE)
    inputs["flow_rate"] = rng.normal(696, 7, n)
    inputs["line_load"] = rng.normal(84, 0.84, n)
    plain = chain.evaluate(inputs)
    chunked = chain.evaluate_chunked(inputs, n, chunk=1024, threads=2)
    for k in ("h_cal", "rho_cal", "phi_am"):
        np.testing.assert_allclose(chunked[k], plain[k], rtol=0, atol=0)
    assert chunked["rho_am"].shape == (n,)


fraction = st.floats(0.01, 0.98)


@settings(max_examples=200, deadline=None)
@given(w_am=st.floats(0.5, 0.98), w_ca=st.floats(0.005, 0.25), x=st.floats(0.3, 0.9),
       flow=st.floats(50, 5000), speed=st.floats(0.1, 50), width=st.floats(10, 1500),
       q=st.floats(0, 2000), eps_dry=st.floats(0.3, 0.7), eps_min=st.floats(0.05, 0.29),
       rho_am=st.floats(2.0, 6.0))
def test_physical_invariants_hold_for_any_input(chain, w_am, w_ca, x, flow, speed, width, q, eps_dry, eps_min,
                                                 rho_am):
    w_pb = 1.0 - w_am - w_ca
    if w_pb <= 0.001:
        return
    out = chain.evaluate({**BASE, "w_am": w_am, "w_ca": w_ca, "w_pb": w_pb, "x_solids": x, "flow_rate": flow,
                          "web_speed": speed, "coating_width": width, "line_load": q, "eps_dry": eps_dry,
                          "eps_min": eps_min, "rho_am": rho_am})
    # mass balance: the solids survive drying and calendering unchanged
    assert out["m_dry"] == pytest.approx(x * out["m_wet"], rel=1e-12)
    assert out["rho_cal"] * out["h_cal"] == pytest.approx(out["m_dry"] * 10, rel=1e-9)
    # volume fractions of solids and pores add up to the whole coating
    assert out["phi_am"] + out["phi_ca"] + out["phi_pb"] == pytest.approx(1.0 - out["eps_cal"], rel=1e-12)
    # calendering compacts, never expands, and never passes the minimal porosity
    assert eps_min - 1e-12 <= out["eps_cal"] <= eps_dry + 1e-12
    assert out["h_cal"] <= out["h_dry"] * (1 + 1e-12)
    # densities lie between solvent and solids
    assert 1.03 <= out["rho_slurry"] <= out["rho_solids"]


@settings(max_examples=100, deadline=None)
@given(q1=st.floats(0, 1500), dq=st.floats(0.01, 500), eps_dry=st.floats(0.2, 0.7))
def test_monotone_in_line_load(chain, q1, dq, eps_dry):
    lo = chain.evaluate({**BASE, "line_load": q1, "eps_dry": eps_dry})
    hi = chain.evaluate({**BASE, "line_load": q1 + dq, "eps_dry": eps_dry})
    assert hi["eps_cal"] <= lo["eps_cal"]
    assert hi["rho_cal"] >= lo["rho_cal"]
    assert hi["h_cal"] <= lo["h_cal"]
