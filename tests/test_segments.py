"""Segment tracking: web position from speed, station attribution, slurry batches — hand-computed cases."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.segments import BatchTracker, LineLayout, SegmentTracker, WebTracker


def test_constant_speed_integrates_to_distance():
    w = WebTracker()
    w.add_speed(100.0, 6.0)          # 6 m/min = 0.1 m/s
    assert w.position_at(100.0) == 0.0
    assert w.position_at(110.0) == pytest.approx(1.0)
    assert w.position_at(99.0) is None


def test_zero_order_hold_between_speed_readings():
    w = WebTracker()
    w.add_speed(0.0, 6.0)            # 0.1 m/s for 10 s -> 1 m
    w.add_speed(10.0, 12.0)          # 0.2 m/s for 5 s -> +1 m
    w.add_speed(15.0, 0.0)           # stopped
    assert w.position_at(5.0) == pytest.approx(0.5)
    assert w.position_at(12.5) == pytest.approx(1.5)
    assert w.position_at(15.0) == pytest.approx(2.0)
    assert w.position_at(100.0) == pytest.approx(2.0)
    assert w.time_at(1.5) == pytest.approx(12.5)
    assert w.time_at(2.0) == pytest.approx(15.0)
    assert w.time_at(2.5) is None      # never reached: the web stopped


def test_late_speed_reading_is_inserted_and_later_positions_move():
    w = WebTracker()
    w.add_speed(0.0, 6.0)
    w.add_speed(20.0, 6.0)
    assert w.position_at(20.0) == pytest.approx(2.0)
    w.add_speed(10.0, 12.0)          # arrives late: 0.2 m/s from 10 s to 20 s
    assert w.position_at(20.0) == pytest.approx(1.0 + 2.0)
    assert w.position_at(5.0) == pytest.approx(0.5)


def test_reading_before_the_first_keeps_positions_already_given():
    w = WebTracker()
    w.add_speed(10.0, 6.0)
    w.add_speed(5.0, 6.0)
    assert w.position_at(10.0) == 0.0
    assert w.position_at(5.0) == pytest.approx(-0.5)


def test_history_window_drops_old_breakpoints():
    w = WebTracker(history_s=100.0)
    for t in range(0, 1000, 10):
        w.add_speed(float(t), 6.0)
    assert w.position_at(0.0) is None
    assert w.position_at(990.0) == pytest.approx(99.0)


def test_station_attribution_hand_computed():
    layout = LineLayout(segment_length_m=1.0, positions={"coater": 0.0, "gauges": 2.0, "dryer": 25.0,
                                                         "calender": 35.0, "gauges/h_wet": 0.5})
    tr = SegmentTracker(layout)
    tr.observe("web_speed", 0.0, 6.0)      # 0.1 m/s
    # at t = 300 s the coated length is 30 m
    assert tr.attribute("coater", "flow_rate", 300.0).segment == 30
    assert tr.attribute("gauges", "m_wet", 300.0).segment == 28
    assert tr.attribute("gauges", "h_wet", 300.0).segment == 29     # per-quantity position override
    assert tr.attribute("dryer", "m_dry", 300.0).segment == 5
    a = tr.attribute("calender", "h_cal", 300.0)
    assert a.segment is None and "30.000 m < station position 35 m" in a.reason
    assert tr.attribute("calender", "h_cal", 360.5).segment == 1    # 36.05 m - 35 m
    assert tr.segments_at(300.0) == {"coater": 30, "gauges": 28, "dryer": 5}
    unknown = tr.attribute("slitter", "coating_width", 300.0)
    assert unknown.segment is None and "slitter" in unknown.reason


def test_measurement_before_any_speed_is_not_attributed():
    tr = SegmentTracker(LineLayout())
    a = tr.attribute("coater", "flow_rate", 5.0)
    assert a.segment is None and a.reason == "no web speed known at this time"


def test_segment_boundary_belongs_to_the_next_segment():
    tr = SegmentTracker(LineLayout(segment_length_m=0.5, positions={"coater": 0.0}))
    tr.observe("web_speed", 0.0, 30.0)     # 0.5 m/s: one segment per second
    assert tr.attribute("coater", "flow_rate", 1.0).segment == 1   # x = 0.5 m: start of segment 1
    assert tr.attribute("coater", "flow_rate", 0.999).segment == 0


def test_batches_with_feed_dead_time():
    layout = LineLayout(segment_length_m=1.0, positions={"coater": 0.0}, feed_dead_time_s=20.0)
    tr = SegmentTracker(layout)
    tr.observe("web_speed", 0.0, 6.0)          # a segment per 10 s
    tr.observe("batch_id", -100.0, "B1")
    tr.observe("batch_id", 50.0, "B2")     # B2 reaches the die at 70 s
    # mixer values belong to the batch current when measured
    assert tr.attribute("mixer", "x_solids", 49.9).batch == "B1"
    assert tr.attribute("mixer", "x_solids", 50.0).batch == "B2"
    # segment k starts at 10 k s; coated from the batch current at 10 k - 20 s
    assert tr.segment_start_ts(6) == pytest.approx(60.0)
    assert tr.segment_batch(6) == "B1"         # 60 - 20 = 40 < 50
    assert tr.segment_batch(7) == "B2"         # 70 - 20 = 50
    assert tr.segment_batch(8) == "B2"


def test_mixer_value_before_any_batch_says_why():
    tr = SegmentTracker(LineLayout())
    a = tr.attribute("mixer", "x_solids", 1.0)
    assert a.batch is None and a.segment is None and "no slurry batch" in a.reason


def test_batch_tracker_idempotent():
    b = BatchTracker()
    assert b.add(10.0, "B1") is True
    assert b.add(10.0, "B1") is False
    assert len(b) == 1


def test_tracker_state_round_trip():
    tr = SegmentTracker(LineLayout(feed_dead_time_s=5.0))
    tr.observe("web_speed", 0.0, 6.0)
    tr.observe("web_speed", 10.0, 3.0)
    tr.observe("batch_id", 0.0, "B9")
    again = SegmentTracker.from_state(tr.layout, tr.state())
    for t in (3.0, 12.0, 40.0):
        assert again.attribute("coater", "flow_rate", t) == tr.attribute("coater", "flow_rate", t)
    assert again.segment_batch(1) == "B9"


def test_stage_is_the_furthest_measured_stage():
    tr = SegmentTracker(LineLayout())
    assert tr.segment_stage(["flow_rate", "m_wet"]) == "coating"
    assert tr.segment_stage(["flow_rate", "m_dry"]) == "drying"
    assert tr.segment_stage(["h_cal", "m_dry", "x_solids"]) == "calendering"


def test_layout_rejects_bad_geometry():
    with pytest.raises(ValueError, match="segment_length_m = 0"):
        LineLayout(segment_length_m=0)
    with pytest.raises(ValueError, match="position of dryer = -1"):
        LineLayout(positions={"dryer": -1.0})


speeds = st.lists(st.tuples(st.floats(0.1, 100.0), st.floats(0.0, 50.0)), min_size=1, max_size=30)


@given(speeds)
@settings(max_examples=200, deadline=None)
def test_position_is_monotone_and_equals_the_integral(steps):
    """x(t) never decreases, matches the sum of speed x duration, and time_at inverts it."""
    w = WebTracker(history_s=1e12)
    t, total, checkpoints = 0.0, 0.0, []
    for dt, v in steps:
        w.add_speed(t, v)
        checkpoints.append((t, total))
        total += v / 60.0 * dt
        t += dt
    last_v = steps[-1][1]
    prev = -math.inf
    for tc, xc in checkpoints:
        x = w.position_at(tc)
        assert x == pytest.approx(xc, rel=1e-9, abs=1e-9)
        assert x >= prev
        prev = x
    assert w.position_at(t) == pytest.approx(total, rel=1e-9, abs=1e-9)
    if last_v > 0 and total > 0:
        target = 0.5 * total
        tt = w.time_at(target)
        assert tt is not None and w.position_at(tt) == pytest.approx(target, rel=1e-9, abs=1e-9)


@given(st.permutations(list(range(12))))
@settings(max_examples=60, deadline=None)
def test_speed_readings_in_any_order_give_the_same_web(order):
    """Out-of-order arrival of speed readings ends in the same positions once all are in."""
    vals = [(10.0 * i, 3.0 + (i % 4)) for i in range(12)]
    ref = WebTracker()
    for t, v in vals:
        ref.add_speed(t, v)
    w = WebTracker()
    for i in order:
        w.add_speed(*vals[i])
    shift = ref.position_at(0.0) - w.position_at(0.0)
    for t in (0.0, 15.0, 55.0, 119.0, 200.0):
        assert w.position_at(t) + shift == pytest.approx(ref.position_at(t))
