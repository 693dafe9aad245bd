"""Live page and JSON API of a running twin, served by uvicorn on a free loopback port."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from streaming_support import reading

from twin.orchestrator import Twin
from twin.runconfig import config_from_dict
from twin.web import WebServer


@pytest.fixture
def served(tmp_path):
    settings = config_from_dict({
        "line": {"segment_length_m": 0.5, "positions": {"coater": 0.0, "gauges": 1.0, "dryer": 2.0,
                                                       "calender": 3.0}},
        "store": {"url": str(tmp_path / "web.sqlite"), "sqlite_synchronous": "NORMAL"},
        "model": {"samples": 2000, "cell": "off"},
        "spec": {"m_dry": [13.9, 14.7]},
    })
    twin = Twin(settings, cell=None).start()
    web = WebServer(twin, port=0).start()
    yield twin, web
    web.stop()
    twin.stop()


def get(web, path):
    with urllib.request.urlopen(web.url.rstrip("/") + path, timeout=10) as r:
        return r.status, r.headers.get("content-type"), r.read()


def feed(twin, n=40):
    t0 = time.time() - 60
    twin.submit(reading("web_speed", 60.0, "m/min", ts=t0))              # 1 m/s: segment every 0.5 s
    twin.submit(reading("batch_id", "B1", None, station="mixer", ts=t0 - 1))
    for i in range(n):
        ts = t0 + 0.25 * i
        twin.submit(reading("flow_rate", 696.0 * 60, "cm3/h", ts=ts))
        twin.submit(reading("m_dry", 14.3, "mg/cm2", station="dryer", ts=ts))
    twin.submit(reading("m_dry", "broken", "mg/cm2", station="dryer", ts=t0 + 1))
    assert twin.drain(60)


def feed_one(twin, k):
    ts = time.time() - 30 + 0.1 * k
    if k == 0:
        twin.submit(reading("web_speed", 60.0, "m/min", ts=ts - 1))
    twin.submit(reading("flow_rate", 696.0 * 60, "cm3/h", ts=ts))


def test_page_and_plotly_are_served_locally(served):
    _, web = served
    status, ctype, body = get(web, "/")
    assert status == 200 and "text/html" in ctype
    page = body.decode()
    assert '<script src="/static/plotly.min.js"></script>' in page
    assert "cdn" not in page.lower() and "https://" not in page
    status, ctype, js = get(web, "/static/plotly.min.js")
    assert status == 200 and "javascript" in ctype and len(js) > 1_000_000 and b"plotly" in js[:2000].lower()


def test_api_reports_segments_status_and_dead_letters(served):
    twin, web = served
    feed(twin)
    segs = json.loads(get(web, "/api/segments?last=5")[2])["segments"]
    assert 1 <= len(segs) <= 5
    assert [s["segment"] for s in segs] == sorted((s["segment"] for s in segs), reverse=True)
    p = next(s["prediction"] for s in segs if s["prediction"])
    assert "m_dry" in p["quantities"] and p["n_samples"] == 2000
    st = json.loads(get(web, "/api/status")[2])
    assert st["ingest"]["received"] == 83 and st["ingest"]["dead_lettered"] == 1
    assert st["ingest"]["stored"] + st["ingest"]["duplicates"] + st["ingest"]["dead_lettered"] == 83
    dls = json.loads(get(web, "/api/deadletters")[2])["dead_letters"]
    assert len(dls) == 1 and "m_dry = 'broken' (str) is not a number" in dls[0]["reason"]
    k = next(s["segment"] for s in segs if s["prediction"])
    one = json.loads(get(web, f"/api/segments/line1/{k}")[2])
    assert one["predictions"] and one["measurements"]
    with pytest.raises(urllib.error.HTTPError) as e:
        get(web, "/api/segments/line1/999999")
    assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        get(web, "/api/segments?last=abc")
    assert e.value.code == 400
    alerts = json.loads(get(web, "/api/alerts")[2])["alerts"]
    assert isinstance(alerts, list)


def test_server_sent_events_carry_new_predictions(served):
    twin, web = served
    events: list[tuple[str, dict]] = []
    opened = threading.Event()
    fed = threading.Event()

    def listen():
        with urllib.request.urlopen(web.url + "events", timeout=30) as r:
            opened.set()
            kind = None
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind:
                    events.append((kind, json.loads(line[6:])))
                    if fed.is_set() and kind == "status":
                        return

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    assert opened.wait(10)
    for k in range(60):             # predictions stream in without a pause for a few seconds
        feed_one(twin, k)
        time.sleep(0.05)
    assert twin.drain(30)
    fed.set()
    th.join(30)
    kinds = [k for k, _ in events]
    assert kinds[0] == "status"
    preds = [d for k, d in events if k == "prediction"]
    assert len(preds) >= 3
    assert all("quantities" in d and "segment" in d and d["line"] == "line1" for d in preds)
    assert "hist" in preds[0]["quantities"]["h_wet"]
    # the counters keep coming while predictions stream: a status event between two predictions
    first_p = kinds.index("prediction")
    last_p = len(kinds) - 1 - kinds[::-1].index("prediction")
    assert "status" in kinds[first_p:last_p]
    assert max(d["ingest"]["received"] for k, d in events if k == "status") > 0


def test_port_in_use_is_reported(served):
    twin, web = served
    with pytest.raises(OSError, match=f"127.0.0.1:{web.port}"):
        WebServer(twin, port=web.port).start(timeout=10)
