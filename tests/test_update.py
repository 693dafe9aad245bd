"""Update loop: measured inputs, gauge conditioning, tolerances, coalescing, pluggable cell step."""

import math
import time

import numpy as np
import pytest

from models.uncertainty import Normal
from twin.segments import LineLayout, SegmentTracker
from twin.store import Measurement, open_store
from twin.update import (Predictor, SegmentBook, SegmentSnapshot, SensorUncertainty, UpdateConfig, UpdateLoop,
                         weighted_summary)


@pytest.fixture(scope="module")
def predictor(paper_scenario):
    return Predictor(paper_scenario, UpdateConfig(samples=10_000, spec={"m_dry": (13.9, 14.7)}))


def snap(measured, segment=4, stage="coating"):
    return SegmentSnapshot("line1", segment, measured, None, None, None, sum(v[2] for v in measured.values()),
                           [time.time()], stage)


def q(pred, name):
    return pred.summary["quantities"][name]


def test_weighted_summary_uniform_matches_numpy():
    x = np.random.default_rng(1).normal(10.0, 2.0, 10_000)
    s = weighted_summary({"m_dry": x}, ["m_dry"], None)["m_dry"]
    assert s["mean"] == pytest.approx(x.mean())
    assert s["std"] == pytest.approx(x.std(ddof=1))
    for key, p in (("p05", 5), ("p50", 50), ("p95", 95)):
        assert s[key] == pytest.approx(np.percentile(x, p), abs=0.01)
    h = s["hist"]
    widths = np.diff(h["edges"])
    assert float(np.sum(np.array(h["density"]) * widths)) == pytest.approx(0.99, abs=0.01)


def test_weighted_summary_weights_move_the_quantiles():
    x = np.linspace(0.0, 1.0, 10_001)
    w = np.where(x > 0.5, 1.0, 0.0)
    w /= w.sum()
    s = weighted_summary({"m_dry": x}, ["m_dry"], w)["m_dry"]
    assert s["p05"] == pytest.approx(0.525, abs=2e-3)
    assert s["p50"] == pytest.approx(0.75, abs=2e-3)
    assert s["mean"] == pytest.approx(0.75, abs=1e-3)


def test_prior_is_the_scenario_chain(predictor, paper_scenario):
    from twin.montecarlo import run

    pred, _ = predictor.predict(snap({}))
    ref = run(paper_scenario, 10_000, 0, 4)
    assert pred.method == "prior" and pred.ess == 10_000
    assert q(pred, "m_dry")["mean"] == pytest.approx(float(np.mean(ref["m_dry"])), rel=1e-12)
    assert q(pred, "m_dry")["std"] == pytest.approx(float(np.std(ref["m_dry"], ddof=1)), rel=1e-6)


def test_measured_inputs_move_and_narrow_the_prediction(predictor):
    prior, _ = predictor.predict(snap({}))
    meas = {"flow_rate": (720.0, 0.0, 10), "web_speed": (1.0, 0.0, 10), "coating_width": (125.0, 0.0, 10)}
    pred, _ = predictor.predict(snap(meas))
    # h_wet = flow / (speed * width): 720 / 696 of the nominal
    assert q(pred, "h_wet")["mean"] == pytest.approx(q(prior, "h_wet")["mean"] * 720 / 696, rel=0.01)
    assert q(pred, "h_wet")["std"] < 0.7 * q(prior, "h_wet")["std"]


def test_a_wet_gauge_narrows_the_prediction_by_bayes_rule(paper_scenario):
    """Importance re-weighting reproduces the Gaussian posterior of m_wet and narrows everything downstream."""
    cfg = UpdateConfig(samples=10_000, sensors={"m_wet": SensorUncertainty(std=0.15)})
    p = Predictor(paper_scenario, cfg)
    prior, _ = p.predict(snap({}))
    mu0, s0 = q(prior, "m_wet")["mean"], q(prior, "m_wet")["std"]
    y, sig = 20.9, 0.15
    pred, _ = p.predict(snap({"m_wet": (y, 0.0, 20)}))
    post_var = 1.0 / (1.0 / s0**2 + 1.0 / sig**2)
    post_mean = post_var * (mu0 / s0**2 + y / sig**2)
    assert pred.method == "importance" and 500 < pred.ess < 10_000
    assert q(pred, "m_wet")["mean"] == pytest.approx(post_mean, abs=0.02)
    assert q(pred, "m_wet")["std"] == pytest.approx(math.sqrt(post_var), rel=0.1)
    for name in ("m_dry", "h_dry", "h_cal"):
        assert q(pred, name)["std"] < 0.8 * q(prior, name)["std"], name
    assert pred.summary["measured"]["m_wet"]["mean"] == y


def test_a_gauge_the_model_cannot_explain_overrides_and_alerts(predictor):
    pred, alerts = predictor.predict(snap({"m_dry": (18.0, 0.0, 5)}))       # 9 sigma above the prior
    assert pred.method == "override"
    assert q(pred, "m_dry")["mean"] == pytest.approx(18.0, rel=0.01)
    kinds = {a.kind for a in alerts}
    assert "model_mismatch" in kinds and "out_of_tolerance" in kinds
    mm = next(a for a in alerts if a.kind == "model_mismatch")
    assert "m_dry = 18" in mm.message and "sigma" in mm.message


def test_probability_out_of_tolerance(predictor):
    prior, _ = predictor.predict(snap({}))
    p_prior = q(prior, "m_dry")["p_out"]
    # Normal prior m_dry 14.3 +- 0.4: P(outside [13.9, 14.7]) ~ 0.32
    assert 0.2 < p_prior < 0.45
    assert prior.p_out == pytest.approx(p_prior)
    good, _ = predictor.predict(snap({"m_dry": (14.3, 0.0, 5)}))
    assert q(good, "m_dry")["p_out"] < 0.01


def test_predictions_are_reproducible(predictor):
    meas = {"flow_rate": (700.0, 1.0, 3), "m_wet": (20.6, 0.1, 3)}
    a, _ = predictor.predict(snap(meas))
    b, _ = predictor.predict(snap(meas))
    assert a.summary["quantities"] == b.summary["quantities"]


def test_cell_step_is_pluggable(paper_scenario):
    class LinearCell:
        """A test double with the interface of twin.cell's surrogate (inputs, outputs, __call__)."""
        inputs = ("m_dry", "eps_cal")
        outputs = ("capacity", "energy_density")

        def __call__(self, s):
            cap = 0.1686 * s["m_dry"]
            return {"capacity": cap, "energy_density": 1892.0 * (1 - (s["eps_cal"] - 0.315))}

    p = Predictor(paper_scenario, UpdateConfig(samples=2000, spec={"capacity": (2.35, None)}), cell=LinearCell())
    pred, _ = p.predict(snap({"m_dry": (14.3, 0.0, 1)}))
    assert pred.model == "chain+cell"
    # the cell step runs on a by-weight subsample of the chain samples
    assert q(pred, "capacity")["mean"] == pytest.approx(0.1686 * q(pred, "m_dry")["mean"], rel=2e-3)
    assert "p_out" in q(pred, "capacity") and "energy_density" in pred.summary["quantities"]


def test_measured_input_becomes_normal_at_value_with_sensor_and_within_spread(paper_scenario):
    p = Predictor(paper_scenario, UpdateConfig(sensors={"flow_rate": SensorUncertainty(std=3.0)}))
    marg = p._marginals({"flow_rate": (700.0, 4.0, 9)}, 0, 0.0)
    assert marg["flow_rate"] == Normal(700.0, 5.0)
    assert marg["line_load"] == paper_scenario.marginals["line_load"]


def _m(name, seg, value, ts, station="coater", batch=None):
    return Measurement("line1", station, name, ts, value, "-", "mqtt", "a", ts + 0.001, ts, segment=seg,
                       batch=batch)


def test_book_coalesces_a_burst_into_one_update():
    tr = SegmentTracker(LineLayout())
    tr.observe("web_speed", 0.0, 6.0)
    book = SegmentBook({"line1": tr})
    book.add([_m("flow_rate", 3, 690.0 + i, 30.0 + i * 0.01) for i in range(100)])
    snaps = book.take_dirty()
    assert len(snaps) == 1 and len(snaps[0].pending_received) == 100
    mean, std, n = snaps[0].measured["flow_rate"]
    assert n == 100 and mean == pytest.approx(739.5) and std == pytest.approx(np.std(np.arange(100), ddof=1))
    assert book.take_dirty() == []


def test_book_batch_values_reach_the_segments_of_that_batch():
    tr = SegmentTracker(LineLayout(feed_dead_time_s=0.0))
    tr.observe("web_speed", 0.0, 6.0)                # segment k starts at 10 k s
    tr.observe("batch_id", -1.0, "B1")
    tr.observe("batch_id", 35.0, "B2")
    book = SegmentBook({"line1": tr})
    book.add([_m("flow_rate", k, 700.0, 10.0 * k + 1) for k in range(6)])
    book.take_dirty()
    book.add([_m("x_solids", None, 0.69, 40.0, station="mixer", batch="B2")])
    (s,) = book.take_dirty()
    assert s.segment == 5 and s.batch == "B2" and s.measured["x_solids"][0] == 0.69
    assert "x_solids" not in book.snapshot("line1", 2).measured     # coated from B1


def test_update_loop_stores_predictions_and_alerts_once(tmp_path, paper_scenario):
    store = open_store(tmp_path / "u.sqlite")
    tr = SegmentTracker(LineLayout())
    book = SegmentBook({"line1": tr})
    p = Predictor(paper_scenario, UpdateConfig(samples=1000, spec={"m_dry": (13.9, 14.7)}))
    seen = []
    loop = UpdateLoop(book, p, store, listeners=[lambda pred, al: seen.append((pred.segment, len(al)))])
    book.add([_m("m_dry", 1, 16.0, 1.0, station="dryer")])
    assert loop.run_once() == 1
    book.add([_m("m_dry", 1, 16.0, 2.0, station="dryer")])
    assert loop.run_once() == 1
    assert loop.run_once() == 0
    assert [s for s, _ in seen] == [1, 1]
    assert len(store.predictions("line1", 1)) == 2
    kinds = [a["kind"] for a in store.alerts()]
    assert sorted(kinds) == ["model_mismatch", "out_of_tolerance"]      # raised once, not on every update
    assert loop.latency.count == 2
    store.close()


def test_cell_samples_outside_the_surrogate_design_space_are_left_out(paper_scenario):
    class HalfDesignCell:
        """Test double: NaN (outside the design space) for m_dry above its median, like policy="nan"."""
        inputs = ("m_dry",)
        outputs = ("capacity", "energy_density")

        def __call__(self, s):
            m = s["m_dry"]
            cut = np.median(m)
            cap = np.where(m <= cut, 0.1686 * m, np.nan)
            return {"capacity": cap, "energy_density": np.where(m <= cut, 1892.0, np.nan)}

    p = Predictor(paper_scenario, UpdateConfig(samples=4000, spec={"capacity": (None, 2.0)}), cell=HalfDesignCell())
    pred, _ = p.predict(snap({}))
    assert pred.summary["cell_outside_design"] == pytest.approx(0.5, abs=0.01)
    cap = q(pred, "capacity")
    assert math.isfinite(cap["mean"]) and cap["p95"] <= 0.1686 * q(pred, "m_dry")["p50"] + 1e-3
    assert 0.0 <= cap["p_out"] <= 1.0


def test_mixer_values_before_their_batch_signal_still_reach_the_batch():
    """Transports race: values of a batch may arrive before the batch signal; the batch is resolved lazily."""
    tr = SegmentTracker(LineLayout(feed_dead_time_s=10.0))
    tr.observe("web_speed", 0.0, 6.0)
    tr.observe("batch_id", -50.0, "B1")
    book = SegmentBook({"line1": tr})
    book.add([_m("x_solids", None, 0.69, 30.0, station="mixer")])      # B2 not signalled yet
    tr.observe("batch_id", 30.0, "B2")                                 # B2 started at 30 s (same ts)
    book.add([_m("flow_rate", k, 700.0, 10.0 * k + 1) for k in range(6)])
    s4 = book.snapshot("line1", 4)     # starts at 40 s, coated from the batch current at 30 s: B2
    s3 = book.snapshot("line1", 3)     # 30 - 10 = 20 s: B1
    assert s4.batch == "B2" and s4.measured["x_solids"][0] == 0.69
    assert s3.batch == "B1" and "x_solids" not in s3.measured


def test_process_parameters_hold_for_segments_without_a_reading():
    layout = LineLayout(segment_length_m=1.0, positions={"coater": 0.0, "calender": 5.0})
    tr = SegmentTracker(layout)
    tr.observe("web_speed", 0.0, 6.0)                  # segment k passes the die at 10 k s, the calender 50 s later
    book = SegmentBook({"line1": tr}, hold={"web_speed", "line_load"}, hold_s=30.0)
    book.add([_m("web_speed", 0, 6.0, 0.0), _m("line_load", None, 80.0, 55.0, station="calender"),
              _m("line_load", None, 90.0, 75.0, station="calender")])
    s0 = book.snapshot("line1", 0)                     # at the calender at 50 s: no reading yet within 30 s before
    assert s0.measured["web_speed"] == (6.0, 0.0, 1) and "line_load" not in s0.measured
    s1 = book.snapshot("line1", 1)                     # at the calender at 60 s: the 80 N/mm of 55 s holds
    assert s1.measured["line_load"] == (80.0, 0.0, 0) and s1.measured["web_speed"] == (6.0, 0.0, 0)
    s3 = book.snapshot("line1", 3)                     # at the calender at 80 s: 90 N/mm
    assert s3.measured["line_load"] == (90.0, 0.0, 0)
    s9 = book.snapshot("line1", 9)                     # not at the calender yet: the current setpoint forecasts it
    assert s9.measured["line_load"] == (90.0, 0.0, 0)


def test_a_segment_the_model_cannot_predict_gets_an_alert_not_a_crash(tmp_path, paper_scenario):
    store = open_store(tmp_path / "f.sqlite")
    book = SegmentBook({"line1": SegmentTracker(LineLayout())})
    loop = UpdateLoop(book, Predictor(paper_scenario, UpdateConfig(samples=500)), store)
    book.add([_m("flow_rate", 1, 696.0 * 60, 1.0), _m("flow_rate", 2, 696.0, 1.0)])  # 60x: beyond the meta-model
    assert loop.run_once() == 0      # segment 1: no prediction
    assert loop.run_once() == 1      # segment 2
    (a,) = store.alerts()
    assert a["kind"] == "prediction_failed" and a["segment"] == 1 and "eps_dry" in a["message"]
    assert [s["segment"] for s in store.segments() if s["prediction"]] == [2]
    store.close()
