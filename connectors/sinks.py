"""Where connectors put what they receive: a non-blocking, thread-safe callable taking one :class:`Reading`.

A connector's network loop (paho's thread, asyncua's event loop) must never wait for the twin core. Every
connector therefore hands each :class:`~twin.readings.Reading` to a *sink*, a callable that returns at once.
Two are provided:

- ``queue.SimpleQueue().put`` — thread-safe and unbounded; the simplest choice when the consumer is a thread.
- :class:`AsyncioQueueSink` — hands readings to an ``asyncio.Queue`` owned by an event loop, from any thread
  (paho's network thread included) via ``loop.call_soon_threadsafe``.

The queue behind a sink is unbounded on purpose: a bounded queue that is full leaves the connector a choice
between blocking its network loop and dropping a reading, and both lose data. Memory is bounded upstream instead
(MQTT: ``ack = "stored"`` keeps at most the broker's in-flight window un-acknowledged, see
:mod:`connectors.mqtt`; OPC UA: the server's monitored-item queues).
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable

from twin.readings import Reading

__all__ = ["Sink", "AsyncioQueueSink", "CollectingSink"]

#: What every connector calls with each reading; must not block and must be thread-safe.
Sink = Callable[[Reading], None]


class AsyncioQueueSink:
    """Put readings on an ``asyncio.Queue`` of ``loop`` from any thread, without blocking the caller.

    The queue must be unbounded (``maxsize=0``): ``put_nowait`` on a full queue would raise inside the loop's
    callback, where nobody could handle it, and the reading would be gone.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue):
        if q.maxsize:
            raise ValueError(f"AsyncioQueueSink needs an unbounded asyncio.Queue, got maxsize = {q.maxsize}")
        self.loop = loop
        self.queue = q

    def __call__(self, reading: Reading) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.queue.put_nowait(reading)
        else:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, reading)


class CollectingSink:
    """A thread-safe sink that keeps every reading in a :class:`queue.SimpleQueue` (tests, bench, CLI)."""

    def __init__(self):
        self.queue: queue.SimpleQueue[Reading] = queue.SimpleQueue()

    def __call__(self, reading: Reading) -> None:
        self.queue.put(reading)

    def drain(self) -> list[Reading]:
        """Every reading received so far and not yet drained."""
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out
