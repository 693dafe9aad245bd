"""Command-line contracts: twin sensitivity / tolerances / optimize --json print one JSON document; Sankey files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from models.sensitivity import sankey_flows
from twin.sankey import write_sankey


def twin(*args):
    out = subprocess.run([sys.executable, "-m", "twin.cli", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="module")
def sensitivity_json(tmp_path_factory):
    html = tmp_path_factory.mktemp("sankey") / "sens.html"
    out = twin("sensitivity", "--json", "--samples", "3000", "--boot", "20", "--seed", "2", "--sankey", str(html))
    return json.loads(out.stdout), html


def test_sensitivity_json_contract(sensitivity_json):
    doc, _ = sensitivity_json
    assert doc["samples"] == 3000 and doc["seed"] == 2
    chain = doc["chain"]
    for out in chain["outputs"]:
        for inp in chain["inputs"]:
            e = chain["indices"][out][inp]
            assert {"S", "S_U", "S_C", "S1", "ST", "ci"} <= set(e)
            assert e["S"] == pytest.approx(e["S_U"] + e["S_C"], abs=1e-12)
            lo, hi = e["ci"]["S"]
            assert lo <= e["S"] <= hi
    if doc["cell"] is None:
        pytest.skip("no cell surrogate installed")
    cell = doc["cell"]
    assert cell["inputs"] == ["w_am", "w_ca", "m_dry", "rho_cal"]
    assert set(cell["outputs"]) == {"capacity", "energy_density"}
    for out in cell["outputs"]:
        for inp in cell["inputs"]:
            assert {"S", "S_U", "S_C"} <= set(cell["indices"][out][inp])
    assert "independent" in cell


def test_sankey_files_are_written(sensitivity_json):
    doc, html = sensitivity_json
    if doc["cell"] is None:
        pytest.skip("no cell surrogate installed")
    assert doc["sankey_files"]["html"] == str(html)
    text = html.read_text()
    assert '"type":"sankey"' in text and "do not balance" in text
    assert "<script src=" not in text.replace("<script src=\"data:", "")  # plotly embedded: opens offline
    png = html.with_suffix(".png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_sankey_png_needs_no_browser(tmp_path):
    chain = {"inputs": ["w_am", "x_solids"], "outputs": ["m_dry", "rho_cal"],
             "indices": {"m_dry": {"w_am": {"S": 0.01}, "x_solids": {"S": 0.6}},
                         "rho_cal": {"w_am": {"S": 0.9}, "x_solids": {"S": 0.05}}}}
    cell = {"inputs": ["w_am", "m_dry", "rho_cal"], "outputs": ["capacity", "energy_density"],
            "indices": {"capacity": {"w_am": {"S": 0.1}, "m_dry": {"S": 0.9}, "rho_cal": {"S": 0.0}},
                        "energy_density": {"w_am": {"S": 2.3}, "m_dry": {"S": -0.1}, "rho_cal": {"S": -1.2}}}}
    html, png = write_sankey(sankey_flows(chain, cell), tmp_path / "s.html")
    assert png.stat().st_size > 20_000 and html.stat().st_size > 1_000_000


def test_sensitivity_without_cell_and_bad_arguments():
    out = twin("sensitivity", "--json", "--samples", "2000", "--boot", "0", "--cell", "off")
    doc = json.loads(out.stdout)
    assert doc["cell"] is None and doc["sankey"] is None
    assert "ci" not in doc["chain"]["indices"]["m_dry"]["x_solids"]
    bad = subprocess.run([sys.executable, "-m", "twin.cli", "sensitivity", "--samples", "10", "--json"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--samples 10 is too few" in bad.stderr and bad.stdout == ""
    bad = subprocess.run([sys.executable, "-m", "twin.cli", "sensitivity", "--cell", "off", "--sankey", "x.html"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--sankey needs the cell model" in bad.stderr


CHAIN_SPEC = """
name = "cli chain spec"
target_share = 0.99
[limits]
m_dry = { nominal = 14.3, rel_tol = 0.06 }
rho_cal = { nominal = 2.95, rel_tol = 0.02 }
[tolerances]
samples = 5000
[optimize]
free = ["flow_rate", "line_load"]
bounds = { flow_rate = [600.0, 800.0], line_load = [40.0, 200.0] }
targets = { m_dry = 14.3, rho_cal = 2.95 }
samples = 5000
"""


def test_tolerances_and_optimize_json(tmp_path):
    f = tmp_path / "spec.toml"
    f.write_text(CHAIN_SPEC)
    tol = json.loads(twin("tolerances", "--spec", str(f), "--json").stdout)
    assert set(tol["tolerances"]) == {"w_am", "w_ca", "w_pb", "x_solids", "flow_rate", "web_speed",
                                      "coating_width", "line_load"}
    assert tol["binding"] in tol["tolerances"] and tol["verification"]["meets_target"]
    opt = json.loads(twin("optimize", "--spec", str(f), "--json").stdout)
    assert set(opt["setpoints"]) == {"flow_rate", "line_load"}
    assert {"robust", "nominal_inverse", "scenario_nominal"} == set(opt["verification"])
    assert opt["inverse"]["setpoints"]["line_load"] < 84.0
