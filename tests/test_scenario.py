"""Scenario files: the documented format works for other formulations and settings; malformed files are
rejected with a message naming the entry."""

import numpy as np
import pytest

from models.uncertainty import Constant, KernelDensity, Normal, Uniform
from twin.montecarlo import run
from twin.scenario import ScenarioError, load_scenario

HEADER = 'extends = "paper_use_case"\n'


def write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_default_scenario_is_the_paper_use_case(paper_scenario):
    assert paper_scenario.name == "paper_use_case"
    assert paper_scenario.marginals["w_am"] == Normal(0.94, 0.0094)
    assert paper_scenario.marginals["rho_am"] == Constant(4.75)
    assert "eps_dry" in paper_scenario.metamodel_paths


def test_units_are_converted_at_the_boundary(tmp_path):
    p = write(tmp_path, HEADER + """
[inputs]
flow_rate = { nominal = 11.6, unit = "mL/min", dist = "normal", std = 0.116 }
coating_width = { nominal = 12.5, unit = "cm" }
line_load = { dist = "uniform", low = 80.0, high = 88.0, unit = "kN/m" }
""")
    sc = load_scenario(p)
    assert sc.marginals["flow_rate"].nominal == pytest.approx(696.0)
    assert sc.marginals["flow_rate"].std == pytest.approx(6.96)
    assert sc.marginals["coating_width"] == Constant(pytest.approx(125.0))
    assert sc.marginals["line_load"] == Uniform(80.0, 88.0)  # kN/m == N/mm


def test_other_formulation_and_process_settings_work(tmp_path):
    """A graphite-free high-nickel recipe with more binder, thicker coating, other calender settings."""
    p = write(tmp_path, """
name = "high loading, 96/2/2"
[inputs]
w_am = { nominal = 0.96, rel_std = 0.005 }
w_ca = { nominal = 0.02, rel_std = 0.01 }
w_pb = { nominal = 0.02, rel_std = 0.01 }
x_solids = { nominal = 0.72, dist = "truncnormal", std = 0.01, low = 0.70, high = 0.74 }
rho_am = 4.8
rho_ca = 1.9
rho_pb = 1.78
rho_solvent = 1.03
flow_rate = { nominal = 1500.0, rel_std = 0.01 }
web_speed = 1.5
coating_width = 150.0
line_load = { dist = "uniform", low = 200.0, high = 220.0 }
eps_min = 0.15
gamma_c = 180.0
[metamodels]
eps_dry = "%s"
""" % str(load_scenario().metamodel_paths["eps_dry"]))
    sc = load_scenario(p)
    out = run(sc, 5000, seed=1)
    assert out["m_dry"].mean() == pytest.approx(
        0.72 * 0.1 * out["rho_slurry"].mean() * 1e4 / 600 * 1500 / (1.5 * 150), rel=2e-3)
    assert np.all(out["gamma_c"] == 180.0)  # given: overrides the loading model
    assert 0.15 < out["eps_cal"].min() and out["eps_cal"].max() < out["eps_dry"].max()


def test_kernel_density_from_a_data_file(tmp_path):
    data = tmp_path / "xs.csv"
    data.write_text("# solids content of 40 slurry batches, measured\nbatch,x_solids\n" +
                    "".join(f"{i},{0.7 + 0.005 * np.sin(i)}\n" for i in range(40)))
    p = write(tmp_path, HEADER + '[inputs]\nx_solids = { dist = "kde", data_file = "xs.csv" }\n')
    m = load_scenario(p).marginals["x_solids"]
    assert isinstance(m, KernelDensity) and m.nominal == pytest.approx(0.7, abs=1e-3)


def test_correlation_cell_to_cell_and_drift_sections(tmp_path):
    p = write(tmp_path, HEADER + """
[inputs]
[correlation]
names = ["w_am", "x_solids"]
matrix = [[1.0, 0.5], [0.5, 1.0]]
[cell_to_cell]
flow_rate = { rel_std = 0.005 }
[drift]
gamma_c_intercept = { kind = "exponential", delta = -4.0, tau = 1800 }
""")
    sc = load_scenario(p)
    assert sc.correlation.kind == "spearman"
    assert sc.shifts["flow_rate"].sd == pytest.approx(3.48)
    a = run(sc, 2000, seed=0, segment=3, t_s=0.0)
    b = run(sc, 2000, seed=0, segment=3, t_s=7200.0)
    assert b["gamma_c"].mean() == pytest.approx(a["gamma_c"].mean() - 4.0 * (1 - np.exp(-4)), rel=1e-6)


@pytest.mark.parametrize("body, message", [
    ('[inputs]\nw_amm = 0.94\n', r"\[inputs\] 'w_amm' is not a canonical quantity; did you mean w_am"),
    ('[inputs]\nh_wet = { nominal = 90, unit = "kg" }\n',
     r"\[inputs\] h_wet: h_wet given in 'kg', which cannot be converted to its canonical unit 'um'"),
    ('[inputs]\nflow_rate = { nominal = 696, dist = "normal", std = -7 }\n',
     r"inputs\.flow_rate.*std: Input should be greater than or equal to 0 \(got -7"),
    ('[inputs]\nw_pb = 0.02\n', r"mass fractions must sum to 1: w_am 0.94 \+ w_ca 0.03 \+ w_pb 0.02 = 0.99"),
    ('[inputs]\nx_solids = 1.3\n', r"\[inputs\] x_solids: nominal: x_solids = 1.3 - is outside its physical range"),
    ('[inputs]\nline_load = { nominal = 84, dist = "normal" }\n', r"line_load.*needs std or rel_std"),
    ('[inputs]\nline_load = { nominal = 84, dist = "gamma", std = 1 }\n', r"line_load.*dist.*Input should be"),
    ('[inputs]\nline_load = { dist = "uniform", low = 90, high = 80 }\n', r"low = 90.0 must be below high = 80.0"),
    ('[inputs]\nline_load = { nominal = 84, rel_stdd = 0.01 }\n', r"line_load.*rel_stdd.*Extra inputs"),
    ('[inputs]\n[correlation]\nnames = ["w_am", "rho_am"]\nmatrix = [[1, 0.5], [0.5, 1]]\n',
     r"\[correlation\] names 'rho_am', which is a constant"),
    ('[inputs]\n[bounds]\nline_load = [100, 50]\n', r"\[bounds\] line_load: low 100.0 must be below high 50.0"),
    ('[inputs]\n[metamodels]\neps_dry = "nope.json"\n', r"\[metamodels\] eps_dry: file .*nope.json.* does not exist"),
    ('[inputs\nw_am = 1\n', r"not valid TOML"),
    ('[inputs]\n[drift]\nline_load = { kind = "sine" }\n', r"drift\.line_load\.kind"),
])
def test_malformed_scenarios_name_the_entry(tmp_path, body, message):
    p = write(tmp_path, HEADER + body)
    with pytest.raises(ScenarioError, match=message) as err:
        load_scenario(p)
    assert str(p) in str(err.value)


def test_missing_scenario_lists_shipped_ones():
    with pytest.raises(FileNotFoundError, match="shipped: .*paper_use_case"):
        load_scenario("no_such_scenario")


def test_extends_cycle_is_reported(tmp_path):
    write(tmp_path, 'extends = "b.toml"\n[inputs]\n', "a.toml")
    write(tmp_path, 'extends = "a.toml"\n[inputs]\n', "b.toml")
    with pytest.raises(ScenarioError, match="extends itself"):
        load_scenario(tmp_path / "a.toml")


def test_with_nominal_keeps_relative_spread(paper_scenario):
    moved = paper_scenario.with_nominal({"flow_rate": 800.0, "line_load": 90.0})
    assert moved.marginals["flow_rate"] == Normal(800.0, 8.0)
    assert moved.marginals["line_load"] == Normal(90.0, pytest.approx(0.9))
