"""Meta-model pipeline: selection on data with a known generating function, numpy evaluation equal to the
fitting library, persistence, design-space guard, DoE files, and the shipped drying meta-model."""

import json
import warnings

import numpy as np
import pytest

from models.metamodel import (
    FAMILIES,
    DesignSpace,
    DesignSpaceError,
    MetaModel,
    aicc,
    fit_family,
    fit_metamodel,
    select,
    CandidateScore,
)

M = np.repeat(np.linspace(14.2, 35.4, 7), 5)
TRUTHS = {
    "linear": lambda m: 0.5 - 0.003 * m,
    "quadratic": lambda m: 0.5 - 0.01 * m + 0.0002 * m**2,
    "exponential": lambda m: 0.415 + 0.311 * np.exp(-m / 8.0),
}


@pytest.mark.parametrize("truth", list(TRUTHS))
def test_selection_recovers_the_generating_family(truth):
    """Over 10 noisy DoEs, the parametric family that generated the data is selected at least 8 times
    (AICc is a statistical criterion: an extra parameter wins by chance in roughly 1 case in 7)."""
    hits = 0
    for seed in range(10):
        y = TRUTHS[truth](M) + np.random.default_rng(seed).normal(0, 0.002, M.size)
        mm = fit_metamodel(M[:, None], y, ["m_wet"], "eps_dry", ("linear", "quadratic", "exponential"), seed=seed)
        hits += mm.kind == truth
    assert hits >= 8


def test_nonparametric_truth_selects_kriging_or_pce():
    y = 0.44 + 0.02 * np.sin(M / 3) + np.random.default_rng(3).normal(0, 0.002, M.size)
    mm = fit_metamodel(M[:, None], y, ["m_wet"], "eps_dry", seed=3)
    assert mm.kind in ("kriging", "pce")
    assert mm.metrics["candidates"][0]["r2_test"] < 0.5  # a line cannot follow it
    assert mm(m_wet=20.0) == pytest.approx(0.44 + 0.02 * np.sin(20 / 3), abs=0.004)


def test_aicc_formula():
    # n ln(RSS/n) + 2k + 2k(k+1)/(n-k-1): n=20, k=3, RSS=0.002
    assert aicc(0.002, 20, 3) == pytest.approx(20 * np.log(0.0001) + 6 + 24 / 16)
    assert aicc(0.002, 4, 3) == np.inf


def test_select_screens_on_test_rmse_then_aicc():
    a = CandidateScore("linear", 2, 0.1, 0.9, -50.0, 1.00, 0.9)
    b = CandidateScore("quadratic", 3, 0.09, 0.9, -60.0, 1.40, 0.9)  # within 50 %: eligible, better AICc
    c = CandidateScore("kriging", 9, 0.01, 0.99, -90.0, 2.00, 0.5)   # overfit: test RMSE 2x the best
    assert select([a, b, c]).kind == "quadratic"
    assert select([a, c]).kind == "linear"


def test_kriging_numpy_evaluation_matches_scikit_learn():
    import warnings

    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (30, 2))
    y = np.sin(3 * X[:, 0]) + X[:, 1] ** 2 + rng.normal(0, 0.01, 30)
    ds = DesignSpace.of(["m_wet", "x_solids"], X)
    params, k = fit_family("kriging", X, y, ds, seed=4)
    mm = MetaModel("kriging", ("m_wet", "x_solids"), "eps_dry", ds, params)
    Xt = rng.uniform(0.1, 0.9, (50, 2))
    # the same regression done by scikit-learn itself (same kernel, bounds, restarts and random state)
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.ones(2), (1e-2, 1e2)) + WhiteKernel(0.1, (1e-10, 1e1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=3,
                                      random_state=int(np.random.default_rng(4).integers(2**31))).fit(ds.scale(X), y)
    np.testing.assert_allclose(mm.predict(Xt), gp.predict(ds.scale(Xt)), rtol=1e-8, atol=1e-10)
    truth = np.sin(3 * Xt[:, 0]) + Xt[:, 1] ** 2
    assert np.sqrt(np.mean((mm.predict(Xt) - truth) ** 2)) < 0.03
    assert 2 < k < 30


def test_pce_numpy_evaluation_matches_openturns():
    import openturns as ot

    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (60, 2))
    y = 1 + X[:, 0] + 0.5 * X[:, 0] * X[:, 1] + 0.3 * X[:, 1] ** 3
    ds = DesignSpace(("m_wet", "x_solids"), (-1.0, -1.0), (1.0, 1.0))
    params, _ = fit_family("pce", X, y, ds)
    mm = MetaModel("pce", ("m_wet", "x_solids"), "eps_dry", ds, params)
    # rebuild the same expansion with OpenTURNS' own polynomials and compare
    enum = ot.LinearEnumerateFunction(2)
    basis = ot.OrthogonalProductPolynomialFactory([ot.LegendreFactory()] * 2)
    Xt = rng.uniform(-1, 1, (20, 2))
    ref = np.zeros(len(Xt))
    for c, alpha in zip(params["coef"], params["indices"]):
        f = basis.build(enum.inverse(alpha))
        ref += c * np.asarray(f(ot.Sample(Xt))).ravel()
    np.testing.assert_allclose(mm.predict(Xt), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mm.predict(Xt), 1 + Xt[:, 0] + 0.5 * Xt[:, 0] * Xt[:, 1] + 0.3 * Xt[:, 1] ** 3,
                               atol=1e-8)


@pytest.mark.parametrize("kind", FAMILIES)
def test_round_trip_through_json(kind, tmp_path):
    y = TRUTHS["exponential"](M) + np.random.default_rng(0).normal(0, 0.002, M.size)
    mm = fit_metamodel(M[:, None], y, ["m_wet"], "eps_dry", (kind,))
    path = tmp_path / "m.json"
    path.write_text(json.dumps(mm.to_dict()))
    back = MetaModel.from_dict(json.loads(path.read_text()))
    x = np.linspace(15, 35, 9)
    np.testing.assert_allclose(back(m_wet=x), mm(m_wet=x), rtol=1e-12)


def test_design_space_guard_refuses_warns_or_flags():
    y = TRUTHS["linear"](M)
    mm = fit_metamodel(M[:, None], y, ["m_wet"], "eps_dry", ("linear",))
    with pytest.raises(DesignSpaceError, match=r"m_wet in \[40, 40\] vs design space \[14.2, 35.4\]"):
        mm(m_wet=np.array([20.0, 40.0]))
    mm.policy = "nan"
    out = mm(m_wet=np.array([20.0, 40.0]))
    assert np.isfinite(out[0]) and np.isnan(out[1])
    mm.policy = "warn"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        mm(m_wet=40.0)
    assert any("outside its design space" in str(x.message) for x in w)
    assert mm(m_wet=35.4) == pytest.approx(TRUTHS["linear"](35.4))  # the bound itself is inside


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="unknown meta-model family 'spline'; known: linear"):
        fit_metamodel(M[:, None], M, ["m_wet"], "eps_dry", ("spline",))


def test_doe_with_nan_is_rejected():
    y = TRUTHS["linear"](M)
    y[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_metamodel(M[:, None], y, ["m_wet"], "eps_dry")


# ---- DoE files and the shipped drying meta-model -------------------------------------------------------------


def test_shipped_doe_is_marked_synthetic_and_reproducible():
    from twin.metamodels import read_doe
    from twin.resources import config_dir
    from twin.synthetic import synthetic_drying_doe

    doe = read_doe(config_dir() / "doe" / "eps_dry_synthetic.csv")
    assert doe.synthetic
    assert doe.inputs == ("m_wet",) and doe.output == "eps_dry"
    m, rep, eps = synthetic_drying_doe()
    np.testing.assert_allclose(doe.X[:, 0], m, atol=1e-4)
    np.testing.assert_allclose(doe.y, eps, atol=1e-5)
    np.testing.assert_allclose(sorted(set(doe.X[:, 0])), np.linspace(14.2, 35.4, 7), atol=1e-4)
    assert len(doe.y) == 35


def test_shipped_metamodel_is_the_refit_of_the_shipped_doe():
    from twin.metamodels import fit_doe, load_metamodel, read_doe
    from twin.resources import config_dir

    shipped = load_metamodel(config_dir() / "metamodels" / "eps_dry.json")
    refit = fit_doe(read_doe(config_dir() / "doe" / "eps_dry_synthetic.csv"))
    assert shipped.kind == refit.kind == "exponential"
    assert shipped.info["synthetic"] is True
    x = np.linspace(14.2, 35.4, 11)
    np.testing.assert_allclose(shipped(m_wet=x), refit(m_wet=x), rtol=1e-6)
    # paper: eps_dry = 0.439 at m_wet = 20.5 mg/cm2, falling with loading, elasticity about -0.14
    assert shipped(m_wet=20.5) == pytest.approx(0.439, abs=0.002)
    e = (np.log(shipped(m_wet=21.0)) - np.log(shipped(m_wet=20.0))) / (np.log(21) - np.log(20))
    assert -0.18 < e < -0.10


def test_user_doe_file_is_a_drop_in_replacement(tmp_path):
    """A DoE in another unit with two inputs is read, converted and fitted the same way."""
    from twin.metamodels import fit_doe, read_doe

    rng = np.random.default_rng(5)
    lines = ["# real DEM results (here: a test function)", "m_wet [g/m2],x_solids,repetition,eps_dry [%]"]
    for m in np.linspace(140, 360, 6):
        for x in (0.6, 0.7, 0.8):
            for r in (1, 2):
                lines.append(f"{m},{x},{r},{100 * (0.5 - 0.002 * m / 10 + 0.05 * x) + rng.normal(0, 0.05)}")
    f = tmp_path / "doe.csv"
    f.write_text("\n".join(lines) + "\n")
    doe = read_doe(f)
    assert doe.inputs == ("m_wet", "x_solids")
    assert doe.X[:, 0].max() == pytest.approx(36.0)  # g/m2 -> mg/cm2
    mm = fit_doe(doe)
    assert not mm.info["synthetic"]
    assert mm(m_wet=25.0, x_solids=0.7) == pytest.approx(0.5 - 0.002 * 25 + 0.05 * 0.7, abs=0.002)


@pytest.mark.parametrize("body, message", [
    ("m_wett,eps_dry\n1,2\n", "column 'm_wett' is not a canonical quantity"),
    ("m_wet,eps_dry\n20,abc\n", "data line 2: eps_dry = 'abc' is not a number"),
    ("m_wet,eps_dry\n20,0.4,1\n", "data line 2 has 3 fields"),
    ("m_wet [kg],eps_dry\n20,0.4\n", "cannot be converted"),
    ("m_wet,eps_dry\n20,1.4\n", r"eps_dry = 1.4 - is outside its physical range \[0, 1\]"),
    ("m_wet,eps_dry\n20,nan\n", "is not finite"),
])
def test_malformed_doe_files_are_named(tmp_path, body, message):
    from twin.metamodels import read_doe

    f = tmp_path / "bad.csv"
    f.write_text(body)
    with pytest.raises(ValueError, match=message):
        read_doe(f)
