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


def _line_process(conn, line: dict, seed: int, steps: list, opcua_port: int = 0) -> None:
    """The line side of the demo in a process of its own (so its OPC UA server and broker do not compete with
    the twin for the GIL): the embedded MQTT broker and the SIMULATED line. Talks to the parent over ``conn``."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    # the OPC UA server's shutdown leaves asyncio tasks behind that asyncio reports, and paho logs its own
    # disconnection at shutdown as an error; nothing is lost by either
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    logging.getLogger("connectors.mqtt.paho").setLevel(logging.CRITICAL)
    from connectors.broker import EmbeddedBroker
    from connectors.linesim import LineSimulator, SimSettings
    from connectors.mqtt import MqttSettings

    broker = sim = None
    try:
        broker = EmbeddedBroker().start()
        sim_mqtt = MqttSettings(host="127.0.0.1", port=broker.port, protocol="3.1.1", username="linesim",
                                client_id="electrode-twin-demo-line")
        sim = LineSimulator(SimSettings(line=line, seed=seed, steps=steps, opcua_port=opcua_port),
                            mqtt=sim_mqtt).start_thread(hold=True)
        conn.send({"broker_port": broker.port, "endpoint": sim.endpoint,
                   "opcua": sim.opcua_settings().model_dump(mode="json")})
        while True:
            msg = conn.recv()
            if msg == "release":
                sim.release()
            elif msg == "stop":
                break
        # stop ticking but keep the OPC UA server and the broker up until the twin has taken everything
        sim.pause(30.0)
        conn.send({"ticks": sim.ticks, "published": {f"{t}/{st}/{n}": c for (t, st, n), c in
                                                      sorted(sim.published.items())}})
        conn.recv()   # the twin has drained
        sim.stop_thread()
    except (EOFError, KeyboardInterrupt):
        pass
    except BaseException as exc:
        try:
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
        except Exception:
            pass
    finally:
        if sim is not None:
            sim.stop_thread()
        if broker is not None:
            broker.stop()


class LineSide:
    """Parent-side handle of :func:`_line_process`."""

    def __init__(self, line: dict, seed: int, steps: list, opcua_port: int = 0):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_line_process, args=(child, line, seed, steps, opcua_port),
                                name="twin-demo-line", daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(60):
            self.kill()
            raise RuntimeError("the simulated line did not start within 60 s")
        self.info = self.conn.recv()
        if "error" in self.info:
            self.kill()
            raise RuntimeError(f"the simulated line could not start: {self.info['error']}")
        self.result: dict | None = None

    def release(self) -> None:
        self.conn.send("release")

    def stop_line(self) -> dict:
        """Stop ticking and flush; what the line published."""
        if self.result is None:
            try:
                self.conn.send("stop")
                self.result = self.conn.recv() if self.conn.poll(60) else {"ticks": 0, "published": {},
                                                                           "error": "no answer"}
            except (OSError, EOFError):
                self.result = {"ticks": 0, "published": {}, "error": "line process gone"}
        return self.result

    def close(self) -> None:
        try:
            self.conn.send("bye")
        except (OSError, EOFError):
            pass
        self.proc.join(30)
        self.kill()

    def kill(self, hard: bool = False) -> None:
        """End the line process: SIGTERM, or SIGKILL with ``hard`` (a crash of the line's servers)."""
        if self.proc.is_alive():
            self.proc.kill() if hard else self.proc.terminate()
            self.proc.join(10)


def main(args) -> int:
    import logging
    import signal
    import sys

    from twin.cli import UserInputError, emit_json

    from .runner import Runner, print_summary

    out = sys.stderr if args.json else sys.stdout
    if args.duration is not None and args.duration <= 0:
        raise UserInputError(f"--duration {args.duration} must be positive")
    from connectors.linesim import SIMULATED_BANNER
    from connectors.mqtt import MqttSettings
    from connectors.opcua import OpcUaSettings

    settings = demo_settings(args.store, args.port, args.samples)
    steps = [] if args.no_step else [{"name": "flow_rate", "at_s": 35.0, "factor": 1.05}]
    line = LineSide(settings.line.model_dump(), args.seed, steps)
    runner = None
    interrupted = False
    try:
        twin_mqtt = MqttSettings(host="127.0.0.1", port=line.info["broker_port"], protocol="3.1.1",
                                 username="twin", client_id="electrode-twin-demo", lines=["line1"], ack="stored")
        runner = Runner(settings)
        runner.add_mqtt(twin_mqtt)
        runner.add_publisher(twin_mqtt)
        runner.add_opcua(OpcUaSettings.model_validate(line.info["opcua"]))
        try:
            runner.start()
        except OSError as exc:
            raise UserInputError(f"{exc}; give another --port (0: any free port)") from None
        runner.mqtt_sources[0].wait_subscribed(15)
        runner.opcua.subscribed.wait(15)
        line.release()
        signal.signal(signal.SIGTERM, lambda *_: runner.request_stop())
        print(SIMULATED_BANNER, file=out)
        print(f"OPC UA {line.info['endpoint']}, MQTT 127.0.0.1:{line.info['broker_port']} (embedded amqtt, "
              f"MQTT 3.1.1), store {args.store}", file=out)
        print(f"live page: {runner.web.url}   (Ctrl-C stops"
              + (f"; stopping by itself after {args.duration:g} s)" if args.duration else ")"), file=out, flush=True)
        try:
            runner.wait(args.duration)
        except KeyboardInterrupt:
            interrupted = True
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if interrupted:
            print("stopping ...", file=out, flush=True)
        # the line stops first and flushes what it published; the twin takes it in, then stops
        result = line.stop_line()
        if runner is not None and runner.twin.started_ts is not None:
            want = sum(result.get("published", {}).values())
            _settle(runner, want, 20)
            # the line's servers go away now: their clients' complaints about it are expected
            logging.getLogger("connectors.opcua").setLevel(logging.ERROR)
            logging.getLogger("asyncua").setLevel(logging.CRITICAL)
            logging.getLogger("connectors.mqtt.paho").setLevel(logging.CRITICAL)
            runner.stop()
        line.close()
    st = runner.summary()
    runner.close()
    st["simulator"] = {"ticks": result.get("ticks"), "published": result.get("published", {}),
                       "published_total": sum(result.get("published", {}).values()), "simulated": True}
    if args.json:
        emit_json(st)
    else:
        print_summary(st, out)
        print(f"simulated line: {st['simulator']['ticks']} ticks, {st['simulator']['published_total']} values "
              f"published for the twin (OPC UA and MQTT); `twin segments --store {args.store}` lists the "
              f"segments", file=out)
    return 0


def _settle(runner, want: int, timeout: float) -> None:
    """Wait until the twin has received what the line published (or the timeout), then for its predictions."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if runner.twin.ingestor.stats.received >= want and runner.twin.ingestor.pending == 0:
            break
        time.sleep(0.1)
    runner.twin.drain(max(1.0, end - time.monotonic()))
