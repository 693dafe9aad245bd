"""Product-oriented workflow: setpoints for structural targets, round trip through the chain, unreachable
targets explained."""

import json
import subprocess
import sys

import pytest

from models.inverse import TargetUnreachable, solve_setpoints
from twin.montecarlo import chain_for, run


def twin(*args):
    return subprocess.run([sys.executable, "-m", "twin.cli", *args], capture_output=True, text=True)


def test_paper_targets_give_the_paper_setpoints():
    out = twin("inverse", "--target", "m_dry=14.3", "--target", "rho_cal=2.95", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["setpoints"]["flow_rate"] == pytest.approx(696, rel=0.005)  # paper: 696 cm3/h
    assert 78 <= doc["setpoints"]["line_load"] <= 90                        # paper: 84 N/mm
    assert doc["achieved"] == pytest.approx({"m_dry": 14.3, "rho_cal": 2.95}, rel=1e-6)


def test_round_trip_chain_at_the_found_setpoints_hits_the_targets(paper_scenario):
    inv = json.loads(twin("inverse", "--target", "m_dry=14.3", "--target", "rho_cal=2.95", "--json").stdout)
    tuned = paper_scenario.with_nominal(inv["setpoints"])
    nominal = chain_for(tuned).evaluate(tuned.nominal())
    assert nominal["m_dry"] == pytest.approx(14.3, rel=1e-6)
    assert nominal["rho_cal"] == pytest.approx(2.95, rel=1e-6)
    mc = run(tuned, 100_000, seed=2)  # the Monte Carlo mean sits within its nonlinearity bias
    assert mc["m_dry"].mean() == pytest.approx(14.3, rel=2e-3)
    assert mc["rho_cal"].mean() == pytest.approx(2.95, rel=2e-3)


@pytest.mark.parametrize("m_dry, rho_cal", [(10.0, 2.8), (20.0, 3.1), (14.3, 2.5)])
def test_round_trip_over_a_range_of_targets(paper_scenario, m_dry, rho_cal):
    chain = chain_for(paper_scenario)
    free = ["flow_rate", "line_load"]
    res = solve_setpoints(chain, paper_scenario.nominal(), {"m_dry": m_dry, "rho_cal": rho_cal}, free,
                          {f: paper_scenario.bounds_for(f) for f in free})
    again = chain.evaluate({**paper_scenario.nominal(), **res.setpoints})
    assert again["m_dry"] == pytest.approx(m_dry, rel=1e-6)
    assert again["rho_cal"] == pytest.approx(rho_cal, rel=1e-6)


def test_unreachable_density_names_target_and_bound():
    # rho_cal above rho_solids * (1 - eps_min) = 4.31 * 0.824 = 3.55 cannot be reached by any line load
    out = twin("inverse", "--target", "m_dry=14.3", "--target", "rho_cal=3.8", "--json")
    assert out.returncode == 2
    assert out.stdout == ""
    assert "rho_cal = " in out.stderr and "instead of 3.8" in out.stderr
    assert "line_load = 1000 in [0, 1000]" in out.stderr


def test_more_free_setpoints_than_targets_stays_near_nominal(paper_scenario):
    chain = chain_for(paper_scenario)
    free = ["flow_rate", "web_speed", "line_load"]
    res = solve_setpoints(chain, paper_scenario.nominal(), {"m_dry": 15.0}, free,
                          {f: paper_scenario.bounds_for(f) for f in free})
    assert chain.evaluate({**paper_scenario.nominal(), **res.setpoints})["m_dry"] == pytest.approx(15.0, rel=1e-6)
    assert res.setpoints["line_load"] == pytest.approx(84.0, rel=1e-3)  # irrelevant to m_dry: left alone


def test_too_few_free_setpoints(paper_scenario):
    chain = chain_for(paper_scenario)
    with pytest.raises(TargetUnreachable, match="1 free setpoint\\(s\\) for 2 target\\(s\\)"):
        solve_setpoints(chain, paper_scenario.nominal(), {"m_dry": 15.0, "rho_cal": 3.0}, ["flow_rate"],
                        {"flow_rate": (100, 3000)})


@pytest.mark.parametrize("args, message", [
    (["--target", "m_drry=14"], "'m_drry' is not a canonical quantity; did you mean m_dry"),
    (["--target", "m_dry"], "is not NAME=VALUE"),
    (["--target", "m_dry=abc"], "'abc' is not a number"),
    (["--target", "eps_cal=1.5"], "eps_cal = 1.5 - is outside its physical range"),
    (["--target", "m_dry=14", "--free", "rho_am", "--free", "w_amm"], "did you mean w_am"),
])
def test_bad_arguments_are_named(args, message):
    out = twin("inverse", *args, "--json")
    assert out.returncode == 2 and message in out.stderr and out.stdout == ""
