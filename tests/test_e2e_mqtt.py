"""End to end over a real MQTT broker: every published measurement is stored exactly once or dead-lettered
with a reason, counted; a broker restart mid-stream loses nothing (QoS 1, persistent session)."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid

import pytest

pytestmark = pytest.mark.integration

mqtt_mod = pytest.importorskip("connectors.mqtt")
from connectors.mqtt import MqttPublisher, MqttSettings  # noqa: E402

from twin.cli.runner import Runner  # noqa: E402
from twin.runconfig import config_from_dict  # noqa: E402

SHARED = ("127.0.0.1", 1883)


def _broker_up(host, port) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _runner(tmp_path, line, port, client_id, protocol="5", **line_cfg):
    settings = config_from_dict({
        "line": {"id": line, "segment_length_m": 0.5, **line_cfg},
        "store": {"url": str(tmp_path / "e2e.sqlite"), "sqlite_synchronous": "NORMAL"},
        "model": {"samples": 2000, "cell": "off"},
        "web": {"enabled": False},
        "spec": {"m_dry": [13.9, 14.7]},
    })
    r = Runner(settings, web=False, cell=None)
    # the shared broker runs Mosquitto's defaults (a queue of 1000 messages per client, dropped beyond): the
    # v5 receive maximum lets it keep a whole burst in flight to us instead of queueing it
    r.add_mqtt(MqttSettings(host="127.0.0.1", port=port, client_id=client_id, lines=[line], ack="stored",
                            protocol=protocol, receive_maximum=20_000 if protocol == "5" else None))
    return r


def _wait(pred, timeout, what, extra=lambda: ""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra()}")


def test_every_published_measurement_is_stored_once_or_dead_lettered(tmp_path):
    if not _broker_up(*SHARED):
        pytest.skip("no Mosquitto on 127.0.0.1:1883")
    line = f"e2e{uuid.uuid4().hex[:8]}"
    run = _runner(tmp_path, line, SHARED[1], f"twin-{line}")
    run.start()
    src = run.mqtt_sources[0]
    assert src.wait_subscribed(15)
    pub = MqttPublisher(MqttSettings(host=SHARED[0], port=SHARED[1], client_id=f"pub-{line}")).start()
    assert pub.connected.wait(10)
    t0 = time.time() - 30.0
    good, bad = [], []
    for i in range(2000):
        ts = t0 + i * 0.01
        good.append(("coater", "web_speed", 30.0, "m/min", ts))
        if i % 2 == 0:
            good.append(("coater", "flow_rate", 11.6 * 30, "mL/min", ts))
        if i % 4 == 0:
            good.append(("gauges", "m_wet", 20.5 + 0.01 * (i % 7), "mg/cm2", ts))
            good.append(("dryer", "m_dry", 143.0, "g/m2", ts))
    good.append(("mixer", "batch_id", "B1", None, t0 - 1.0))
    for i in range(40):
        ts = t0 + 30 + i * 0.01
        bad.append(("coater", "flow_rate", "fast", "mL/min", ts))                 # not a number
        bad.append(("gauges", "m_wet", -3.0, "mg/cm2", ts))                      # below the physical range
        bad.append(("gauges", "m_wet", 20.5, "kg", ts + 0.001))                  # wrong dimension
        bad.append(("dryer", "porosity_dry", 0.4, None, ts))                     # no such quantity
        bad.append(("calender", "h_cal", 48.0, "um", time.time() + 3600 + i))    # an hour in the future
    for st, name, v, u, ts in good + bad:
        pub.publish_value(line, st, name, v, u, ts)
    malformed = [f"{{not json {i}" for i in range(20)]
    for payload in malformed:
        pub.publish(f"electrode/{line}/coater/flow_rate", payload)
    # a redelivery of already published messages (what QoS 1 does after a reconnection)
    redelivered = good[:300] + bad[:25]
    for st, name, v, u, ts in redelivered:
        pub.publish_value(line, st, name, v, u, ts)
    assert pub.flush(30)
    total = len(good) + len(bad) + len(malformed) + len(redelivered)
    _wait(lambda: src.stats.received >= total, 60, f"{total} messages at the subscriber",
          lambda: f": {src.stats}, ingest {run.twin.ingestor.stats}, pending acks {src.pending_acks}")
    assert run.twin.drain(60)
    stats = run.twin.ingestor.stats
    counts = run.twin.store.counts()
    pub.stop()
    run.stop()
    assert src.stats.received == total
    assert stats.received == total == stats.stored + stats.duplicates + stats.dead_lettered
    assert counts["measurements"] == len(good) == stats.stored
    assert counts["dead_letters"] == len(bad) + len(malformed)
    assert stats.duplicates == 300
    assert stats.dead_letters_repeated == 25
    reasons = [d["reason"] for d in run.twin.store.dead_letters(limit=10_000)]
    assert all(reasons)
    assert sum("is not a number" in r for r in reasons) == 40
    assert sum("outside its physical range [0, 1000] mg/cm2" in r for r in reasons) == 40
    assert sum("given in 'kg'" in r for r in reasons) == 40
    assert sum("'porosity_dry'" in r for r in reasons) == 40
    assert sum("in the future" in r for r in reasons) == 40
    assert sum("JSON" in r for r in reasons) == 20
    assert src.pending_acks == 0
    # predictions were made for the segments that got measurements
    segs = run.twin.store.segments(line, 1000)
    assert segs and all(s["prediction"] is not None for s in segs)
    run.close()


@pytest.mark.skipif(shutil.which("mosquitto") is None and not __import__("os").path.exists("/usr/sbin/mosquitto"),
                    reason="mosquitto binary not installed")
def test_broker_restart_mid_stream_loses_nothing(tmp_path):
    from connectors.mosquitto import MosquittoProcess

    broker = MosquittoProcess(tmp_path / "broker").start()
    line = f"rst{uuid.uuid4().hex[:8]}"
    run = None
    pub = None
    try:
        run = _runner(tmp_path, line, broker.port, f"twin-{line}")
        run.start()
        src = run.mqtt_sources[0]
        assert src.wait_subscribed(15)
        pub = MqttPublisher(MqttSettings(host="127.0.0.1", port=broker.port, client_id=f"pub-{line}")).start()
        assert pub.connected.wait(10)
        n = 6000
        t0 = time.time() - 60.0
        published = []
        restarted = threading.Event()

        def produce():
            for i in range(n):
                ts = t0 + i * 0.005
                name, st, v, u = (("web_speed", "coater", 30.0, "m/min") if i % 3 == 0 else
                                  ("flow_rate", "coater", 348.0, "mL/min") if i % 3 == 1 else
                                  ("m_wet", "gauges", 20.5, "mg/cm2"))
                pub.publish_value(line, st, name, v, u, ts)
                published.append(i)
                if i == n // 3:
                    broker.restart()              # SIGTERM (persistence written), start again on the same port
                    restarted.set()
                if i % 200 == 0:
                    time.sleep(0.02)

        th = threading.Thread(target=produce)
        th.start()
        th.join(120)
        assert restarted.is_set() and len(published) == n
        assert pub.flush(60)
        _wait(lambda: run.twin.ingestor.stats.stored + run.twin.ingestor.stats.duplicates >= n, 90,
              "every published message stored")
        assert run.twin.drain(60)
        st = run.twin.ingestor.stats
        assert run.twin.store.counts()["measurements"] == n
        assert st.stored == n and st.dead_lettered == 0
        assert src.stats.connects >= 2           # it really reconnected
    finally:
        if pub is not None:
            pub.stop(2)
        if run is not None:
            run.stop()
            run.close()
        broker.stop()


def test_twin_run_command_with_a_config_file(tmp_path):
    """`twin run --config` as an operator starts it: TOML, [mqtt] with ack = "stored", a duration, --json."""
    import subprocess
    import sys

    if not _broker_up(*SHARED):
        pytest.skip("no Mosquitto on 127.0.0.1:1883")
    line = f"run{uuid.uuid4().hex[:8]}"
    cfg = tmp_path / "line.toml"
    cfg.write_text(f"""
[line]
id = "{line}"
segment_length_m = 0.5
[line.positions]
coater = 0.0
dryer = 1.0
[store]
url = "{tmp_path / 'run.sqlite'}"
[model]
samples = 2000
cell = "off"
[web]
port = 0
[mqtt]
host = "127.0.0.1"
port = 1883
client_id = "twin-{line}"
lines = ["{line}"]
ack = "stored"
receive_maximum = 20000
""")
    proc = subprocess.Popen([sys.executable, "-m", "twin.cli", "run", "--config", str(cfg), "--duration", "14",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:          # "twin running" is printed once the subscription stands
            line_out = proc.stderr.readline()
            assert "not subscribed" not in line_out, line_out
            if "twin running" in line_out:
                break
        pub = MqttPublisher(MqttSettings(host=SHARED[0], port=SHARED[1], client_id=f"pub-{line}")).start()
        assert pub.connected.wait(10)
        t0 = time.time() - 10
        for i in range(50):
            pub.publish_value(line, "coater", "web_speed", 30.0, "m/min", t0 + 0.1 * i)
            pub.publish_value(line, "coater", "flow_rate", 696.0 * 30, "cm3/h", t0 + 0.1 * i)  # 30x: as the speed
            pub.publish_value(line, "dryer", "m_dry", 14.3, "mg/cm2", t0 + 3.0 + 0.1 * i)
        pub.publish_value(line, "dryer", "m_dry", "n/a", "mg/cm2", t0 + 9.0)
        assert pub.flush(10)
        pub.stop()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    st = json.loads(out)
    assert st["ingest"]["received"] == 151
    assert st["ingest"]["stored"] == 150 and st["ingest"]["dead_lettered"] == 1
    assert st["counts"]["measurements"] == 150 and st["counts"]["predictions"] >= 5
    assert st["update_errors"] == 0
