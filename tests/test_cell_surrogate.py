"""Cell surrogate (models/cell_surrogate.py, twin/cell.py): evaluation, design space, persistence, the shipped
surrogate's validation, and agreement with fresh P2D runs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from models.cell import CELL_INPUTS, CELL_OUTPUTS, close_fractions
from models.cell_surrogate import CellSurrogate, fit_cell_surrogate, q2
from models.metamodel import DesignSpace, DesignSpaceError, legendre_design_matrix

BOX = DesignSpace(("a", "b", "c"), (0.0, 1.0, -2.0), (1.0, 3.0, 2.0))


def _truth(X):
    a, b, c = X.T
    return np.column_stack([1 + 2 * a - b * c + 0.5 * a**2 * c, 3 - a * b + 0.1 * c**3])


@pytest.fixture(scope="module")
def toy():
    X = BOX.low + np.random.default_rng(0).uniform(size=(120, 3)) * (np.asarray(BOX.high) - BOX.low)
    return fit_cell_surrogate(X, _truth(X), BOX.names, ("y1", "y2"), BOX, {"rho_am": 4.75}, degree=3, q_norm=1.0)


def test_fit_recovers_a_known_polynomial(toy):
    X = BOX.low + np.random.default_rng(1).uniform(size=(200, 3)) * (np.asarray(BOX.high) - BOX.low)
    np.testing.assert_allclose(toy.predict(X), _truth(X), atol=1e-9)
    assert q2(_truth(X)[:, 0], toy.predict(X)[:, 0]) == pytest.approx(1.0, abs=1e-12)


def test_factorized_evaluation_equals_the_design_matrix(toy):
    X = BOX.low + np.random.default_rng(2).uniform(size=(9000, 3)) * (np.asarray(BOX.high) - BOX.low)
    ref = legendre_design_matrix(BOX.scale(X), toy.indices) @ toy.coef.T
    np.testing.assert_allclose(toy.predict(X), ref, rtol=1e-12, atol=1e-12)


def test_call_takes_a_mapping_broadcasts_and_returns_named_outputs(toy):
    out = toy({"a": np.array([0.2, 0.4]), "b": 2.0, "c": np.array([0.0, 1.0])})
    assert set(out) == {"y1", "y2"} and out["y1"].shape == (2,)
    np.testing.assert_allclose(out["y2"], _truth(np.array([[0.2, 2.0, 0.0], [0.4, 2.0, 1.0]]))[:, 1], atol=1e-9)
    scalar = toy({"a": 0.2, "b": 2.0, "c": 0.0})
    assert isinstance(scalar["y1"], float)
    with pytest.raises(KeyError, match="a"):
        toy({"b": 2.0, "c": 0.0})


def test_outside_the_design_space_raises_warns_or_gives_nan(toy):
    samples = {"a": np.array([0.5, 1.3, 0.5]), "b": np.array([2.0, 2.0, 2.0]), "c": np.array([0.0, 0.0, np.nan])}
    with pytest.raises(DesignSpaceError, match=r"a in \[1\.3, 1\.3\] vs design space \[0, 1\]") as err:
        toy(samples)
    assert "2 of 3" in str(err.value) and "c: 1 value(s) not finite" in str(err.value)
    with pytest.warns(UserWarning, match="outside its design space"):
        toy(samples, policy="warn")
    out = toy(samples, policy="nan")
    assert np.isfinite(out["y1"][0]) and np.isnan(out["y1"][1]) and np.isnan(out["y1"][2])
    with pytest.raises(ValueError, match="raise, warn, nan"):
        toy(samples, policy="ignore")


def test_material_constants_are_checked(toy):
    ok = {"a": 0.5, "b": 2.0, "c": 0.0, "rho_am": 4.75}
    toy(ok)
    toy.check_materials({"rho_am": 4.75, "rho_pb": 1.0})  # names the surrogate does not record: not checked
    bad = {**ok, "rho_am": 5.0}
    with pytest.raises(DesignSpaceError, match=r"rho_am = 5\.\.5 vs 4\.75"):
        toy(bad)
    with pytest.raises(DesignSpaceError, match="rho_am"):
        toy.check_materials({"rho_am": 5.0})
    assert np.isnan(toy(bad, policy="nan")["y1"])


def test_round_trip_through_json(toy, tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(toy.to_dict()))
    back = CellSurrogate.from_dict(json.loads(path.read_text()), policy="nan")
    X = BOX.low + np.random.default_rng(3).uniform(size=(50, 3)) * (np.asarray(BOX.high) - BOX.low)
    np.testing.assert_allclose(back.predict(X), toy.predict(X), rtol=1e-14)
    assert back.policy == "nan" and back.materials == {"rho_am": 4.75}
    with pytest.raises(ValueError, match="not a cell surrogate"):
        CellSurrogate.from_dict({"format": "something else"})


def test_concurrent_calls_from_threads_give_the_sequential_results(toy):
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    batches = [BOX.low + rng.uniform(size=(5000 + 7 * i, 3)) * (np.asarray(BOX.high) - BOX.low) for i in range(8)]
    expected = [toy.predict(X) for X in batches]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda X: toy.predict(X), batches * 3))
    for i, y in enumerate(got):
        np.testing.assert_array_equal(y, expected[i % len(batches)])


def test_surrogate_pickles_for_process_pools(toy):
    import pickle

    back = pickle.loads(pickle.dumps(toy))
    X = BOX.low + np.random.default_rng(4).uniform(size=(10, 3)) * (np.asarray(BOX.high) - BOX.low)
    np.testing.assert_array_equal(back.predict(X), toy.predict(X))


# -- the shipped surrogate -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    from twin.cell import load_cell_surrogate

    return load_cell_surrogate()


def test_shipped_surrogate_api_for_the_twin(shipped):
    assert shipped.inputs == CELL_INPUTS
    assert shipped.outputs == CELL_OUTPUTS == ("capacity", "energy_density")
    n = 10_000
    rng = np.random.default_rng(0)
    samples = {"w_am": rng.normal(0.94, 0.0094, n), "w_ca": rng.normal(0.03, 0.0003, n),
               "w_pb": rng.normal(0.03, 0.0003, n), "m_dry": rng.normal(14.3, 0.4, n),
               "rho_cal": rng.normal(2.95, 0.026, n), "rho_am": 4.75, "particle_radius": 5.5}
    out = shipped(samples)
    assert out["capacity"].shape == (n,) and np.all(np.isfinite(out["energy_density"]))
    assert out["capacity"].mean() == pytest.approx(2.41, rel=0.02)


def test_shipped_surrogate_is_validated_on_held_out_p2d_runs(shipped):
    v = shipped.metrics["validation"]
    assert v["n"] >= 100
    for o in CELL_OUTPUTS:
        assert v[o]["q2"] >= 0.99
    local = shipped.metrics["validation_local"]
    assert local["n"] >= 100 and local["samples_of"] == "paper_use_case"
    for o in CELL_OUTPUTS:
        assert local[o]["q2"] >= 0.99


def test_shipped_surrogate_matches_the_current_parameter_files_and_materials(shipped, paper_scenario):
    from twin.cell import load_cell_config, surrogate_is_current

    assert surrogate_is_current(shipped, load_cell_config()) == []
    shipped.check_materials(paper_scenario.nominal())
    assert shipped.materials == {"rho_am": 4.75, "rho_ca": 1.8, "rho_pb": 1.7, "particle_radius": 5.5}


def test_shipped_surrogate_rejects_the_paper_closure_where_it_makes_negative_binder(shipped):
    four = {"w_am": np.array([0.94, 0.985]), "w_ca": np.array([0.03, 0.03]), "m_dry": 14.3, "rho_cal": 2.95}
    with pytest.raises(KeyError, match="w_pb"):
        shipped(four)
    with pytest.raises(DesignSpaceError, match=r"w_pb in \[-0\.015"):
        shipped(close_fractions(four))
    out = shipped(close_fractions(four), policy="nan")
    assert np.isfinite(out["capacity"][0]) and np.isnan(out["capacity"][1])


@pytest.mark.slow
def test_shipped_surrogate_agrees_with_fresh_p2d_runs(shipped):
    """Fresh P2D runs at points the surrogate never saw: new random points of its design space, the paper's
    nominal point, the low corner of the box and the accepted points closest to the cut-off corner."""
    from twin.cell import build_cell_model

    ds = shipped.design_space
    lo, hi = np.asarray(ds.low), np.asarray(ds.high)
    U = lo + np.random.default_rng(20240611).uniform(size=(4000, len(lo))) * (hi - lo)
    inside = ~shipped._violations(U, "")[0]
    assert 0.85 < inside.mean() < 1.0  # the constraint cuts a corner, not the box
    U = U[inside]
    tight = U[np.argsort(shipped.derived(U)["transport_efficiency"])[:3]]
    X = np.vstack([U[:14], tight, [0.94, 0.03, 0.03, 14.3, 2.95], lo])
    r = build_cell_model().solve(*X.T)
    assert r.n_failed == 0
    Y = shipped.predict(X)
    np.testing.assert_allclose(Y[:, 0], r.capacity, rtol=5e-4)
    np.testing.assert_allclose(Y[:, 1], r.energy_density, rtol=3e-3)
    assert Y[-2, 0] == pytest.approx(2.41, rel=1e-4)


def test_shipped_surrogate_refuses_the_electrolyte_starved_corner(shipped):
    """The far corner of the box (densest, most binder) is cut off: the P2D capacity collapses there."""
    hi = dict(zip(shipped.inputs, shipped.design_space.high))
    with pytest.raises(DesignSpaceError, match=r"transport_efficiency \(derived from the inputs\) in \[0\.00"):
        shipped(hi)
    assert np.isnan(shipped(hi, policy="nan")["capacity"])


@pytest.mark.slow
def test_training_end_to_end_on_a_small_doe(tmp_path):
    """The retraining path (DoE -> P2D -> PCE -> validation -> file -> parity plot) on a small DoE."""
    from twin.cell import load_cell_surrogate, parity_plot, save_surrogate, train_surrogate

    local = {"w_am": np.array([0.93, 0.94, 0.95]), "w_ca": 0.03, "w_pb": 0.03, "m_dry": np.array([14.0, 14.3, 14.6]),
             "rho_cal": np.array([2.94, 2.95, 2.97])}
    sur, val = train_surrogate(n_train=48, n_test=12, degree=2, q_norm=1.0, local=local, local_name="three")
    assert sur.metrics["validation"]["n"] == 12 and sur.metrics["validation_local"]["n"] == 3
    assert sur.metrics["validation"]["capacity"]["q2"] > 0.99
    path = save_surrogate(sur, tmp_path / "s.json")
    back = load_cell_surrogate(path)
    np.testing.assert_allclose(back.predict(val["X"]), val["Y_surrogate"], rtol=1e-12)
    png = parity_plot(sur, val, tmp_path / "parity.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_cell_surrogate_errors_name_the_file(tmp_path):
    from twin.cell import load_cell_surrogate

    with pytest.raises(FileNotFoundError, match="twin cell --retrain"):
        load_cell_surrogate(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_cell_surrogate(bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (tmp_path / "other.json").write_text(json.dumps({"format": "electrode-twin metamodel 1"}))
        with pytest.raises(ValueError, match="other.json"):
            load_cell_surrogate(tmp_path / "other.json")
