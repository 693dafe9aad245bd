"""Estimators of models.sensitivity against analytic cases and against OpenTURNS' independent implementation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.sensitivity import (
    ancova,
    chaos_sobol,
    check_independent,
    fit_chaos,
    sankey_flows,
    sobol_design,
    sobol_indices,
)
from models.uncertainty import Normal, Uniform

ISHIGAMI_S1 = {"x1": 0.3139, "x2": 0.4424, "x3": 0.0}
ISHIGAMI_ST = {"x1": 0.5576, "x2": 0.4424, "x3": 0.2437}


def ishigami(x):
    return np.sin(x["x1"]) + 7.0 * np.sin(x["x2"]) ** 2 + 0.1 * x["x3"] ** 4 * np.sin(x["x1"])


def correlated_linear(n=20000, seed=0):
    """Y = a.X with X ~ N(mu, C): M_i = a_i X_i, so S_U = a_i^2 s_i^2 / V and S = a_i (C a)_i / V exactly."""
    a = np.array([1.0, 2.0, -0.5])
    sd = np.array([1.0, 0.5, 2.0])
    R = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 1.0]])
    C = R * np.outer(sd, sd)
    X = np.random.default_rng(seed).multivariate_normal([1.0, 2.0, 3.0], C, n)
    V = a @ C @ a
    expected = {f"x{i}": {"S": a[i] * (C @ a)[i] / V, "S_U": a[i] ** 2 * sd[i] ** 2 / V} for i in range(3)}
    for e in expected.values():
        e["S_C"] = e["S"] - e["S_U"]
    return {f"x{i}": X[:, i] for i in range(3)}, {"y": X @ a}, expected


def test_ancova_correlated_linear_model_matches_analytic_indices():
    X, Y, expected = correlated_linear()
    res = ancova(X, Y, degree=2, n_boot=50)
    for name, exp in expected.items():
        got = res["indices"]["y"][name]
        for key in ("S", "S_U", "S_C"):
            assert got[key] == pytest.approx(exp[key], abs=0.01), (name, key)
    # S_C is clearly non-zero for the correlated inputs: the test can tell S from S_U
    assert expected["x1"]["S_C"] > 0.15 and res["indices"]["y"]["x1"]["S_C"] > 0.15
    assert res["sum"]["y"]["S"] == pytest.approx(1.0, abs=1e-6)  # additive model: no interaction share
    assert res["r2"]["y"] == pytest.approx(1.0)


def test_ancova_strong_negative_correlation_gives_cancelling_indices():
    """Y = X1 + X2 with corr -0.95: each input's physical share S_U is ~10x Var[Y], S_C cancels it, S sums to 1."""
    rng = np.random.default_rng(3)
    X = rng.multivariate_normal([0, 0], [[1, -0.95], [-0.95, 1]], 20000)
    res = ancova({"a": X[:, 0], "b": X[:, 1]}, {"y": X.sum(axis=1)}, n_boot=0)
    idx = res["indices"]["y"]
    assert idx["a"]["S_U"] == pytest.approx(1 / 0.1, rel=0.05)
    assert idx["a"]["S"] == pytest.approx(0.5, abs=0.02)
    assert idx["a"]["S_C"] == pytest.approx(0.5 - 10.0, rel=0.05)


def test_ancova_independent_inputs_have_no_correlated_share():
    rng = np.random.default_rng(1)
    n = 20000
    X = {"p": rng.normal(1, 0.1, n), "q": rng.normal(5, 1.0, n), "r": rng.uniform(0, 1, n)}
    Y = {"y": 3 * X["p"] + 0.2 * X["q"] ** 2 + X["p"] * X["r"]}
    res = ancova(X, Y, degree=2, n_boot=50)
    for name, e in res["indices"]["y"].items():
        assert abs(e["S_C"]) < 0.02, name
        lo, hi = e["ci"]["S"]
        assert lo <= e["S"] <= hi
    # interaction p*r leaves a small share outside the first-order terms
    assert 0.0 < 1 - res["sum"]["y"]["S"] < 0.05


def test_ancova_agrees_with_openturns_on_a_nonlinear_correlated_model():
    ot = pytest.importorskip("openturns")
    ot.RandomGenerator.SetSeed(0)
    marg = [ot.Normal(1.0, 0.2), ot.Normal(2.0, 0.3), ot.Normal(0.5, 0.1)]
    R = ot.CorrelationMatrix(3)
    R[0, 1] = 0.7
    R[1, 2] = -0.4
    model = ot.SymbolicFunction(["x1", "x2", "x3"], ["x1*x2 + x2^2 + 3*x3 + x1^2"])
    indep = ot.JointDistribution(marg)
    corr = ot.JointDistribution(marg, ot.NormalCopula(R))
    Xi = indep.getSample(2000)
    basis = ot.OrthogonalProductPolynomialFactory([ot.StandardDistributionPolynomialFactory(m) for m in marg])
    algo = ot.FunctionalChaosAlgorithm(Xi, model(Xi), indep, ot.FixedStrategy(basis, 10),
                                       ot.LeastSquaresStrategy())
    algo.run()
    Xc = corr.getSample(20000)
    ref = ot.ANCOVA(algo.getResult(), Xc)
    S_ot, SU_ot = np.array(ref.getIndices(0)), np.array(ref.getUncorrelatedIndices(0))
    Xn = np.asarray(Xc)
    res = ancova({f"x{i}": Xn[:, i] for i in range(3)}, {"y": np.asarray(model(Xc)).ravel()}, degree=2,
                 n_boot=0)
    got = res["indices"]["y"]
    for i in range(3):
        assert got[f"x{i}"]["S"] == pytest.approx(S_ot[i], abs=0.01)
        assert got[f"x{i}"]["S_U"] == pytest.approx(SU_ot[i], abs=0.01)


def test_pick_freeze_sobol_on_ishigami():
    marg = {k: Uniform(-np.pi, np.pi) for k in ("x1", "x2", "x3")}
    design = sobol_design(marg, 2**14, np.random.default_rng(1))
    res = sobol_indices(design, {"y": ishigami(design.samples)}, n_boot=100)
    assert res["evaluations"] == 2**14 * 5
    for k in marg:
        got = res["indices"]["y"][k]
        assert got["S1"] == pytest.approx(ISHIGAMI_S1[k], abs=0.03), k
        assert got["ST"] == pytest.approx(ISHIGAMI_ST[k], abs=0.03), k
        lo, hi = got["ci"]["ST"]
        assert lo - 0.01 <= ISHIGAMI_ST[k] <= hi + 0.01


def test_pick_freeze_agrees_with_openturns_saltelli_and_jansen():
    ot = pytest.importorskip("openturns")
    marg = {k: Uniform(-np.pi, np.pi) for k in ("x1", "x2", "x3")}
    design = sobol_design(marg, 4096, np.random.default_rng(2))
    y = ishigami(design.samples)
    res = sobol_indices(design, {"y": y}, n_boot=0)
    X = ot.Sample(np.column_stack([design.samples[k] for k in design.inputs]))
    Y = ot.Sample(y[:, None])
    s1 = np.array(ot.SaltelliSensitivityAlgorithm(X, Y, design.n).getFirstOrderIndices())
    st = np.array(ot.JansenSensitivityAlgorithm(X, Y, design.n).getTotalOrderIndices())
    got = res["indices"]["y"]
    for i, k in enumerate(design.inputs):
        # same design layout and the same (Jansen) total numerator; OpenTURNS normalizes by the variance of the
        # A block, we by that of A and B together (less noise): equal up to that variance estimate
        assert got[k]["ST"] == pytest.approx(st[i], rel=0.03)
        # first order: OpenTURNS implements Saltelli 2002, we use Saltelli 2010; equal up to sampling noise
        assert got[k]["S1"] == pytest.approx(s1[i], abs=0.05)


def test_chaos_sobol_from_plain_monte_carlo_samples_ishigami():
    """Sobol' indices from samples the twin already holds (no pick-freeze design), uniform marginals."""
    rng = np.random.default_rng(5)
    x = {k: rng.uniform(-np.pi, np.pi, 6000) for k in ("x1", "x2", "x3")}
    res = chaos_sobol(x, {"y": ishigami(x)}, degree=8, n_boot=10)
    assert res["q2"]["y"] > 0.999
    for k in x:
        assert res["indices"]["y"][k]["S1"] == pytest.approx(ISHIGAMI_S1[k], abs=0.02), k
        assert res["indices"]["y"][k]["ST"] == pytest.approx(ISHIGAMI_ST[k], abs=0.02), k


def test_chaos_sobol_normal_inputs_with_interaction():
    """Y = X1 + X2^2 + X1 X3, X ~ N(0, 1) iid: V = 4, S1 = (1/4, 1/2, 0), ST = (1/2, 1/2, 1/4)."""
    rng = np.random.default_rng(7)
    x = {k: rng.standard_normal(20000) for k in ("x1", "x2", "x3")}
    y = x["x1"] + x["x2"] ** 2 + x["x1"] * x["x3"]
    res = chaos_sobol(x, {"y": y}, degree=2, n_boot=20)
    exp = {"x1": (0.25, 0.5), "x2": (0.5, 0.5), "x3": (0.0, 0.25)}
    for k, (s1, st) in exp.items():
        assert res["indices"]["y"][k]["S1"] == pytest.approx(s1, abs=0.02)
        assert res["indices"]["y"][k]["ST"] == pytest.approx(st, abs=0.02)


def test_chaos_sobol_refuses_correlated_samples():
    X, Y, _ = correlated_linear(2000)
    with pytest.raises(ValueError, match=r"x0 and x1 correlate at \+0\.[56]"):
        chaos_sobol(X, Y)
    check_independent({"a": np.arange(100.0), "b": np.random.default_rng(0).random(100)}, ["a", "b"])


def test_results_are_plain_json():
    X, Y, _ = correlated_linear(1000)
    res = ancova(X, Y, n_boot=5)
    assert json.loads(json.dumps(res, allow_nan=False)) == res
    design = sobol_design({"a": Normal(0, 1), "b": Normal(1, 2), "c": Uniform(0, 1)}, 64, np.random.default_rng(0))
    y = design.samples["a"] + design.samples["b"]
    res = sobol_indices(design, {"y": y}, n_boot=5)
    assert json.loads(json.dumps(res, allow_nan=False)) == res


def test_nan_rows_are_dropped_and_counted():
    X, Y, expected = correlated_linear(5000)
    y = Y["y"].copy()
    y[:7] = np.nan
    res = ancova(X, {"y": y}, n_boot=0)
    assert res["dropped"] == 7 and res["samples"] == 4993
    assert res["indices"]["y"]["x1"]["S"] == pytest.approx(expected["x1"]["S"], abs=0.02)


def test_bad_inputs_name_the_problem():
    X, Y, _ = correlated_linear(1000)
    with pytest.raises(ValueError, match="input c has no variance"):
        ancova({**X, "c": np.full(1000, 2.0)}, Y, inputs=["x0", "c"])
    with pytest.raises(KeyError, match="input 'w_xx' is not in the samples"):
        ancova(X, Y, inputs=["w_xx"])
    with pytest.raises(ValueError, match="too few for a degree-3 expansion"):
        fit_chaos({k: v[:20] for k, v in X.items()}, {"y": Y["y"][:20]}, degree=3)
    with pytest.raises(ValueError, match="output y has no variance"):
        ancova(X, {"y": np.ones(1000)})
    with pytest.raises(ValueError, match=r"collinear in the samples \(x0, x3\)"):
        ancova({**X, "x3": 2 * X["x0"] + 1}, Y, degree=1)
    design = sobol_design({"a": Normal(0, 1), "b": Normal(0, 1)}, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="design has 40"):
        sobol_indices(design, {"y": np.ones(39)})


def test_sankey_flows_layers_and_negative_flows():
    chain = {"inputs": ["w_am", "x_solids"], "outputs": ["m_dry", "rho_cal"],
             "indices": {"m_dry": {"w_am": {"S": 0.01, "S_U": 0.01}, "x_solids": {"S": 0.6, "S_U": 0.6}},
                         "rho_cal": {"w_am": {"S": 0.9, "S_U": 0.9}, "x_solids": {"S": 0.001, "S_U": 0.0}}}}
    cell = {"inputs": ["w_am", "m_dry", "rho_cal"], "outputs": ["energy_density"],
            "indices": {"energy_density": {"w_am": {"S": 1.4, "S_U": 9.0}, "m_dry": {"S": 0.0, "S_U": 0.0},
                                           "rho_cal": {"S": -0.4, "S_U": 7.0}}}}
    flows = sankey_flows(chain, cell)
    layers = {n["name"]: n["layer"] for n in flows["nodes"]}
    assert layers == {"w_am": "process", "x_solids": "process", "m_dry": "structure", "rho_cal": "structure",
                      "energy_density": "performance"}
    links = {(l["source"], l["target"]): l for l in flows["links"]}
    assert ("x_solids", "rho_cal") not in links  # below min_flow
    assert links[("w_am", "energy_density")]["value"] == 1.4  # formulation links straight to performance
    assert links[("rho_cal", "energy_density")]["negative"] and links[("rho_cal", "energy_density")]["width"] == 0.4
    assert "do not balance" in flows["caveat"]
    with pytest.raises(ValueError, match="neither process inputs nor chain outputs"):
        sankey_flows(chain, {**cell, "inputs": ["w_am", "h_wet"]})
