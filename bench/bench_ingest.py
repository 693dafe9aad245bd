"""Sustained ingestion rates of the connectors, with zero loss checked, against bare-library baselines measured in
the same run.

    .venv/bin/python bench/bench_ingest.py [--broker HOST:PORT] [--mqtt-n 40000] [--opcua-vars 500]
                                           [--opcua-rounds 60] [--repeat 3] [--no-store]

MQTT. A publisher *process* (plain paho, MQTT v5, QoS 1, at most 20,000 un-acknowledged) sends ``--mqtt-n``
~100-byte measurement payloads to the consumer under test (persistent session, QoS 1), in three modes:
"flood" -- the consumer is connected while the publisher sends as fast as it can, publisher, broker and
consumer sharing the machine's two cores (on a plant the publishers sit elsewhere); "live@R" -- the same with
the publisher held to R msg/s (``--mqtt-rates``): a rate close to R with zero loss means the path sustains R;
"backlog" -- the messages wait in the consumer's session while it is away and the consumer then catches up (a
twin restarting), with no publisher competing for the cores. Broker: a private Mosquitto started from
deploy/mosquitto.conf on a free port (default), or ``--broker`` (e.g. the shared 127.0.0.1:1883; its default
queue limit of 1000 messages drops messages when the consumer lags or is away, which the loss column then
shows). Rate = messages / (last arrival - first arrival) at the consumer (store rows: to the last commit).
Rows:
  * bare paho (baseline)          -- paho Client, on_message appends the payload to a list: the library's ceiling
  * MqttSource -> queue           -- connectors.mqtt.MqttSource: topic and JSON parsed into a Reading, put on a
                                     queue.SimpleQueue (the connector's whole job)
  * MqttSource -> ingest -> SQLite -- the full path: twin.ingest.Ingestor (validation, units, dedupe, segment
                                     tracking) into the SQLite store (WAL, synchronous FULL); rate to the last
                                     commit; ack = "stored" (PUBACK only after the commit)

OPC UA. A server *process* (tests/opcua_counter_server.py; asyncua) holds ``--opcua-vars`` Double variables and,
once the client has subscribed, writes ``--opcua-rounds`` rounds of new values to all of them as fast as its
event loop allows (every write its own SourceTimestamp). The client subscribes to every variable (publishing
interval 20 ms, queue 1000 per item). Rate = data changes / (last arrival - the moment the server was told to
start writing): the server's writing and publishing is inside the measurement, as on a real line. Rows:
  * bare asyncua (baseline)       -- asyncua subscription with a datachange_notification handler appending
  * OpcUaSource -> queue          -- connectors.opcua.OpcUaSource (200 nodes per subscription)
  * OpcUaSource -> ingest -> SQLite -- as for MQTT

Zero loss: every row checks that each published message / written value arrived (per variable, every round),
and for the store rows that stored + dead-lettered + duplicates == received and nothing was dead-lettered.
Medians over ``--repeat`` runs; "lost" and "dup" are summed over the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COUNTER_SERVER = ROOT / "tests" / "opcua_counter_server.py"
COUNTER_NS = "urn:electrode-twin:test-counters"


# ------------------------------------------------------------------------------------------ MQTT ---------

def _publisher_main(host: str, port: int, topic_prefix: str, n: int, rate: float = 0.0) -> None:
    """Child process: publish n messages (flow_rate values 0..n-1, distinct ms timestamps in the past) at
    ``rate`` messages/s (0: as fast as the broker takes them)."""
    import paho.mqtt.client as mqtt

    from connectors.mqtt import format_timestamp

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}",
                    protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(host, port, 30)
    c.loop_start()
    connected.wait(10)
    base = time.time() - n * 1e-3 - 60.0
    topic = f"{topic_prefix}/coater/flow_rate"
    payloads = [json.dumps({"value": float(i), "unit": "cm3/h", "ts": format_timestamp(base + i * 1e-3)}).encode()
                for i in range(n)]
    t0 = time.perf_counter()
    for i, p in enumerate(payloads):
        if rate > 0 and i % 50 == 0:
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        while len(c._out_messages) > 20_000:          # bound in-flight below paho's 65,535 message ids
            time.sleep(0.0005)
        info = c.publish(topic, p, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise SystemExit(f"publish {i} refused: {mqtt.error_string(info.rc)}")
    while c._out_messages:
        time.sleep(0.01)
    c.disconnect()
    c.loop_stop()


def _publish(host, port, prefix, n, rate=0.0) -> subprocess.Popen:
    code = ("import sys; sys.path.insert(0, %r); from bench.bench_ingest import _publisher_main; "
            "_publisher_main(%r, %d, %r, %d, %r)") % (str(ROOT), host, port, prefix, n, float(rate))
    return subprocess.Popen([sys.executable, "-c", code])


class _Arrivals:
    def __init__(self):
        self.first = None
        self.last = None
        self.count = 0

    def hit(self):
        t = time.perf_counter()
        if self.first is None:
            self.first = t
        self.last = t
        self.count += 1


def mqtt_row(kind: str, host: str, port: int, n: int, tmp: Path, mode: str = "live", rate: float = 0.0) -> dict:
    """One run. ``mode="live"``: the publisher process runs while the consumer consumes (all on this machine's
    cores); ``mode="backlog"``: the messages wait in the consumer's persistent session while it is away and the
    rate is that of catching up (a twin restarting), with no publisher competing for the cores."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from connectors.mqtt import MqttSettings, MqttSource

    line = f"b{uuid.uuid4().hex[:8]}"
    prefix = f"electrode/{line}"
    arr = _Arrivals()
    values: list = []
    done = threading.Event()
    q: queue.SimpleQueue = queue.SimpleQueue()
    ingestor = store = None
    if kind == "store":
        from twin.ingest import Ingestor
        from twin.store import open_store

        store = open_store(tmp / f"{line}.sqlite", synchronous="FULL")
        ingestor = Ingestor(store).start()

    def on_message(c, u, msg):
        values.append(msg.payload)
        arr.hit()
        if arr.count >= n:
            done.set()

    def queue_sink(reading):
        q.put(reading)
        arr.hit()
        if arr.count >= n:
            done.set()

    def store_sink(reading, ack):
        ingestor.submit(reading, ack)
        arr.hit()

    def connect():
        """Start the consumer; returns its stop function once it is subscribed."""
        if kind == "baseline":
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{line}",
                                 protocol=mqtt.MQTTv5)
            client.on_message = on_message
            sub = threading.Event()
            client.on_subscribe = lambda *a: sub.set()
            client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/+/+", 1)
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 600
            client.connect(host, port, 30, clean_start=False, properties=props)
            client.loop_start()
            if not sub.wait(15):
                raise RuntimeError("baseline subscriber did not subscribe")
            return lambda: (client.disconnect(), client.loop_stop())
        settings = MqttSettings(host=host, port=port, client_id=f"bench-src-{line}", lines=[line],
                                session_expiry_s=600, ack="stored" if kind == "store" else "received")
        src = MqttSource(settings, store_sink if kind == "store" else queue_sink).start()
        if not src.wait_subscribed(15):
            raise RuntimeError("MqttSource did not subscribe")
        return src.stop

    stop = connect()
    if mode == "backlog":
        stop()
        pub = _publish(host, port, prefix, n)
        pub.wait(300)
        stop = connect()
    else:
        pub = _publish(host, port, prefix, n, rate)
    try:
        if kind == "store":
            deadline = time.monotonic() + 600
            st = ingestor.stats
            while time.monotonic() < deadline and st.stored + st.duplicates + st.dead_lettered < n:
                time.sleep(0.005)
            end = time.perf_counter()
        else:
            done.wait(600)
            end = arr.last
        pub.wait(120)
    finally:
        stop()
    row = {"transport": "MQTT", "mode": mode if mode == "backlog" else f"live@{rate:g}" if rate else "flood",
           "kind": kind, "n": n, "received": arr.count}
    if kind == "baseline":
        got = [json.loads(p)["value"] for p in values]
    elif kind == "queue":
        got = []
        while True:
            try:
                got.append(q.get_nowait().value)
            except queue.Empty:
                break
    else:
        ingestor.stop()
        st = ingestor.stats
        got = [r["value"] for r in store._query("SELECT value FROM measurements WHERE line = ?", (line,))]
        row["dead_lettered"] = st.dead_lettered
        row["store_duplicates"] = st.duplicates
        store.close()
    unique = set(got)
    row["lost"] = n - len(unique & {float(i) for i in range(n)})
    row["dup"] = len(got) - len(unique) + row.get("store_duplicates", 0)
    row["seconds"] = (end - arr.first) if arr.first is not None else float("nan")
    row["rate"] = n / row["seconds"] if row["seconds"] and row["seconds"] > 0 else float("nan")
    return row


# ---------------------------------------------------------------------------------------- OPC UA ---------

def _counter_server(n_vars: int, rounds: int) -> tuple[subprocess.Popen, int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, str(COUNTER_SERVER), "--port", str(port), "--vars", str(n_vars),
                          "--start", "1", "--count", str(rounds), "--rate", "0", "--wait-go"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("ready"):
        p.kill()
        raise RuntimeError(f"counter server did not start: {line!r}")
    return p, port


def opcua_row(kind: str, n_vars: int, rounds: int, tmp: Path) -> dict:
    import asyncio

    server, port = _counter_server(n_vars, rounds)
    endpoint = f"opc.tcp://127.0.0.1:{port}/"
    total = n_vars * rounds
    arr = _Arrivals()
    got: dict = {}
    result: dict = {}

    async def main():
        from asyncua import Client, ua

        from connectors.opcua import NodeSpec, OpcUaSettings, OpcUaSource

        ingestor = store = None
        prefix = f"o{uuid.uuid4().hex[:6]}"
        lines = [f"{prefix}{i:03d}" for i in range(n_vars)]
        if kind == "baseline":
            class Handler:
                def datachange_notification(self, node, val, data):
                    got.setdefault(node.nodeid.Identifier, []).append(val)
                    arr.hit()

            client = Client(endpoint)
            await client.connect()
            idx = await client.get_namespace_index(COUNTER_NS)
            sub = await client.create_subscription(20, Handler())
            nodes = [client.get_node(ua.NodeId(f"Counter.c{i}", idx)) for i in range(n_vars)]
            for k in range(0, n_vars, 200):
                await sub.subscribe_data_change(nodes[k:k + 200], queuesize=1000)
            initial = n_vars
        else:
            specs = [NodeSpec(node_id=f"nsu={COUNTER_NS};s=Counter.c{i}", line=lines[i], station="coater",
                              name="flow_rate", unit="cm3/h", queue_size=1000) for i in range(n_vars)]
            settings = OpcUaSettings(endpoint=endpoint, nodes=specs, publishing_ms=20, nodes_per_subscription=200)
            if kind == "queue":
                q: queue.SimpleQueue = queue.SimpleQueue()

                def sink(reading):
                    q.put(reading)
                    arr.hit()
            else:
                from twin.ingest import Ingestor
                from twin.store import open_store

                store = open_store(tmp / f"opcua-{lines[0]}.sqlite", synchronous="FULL")
                ingestor = Ingestor(store).start()

                def sink(reading):
                    ingestor.submit(reading)
                    arr.hit()
            src = OpcUaSource(settings, sink)
            task = asyncio.create_task(src.run())
            while not src.subscribed.is_set():
                await asyncio.sleep(0.02)
            initial = n_vars
        # the initial values (0) arrive first; the clock starts when the server is told to write
        while arr.count < initial:
            await asyncio.sleep(0.01)
        base = arr.count
        server.stdin.write("go\n")
        server.stdin.flush()
        arr.first = time.perf_counter()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and arr.count - base < total:
            await asyncio.sleep(0.01)
        end = arr.last
        if kind == "store":
            st = ingestor.stats
            while time.monotonic() < deadline and st.stored + st.duplicates + st.dead_lettered < arr.count:
                await asyncio.sleep(0.005)
            end = time.perf_counter()
        result["seconds"] = end - arr.first if arr.first else float("nan")
        result["received"] = arr.count - base
        if kind == "baseline":
            await client.disconnect()
        else:
            await src.stop()
            await task
            if kind == "queue":
                while True:
                    try:
                        r = q.get_nowait()
                    except queue.Empty:
                        break
                    got.setdefault(r.line, []).append(r.value)
            else:
                ingestor.stop()
                st = ingestor.stats
                result["dead_lettered"] = st.dead_lettered
                result["store_duplicates"] = st.duplicates
                for r in store._query("SELECT line, value FROM measurements WHERE line LIKE ?",
                                      (prefix + "%",)):
                    got.setdefault(r["line"], []).append(r["value"])
                store.close()

    try:
        asyncio.run(main())
    finally:
        server.kill()
        server.wait()
    want = [float(k) for k in range(1, rounds + 1)]
    lost = dup = 0
    for vals in got.values():
        written = [v for v in vals if v >= 1]                    # the initial 0 is not a written value
        lost += len(set(want) - set(written))
        dup += len(written) - len(set(written))
    lost += (n_vars - len(got)) * rounds
    secs = result["seconds"]
    return {"transport": "OPC UA", "kind": kind, "n": total, "received": result["received"], "lost": lost,
            "dup": dup + result.get("store_duplicates", 0), "seconds": secs,
            "rate": total / secs if secs and secs > 0 else float("nan"),
            "dead_lettered": result.get("dead_lettered")}


# ---------------------------------------------------------------------------------------------- main -----

LABELS = {
    ("MQTT", "baseline"): "bare paho callback (baseline)",
    ("MQTT", "queue"): "MqttSource -> queue",
    ("MQTT", "store"): "MqttSource -> ingest -> SQLite FULL",
    ("OPC UA", "baseline"): "bare asyncua handler (baseline)",
    ("OPC UA", "queue"): "OpcUaSource -> queue",
    ("OPC UA", "store"): "OpcUaSource -> ingest -> SQLite FULL",
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", help="HOST:PORT of an MQTT broker (default: a private Mosquitto from deploy/)")
    ap.add_argument("--mqtt-n", type=int, default=30_000)
    ap.add_argument("--mqtt-rates", default="0,6000",
                    help="publisher rates of the live runs, msg/s, comma-separated (0: as fast as possible)")
    ap.add_argument("--opcua-vars", type=int, default=500)
    ap.add_argument("--opcua-rounds", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-store", action="store_true", help="skip the connector -> ingest -> store rows")
    ap.add_argument("--only", choices=("mqtt", "opcua"), help="one transport only")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON after the table")
    args = ap.parse_args(argv)
    rates = [float(x) for x in args.mqtt_rates.split(",")] if args.mqtt_rates else [0.0]

    import asyncua
    import paho.mqtt

    kinds = ["baseline", "queue"] + ([] if args.no_store else ["store"])
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as d:
        tmp = Path(d)
        broker = None
        broker_desc = args.broker
        if args.only != "opcua":
            if args.broker:
                host, port = args.broker.rsplit(":", 1)
                port = int(port)
            else:
                from connectors.mosquitto import MosquittoProcess

                broker = MosquittoProcess(tmp / "mosquitto").start()
                host, port = "127.0.0.1", broker.port
                broker_desc = f"private Mosquitto (deploy/mosquitto.conf) on 127.0.0.1:{port}"
        try:
            for r in range(args.repeat):
                if args.only != "opcua":
                    for mode, rate in [("live", x) for x in rates] + [("backlog", 0.0)]:
                        for kind in kinds:
                            rows.append(mqtt_row(kind, host, port, args.mqtt_n, tmp, mode, rate))
                            print(f"  run {r + 1}: MQTT {mode} {kind}: {rows[-1]['rate']:,.0f} msg/s, "
                                  f"lost {rows[-1]['lost']}", file=sys.stderr)
                if args.only != "mqtt":
                    for kind in kinds:
                        rows.append(opcua_row(kind, args.opcua_vars, args.opcua_rounds, tmp))
                        print(f"  run {r + 1}: OPC UA {kind}: {rows[-1]['rate']:,.0f} changes/s, "
                              f"lost {rows[-1]['lost']}", file=sys.stderr)
        finally:
            if broker is not None:
                broker.stop()

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ua_version = getattr(asyncua, "__version__", "")
    print(f"\nSustained ingestion, zero loss checked; medians of {args.repeat} runs on {cpus} cores; "
          f"paho-mqtt {paho.mqtt.__version__}, asyncua {ua_version}")
    if args.only != "opcua":
        print(f"MQTT: {args.mqtt_n:,} QoS 1 messages (v5, persistent session) per run via {broker_desc}")
    if args.only != "mqtt":
        print(f"OPC UA: {args.opcua_vars} variables x {args.opcua_rounds} rounds = "
              f"{args.opcua_vars * args.opcua_rounds:,} data changes per run, publishing interval 20 ms")
    head = (f"{'transport':<17} {'path':<38} {'rate [1/s]':>12} {'vs baseline':>12} {'lost':>6} {'dup':>6} "
            f"{'dead-l.':>8}")
    print(head)
    print("-" * len(head))
    ok = True
    modes = [("MQTT", "flood" if x == 0 else f"live@{x:g}") for x in rates] + [("MQTT", "backlog"), ("OPC UA", None)]
    for transport, mode in modes:
        base = None
        for kind in kinds:
            rs = [r for r in rows if r["transport"] == transport and r["kind"] == kind and r.get("mode") == mode]
            if not rs:
                continue
            rate = statistics.median(r["rate"] for r in rs)
            if kind == "baseline":
                base = rate
            lost = sum(r["lost"] for r in rs)
            dup = sum(r["dup"] for r in rs)
            dl = sum(r.get("dead_lettered") or 0 for r in rs)
            ok &= lost == 0 and dl == 0
            ratio = f"{rate / base:.2f}x" if base else "-"
            label = LABELS[(transport, kind)]
            tr = f"{transport} {mode}" if mode else transport
            print(f"{tr:<17} {label:<38} {rate:>12,.0f} {ratio:>12} {lost:>6} {dup:>6} "
                  f"{dl if kind == 'store' else '-':>8}")
    print("targets: MQTT >= 5,000 msg/s and OPC UA >= 2,000 data changes/s on 2 cores, zero loss")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
