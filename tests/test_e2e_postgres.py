"""Two twin workers on one PostgreSQL store split a line's MQTT traffic (shared subscription): every published
measurement is stored exactly once, and a segment's prediction rests on every worker's share."""

from __future__ import annotations

import time
import uuid

import pytest
from streaming_support import pg_database

pytestmark = pytest.mark.integration

pytest.importorskip("connectors.mqtt")
from connectors.mqtt import MqttPublisher, MqttSettings  # noqa: E402

from twin.cli.runner import Runner  # noqa: E402
from twin.runconfig import config_from_dict  # noqa: E402

BROKER = ("127.0.0.1", 1883)


def _up() -> bool:
    import socket

    try:
        with socket.create_connection(BROKER, timeout=1.0):
            return True
    except OSError:
        return False


def _worker(url, line, group, i):
    settings = config_from_dict({
        "line": {"id": line, "segment_length_m": 0.5, "positions": {"coater": 0.0, "dryer": 1.0}},
        "store": {"url": url}, "model": {"samples": 1000, "cell": "off"}, "web": {"enabled": False}})
    r = Runner(settings, web=False, cell=None)
    # the line's traffic, split between the workers; the runner adds an unshared subscription to the tracking
    # signals (each worker tracks the whole web; the store keeps them once)
    r.add_mqtt(MqttSettings(host=BROKER[0], port=BROKER[1], client_id=f"w{i}-{line}", lines=[line],
                            shared_group=group, ack="stored", receive_maximum=20_000))
    assert len(r.mqtt_sources) == 2
    assert r.mqtt_sources[1].filters == [f"electrode/{line}/coater/web_speed", f"electrode/{line}/mixer/batch_id"]
    return r


def test_two_workers_share_a_line_and_store_each_measurement_once():
    if not _up():
        pytest.skip("no Mosquitto on 127.0.0.1:1883")
    line = f"pg{uuid.uuid4().hex[:8]}"
    group = f"twin{uuid.uuid4().hex[:6]}"
    with pg_database() as url:
        workers = [_worker(url, line, group, i) for i in range(2)]
        try:
            for w in workers:
                w.start()
            for w in workers:
                for src in w.mqtt_sources:
                    assert src.wait_subscribed(15)
            pub = MqttPublisher(MqttSettings(host=BROKER[0], port=BROKER[1], client_id=f"pub-{line}")).start()
            assert pub.connected.wait(10)
            t0 = time.time() - 60.0
            msgs = []
            for i in range(400):
                ts = t0 + 0.05 * i                         # web at 60 m/min: 0.05 m per reading
                msgs.append(("coater", "web_speed", 60.0, "m/min", ts))
                msgs.append(("coater", "flow_rate", 696.0 * 60, "cm3/h", ts))
                msgs.append(("dryer", "m_dry", 14.3 + 0.001 * (i % 50), "mg/cm2", ts))
            for m in msgs:
                pub.publish_value(line, *m)
            for m in msgs[:150]:                          # redelivered
                pub.publish_value(line, *m)
            assert pub.flush(30)
            pub.stop()
            n_speed = 400
            # every message reaches one worker through the shared subscription; speed readings also reach
            # both through the tracking subscription
            expected = len(msgs) + 150 + 2 * (n_speed + 50)
            end = time.monotonic() + 60
            while time.monotonic() < end:
                got = sum(w.twin.ingestor.stats.received for w in workers)
                if got >= expected:
                    break
                time.sleep(0.1)
            for w in workers:
                assert w.twin.drain(60)
            stats = [w.twin.ingestor.stats for w in workers]
            assert sum(s.received for s in stats) == expected
            assert all(s.received == s.stored + s.duplicates + s.dead_lettered for s in stats)
            assert sum(s.stored for s in stats) == len(msgs)          # once in the store, whoever got it
            assert all(s.dead_lettered == 0 for s in stats)
            shared_share = [s.received - (n_speed + 50) for s in stats]
            assert all(x > 0 for x in shared_share)                    # the line's traffic was split
            store = workers[0].twin.store
            assert store.counts()["measurements"] == len(msgs)
            # both trackers saw every speed reading: both attributed values the same way
            rows = store._query("SELECT segment, COUNT(*) AS n FROM measurements WHERE name = 'm_dry' "
                                "AND segment IS NOT NULL GROUP BY segment ORDER BY segment")
            assert rows and sum(r["n"] for r in rows) > 300
            # the latest prediction of a finished segment rests on both workers' shares
            full = {int(r["segment"]): int(r["n"]) for r in store._query(
                "SELECT segment, COUNT(*) AS n FROM measurements WHERE segment IS NOT NULL GROUP BY segment")}
            segs = {s["segment"]: s for s in store.segments(line, 1000)}
            k = sorted(full)[len(full) // 2]
            assert segs[k]["prediction"] is not None
            preds = store.predictions(line, k)
            assert max(p["n_measurements"] for p in preds) == full[k]
        finally:
            for w in workers:
                w.stop()
                w.close()
