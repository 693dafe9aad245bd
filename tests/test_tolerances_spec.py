"""The specification file format (twin/spec.py): valid files load, bad ones name the entry, value and limit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from twin.spec import SpecFileError, load_spec, spec_from_dict


def spec(**over):
    doc = {"limits": {"m_dry": {"low": 13.0, "high": 15.0}}}
    doc.update(over)
    return doc


def test_shipped_example_loads():
    s = load_spec("paper_use_case")
    lim = {l.name: l for l in s.limits}
    assert s.target_share == 0.99 and s.scenario == "paper_use_case"
    assert lim["capacity"].low == 2.30 and lim["capacity"].high is None
    assert lim["rho_cal"].low == pytest.approx(2.95 * 0.98) and lim["rho_cal"].high == pytest.approx(2.95 * 1.02)
    assert s.tolerances.kind == "rel_std" and s.tolerances.allocation == "balanced"
    assert s.optimize.free == ("flow_rate", "line_load") and s.optimize.targets == {"m_dry": 14.3, "rho_cal": 2.95}
    assert json.loads(json.dumps(s.to_dict()))["limits"]["capacity"]["unit"] == "mAh/cm2"


def test_limit_forms_and_units():
    s = spec_from_dict({"limits": {"h_cal": {"low": 0.046, "high": 0.051, "unit": "mm"},
                                   "rho_cal": {"nominal": 2.95, "tol": 0.05},
                                   "m_dry": {"nominal": 14.0, "rel_tol": 0.1}}})
    lim = {l.name: l for l in s.limits}
    assert (lim["h_cal"].low, lim["h_cal"].high) == pytest.approx((46.0, 51.0))
    assert (lim["rho_cal"].low, lim["rho_cal"].high) == pytest.approx((2.90, 3.00))
    assert (lim["m_dry"].low, lim["m_dry"].high) == pytest.approx((12.6, 15.4))


@pytest.mark.parametrize("doc, message", [
    ({"limits": {"m_dyr": {"low": 1.0}}}, r"\[limits\] 'm_dyr' is not a canonical quantity; did you mean m_dry"),
    ({"limits": {"m_dry": {"low": 15.0, "high": 14.0}}}, r"\[limits\] m_dry: low = 15 must be below high = 14"),
    ({"limits": {"m_dry": {"rel_tol": 0.1}}}, r"limits.m_dry: tol / rel_tol need a nominal value"),
    ({"limits": {"m_dry": {"nominal": 14.0}}}, r"limits.m_dry: nominal needs tol or rel_tol"),
    ({"limits": {"m_dry": {}}}, r"limits.m_dry: needs low and/or high"),
    ({"limits": {"eps_cal": {"low": -0.1, "high": 1.5}}},
     r"\[limits\] eps_cal: low = -0.1 - is outside the physical range \[0, 1\]"),
    ({"limits": {"h_cal": {"low": 1.0, "unit": "kg"}}}, r"\[limits\] h_cal: h_cal given in 'kg'"),
    ({"limits": {}}, r"\[limits\] is empty"),
    (spec(target_share=1.2), r"target_share: Input should be less than 1"),
    (spec(tolerances={"kind": "gauss"}), r"tolerances.kind: Input should be 'rel_std' or 'band'"),
    (spec(tolerances={"fixed": {"w_am": 0.2}, "max": 0.05}), r"fixed w_am = 0.2 is outside \[0, max = 0.05\]"),
    (spec(tolerances={"inputs": ["flowrate"]}), r"\[tolerances\] 'flowrate' is not a canonical quantity"),
    (spec(optimize={"bounds": {"line_load": [90.0, 80.0]}}), r"bounds line_load: low 90 must be below high 80"),
    (spec(optimize={"free": ["flow_rate"], "bounds": {"line_load": [80.0, 90.0]}}),
     r"bounds line_load: line_load is not a free setpoint"),
    (spec(optimize={"objective": "variance"}), r"objective = \"variance\" needs minimize"),
    (spec(optimize={"targets": {"rho_cal": 40.0}}), r"rho_cal = 40 g/cm3 is outside its physical range"),
    (spec(limits={"m_dry": {"low": 13.0}}, bogus=1), r"bogus: Extra inputs are not permitted"),
])
def test_bad_specs_name_the_entry(doc, message):
    with pytest.raises(SpecFileError, match=message):
        spec_from_dict(doc)


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nm_dry = { low = 13.0, high = \n")
    with pytest.raises(SpecFileError, match=r"bad.toml: not valid TOML"):
        load_spec(bad)
    with pytest.raises(FileNotFoundError, match=r"neither a file nor a shipped spec \(shipped: .*paper_use_case"):
        load_spec(tmp_path / "missing.toml")


def test_cli_reports_a_bad_spec_with_exit_status_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nm_dry = { low = 15.0, high = 14.0 }\n")
    for cmd in ("tolerances", "optimize"):
        out = subprocess.run([sys.executable, "-m", "twin.cli", cmd, "--spec", str(bad), "--json"],
                             capture_output=True, text=True)
        assert out.returncode == 2, out.stderr
        assert out.stdout == ""
        assert f"twin {cmd}: spec {bad}: [limits] m_dry: low = 15 must be below high = 14" in out.stderr
