"""twin run: the twin against a real line (endpoints from a TOML configuration)."""

from __future__ import annotations

ORDER = 60


def add_parser(sub):
    p = sub.add_parser(
        "run", help="run the twin against real endpoints (OPC UA, MQTT) from a TOML configuration",
        description="Subscribe to the line's MQTT broker and/or OPC UA server as configured, validate and store "
                    "every reading (SQLite or PostgreSQL), track segments, update each segment's predicted "
                    "distributions and serve the live page. Stops cleanly on Ctrl-C (or after --duration): "
                    "connectors first, then what is queued is stored and predicted. See config/run.example.toml "
                    "for every setting; secrets come from environment variables or files.",
        epilog="example: twin run --config config/run.example.toml")
    p.add_argument("--config", metavar="FILE", required=True, help="run configuration (TOML)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long (default: run until Ctrl-C)")
    p.add_argument("--port", type=int, metavar="PORT", help="port of the live page (default: the config's [web] port)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document on stdout at the end")
    return p


def main(args) -> int:
    import signal
    import sys

    from twin.cli import UserInputError, emit_json
    from twin.runconfig import ConfigError, load_config

    from .runner import Runner, print_summary

    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        raise UserInputError(str(exc)) from None
    if settings.mqtt is None and settings.opcua is None:
        raise UserInputError(f"config {args.config}: neither [mqtt] nor [opcua] is configured: nothing to listen to")
    runner = Runner(settings, port=args.port)
    if settings.mqtt is not None:
        from connectors.mqtt import MqttSettings

        try:
            ms = MqttSettings.model_validate(settings.mqtt)
        except Exception as exc:
            raise UserInputError(f"config {args.config}: [mqtt] {exc}") from None
        runner.add_mqtt(ms)
        if settings.publish.predictions:
            runner.add_publisher(ms)
    if settings.opcua is not None:
        from connectors.opcua import OpcUaSettings

        try:
            os_ = OpcUaSettings.model_validate(settings.opcua)
        except Exception as exc:
            raise UserInputError(f"config {args.config}: [opcua] {exc}") from None
        runner.add_opcua(os_)
    signal.signal(signal.SIGTERM, lambda *_: runner.request_stop())
    try:
        runner.start()
    except OSError as exc:
        raise UserInputError(str(exc)) from None
    out = sys.stderr if args.json else sys.stdout
    # tell the operator once the subscriptions stand (the connectors keep retrying if a server is not up yet)
    for src in runner.mqtt_sources:
        if not src.wait_subscribed(10):
            print(f"MQTT {src.settings.host}:{src.settings.port} not subscribed yet; retrying in the background",
                  file=out, flush=True)
    if runner.opcua is not None and not runner.opcua.subscribed.wait(10):
        print(f"OPC UA {runner.opcua.settings.endpoint} not subscribed yet; retrying in the background", file=out,
              flush=True)
    page = f"; live page on {runner.web.url}" if runner.web is not None else ""
    print(f"twin running{page} (Ctrl-C stops)", file=out, flush=True)
    try:
        runner.wait(args.duration)
    except KeyboardInterrupt:
        print("stopping ...", file=out, flush=True)
    finally:
        runner.stop()
    st = runner.summary()
    runner.close()
    if args.json:
        emit_json(st)
    else:
        print_summary(st, out)
    return 0
