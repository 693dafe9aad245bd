"""twin cell: JSON contract, the paper's use case, design-space errors, full-model and calibration runs."""

from __future__ import annotations

import json

import pytest

from twin.cli import main


def _json(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_cell_json_reproduces_the_paper_use_case(capsys):
    doc = _json(capsys, ["cell", "--samples", "20000", "--seed", "3", "--json"])
    assert doc["samples"] == 20000 and doc["model"] == "surrogate" and doc["scenario"] == "paper_use_case"
    assert set(doc["parameters"]) == {"capacity", "energy_density"}
    for name, unit in (("capacity", "mAh/cm2"), ("energy_density", "Wh/L")):
        s = doc["parameters"][name]
        assert set(s) == {"unit", "mean", "std", "p05", "p50", "p95"} and s["unit"] == unit
        assert s["p05"] < s["p50"] < s["p95"]
    cap, en = doc["parameters"]["capacity"], doc["parameters"]["energy_density"]
    assert cap["mean"] == pytest.approx(2.41, rel=0.05)  # paper: 2.41 +- 0.07 mAh/cm2
    assert en["mean"] == pytest.approx(1892, rel=0.05)  # paper: 1892 +- 8 Wh/L
    assert 0.035 < cap["std"] < 0.14  # same order as the paper's 0.07
    assert 4 < en["std"] < 16  # same order as the paper's 8
    assert doc["failed"] == {"count": 0, "reasons": {}}


def test_cell_same_shape_as_chain_and_seeded(capsys):
    a = _json(capsys, ["cell", "--samples", "500", "--seed", "1", "--json"])
    b = _json(capsys, ["cell", "--samples", "500", "--seed", "1", "--json"])
    assert a == b
    chain = _json(capsys, ["chain", "--samples", "500", "--seed", "1", "--json"])
    assert set(chain["parameters"]["m_dry"]) == set(a["parameters"]["capacity"])


def test_paper_closure_outside_the_design_space_is_refused_or_counted(capsys):
    code = main(["cell", "--samples", "100000", "--close-fractions", "--json"])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert "w_pb in [-0.0" in out.err and "vs design space [0, 0.08]" in out.err
    doc = _json(capsys, ["cell", "--samples", "100000", "--close-fractions", "--policy", "nan", "--json"])
    assert 0 < doc["failed"]["count"] < 500
    assert doc["close_fractions"] is True
    assert doc["parameters"]["capacity"]["mean"] == pytest.approx(2.41, rel=0.05)


def test_options_that_do_not_belong_together_are_refused(capsys):
    assert main(["cell", "--write"]) == 2
    assert "--write only goes with --calibrate" in capsys.readouterr().err
    assert main(["cell", "--train", "10"]) == 2
    assert "--retrain" in capsys.readouterr().err
    assert main(["cell", "--samples", "1"]) == 2


def test_other_materials_than_the_surrogate_was_trained_for_are_refused(capsys, tmp_path):
    sc = tmp_path / "other.toml"
    sc.write_text('extends = "paper_use_case"\nname = "other"\n[inputs]\nrho_am = 4.9\n')
    assert main(["cell", "--scenario", str(sc), "--samples", "100", "--json"]) == 2
    err = capsys.readouterr().err
    assert "rho_am = 4.9..4.9 vs 4.75" in err and "retrain" in err


@pytest.mark.slow
def test_cell_model_p2d_runs_the_full_model(capsys):
    doc = _json(capsys, ["cell", "--model", "p2d", "--samples", "12", "--seed", "2", "--json"])
    assert doc["model"] == "p2d" and doc["samples"] == 12 and doc["failed"]["count"] == 0
    assert doc["parameters"]["capacity"]["mean"] == pytest.approx(2.41, rel=0.05)
    sur = _json(capsys, ["cell", "--samples", "12", "--seed", "2", "--json"])
    # same chain samples through the surrogate: same numbers to the surrogate's accuracy
    for k in ("capacity", "energy_density"):
        for q in ("mean", "p05", "p95"):
            assert sur["parameters"][k][q] == pytest.approx(doc["parameters"][k][q], rel=2e-4)


@pytest.mark.slow
def test_calibrate_reports_the_calibration_without_writing(capsys):
    doc = _json(capsys, ["cell", "--calibrate", "--json"])
    assert doc["written"] is None
    assert doc["achieved"]["capacity"] == pytest.approx(2.41, rel=1e-6)
    assert doc["achieved"]["energy_density"] == pytest.approx(1892, rel=0.05)
    from twin.cell import load_cell_config

    cal = load_cell_config().calibration
    assert doc["parameters"]["c_0"] == pytest.approx(cal["calibrated"]["c_0"], abs=0.01)


@pytest.mark.slow
def test_retrain_writes_a_validated_surrogate_and_its_parity_plot(capsys, tmp_path):
    out, png = tmp_path / "s.json", tmp_path / "parity.png"
    doc = _json(capsys, ["cell", "--retrain", "--train", "40", "--test", "8", "--output", str(out), "--plot",
                         str(png), "--json"])
    assert doc["surrogate"] == str(out) and png.read_bytes()[:4] == b"\x89PNG"
    assert doc["metrics"]["validation"]["n"] == 8
    assert doc["metrics"]["validation_local"]["samples_of"] == "paper_use_case"
    assert doc["metrics"]["validation_local"]["n"] >= 100
    # the new file works as the command's surrogate
    again = _json(capsys, ["cell", "--samples", "300", "--surrogate", str(out), "--json"])
    assert again["parameters"]["capacity"]["mean"] == pytest.approx(2.41, rel=0.01)
