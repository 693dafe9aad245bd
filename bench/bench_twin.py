"""The streaming twin end to end: latency from a measurement's arrival to its segment's stored prediction, and
sustained MQTT ingestion with zero loss, each against a baseline measured in the same run.

    .venv/bin/python bench/bench_twin.py [--broker 127.0.0.1:1883] [--seconds 10] [--samples 10000]
                                         [--ingest 50000] [--postgres postgresql://postgres@127.0.0.1/postgres]

Latency. A publisher process sends a line's measurements over MQTT (v5, QoS 1) to the broker; the twin
(MqttSource with ack = "stored" -> ingestion -> SQLite in WAL mode, synchronous FULL -> update loop at 10^4
Monte Carlo samples, cell surrogate when trained) receives them. For every measurement, latency = the time its
segment's prediction that includes it is committed minus the time the MQTT callback received it (``Reading.
received_ts``). Rows at several message rates, for
  * twin            -- coalescing update loop on both cores (what ``twin run`` does)
  * baseline        -- the same core with one prediction per measurement, in arrival order, one thread (no
                       coalescing: the straightforward design)
The ratio is baseline / twin at the same rate.

Ingestion. A private Mosquitto (deploy/mosquitto.conf, via connectors.mosquitto) queues ``--ingest`` messages
for the consumer's persistent session while it is away; the consumer then drains the backlog, so its own rate
is measured, not the publisher's. Rate = messages / (time from the first arrival to the last stored). Rows: the
twin (validation, units, dedupe, segment tracking, durable batched writes with PUBACK after commit,
predictions running) on SQLite FULL, and optionally PostgreSQL, against a baseline consumer that only counts
messages in the MQTT callback (the ceiling of the client library on this machine). Every row checks zero
loss: stored + dead-lettered + duplicates == published.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

STATIONS = (("coater", "web_speed", 60.0, "m/min"), ("coater", "flow_rate", 696.0 * 60, "cm3/h"),
            ("coater", "coating_width", 125.0, "mm"), ("gauges", "m_wet", 20.5, "mg/cm2"),
            ("dryer", "m_dry", 14.3, "mg/cm2"), ("calender", "line_load", 84.0, "N/mm"),
            ("calender", "h_cal", 48.5, "um"))


def _publisher(host, port, line, rate, seconds, n_max, ready, go, done):
    """Publish the line's values (one of each per tick) at ``rate`` messages/s (0: as fast as possible).

    Paced rows carry the wall-clock time of their tick; the as-fast-as-possible rows a synthetic timeline of
    one tick per millisecond ending now (every message a distinct measurement)."""
    import json

    from connectors.mqtt import MqttPublisher, MqttSettings, format_timestamp

    pub = MqttPublisher(MqttSettings(host=host, port=port, client_id=f"bench-pub-{line}", max_pending=20_000,
                                     max_inflight=1000)).start()
    pub.connected.wait(10)
    topics = [f"electrode/{line}/{st}/{name}" for st, name, _, _ in STATIONS]
    rng = np.random.default_rng(0)
    ticks = (n_max + len(STATIONS) - 1) // len(STATIONS) if n_max else 0
    pre = []
    if not rate:   # payloads built before the clock starts: the publisher must not be the bottleneck
        t0 = round(time.time() - ticks * 1e-3 - 1.0, 3) + 0.0005   # mid-millisecond: ts text stays distinct
        for k in range(ticks):
            ts = format_timestamp(t0 + k * 1e-3)
            pre.append([json.dumps({"value": v * (1 + 0.002 * rng.standard_normal()), "unit": u, "ts": ts}).encode()
                        for _, _, v, u in STATIONS])
    ready.set()
    go.wait(60)
    pub.publish_value(line, "mixer", "batch_id", "B1", None, time.time() - 60.0)
    sent = 1
    if not rate:
        for payloads in pre:
            for topic, payload in zip(topics, payloads):
                if sent >= n_max:
                    break
                pub.publish(topic, payload)
                sent += 1
    else:
        t_start = time.time()
        period = len(STATIONS) / rate
        next_t = time.monotonic()
        while time.time() - t_start < seconds:
            ts = time.time()
            for topic, (_, _, v, u) in zip(topics, STATIONS):
                pub.publish(topic, json.dumps({"value": v * (1 + 0.002 * rng.standard_normal()), "unit": u,
                                               "ts": format_timestamp(ts)}).encode())
                sent += 1
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    pub.flush(300)
    pub.stop(10)
    done.put(sent)


class _Feed:
    def __init__(self, host, port, line, rate, seconds, n_max=0):
        ctx = mp.get_context("spawn")
        self.ready, self.go, self.done = ctx.Event(), ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(target=_publisher, args=(host, port, line, rate, seconds, n_max, self.ready,
                                                          self.go, self.done), daemon=True)
        self.proc.start()
        self.ready.wait(60)

    def start(self):
        self.go.set()

    def sent(self, timeout=300) -> int:
        n = self.done.get(timeout=timeout)
        self.proc.join(30)
        return n


def _settings(store_url, line, samples, sync="FULL"):
    from twin.runconfig import config_from_dict

    return config_from_dict({
        "line": {"id": line, "segment_length_m": 1.0, "positions": {"coater": 0.0, "gauges": 2.0, "dryer": 6.0,
                                                                   "calender": 10.0}},
        "store": {"url": store_url, "sqlite_synchronous": sync},
        "model": {"samples": samples, "cell": "auto"},
        "spec": {"m_dry": [13.9, 14.7], "rho_cal": [2.87, 3.03]},
        "web": {"enabled": False},
    })


def _naive(runner):
    """Turn the twin's update loop into the baseline: one prediction per measurement, in order, one thread."""
    import collections

    from twin.update import SegmentBook

    book = runner.twin.book
    queue: collections.deque = collections.deque()
    orig_add = SegmentBook.add

    def add(measurements):
        ms = list(measurements)
        orig_add(book, ms)
        for m in ms:
            if m.segment is not None:
                queue.append((m.line, m.segment, m.received_ts))
        book.wake.set()

    def take_dirty(max_n=None, claim=False):
        with book._lock:
            book._dirty.clear()
            if not queue:
                book.wake.clear()
                return []
            line, k, rts = queue.popleft()
            book._pending.pop((line, k), None)
            snap = book.snapshot(line, k)
            snap.pending_received = [rts]
            if queue:
                book._dirty[(line, k)] = None   # keep the loop awake
            return [snap]

    book.add = add
    book.take_dirty = take_dirty
    runner.twin.updates.workers = 1
    runner.twin.updates.max_per_cycle = 1


def latency_row(host, port, rate, seconds, samples, naive=False):
    from connectors.mqtt import MqttSettings

    from twin.cli.runner import Runner

    line = f"lat{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(_settings(str(Path(tmp) / "lat.sqlite"), line, samples), web=False)
        runner.add_mqtt(MqttSettings(host=host, port=port, client_id=f"bench-{line}", lines=[line], ack="stored",
                                     receive_maximum=20_000))
        if naive:
            _naive(runner)
        runner.start()
        runner.mqtt_sources[0].wait_subscribed(15)
        feed = _Feed(host, port, line, rate, seconds)
        runner.twin.updates.latency.clear()
        feed.start()
        sent = feed.sent()
        end = time.monotonic() + (120 if not naive else 30)
        while time.monotonic() < end and runner.twin.ingestor.stats.received < sent:
            time.sleep(0.05)
        runner.twin.drain(300 if not naive else 60)
        lat = runner.twin.updates.latency
        pc = lat.percentiles((50, 99))
        st = runner.twin.ingestor.stats
        preds = runner.twin.updates.predictions
        compute = [p["summary"]["compute_ms"] for p in [
            {"summary": __import__("json").loads(r["summary"])} for r in
            runner.twin.store._query("SELECT summary FROM predictions ORDER BY id DESC LIMIT 200")]]
        backlog = runner.twin.book.dirty_count
        runner.stop()
        model = runner.twin.predictor.model
        runner.close()
    return {"rate": rate, "sent": sent, "stored": st.stored, "predictions": preds, "p50_ms": pc["p50"] * 1e3,
            "p99_ms": pc["p99"] * 1e3, "n_lat": lat.count, "compute_ms": float(np.median(compute)) if compute else
            float("nan"), "model": model, "backlog": backlog}


def _count_only(host, port, client_id, line, n, out):
    """Baseline consumer: connectors.mqtt.MqttSource whose sink only counts (the client library's ceiling)."""
    from connectors.mqtt import MqttSettings, MqttSource

    got = [0, None, None]
    lock = threading.Lock()

    def sink(reading):
        with lock:
            got[0] += 1
            if got[1] is None:
                got[1] = time.perf_counter()
            got[2] = time.perf_counter()

    src = MqttSource(MqttSettings(host=host, port=port, client_id=client_id, lines=[line],
                                  receive_maximum=20_000), sink).start()
    end = time.monotonic() + 600
    while time.monotonic() < end and got[0] < n:
        time.sleep(0.02)
    src.stop()
    out.put((got[0], (got[2] or 0) - (got[1] or 0)))


def _register_session(host, port, client_id, line):
    """Subscribe once and leave: the broker keeps the persistent session and queues for it meanwhile."""
    from connectors.mqtt import MqttSettings, MqttSource

    src = MqttSource(MqttSettings(host=host, port=port, client_id=client_id, lines=[line],
                                  receive_maximum=20_000), lambda r, ack=None: None).start()
    src.wait_subscribed(15)
    src.stop()


def _backlog(host, port, line, n):
    feed = _Feed(host, port, line, 0, 0, n)
    feed.start()
    return feed.sent()


def ingest_row(n, store_url=None, baseline=False, samples=10_000):
    """Drain a backlog of ``n`` messages queued by a private Mosquitto for the consumer's persistent session:
    the consumer's rate, not the publisher's, is what is measured."""
    from connectors.mosquitto import MosquittoProcess

    line = f"ing{uuid.uuid4().hex[:6]}"
    client_id = f"bench-{line}"
    with tempfile.TemporaryDirectory() as tmp, MosquittoProcess(Path(tmp) / "broker") as broker:
        host, port = "127.0.0.1", broker.port
        _register_session(host, port, client_id, line)
        sent = _backlog(host, port, line, n)
        if baseline:
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            cons = ctx.Process(target=_count_only, args=(host, port, client_id, line, sent, q), daemon=True)
            cons.start()
            got, dt = q.get(timeout=900)
            cons.join(10)
            return {"what": "baseline: MQTT client, count only", "sent": sent, "accounted": got, "stored_rows": got,
                    "rate": got / dt if dt > 0 else float("nan")}
        from connectors.mqtt import MqttSettings

        from twin.cli.runner import Runner

        url = store_url or str(Path(tmp) / "ing.sqlite")
        runner = Runner(_settings(url, line, samples), web=False)
        runner.add_mqtt(MqttSettings(host=host, port=port, client_id=client_id, lines=[line], ack="stored",
                                     receive_maximum=20_000))
        first = [None]
        orig = runner.twin.ingestor.submit

        def submit(reading, ack=None):
            if first[0] is None:
                first[0] = time.perf_counter()
            orig(reading, ack)

        runner.mqtt_sources[0]._sink = submit
        runner.start()
        st = runner.twin.ingestor.stats
        end = time.monotonic() + 900
        while time.monotonic() < end and (st.stored + st.duplicates + st.dead_lettered) < sent:
            time.sleep(0.01)
        last = time.perf_counter()
        accounted = st.stored + st.duplicates + st.dead_lettered
        counts = runner.twin.store.counts()
        preds = runner.twin.updates.predictions
        runner.stop()
        runner.close()
    kind = "PostgreSQL" if store_url else "SQLite WAL FULL"
    return {"what": f"twin: validate+track+{kind}+predict", "sent": sent, "accounted": accounted,
            "stored_rows": counts["measurements"], "rate": accounted / (last - first[0]), "predictions": preds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", default="127.0.0.1:1883")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each latency row")
    ap.add_argument("--rates", default="35,70,350,1400", help="message rates of the latency rows (msg/s)")
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--ingest", type=int, default=50_000, help="messages of each ingestion row (0: skip)")
    ap.add_argument("--postgres", help="also an ingestion row against this PostgreSQL server (a database "
                                       "twin_bench_* is created and dropped)")
    args = ap.parse_args(argv)
    host, _, port = args.broker.partition(":")
    port = int(port or 1883)
    print(f"machine: {os.cpu_count()} cores; broker {host}:{port}; {args.samples} Monte Carlo samples per "
          f"prediction", flush=True)
    rates = [float(r) for r in args.rates.split(",") if r]
    print("\nlatency from arrival (MQTT callback) to the segment's stored prediction")
    head = f"{'rate msg/s':>10} {'design':<9} {'sent':>7} {'preds':>6} {'p50 ms':>9} {'p99 ms':>9} " \
           f"{'compute ms':>11} {'ratio p99':>10}  model"
    print(head)
    print("-" * len(head))
    for rate in rates:
        tw = latency_row(host, port, rate, args.seconds, args.samples)
        base = latency_row(host, port, rate, args.seconds, args.samples, naive=True)
        for row, name in ((base, "baseline"), (tw, "twin")):
            ratio = base["p99_ms"] / row["p99_ms"] if row["p99_ms"] > 0 else float("nan")
            print(f"{rate:>10.0f} {name:<9} {row['sent']:>7} {row['predictions']:>6} {row['p50_ms']:>9.1f} "
                  f"{row['p99_ms']:>9.1f} {row['compute_ms']:>11.1f} {ratio:>9.2f}x  {row['model']}"
                  + (f"  (backlog {row['backlog']} at the end)" if row["backlog"] else ""), flush=True)
    if args.ingest:
        print(f"\nsustained MQTT ingestion: a backlog of {args.ingest} messages queued by a private Mosquitto for the "
              f"consumer's persistent session (QoS 1, PUBACK after commit); zero loss checked")
        head = f"{'consumer':<46} {'sent':>7} {'accounted':>10} {'rows':>7} {'msg/s':>9} {'ratio':>7}"
        print(head)
        print("-" * len(head))
        base = ingest_row(args.ingest, baseline=True)
        print(f"{base['what']:<46} {base['sent']:>7} {base['accounted']:>10} {'-':>7} {base['rate']:>9.0f} "
              f"{1.0:>6.2f}x", flush=True)
        rows = [ingest_row(args.ingest, samples=args.samples)]
        if args.postgres:
            import psycopg

            name = f"twin_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.postgres, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            try:
                rows.append(ingest_row(args.ingest, args.postgres.rsplit("/", 1)[0] + "/" + name,
                                       samples=args.samples))
            finally:
                with psycopg.connect(args.postgres, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for r in rows:
            loss = "" if r["accounted"] == r["sent"] == r["stored_rows"] else "  LOSS OR DUPLICATES!"
            print(f"{r['what']:<46} {r['sent']:>7} {r['accounted']:>10} {r['stored_rows']:>7} {r['rate']:>9.0f} "
                  f"{r['rate'] / base['rate']:>6.2f}x{loss}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
