"""Input distributions, correlation, cell-to-cell shifts and drift, reproducibility of per-segment sampling."""

import numpy as np
import pytest
from scipy import stats

from models.uncertainty import (
    Constant,
    Correlation,
    Drift,
    KernelDensity,
    LogNormal,
    Normal,
    SegmentShift,
    TruncatedNormal,
    Uniform,
    sample,
    segment_marginals,
)

N = 200_000


@pytest.mark.parametrize("m, mean, std", [
    (Normal(10.0, 0.1), 10.0, 0.1),
    (LogNormal(10.0, 1.0), 10.0, 1.0),
    (Uniform(80.0, 88.0), 84.0, 8 / np.sqrt(12)),
    (TruncatedNormal(0.7, 0.01, 0.69, 0.72), None, None),
])
def test_marginal_moments(m, mean, std):
    x = m.sample(np.random.default_rng(0), N)
    u = m.ppf(np.random.default_rng(1).random(N))
    if mean is not None:
        assert x.mean() == pytest.approx(mean, rel=2e-3)
        assert x.std() == pytest.approx(std, rel=1e-2)
    # sampling directly and through the quantile function give the same distribution
    assert stats.ks_2samp(x, u).pvalue > 1e-3
    assert m.std == pytest.approx(x.std(), rel=2e-2)


def test_truncated_normal_stays_in_bounds():
    x = TruncatedNormal(0.7, 0.05, 0.69, 0.72).sample(np.random.default_rng(0), N)
    assert x.min() >= 0.69 and x.max() <= 0.72


def test_constant_is_a_scalar():
    assert Constant(4.75).sample(np.random.default_rng(0), 10) == 4.75


def test_kernel_density_follows_its_data():
    data = np.random.default_rng(2).normal(20.5, 0.4, 500)
    kde = KernelDensity(tuple(data))
    x = kde.sample(np.random.default_rng(3), N)
    assert x.mean() == pytest.approx(data.mean(), abs=0.01)
    assert x.std() == pytest.approx(kde.std, rel=0.02)
    u = kde.ppf(np.random.default_rng(4).random(N))
    assert stats.ks_2samp(x, u).pvalue > 1e-3
    with pytest.raises(ValueError, match="at least 2 finite"):
        KernelDensity((1.0,))


def test_spearman_correlation_is_reproduced():
    corr = Correlation(("w_am", "x_solids"), ((1.0, -0.6), (-0.6, 1.0)), "spearman")
    s = sample({"w_am": Normal(0.94, 0.0094), "x_solids": LogNormal(0.7, 0.007), "flow_rate": Normal(696, 7)},
               N, np.random.default_rng(0), corr)
    rho = stats.spearmanr(s["w_am"], s["x_solids"]).statistic
    assert rho == pytest.approx(-0.6, abs=0.01)
    assert abs(stats.spearmanr(s["w_am"], s["flow_rate"]).statistic) < 0.01
    assert s["x_solids"].mean() == pytest.approx(0.7, rel=1e-3)


def test_pearson_copula_with_normal_marginals_gives_that_correlation():
    corr = Correlation(("a", "b"), ((1.0, 0.8), (0.8, 1.0)), "pearson")
    s = sample({"a": Normal(0, 1), "b": Normal(5, 2)}, N, np.random.default_rng(0), corr)
    assert np.corrcoef(s["a"], s["b"])[0, 1] == pytest.approx(0.8, abs=0.005)


@pytest.mark.parametrize("matrix, message", [
    (((1.0, 0.5), (0.4, 1.0)), "symmetric"),
    (((1.0, 1.5), (1.5, 1.0)), r"\[-1, 1\]"),
    (((1.0, 0.99, -0.99), (0.99, 1.0, 0.99), (-0.99, 0.99, 1.0)), "positive definite"),
    (((1.0,),), "names 2 inputs"),
])
def test_bad_correlation_matrices(matrix, message):
    names = ("a", "b", "c")[: max(2, len(matrix))] if len(matrix) != 1 else ("a", "b")
    with pytest.raises(ValueError, match=message):
        Correlation(names, matrix)


def test_closed_fractions_sum_to_one():
    m = {"w_am": Normal(0.94, 0.0094), "w_ca": Normal(0.03, 0.0003), "w_pb": Normal(0.03, 0.0003)}
    s = sample(m, 1000, np.random.default_rng(0), closed=("w_am", "w_ca", "w_pb"))
    np.testing.assert_allclose(s["w_am"] + s["w_ca"] + s["w_pb"], 1.0)
    s = sample(m, 1000, np.random.default_rng(0))
    assert np.abs(s["w_am"] + s["w_ca"] + s["w_pb"] - 1).max() > 1e-3  # as drawn (the paper's Table A1)


def test_drift_offsets():
    assert Drift("linear", rate=2.0).offset(1800.0) == pytest.approx(1.0)  # 2 per hour, half an hour
    heat = Drift("exponential", delta=-5.0, tau=600.0)
    assert heat.offset(0.0) == 0.0
    assert heat.offset(600.0) == pytest.approx(-5.0 * (1 - np.exp(-1)))
    assert heat.offset(1e6) == pytest.approx(-5.0)
    with pytest.raises(ValueError, match="tau"):
        Drift("exponential", delta=1.0, tau=0.0)


def test_segment_shift_is_reproducible_and_independent_per_segment():
    base = {"flow_rate": Normal(696.0, 7.0), "line_load": Constant(84.0)}
    shifts = {"flow_rate": SegmentShift(3.0)}
    a = segment_marginals(base, 7, shifts=shifts, seed=1)["flow_rate"].nominal
    b = segment_marginals(base, 7, shifts=shifts, seed=1)["flow_rate"].nominal
    c = segment_marginals(base, 8, shifts=shifts, seed=1)["flow_rate"].nominal
    assert a == b != c
    offsets = [segment_marginals(base, k, shifts=shifts, seed=1)["flow_rate"].nominal - 696 for k in range(2000)]
    assert np.std(offsets) == pytest.approx(3.0, rel=0.05)
    drifted = segment_marginals(base, 0, t_s=3600.0, drifts={"line_load": Drift("linear", rate=-1.0)})
    assert drifted["line_load"].nominal == pytest.approx(83.0)
