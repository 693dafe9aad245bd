"""twin simulate: the SIMULATED line on its own, against a real MQTT broker, with its OPC UA server on a port.

For plant IT and integration tests: point a twin (``twin run``), a historian or any OPC UA / MQTT client at it
and see the line's values flow, without a plant. Every value it produces is simulated, and it says so.
"""

from __future__ import annotations

ORDER = 65


def add_parser(sub):
    p = sub.add_parser(
        "simulate", help="run the SIMULATED line alone: OPC UA server + MQTT publisher (for integration tests)",
        description="Start the SIMULATED electrode line of electrode-twin: an OPC UA server (objects Mixer, "
                    "Coater, Dryer, Calender, Gauges with the canonical variables and EngineeringUnits, and an "
                    "Advisor object) and an MQTT publisher of the inline gauges on electrode/{line}/{station}/"
                    "{name}, driven by the process chain model with noise, drift, step disturbances and slurry "
                    "batch changes. NO REAL PLANT IS BEHIND THESE VALUES. The line geometry ([line]) and the "
                    "broker ([mqtt] host, port, protocol, user, TLS) are read from a twin run configuration if "
                    "given, the simulator's own settings from its [simulator] table.",
        epilog="example: twin simulate --opcua-port 4840 --mqtt 127.0.0.1:1883 --duration 300")
    p.add_argument("--config", metavar="FILE", help="TOML with [line], [mqtt] and [simulator] tables "
                                                    "(a twin run configuration works)")
    p.add_argument("--opcua-port", type=int, default=4840, metavar="PORT",
                   help="port of the OPC UA server on --opcua-host (default 4840; 0: any free port)")
    p.add_argument("--opcua-host", default="127.0.0.1", metavar="HOST",
                   help="address the OPC UA server binds to (default 127.0.0.1)")
    p.add_argument("--mqtt", metavar="HOST:PORT", help="broker to publish to (default: the config's [mqtt], "
                                                       "else 127.0.0.1:1883)")
    p.add_argument("--no-mqtt", action="store_true", help="OPC UA only")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long (default: Ctrl-C)")
    p.add_argument("--seed", type=int, metavar="S", help="random seed (default: the config's, else 0)")
    p.add_argument("--json", action="store_true", help="print what was published as one JSON document at the end")
    return p


def _load(path):
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    from pathlib import Path

    from twin.cli import UserInputError

    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise UserInputError(f"config {path}: cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"config {path}: not valid TOML: {exc}") from None


def main(args) -> int:
    import asyncio
    import signal
    import sys
    import time

    from pydantic import ValidationError

    from connectors.linesim import SIMULATED_BANNER, LineSimulator, SimSettings
    from twin.cli import UserInputError, emit_json

    doc = _load(args.config) if args.config else {}
    sim_doc = dict(doc.get("simulator", {}))
    if "line" in doc:
        sim_doc.setdefault("line", doc["line"])
    sim_doc["opcua_host"] = args.opcua_host
    sim_doc["opcua_port"] = args.opcua_port
    if args.seed is not None:
        sim_doc["seed"] = args.seed
    try:
        settings = SimSettings.model_validate(sim_doc)
    except ValidationError as exc:
        raise UserInputError(f"[simulator] {exc}") from None
    mqtt = None
    if not args.no_mqtt:
        from connectors.mqtt import MqttSettings

        m = {k: v for k, v in doc.get("mqtt", {}).items()
             if k in ("host", "port", "protocol", "username", "password", "tls", "client_id", "keepalive_s",
                      "topic_pattern", "line", "max_pending", "max_inflight")}
        if args.mqtt:
            host, _, port = args.mqtt.rpartition(":")
            if not host or not port.isdigit():
                raise UserInputError(f"--mqtt {args.mqtt!r} is not HOST:PORT")
            m.update(host=host, port=int(port))
        m["client_id"] = m.get("client_id", "electrode-twin") + "-sim"
        try:
            mqtt = MqttSettings.model_validate(m)
        except ValidationError as exc:
            raise UserInputError(f"[mqtt] {exc}") from None
    out = sys.stderr if args.json else sys.stdout
    sim = LineSimulator(settings, mqtt=mqtt)

    async def run():
        try:
            await sim.start()
        except OSError as exc:
            raise UserInputError(f"cannot start the OPC UA server on {args.opcua_host}:{args.opcua_port}: "
                                 f"{exc.strerror or exc}") from None
        print(f"{SIMULATED_BANNER}\n  OPC UA: {sim.endpoint} (namespace {settings.namespace_uri})"
              + (f"\n  MQTT:   {mqtt.host}:{mqtt.port}, topics electrode/{settings.line.id}/<station>/<name>"
                 if mqtt else "") + "\n  Ctrl-C stops.", file=out, flush=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, lambda: sim._stop.set())
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
                pass
        t0 = time.monotonic()
        try:
            await sim.run(args.duration)
        finally:
            await sim.stop()
        return time.monotonic() - t0

    seconds = asyncio.run(run())
    summary = {"simulated": True, "line": settings.line.id, "opcua_endpoint": sim.endpoint,
               "seconds": round(seconds, 3), "ticks": sim.ticks, "opcua_writes": sim.written_opcua,
               "mqtt_messages": sim.published_mqtt, "batches": [b[1] for b in sim.model.batches],
               "published": {f"{t}/{st}/{n}": c for (t, st, n), c in sorted(sim.published.items())},
               "advice_received": len(sim.advice)}
    if args.json:
        emit_json(summary)
    else:
        print(f"SIMULATED line stopped after {seconds:.1f} s: {sim.ticks} ticks, {sim.written_opcua} OPC UA writes, "
              f"{sim.published_mqtt} MQTT messages, batches {', '.join(summary['batches'])}", file=out)
    return 0
