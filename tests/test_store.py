"""State store: idempotent measurements, dead letters, segments, predictions — SQLite and a real PostgreSQL."""

import threading
import time

import pytest
from streaming_support import pg_database

from twin.store import (Alert, DeadLetter, Measurement, Prediction, PostgresStore, SegmentRow, SQLiteStore,
                        open_store)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(tmp_path / "twin.sqlite")
        yield s
        s.close()
    else:
        with pg_database() as url:
            s = open_store(url)
            yield s
            s.close()


def m(name="flow_rate", ts=1000.0, value=696.0, station="coater", segment=3):
    return Measurement(line="line1", station=station, name=name, ts=ts, value=value, unit="cm3/h", source="mqtt",
                       address=f"electrode/line1/{station}/{name}", received_ts=ts + 0.01, source_ts=ts,
                       raw_value=repr(value), raw_unit="cm3/h", segment=segment)


def test_open_store_picks_the_back_end(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/a.sqlite")
    assert isinstance(s, SQLiteStore) and s.path == tmp_path / "a.sqlite"
    s.close()
    with pytest.raises(ValueError, match="sqlite:///"):
        open_store("sqlite://relative.sqlite")


def test_measurements_are_stored_once(store):
    r1 = store.write_ingest([m(ts=1.0), m(ts=2.0)])
    assert len(r1.inserted) == 2 and not r1.duplicates
    r2 = store.write_ingest([m(ts=2.0), m(ts=3.0), m(ts=3.0)])   # a redelivery and a duplicate in the batch
    assert [x.ts for x in r2.inserted] == [3.0]
    assert len(r2.duplicates) == 2
    assert store.counts()["measurements"] == 3
    assert store.measurement_id("line1", "coater", "flow_rate", 2.0) is not None
    assert store.measurement_id("line1", "coater", "flow_rate", 2.5) is None


def test_same_time_other_quantity_or_station_is_another_measurement(store):
    r = store.write_ingest([m(ts=1.0), m(ts=1.0, name="web_speed"), m(ts=1.0, station="gauges")])
    assert len(r.inserted) == 3


def test_microsecond_resolution_of_the_key(store):
    r = store.write_ingest([m(ts=1.000001), m(ts=1.000002)])
    assert len(r.inserted) == 2


def test_dead_letters_are_idempotent_and_keep_the_reading(store):
    reading = {"source": "mqtt", "address": "electrode/line1/coater/flow_rate", "line": "line1",
               "station": "coater", "name": "flow_rate", "value": "abc", "unit": "cm3/h", "received_ts": 5.0}
    d = DeadLetter("k1", reading, "flow_rate = 'abc' is not a number", "value", "'abc'", "a real number")
    r1 = store.write_ingest([], [d])
    r2 = store.write_ingest([], [d])
    assert (r1.dead_letters_new, r2.dead_letters_repeated) == (1, 1)
    rows = store.dead_letters()
    assert len(rows) == 1
    assert rows[0]["reading"]["value"] == "abc" and rows[0]["field"] == "value"
    store.mark_replayed(rows[0]["id"], None, "still bad", state="still_invalid")
    assert store.dead_letters() == []
    assert store.dead_letters(state=None)[0]["replay_note"] == "still bad"
    assert store.counts()["dead_letters_open"] == 0


def test_text_with_nul_characters_is_kept(store):
    """A malformed message may carry NUL characters (PostgreSQL text cannot): the dead letter is kept."""
    reading = {"source": "mqtt", "address": "electrode/line1/coater/flow_rate", "payload": "{\x00bad",
               "line": "line1", "received_ts": 1.0}
    r = store.write_ingest([], [DeadLetter("nul", reading, "malformed JSON \x00", "payload", "{\x00bad", None)])
    assert r.dead_letters_new == 1
    assert store.dead_letters()[0]["reading"]["payload"] == "{\x00bad"


def test_segments_predictions_and_state(store):
    store.write_ingest([m(ts=1.0)], segments=[SegmentRow("line1", 3, 0.5, "B1", "coating", 1, 1.0)],
                       state={"tracker": {"x": [1, 2]}})
    p = Prediction("line1", 3, "coating", time.time(), 10_000, 1, 9000.0, "importance", "chain", 0.01,
                   {"quantities": {"m_dry": {"mean": 14.3}}}, trigger_received_ts=1.0)
    (pid,) = store.write_predictions([p], [Alert("line1", 3, 2.0, "out_of_tolerance", "m_dry", 0.2, "m_dry ...")])
    store.write_ingest([], segments=[SegmentRow("line1", 3, None, None, "drying", 2, 3.0)])
    seg = store.segments(last=5)
    assert len(seg) == 1
    s = seg[0]
    assert (s["segment"], s["batch"], s["stage"], s["n_measurements"]) == (3, "B1", "drying", 2)
    assert s["prediction"]["id"] == pid and s["prediction"]["quantities"]["m_dry"]["mean"] == 14.3
    p2 = Prediction("line1", 3, "drying", time.time(), 10_000, 2, 8000.0, "importance", "chain", 0.02,
                    {"quantities": {"m_dry": {"mean": 14.4}}})
    store.write_predictions([p2])
    assert store.segments(last=1)[0]["prediction"]["quantities"]["m_dry"]["mean"] == 14.4
    assert len(store.predictions("line1", 3)) == 2        # append-only history
    assert store.get_state("tracker") == {"x": [1, 2]}
    assert store.get_state("nothing") is None
    assert store.alerts()[0]["quantity"] == "m_dry"


def test_segments_newest_first_and_limited(store):
    store.write_ingest([], segments=[SegmentRow("line1", k, float(k)) for k in range(10)])
    assert [s["segment"] for s in store.segments(last=3)] == [9, 8, 7]
    assert store.segments(last=3)[0]["prediction"] is None


def test_iter_measurements_in_insertion_order(store):
    store.write_ingest([m(ts=float(i)) for i in range(50)])
    assert [r["ts"] for r in store.iter_measurements(chunk=7)] == [float(i) for i in range(50)]


def test_store_survives_reopen(tmp_path):
    path = tmp_path / "t.sqlite"
    with open_store(path) as s:
        s.write_ingest([m(ts=1.0)], state={"k": 1})
    with open_store(path) as s:
        assert s.counts()["measurements"] == 1 and s.get_state("k") == 1
        assert not s.write_ingest([m(ts=1.0)]).inserted


@pytest.mark.integration
def test_two_postgres_workers_store_a_redelivered_message_once():
    """Two twin workers on one PostgreSQL database receive the same message: the database keeps one."""
    with pg_database() as url:
        a, b = PostgresStore(url), PostgresStore(url)
        results = []
        batch = [m(ts=float(i)) for i in range(500)]

        def work(s):
            results.append(s.write_ingest([m(ts=x.ts) for x in batch]))

        ts = [threading.Thread(target=work, args=(s,)) for s in (a, b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert sum(len(r.inserted) for r in results) == 500
        assert sum(len(r.duplicates) for r in results) == 500
        assert a.counts()["measurements"] == 500
        a.close()
        b.close()
