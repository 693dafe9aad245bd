"""Robust setpoints: analytic optima, the paper's chain and cell, independent Monte Carlo verification."""

from __future__ import annotations

import numpy as np
import pytest

from models.robust import robust_setpoints
from models.tolerance import Limit
from models.uncertainty import Constant, Normal
from twin.analysis import AnalysisInputError, optimize_setpoints
from twin.spec import spec_from_dict


def shifted(base):
    def marginals_at(sp):
        out = dict(base)
        for k, v in sp.items():
            out[k] = out[k].shifted(v - out[k].nominal)
        return out

    return marginals_at


def test_probability_objective_centres_a_symmetric_output_in_its_window():
    """y = s + noise: the share in [1, 2] is highest with the mean in the middle, whatever the start."""
    base = {"s": Normal(1.2, 0.15)}
    res = robust_setpoints(lambda v: {"y": v["s"]}, shifted(base), ["s"], {"s": (0.0, 3.0)}, [Limit("y", 1.0, 2.0)],
                           start={"s": 1.2}, n=20000, seed=1, compare={"start": {"s": 1.2}})
    assert res["setpoints"]["s"] == pytest.approx(1.5, abs=0.02)
    assert res["verification"]["robust"]["share_in_spec"] > res["verification"]["start"]["share_in_spec"] + 0.05
    from scipy.special import ndtr

    assert res["verification"]["robust"]["share_in_spec"] == pytest.approx(2 * ndtr(0.5 / 0.15) - 1, abs=0.003)


def test_probability_objective_uses_skewness():
    """y = exp(s + noise) with y <= 3 and y >= 1: the optimum sits below the centre of the log-window... in y
    terms the best s is the centre of [ln 1, ln 3], not ln of the centre of [1, 3]."""
    base = {"s": Normal(0.0, 0.2)}
    res = robust_setpoints(lambda v: {"y": np.exp(v["s"])}, shifted(base), ["s"], {"s": (-1.0, 2.0)},
                           [Limit("y", 1.0, 3.0)], start={"s": float(np.log(2.0))}, n=20000, seed=2,
                           compare={"nominal centre": {"s": float(np.log(2.0))}})
    assert res["setpoints"]["s"] == pytest.approx(np.log(3.0) / 2, abs=0.02)
    assert (res["verification"]["robust"]["share_in_spec"]
            > res["verification"]["nominal centre"]["share_in_spec"] + 0.01)


def test_variance_objective_moves_to_the_flat_side_at_the_target_mean():
    """out = p^2 + q with p, q scattering by 0.1: std(out) ~ sqrt(4 p^2 + 1) * 0.1 is smallest at the lowest p;
    the mean p^2 + 0.01 + q must stay 5, so q = 5 - p^2 - 0.01."""
    base = {"p": Normal(2.0, 0.1), "q": Normal(1.0, 0.1)}
    res = robust_setpoints(lambda v: {"out": v["p"] ** 2 + v["q"]}, shifted(base), ["p", "q"],
                           {"p": (0.5, 3.0), "q": (0.0, 6.0)}, [Limit("out", 4.0, 6.0)], start={"p": 2.0, "q": 1.0},
                           objective="variance", targets={"out": 5.0}, minimize="out", n=20000, seed=3)
    assert res["setpoints"]["p"] == pytest.approx(0.5, abs=1e-3)
    assert res["setpoints"]["q"] == pytest.approx(5.0 - 0.25 - 0.01, abs=0.01)
    assert res["mean"]["out"] == pytest.approx(5.0, abs=1e-6)
    assert "p" in res["at_bound"]


def test_bad_arguments_are_named():
    base = {"s": Normal(1.0, 0.1), "c": Constant(2.0)}
    m = shifted(base)
    with pytest.raises(ValueError, match=r"start s = 5 is outside its bounds \[0, 3\]"):
        robust_setpoints(lambda v: {"y": v["s"]}, m, ["s"], {"s": (0.0, 3.0)}, [Limit("y", 0, 2)], {"s": 5.0})
    with pytest.raises(ValueError, match="free setpoint s has no bounds"):
        robust_setpoints(lambda v: {"y": v["s"]}, m, ["s"], {}, [Limit("y", 0, 2)], {"s": 1.0})
    with pytest.raises(ValueError, match="objective 'variance' needs the output to minimize"):
        robust_setpoints(lambda v: {"y": v["s"]}, m, ["s"], {"s": (0.0, 3.0)}, [Limit("y", 0, 2)], {"s": 1.0},
                         objective="variance", targets={"y": 1.0})
    with pytest.raises(KeyError, match="does not compute 'z'"):
        robust_setpoints(lambda v: {"y": v["s"]}, m, ["s"], {"s": (0.0, 3.0)}, [Limit("z", 0, 2)], {"s": 1.0})
    with pytest.raises(ValueError, match=r"target means not reachable.*mean y"):
        robust_setpoints(lambda v: {"y": v["s"]}, m, ["s"], {"s": (0.0, 3.0)}, [Limit("y", 0, 9)], {"s": 1.0},
                         objective="variance", targets={"y": 7.0}, minimize="y", n=2000)


CHAIN_SPEC = {
    "name": "chain, asymmetric",
    "limits": {"m_dry": {"low": 13.9, "high": 15.3}, "rho_cal": {"low": 2.90, "high": 3.02}},
    "optimize": {"free": ["flow_rate", "line_load"], "bounds": {"flow_rate": [600.0, 800.0],
                                                               "line_load": [40.0, 200.0]},
                 "targets": {"m_dry": 14.3, "rho_cal": 2.95}, "samples": 10000},
}


def test_paper_chain_robust_setpoints_beat_the_nominal_inverse_solution(paper_scenario):
    spec = spec_from_dict(CHAIN_SPEC)
    res = optimize_setpoints(spec, paper_scenario, seed=5)
    inv = res["inverse"]
    assert inv["achieved"]["m_dry"] == pytest.approx(14.3, rel=1e-5)
    ver = res["verification"]
    # verified by an independent Monte Carlo: the robust point is better than the nominal design
    assert ver["robust"]["share_in_spec"] > ver["nominal_inverse"]["share_in_spec"] + 0.02
    lo, hi = ver["robust"]["ci"]
    assert lo <= res["share_in_spec"] + 0.005 and res["share_in_spec"] - 0.005 <= hi  # the claimed share holds
    # the window for m_dry is off-centre upwards: the robust point coats more
    assert res["setpoints"]["flow_rate"] > inv["setpoints"]["flow_rate"]
    assert res["mean"]["m_dry"] == pytest.approx(14.6, abs=0.1)


def test_paper_variance_objective_keeps_the_means(paper_scenario):
    doc = {**CHAIN_SPEC, "optimize": {**CHAIN_SPEC["optimize"], "objective": "variance", "minimize": "rho_cal",
                                      "free": ["flow_rate", "line_load", "x_solids"],
                                      "bounds": {"flow_rate": [600.0, 800.0], "line_load": [40.0, 200.0],
                                                 "x_solids": [0.65, 0.75]}}}
    res = optimize_setpoints(spec_from_dict(doc), paper_scenario, seed=6)
    assert res["mean"]["m_dry"] == pytest.approx(14.3, rel=1e-5)
    assert res["mean"]["rho_cal"] == pytest.approx(2.95, rel=1e-5)
    nominal = res["compared"]["nominal_inverse"]
    assert res["std"]["rho_cal"] <= nominal["std"]["rho_cal"] * (1 + 1e-3)


def test_paper_spec_with_cell_outputs(paper_scenario):
    from twin.sensitivity import load_cell
    from twin.spec import load_spec

    cell = load_cell("auto", design_policy="nan")
    if cell is None:
        pytest.skip("no cell surrogate installed")
    spec = load_spec("paper_use_case")
    res = optimize_setpoints(spec, paper_scenario, cell=cell, n=6000, seed=7)
    ver = res["verification"]
    assert ver["robust"]["share_in_spec"] > ver["nominal_inverse"]["share_in_spec"]
    assert ver["robust"]["share_in_spec"] >= ver["scenario_nominal"]["share_in_spec"] - 0.01


def test_setpoints_must_be_inputs_within_bounds(paper_scenario):
    bad = {**CHAIN_SPEC, "optimize": {**CHAIN_SPEC["optimize"], "free": ["h_cal"], "bounds": {}}}
    with pytest.raises(AnalysisInputError, match="free setpoint h_cal is not an input"):
        optimize_setpoints(spec_from_dict(bad), paper_scenario)
    bad = {**CHAIN_SPEC, "optimize": {**CHAIN_SPEC["optimize"], "bounds": {"flow_rate": [100.0, 200.0]}}}
    with pytest.raises(AnalysisInputError, match=r"bounds flow_rate = \[100, 200\] do not contain .* 696"):
        optimize_setpoints(spec_from_dict(bad), paper_scenario)
