"""Ingestion: validation with reasons, exactly-once storage, dead letters and their replay."""

import math
import time
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streaming_support import reading

from twin.ingest import (AddressMapping, Ingestor, Rejected, ValidationPolicy, parse_payload,
                         replay_dead_letters, validate)
from twin.segments import LineLayout
from twin.store import open_store

POLICY = ValidationPolicy()


def rejected(r, policy=POLICY) -> Rejected:
    with pytest.raises(Rejected) as info:
        validate(r, policy)
    return info.value


def test_valid_reading_is_converted_to_canonical_units():
    m = validate(reading("flow_rate", 11.6, "mL/min"), POLICY)
    assert m.value == pytest.approx(696.0) and m.unit == "cm3/h" and m.raw_unit == "mL/min"
    assert validate(reading("h_cal", 0.0485, "mm", station="calender"), POLICY).value == pytest.approx(48.5)
    assert validate(reading("eps_cal", 31.5, "%", station="calender"), POLICY).value == pytest.approx(0.315)
    assert validate(reading("web_speed", 1.0, None), POLICY).value == 1.0


@pytest.mark.parametrize("value,fragment", [
    ("abc", "flow_rate = 'abc' (str) is not a number"),
    (True, "(bool) is not a number"),
    (None, "(NoneType) is not a number"),
    (float("nan"), "flow_rate = nan is not a finite number"),
    (float("inf"), "flow_rate = inf is not a finite number"),
    (-5.0, "flow_rate = -5 cm3/h is outside its physical range [0, 1e+06] cm3/h"),
])
def test_bad_values_are_rejected_naming_field_value_and_limit(value, fragment):
    exc = rejected(reading("flow_rate", value))
    assert fragment in exc.reason
    assert "electrode/line1/coater/flow_rate" in exc.reason
    assert exc.field == "value"


def test_wrong_unit_dimension_is_rejected():
    exc = rejected(reading("m_wet", 20.5, "kg", station="gauges"))
    assert exc.field == "unit" and "m_wet given in 'kg'" in exc.reason and exc.limit == "mg/cm2"


def test_timestamps_missing_future_or_too_old():
    now = time.time()
    assert "ts missing" in rejected(replace(reading(), source_ts=None)).reason
    exc = rejected(reading(ts=now + 60, received=now))
    assert exc.field == "ts" and "60.000 s in the future" in exc.reason and "limit 5 s" in exc.reason
    exc = rejected(reading(ts=now - 100_000, received=now))
    assert "old at receipt (limit 86400 s)" in exc.reason
    # OPC UA without a source timestamp: the server timestamp is used
    m = validate(replace(reading(), source_ts=None, server_ts=now - 2), POLICY)
    assert m.ts == now - 2


def test_unmapped_unknown_name_bad_status_and_connector_errors():
    assert "maps to no quantity" in rejected(replace(reading(), name=None)).reason
    exc = rejected(reading("flow_rat"))
    assert "'flow_rat' is not a canonical quantity; did you mean flow_rate" in exc.reason
    exc = rejected(replace(reading(source="opcua"), status="BadCommunicationError"))
    assert exc.field == "status" and "'BadCommunicationError' is not accepted" in exc.reason
    exc = rejected(replace(reading(), error="malformed JSON: Expecting value", payload="{oops"))
    assert exc.field == "payload" and "malformed JSON" in exc.reason


def test_plausibility_limits_from_config():
    pol = ValidationPolicy(limits={"web_speed": (0.0, 5.0)})
    exc = rejected(reading("web_speed", 7.0, "m/min"), pol)
    assert "web_speed = 7 m/min is outside its plausibility limits [0, 5] m/min" in exc.reason


def test_batch_signal_is_text():
    m = validate(reading("batch_id", "B0007", None, station="mixer"), POLICY)
    assert m.text_value == "B0007" and m.value is None
    assert "is not a batch id" in rejected(reading("batch_id", "  ", None, station="mixer")).reason


def test_parse_payload():
    assert parse_payload('{"value": 20.4, "unit": "mg/cm2", "ts": "2026-11-25T15:00:00.123Z"}') == \
        (20.4, "mg/cm2", pytest.approx(1795618800.123))
    with pytest.raises(ValueError, match="no 'value'"):
        parse_payload('{"v": 1}')


@pytest.fixture
def ing(tmp_path):
    store = open_store(tmp_path / "i.sqlite")
    stored = []
    ing = Ingestor(store, LineLayout(), POLICY, on_stored=stored.extend)
    ing.stored_list = stored
    yield ing
    store.close()


def test_exactly_once_with_redelivery_and_dead_letters_counted(ing):
    t0 = time.time() - 50
    good = [reading("flow_rate", 696.0 + i, ts=t0 + i) for i in range(20)]
    bad = [reading("flow_rate", "x", ts=t0 + 100 + i) for i in range(5)]
    ing.process(good + bad)
    ing.process(good[:10] + bad[:2])            # QoS 1 redelivery of some good and some bad ones
    s = ing.stats
    assert (s.stored, s.duplicates, s.dead_lettered) == (20, 10, 7)
    assert s.dead_letters_repeated == 2
    c = ing.store.counts()
    assert c["measurements"] == 20 and c["dead_letters"] == 5
    assert len(ing.stored_list) == 20


def test_conflicting_value_for_the_same_measurement_is_dead_lettered(ing):
    ts = time.time() - 1
    ing.process([reading("flow_rate", 696.0, ts=ts)])
    ing.process([reading("flow_rate", 697.0, ts=ts)])
    (dl,) = ing.store.dead_letters()
    assert "conflicts with the stored value 696" in dl["reason"]
    assert ing.stats.conflicts == 1


def test_duplicates_across_a_restart_are_caught_by_the_store(tmp_path):
    store = open_store(tmp_path / "r.sqlite")
    ts = time.time() - 1
    Ingestor(store).process([reading(ts=ts)])
    fresh = Ingestor(store)                     # no memory of the first
    fresh.process([reading(ts=ts)])
    assert (fresh.stats.stored, fresh.stats.duplicates) == (0, 1)
    assert store.counts()["measurements"] == 1
    store.close()


def test_attribution_to_segments_and_batches(ing):
    t0 = time.time() - 100
    ing.process([reading("web_speed", 6.0, "m/min", ts=t0),             # 0.1 m/s
                 reading("batch_id", "B1", None, station="mixer", ts=t0 - 5),
                 reading("m_wet", 20.5, "mg/cm2", station="gauges", ts=t0 + 50),   # x = 5 m, gauge at 2 m
                 reading("x_solids", 0.7, None, station="mixer", ts=t0 + 1)])
    rows = {r["name"]: r for r in ing.store.measurements()}
    assert rows["m_wet"]["segment"] == 3
    assert rows["x_solids"]["batch"] == "B1" and rows["x_solids"]["segment"] is None
    seg = ing.store.segments()
    assert seg[0]["segment"] == 3 and seg[0]["batch"] == "B1" and seg[0]["n_measurements"] == 1


def test_writer_thread_acks_after_commit(ing):
    acked = []
    ing.start()
    t0 = time.time() - 10
    for i in range(500):
        ing.submit(reading(value=700.0, ts=t0 + i * 0.01), ack=lambda i=i: acked.append(i))
    assert ing.drain(30)
    ing.stop()
    assert sorted(acked) == list(range(500))
    s = ing.stats
    assert s.received == 500 == s.stored + s.duplicates + s.dead_lettered


def test_replay_after_a_mapping_fix(tmp_path):
    store = open_store(tmp_path / "d.sqlite")
    ts = time.time() - 5
    topic = "electrode/line1/coater/pump_flow"
    r = reading("flow_rate", None, None, ts=ts, address=topic, payload='{"value": 11.6, "unit": "mL/min"}')
    r = replace(r, name=None, value=None, unit=None, error=f"topic {topic} maps to no quantity")
    wrong_unit = reading("m_wet", 20.5, "kg", station="gauges", ts=ts, address="plc/gauge1")
    Ingestor(store).process([r, wrong_unit])
    assert store.counts()["dead_letters_open"] == 2
    # without a fix a replay changes nothing
    out = replay_dead_letters(Ingestor(store))
    assert out["still_invalid"] == 2 and store.counts()["dead_letters_open"] == 2
    fixed = ValidationPolicy(mapping={topic: AddressMapping(name="flow_rate", station="coater"),
                                      "plc/gauge1": AddressMapping(unit="mg/cm2")})
    out = replay_dead_letters(Ingestor(store, policy=fixed))
    assert out["replayed"] == 2 and out["still_invalid"] == 0
    assert store.counts()["dead_letters_open"] == 0
    rows = {x["name"]: x for x in store.measurements()}
    assert rows["flow_rate"]["value"] == pytest.approx(696.0)
    assert rows["m_wet"]["value"] == 20.5
    dls = store.dead_letters(state="replayed")
    assert {d["measurement_id"] for d in dls} == {rows["flow_rate"]["id"], rows["m_wet"]["id"]}
    # replaying again finds nothing open
    assert replay_dead_letters(Ingestor(store, policy=fixed))["replayed"] == 0
    store.close()


def test_resume_restores_tracking(tmp_path):
    store = open_store(tmp_path / "res.sqlite")
    t0 = time.time() - 300
    a = Ingestor(store, checkpoint_s=0.0)
    a.process([reading("web_speed", 6.0, "m/min", ts=t0), reading("batch_id", "B4", None, station="mixer", ts=t0)])
    a.process([reading("web_speed", 12.0, "m/min", ts=t0 + 100)])
    b = Ingestor(store)
    b.resume()
    tr = b.trackers["line1"]
    assert tr.web.position_at(t0 + 150) == pytest.approx(10.0 + 10.0)
    assert tr.batches.batch_at(t0 + 1) == "B4"
    b.process([reading("m_dry", 14.3, "mg/cm2", station="dryer", ts=t0 + 150)])   # x = 20 m, dryer at 25 m
    assert store.measurements()[-1]["segment"] is None
    b.process([reading("m_dry", 14.3, "mg/cm2", station="dryer", ts=t0 + 200)])   # x = 30 m -> segment 5
    assert store.measurements()[-1]["segment"] == 5
    store.close()


values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6), st.text(max_size=5),
                   st.none(), st.booleans(), st.lists(st.integers(), max_size=2))
units = st.sampled_from([None, "mg/cm2", "g/m2", "kg", "um", "%", "nonsense unit", "", "-"])
names = st.sampled_from(["m_wet", "eps_cal", "web_speed", "batch_id", "nope", None])


@given(names, values, units, st.floats(-1e6, 1e6))
@settings(max_examples=300, deadline=None)
def test_validation_never_crashes_and_accepted_values_are_in_range(name, value, unit, dt):
    """Whatever arrives, validation either accepts a finite in-range canonical value or rejects with a reason."""
    now = 1.8e9
    r = reading(name or "m_wet", value, unit, ts=now + dt, received=now)
    if name is None:
        r = replace(r, name=None)
    try:
        m = validate(r, POLICY)
    except Rejected as exc:
        assert exc.reason and exc.field in ("value", "unit", "ts", "name", "status", "payload")
        return
    if m.name == "batch_id":
        assert m.text_value
    else:
        from models.quantities import QUANTITIES

        q = QUANTITIES[m.name]
        assert math.isfinite(m.value) and q.low <= m.value <= q.high
        assert -POLICY.max_age_s <= dt <= POLICY.max_future_s


def test_a_reading_the_store_refuses_is_isolated_and_dead_lettered(tmp_path):
    """A poison reading must not stall ingestion: after repeated failures the batch is written one by one and
    the reading the store refuses alone is dead-lettered with the store's reason."""
    from twin.store import SQLiteStore

    class Picky(SQLiteStore):
        def write_ingest(self, measurements, dead_letters=(), segments=(), state=None):
            if any(m.address == "plc/poison" for m in measurements):
                raise RuntimeError("value too long for type character varying(8)")
            return super().write_ingest(measurements, dead_letters, segments, state)

    store = Picky(tmp_path / "p.sqlite")
    ing = Ingestor(store)
    ing.start()
    t0 = time.time() - 5
    acked = []
    for i in range(20):
        ing.submit(reading(ts=t0 + i * 0.01), ack=lambda i=i: acked.append(i))
    ing.submit(reading(ts=t0 + 1, address="plc/poison"), ack=lambda: acked.append("poison"))
    assert ing.drain(30)
    ing.stop()
    assert store.counts()["measurements"] == 20
    (dl,) = store.dead_letters()
    assert "the store refused it: value too long" in dl["reason"] and dl["address"] == "plc/poison"
    assert len(acked) == 21
    s = ing.stats
    assert s.received == s.stored + s.duplicates + s.dead_lettered == 21
    store.close()


def test_line_and_station_must_be_names():
    assert rejected(replace(reading(), line=None)).field == "line"
    assert rejected(replace(reading(), station="")).field == "station"


def test_a_conflict_with_a_value_stored_before_a_restart_is_dead_lettered(tmp_path):
    store = open_store(tmp_path / "c.sqlite")
    ts = time.time() - 1
    Ingestor(store).process([reading(value=696.0, ts=ts)])
    fresh = Ingestor(store)                      # no memory of the first value
    fresh.process([reading(value=700.0, ts=ts), reading(value=696.0, ts=ts + 1)])
    s = fresh.stats
    assert (s.stored, s.duplicates, s.dead_lettered, s.conflicts) == (1, 0, 1, 1)
    (dl,) = store.dead_letters()
    assert "= 700 conflicts with the stored value 696" in dl["reason"]
    again = Ingestor(store)
    again.process([reading(value=696.0, ts=ts)])  # the same value again: a plain duplicate
    assert (again.stats.duplicates, again.stats.dead_lettered) == (1, 0)
    store.close()
