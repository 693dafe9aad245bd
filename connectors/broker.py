"""Embedded MQTT broker for the demo: amqtt, in-process, on 127.0.0.1, MQTT 3.1.1 only.

``twin demo`` must run on a machine with nothing installed beyond the package, so it cannot count on a
Mosquitto. amqtt (pure Python) is a real MQTT broker that runs inside the twin's process. Its limits, measured
(design notes): it refuses MQTT v5 connections (use ``MqttSettings(protocol="3.1.1")`` against it) and carries
about 5,100 QoS 1 messages/s, far above what a simulated line publishes. For production use Mosquitto
(``deploy/mosquitto.conf``).

Two ways to run it::

    broker = EmbeddedBroker().start()        # its own thread and event loop; broker.port is the bound port
    ...
    broker.stop()

    async with EmbeddedBroker() as broker:   # on the running event loop
        ...

It listens on loopback only and keeps sessions in memory. Clients must give a user name (any, no password is
checked: ``MqttSettings(username="twin")``), because amqtt queues messages for an absent persistent session
(clean_session false) only for clients that are not anonymous; with that, a client that reconnects gets what
was queued meanwhile. Nothing survives the broker itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from .threadloop import close_loop

__all__ = ["EmbeddedBroker"]

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """An amqtt broker bound to ``host``:``port`` (``port=0``: a free port, read ``.port`` after start)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, quiet: bool = True):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"host = {host!r}: the embedded broker is for the demo and binds to loopback only "
                             f"(allows anonymous clients); use Mosquitto for a network-facing broker")
        self.host = host
        self.port = int(port)
        self.quiet = quiet
        self._broker = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def _config(self) -> dict:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # allow_anonymous False: a client must give a user name (any; no password is checked). amqtt queues
            # messages for an absent persistent session only if its client is not anonymous.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
        }

    # -- on the running event loop ---------------------------------------------------------------------
    async def astart(self) -> "EmbeddedBroker":
        from amqtt.broker import Broker

        if self.quiet:
            for name in ("amqtt", "transitions"):
                lg = logging.getLogger(name)
                if lg.level == logging.NOTSET:
                    lg.setLevel(logging.WARNING)
        self._broker = Broker(self._config())
        await self._broker.start()
        server = self._broker._servers["default"].instance
        self.port = server.sockets[0].getsockname()[1]
        log.info("embedded MQTT broker (amqtt, MQTT 3.1.1) on %s:%d", self.host, self.port)
        return self

    async def astop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()

    async def __aenter__(self):
        return await self.astart()

    async def __aexit__(self, *exc):
        await self.astop()

    # -- in its own thread -------------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> "EmbeddedBroker":
        """Run the broker on its own event loop in a daemon thread; returns once it listens."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main():
            self._stop_event = asyncio.Event()
            try:
                await self.astart()
            except BaseException as exc:  # report to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            await self._stop_event.wait()
            await self.astop()

        def run():
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(main())
            finally:
                close_loop(self._loop)

        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"embedded broker did not start within {timeout} s")
        if failure:
            self._thread.join(5)
            self._thread = None
            raise RuntimeError(f"embedded broker could not start on {self.host}:{self.port}: {failure[0]}") \
                from failure[0]
        return self

    def stop(self, timeout: float = 15.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop_event is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("embedded broker thread did not stop within %s s", timeout)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
