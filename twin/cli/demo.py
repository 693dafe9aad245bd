"""twin demo: the whole system on one machine (simulated line, embedded broker, twin, SQLite, live page)."""

from __future__ import annotations

ORDER = 58

DEFAULT_PORT = 8050


def add_parser(sub):
    p = sub.add_parser(
        "demo", help="run everything on this machine: simulated line, embedded MQTT broker, twin, live page",
        description="Start a SIMULATED electrode line (an OPC UA server for the PLC values and an MQTT publisher "
                    "for the inline gauges, driven by the process chain with noise, drift and a step "
                    "disturbance), an embedded MQTT broker (amqtt, MQTT 3.1.1), the twin with an SQLite store, "
                    "and the live page on 127.0.0.1. Stops cleanly on Ctrl-C or after --duration and prints "
                    "a summary. Running it again on the same store resumes where the last run stopped.",
        epilog="example: twin demo --duration 60   (then open http://127.0.0.1:8050)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--store", metavar="FILE", default="twin.sqlite", help="SQLite store file (default twin.sqlite)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="PORT",
                   help=f"port of the live page on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--samples", type=int, default=10_000, metavar="N", help="Monte Carlo samples per prediction")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the simulated line (default 0)")
    p.add_argument("--no-step", action="store_true", help="no flow-rate step disturbance at 35 s")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON document on stdout (messages go to stderr)")
    return p


def demo_settings(store: str, port: int, samples: int = 10_000):
    """The demo's twin configuration: a 1 m/min line scaled so that segments (5 cm, one every 3 s) pass every
    station within half a minute."""
    from twin.runconfig import config_from_dict

    return config_from_dict({
        "line": {"id": "line1", "segment_length_m": 0.05, "feed_dead_time_s": 20.0,
                 "positions": {"coater": 0.0, "gauges": 0.05, "dryer": 0.3, "calender": 0.5}},
        "store": {"url": store, "sqlite_synchronous": "NORMAL"},
        "model": {"samples": samples, "cell": "auto", "hold_s": 10.0},
        "uncertainty": {"default": {"rel_std": 0.003}, "m_wet": {"std": 0.06}, "m_dry": {"std": 0.04},
                        "h_wet": {"std": 0.4}, "h_dry": {"std": 0.25}, "h_cal": {"std": 0.25}},
        "spec": {"m_dry": [13.9, 14.7], "rho_cal": [2.87, 3.03], "h_cal": [46.5, 50.5],
                 "capacity": [2.30, float("inf")], "energy_density": [1800.0, float("inf")]},
        "web": {"enabled": True, "host": "127.0.0.1", "port": port},
    })


def main(args) -> int:
    import logging
    import signal
    import sys
    import time

    from twin.cli import UserInputError, emit_json

    from .runner import Runner, print_summary

    out = sys.stderr if args.json else sys.stdout
    if args.duration is not None and args.duration <= 0:
        raise UserInputError(f"--duration {args.duration} must be positive")
    from connectors.broker import EmbeddedBroker
    from connectors.linesim import SIMULATED_BANNER, LineSimulator, SimSettings
    from connectors.mqtt import MqttSettings

    # the simulator says loudly (WARNING) that it is simulated; the summary says it once
    logging.getLogger("connectors.linesim").setLevel(logging.ERROR)
    settings = demo_settings(args.store, args.port, args.samples)
    broker = EmbeddedBroker().start()
    runner = sim = None
    try:
        twin_mqtt = MqttSettings(host="127.0.0.1", port=broker.port, protocol="3.1.1", username="twin",
                                 client_id="electrode-twin-demo", lines=["line1"], ack="stored")
        sim_mqtt = MqttSettings(host="127.0.0.1", port=broker.port, protocol="3.1.1", username="linesim",
                                client_id="electrode-twin-demo-line")
        steps = [] if args.no_step else [{"name": "flow_rate", "at_s": 35.0, "factor": 1.05}]
        sim = LineSimulator(SimSettings(line=settings.line.model_dump(), seed=args.seed, steps=steps),
                            mqtt=sim_mqtt).start_thread(hold=True)
        runner = Runner(settings)
        runner.add_mqtt(twin_mqtt)
        runner.add_publisher(twin_mqtt)
        runner.add_opcua(sim.opcua_settings())
        try:
            runner.start()
        except OSError as exc:
            raise UserInputError(f"{exc}; give another --port (0: any free port)") from None
        runner.mqtt_sources[0].wait_subscribed(15)
        _wait_opcua(runner, 15)
        sim.release()
        signal.signal(signal.SIGTERM, lambda *_: runner.request_stop())
        print(f"{SIMULATED_BANNER}", file=out)
        print(f"OPC UA {sim.endpoint}, MQTT 127.0.0.1:{broker.port} (embedded, MQTT 3.1.1), store {args.store}",
              file=out)
        print(f"live page: {runner.web.url}   (Ctrl-C stops"
              + (f"; stopping by itself after {args.duration:g} s)" if args.duration else ")"), file=out, flush=True)
        try:
            runner.wait(args.duration)
        except KeyboardInterrupt:
            print("stopping ...", file=out, flush=True)
        # the line stops first and flushes what it published, then the twin stores and predicts the rest
        sim.stop_thread()
        _settle(runner, sim, 20)
    except KeyboardInterrupt:
        print("stopping ...", file=out, flush=True)
    finally:
        if sim is not None:
            sim.stop_thread()
        if runner is not None:
            runner.stop()
        broker.stop()
    st = runner.summary()
    runner.close()
    st["simulator"] = {"ticks": sim.ticks, "published": {f"{t}/{s}/{n}": c for (t, s, n), c in
                                                         sorted(sim.published.items())},
                       "published_total": sum(sim.published.values()), "simulated": True}
    if args.json:
        emit_json(st)
    else:
        print_summary(st, out)
        print(f"simulated line: {sim.ticks} ticks, {st['simulator']['published_total']} values published "
              f"(OPC UA and MQTT); `twin segments --store {args.store}` lists the segments", file=out)
    return 0


def _wait_opcua(runner, timeout: float) -> None:
    import time

    src = runner.opcua
    ev = getattr(src, "subscribed", None) or getattr(src, "connected", None)
    if ev is not None and hasattr(ev, "wait"):
        ev.wait(timeout)
        return
    time.sleep(1.0)  # pragma: no cover - older connector without an event


def _settle(runner, sim, timeout: float) -> None:
    """Wait until the twin has received what the simulator published (or the timeout)."""
    import time

    end = time.monotonic() + timeout
    want = sum(sim.published.values())
    while time.monotonic() < end:
        got = runner.twin.ingestor.stats.received
        if got >= want and runner.twin.ingestor.pending == 0:
            break
        time.sleep(0.1)
    runner.twin.drain(max(1.0, end - time.monotonic()))
