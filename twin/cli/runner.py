"""Composition root of ``twin run`` and ``twin demo``: the core, the live page and the connectors.

This is the only place where the twin meets the protocol libraries: the connectors are imported here, when a
command runs, and plugged into :class:`twin.orchestrator.Twin` through its sink (readings in) and its
listeners (predictions out).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

log = logging.getLogger(__name__)


def tracking_topics(mqtt_settings) -> list[str]:
    """MQTT filters of the tracking signals (web speed, slurry batch) of the configured lines."""
    lines = list(mqtt_settings.lines) or ["+"]
    if "{line}" not in mqtt_settings.topic_pattern:
        lines = [None]
    out = []
    for line in lines:
        for station, name in (("coater", "web_speed"), ("mixer", "batch_id")):
            t = mqtt_settings.topic_pattern.replace("{station}", station).replace("{name}", name)
            out.append(t.replace("{line}", line) if line is not None else t)
    return out


class Runner:
    """The twin with its page and connectors; ``start()``, ``wait(duration)``, ``stop()``."""

    def __init__(self, settings, web: bool | None = None, port: int | None = None, cell="config"):
        from twin.orchestrator import Twin

        self.settings = settings
        self.twin = Twin(settings, cell=cell)
        self.web = None
        use_web = settings.web.enabled if web is None else web
        if use_web:
            from twin.web import WebServer

            self.web = WebServer(self.twin, settings.web.host, settings.web.port if port is None else port)
        self.mqtt_sources: list = []
        self.publisher = None
        self.opcua = None
        self._opcua_loop: asyncio.AbstractEventLoop | None = None
        self._opcua_thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- connectors -------------------------------------------------------------------------------------------
    def add_mqtt(self, mqtt_settings) -> None:
        """Subscribe with ``connectors.mqtt.MqttSource``. With ``ack = "stored"`` it calls the sink as
        ``sink(reading, ack)`` and the broker gets its PUBACK only once the twin has stored (or dead-lettered)
        the reading; with ``ack = "received"`` as ``sink(reading)``."""
        from connectors.mqtt import MqttSource

        self.mqtt_sources.append(MqttSource(mqtt_settings, self.twin.submit))
        if mqtt_settings.shared_group:
            # a shared subscription gives this worker only its share of the line; tracking the web needs every
            # speed reading and batch signal, so those come on an unshared subscription too (the store keeps
            # them once)
            track = mqtt_settings.model_copy(update={
                "shared_group": None, "client_id": f"{mqtt_settings.client_id}-tracking"[:128],
                "topics": tracking_topics(mqtt_settings)})
            self.mqtt_sources.append(MqttSource(track, self.twin.submit))

    def add_publisher(self, mqtt_settings) -> None:
        """Publish every prediction and alert on ``electrode/{line}/twin/...``."""
        from connectors.mqtt import MqttPublisher

        from twin.web import prediction_event

        pub = MqttPublisher(mqtt_settings)
        self.publisher = pub

        def publish(pred, alerts):
            try:
                doc = prediction_event(pred, alerts)
                for q in doc.get("quantities", {}).values():
                    q.pop("hist", None)
                # timeout=0: a broker that is down makes publishing fail at once, never stalls the update loop
                # (the prediction is in the store either way)
                pub.publish_prediction(pred.line, pred.segment, doc, timeout=0)
                for a in alerts:
                    pub.publish_alert(pred.line, {"segment": a.segment, "kind": a.kind, "quantity": a.quantity,
                                                  "value": a.value, "message": a.message, "ts": a.ts}, timeout=0)
            except Exception as exc:  # a broker that is down must not stop the predictions
                log.warning("publishing prediction of segment %s failed: %s", pred.segment, exc)

        self.twin.add_listener(publish)

    def add_opcua(self, opcua_settings) -> None:
        """Subscribe with ``connectors.opcua.OpcUaSource`` (its supervisor reconnects and resubscribes)."""
        from connectors.opcua import OpcUaSource

        self.opcua = OpcUaSource(opcua_settings, self.twin.submit)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> "Runner":
        self.twin.start()
        if self.web is not None:
            try:
                self.web.start()
            except OSError:
                self.twin.stop()
                raise
        if self.publisher is not None:
            self.publisher.start()
        for src in self.mqtt_sources:
            src.start()
        if self.opcua is not None:
            self._opcua_loop = asyncio.new_event_loop()

            def run():
                asyncio.set_event_loop(self._opcua_loop)
                try:
                    self._opcua_loop.run_until_complete(self.opcua.run())
                except Exception:
                    log.exception("OPC UA source stopped")

            self._opcua_thread = threading.Thread(target=run, name="twin-opcua", daemon=True)
            self._opcua_thread.start()
        return self

    def request_stop(self) -> None:
        self._stop.set()

    def wait(self, duration: float | None = None) -> None:
        """Until ``duration`` seconds have passed, :meth:`request_stop` or Ctrl-C (KeyboardInterrupt)."""
        end = None if duration is None else time.monotonic() + duration
        while not self._stop.is_set():
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return
            self._stop.wait(0.2 if left is None else min(0.2, left))

    def stop(self) -> None:
        """Inputs first (nothing new arrives), then store and predict what is queued, then the page."""
        for src in self.mqtt_sources:
            try:
                src.stop()
            except Exception:
                log.exception("stopping MQTT source")
        if self.opcua is not None and self._opcua_loop is not None:
            fut = asyncio.run_coroutine_threadsafe(self.opcua.stop(), self._opcua_loop)
            try:
                fut.result(15)
            except Exception:
                log.exception("stopping OPC UA source")
            self._opcua_thread.join(15)
            self._opcua_loop.close()
            self._opcua_loop = None
        self.twin.drain(60)
        self.twin.stop(close_store=False)
        if self.publisher is not None:
            try:
                self.publisher.stop(5.0)
            except Exception:
                log.exception("stopping MQTT publisher")
        if self.web is not None:
            self.web.stop()

    def summary(self) -> dict:
        st = self.twin.status()
        st["counts"] = self.twin.store.counts()
        if self.web is not None:
            st["page"] = self.web.url
        st["connectors"] = {}
        for i, src in enumerate(self.mqtt_sources):
            st["connectors"][f"mqtt{i}"] = dict(src.stats.__dict__)
        if self.opcua is not None and hasattr(self.opcua, "stats"):
            s = self.opcua.stats
            st["connectors"]["opcua"] = dict(s.__dict__) if hasattr(s, "__dict__") else s
        return st

    def close(self) -> None:
        self.twin.store.close()


def print_summary(st: dict, stream) -> None:
    i = st["ingest"]
    c = st["counts"]
    lat = st["latency_ms"]
    print(f"received {i['received']} readings: stored {i['stored']}, duplicates {i['duplicates']}, "
          f"dead-lettered {i['dead_lettered']} ({i['unattributed']} stored without a segment: web not yet there)",
          file=stream)
    print(f"store {st['store']}: {c['measurements']} measurements, {c['segments']} segments, "
          f"{c['predictions']} predictions, {c['alerts']} alerts, {c['dead_letters_open']} open dead letters",
          file=stream)
    def ms(x):
        return "-" if x != x else f"{x:.1f} ms"

    print(f"predictions: {st['predictions']} this run ({st['model']}, {st['samples']} samples), latency from arrival "
          f"to stored prediction p50 {ms(lat['p50'])}, p99 {ms(lat['p99'])}", file=stream)
