"""The live page and the JSON API of a running twin (Starlette, served by uvicorn on 127.0.0.1).

Routes
------
``/``                               the live page: per-segment predicted distributions updating as the line runs
``/static/plotly.min.js``           plotly.js from the installed ``plotly`` package (the page works offline)
``/events``                         server-sent events: ``prediction`` (one per stored prediction), ``status``
``/api/status``                     counters: received, stored, duplicates, dead letters, latency, model
``/api/segments?last=N&line=L``     segments with their latest prediction, newest first
``/api/segments/{line}/{k}``        one segment: its prediction history and its measurements
``/api/deadletters?state=open``     dead letters with their reasons
``/api/alerts?last=N``              alerts, newest first

The update thread hands predictions to :class:`EventHub`, which fans them out to every connected page through
the server's event loop; a page that cannot keep up loses intermediate events (never data: the store has them
and the page re-reads ``/api/segments`` when it reconnects).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from pathlib import Path

from .store import Alert, Prediction

__all__ = ["EventHub", "create_app", "WebServer", "prediction_event"]

log = logging.getLogger(__name__)


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _dumps(o) -> str:
    try:  # the common case: nothing to clean
        return json.dumps(o, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(_clean(o), separators=(",", ":"), allow_nan=False, default=str)


def prediction_event(p: Prediction, alerts: list[Alert] = ()) -> dict:
    """The JSON document of one prediction (the page, the SSE stream and the MQTT topic use it)."""
    return {"line": p.line, "segment": p.segment, "stage": p.stage, "computed_ts": p.computed_ts,
            "n_samples": p.n_samples, "n_measurements": p.n_measurements, "ess": p.ess, "method": p.method,
            "model": p.model, "p_out": p.p_out, "id": p.id, **p.summary,
            "alerts": [{"kind": a.kind, "quantity": a.quantity, "message": a.message} for a in alerts]}


class EventHub:
    """Fan-out of events from any thread to the subscribers of one asyncio loop."""

    def __init__(self, queue_size: int = 256):
        self.queue_size = queue_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: set[asyncio.Queue] = set()
        self.published = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(self.queue_size)
        self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subs.discard(q)

    def _fan_out(self, kind: str, data: str) -> None:
        for q in list(self._subs):
            if q.full():
                try:
                    q.get_nowait()   # a slow page loses the oldest event, not the newest
                except asyncio.QueueEmpty:  # pragma: no cover
                    pass
            q.put_nowait((kind, data))

    def publish(self, kind: str, doc) -> None:
        """Thread-safe: queue ``doc`` as event ``kind`` for every subscriber."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self._subs:
            return
        data = _dumps(doc)
        self.published += 1
        try:
            loop.call_soon_threadsafe(self._fan_out, kind, data)
        except RuntimeError:  # loop closed meanwhile
            pass

    def on_prediction(self, p: Prediction, alerts: list[Alert]) -> None:
        self.publish("prediction", prediction_event(p, alerts))


def _plotly_js() -> Path:
    import plotly

    p = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not p.is_file():  # pragma: no cover - part of every plotly wheel
        raise FileNotFoundError(f"plotly.min.js not found in the installed plotly package ({p})")
    return p


def create_app(twin, hub: EventHub, status_interval_s: float = 1.0):
    """The Starlette application of ``twin`` (a :class:`twin.orchestrator.Twin`)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, Response, StreamingResponse
    from starlette.routing import Route

    from .webpage import PAGE

    store = twin.store

    def js(doc, status=200):
        return Response(_dumps(doc), status_code=status, media_type="application/json")

    async def page(request: Request):
        return HTMLResponse(PAGE)

    async def plotly_js(request: Request):
        return FileResponse(_plotly_js(), media_type="application/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    def _int(request, key, default, lo=1, hi=100_000):
        raw = request.query_params.get(key)
        if raw is None:
            return default
        try:
            v = int(raw)
        except ValueError:
            raise ValueError(f"{key} = {raw!r} is not an integer") from None
        if not lo <= v <= hi:
            raise ValueError(f"{key} = {v} is outside [{lo}, {hi}]")
        return v

    async def status(request: Request):
        return js(await asyncio.to_thread(twin.status))

    async def segments(request: Request):
        try:
            last = _int(request, "last", 50)
        except ValueError as exc:
            return js({"error": str(exc)}, 400)
        line = request.query_params.get("line")
        rows = await asyncio.to_thread(store.segments, line, last)
        return js({"segments": rows})

    async def segment(request: Request):
        line = request.path_params["line"]
        k = request.path_params["k"]

        def load():
            return {"line": line, "segment": k, "predictions": store.predictions(line, k),
                    "measurements": store.measurements(line, segment=k, limit=100_000)}

        doc = await asyncio.to_thread(load)
        if not doc["predictions"] and not doc["measurements"]:
            return js({"error": f"segment {k} of line {line!r} is not in the store"}, 404)
        return js(doc)

    async def dead_letters(request: Request):
        state = request.query_params.get("state", "open")
        try:
            last = _int(request, "last", 100)
        except ValueError as exc:
            return js({"error": str(exc)}, 400)
        rows = await asyncio.to_thread(store.dead_letters, None if state == "all" else state, last)
        return js({"dead_letters": rows})

    async def alerts(request: Request):
        try:
            last = _int(request, "last", 50)
        except ValueError as exc:
            return js({"error": str(exc)}, 400)
        return js({"alerts": await asyncio.to_thread(store.alerts, last)})

    async def events(request: Request):
        q = hub.subscribe()

        async def stream():
            loop = asyncio.get_running_loop()
            try:
                yield "retry: 2000\n\n"
                yield f"event: status\ndata: {_dumps(twin.status())}\n\n"
                last_status = loop.time()
                while True:
                    left = max(0.0, last_status + status_interval_s - loop.time())
                    try:
                        kind, data = await asyncio.wait_for(q.get(), left)
                        yield f"event: {kind}\ndata: {data}\n\n"
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            break
                    if loop.time() - last_status >= status_interval_s:   # also while predictions stream in
                        yield f"event: status\ndata: {_dumps(twin.status())}\n\n"
                        last_status = loop.time()
            finally:
                hub.unsubscribe(q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def startup():
        hub.bind(asyncio.get_running_loop())

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        await startup()
        yield

    routes = [
        Route("/", page),
        Route("/static/plotly.min.js", plotly_js),
        Route("/events", events),
        Route("/api/status", status),
        Route("/api/segments", segments),
        Route("/api/segments/{line}/{k:int}", segment),
        Route("/api/deadletters", dead_letters),
        Route("/api/alerts", alerts),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


class WebServer:
    """uvicorn serving :func:`create_app` in a thread of its own (its own event loop)."""

    def __init__(self, twin, host: str = "127.0.0.1", port: int = 8050):
        import uvicorn

        self.hub = EventHub()
        twin.add_listener(self.hub.on_prediction)
        self.app = create_app(twin, self.hub)
        self.config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", lifespan="on",
                                     timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(self.config)
        self.server.install_signal_handlers = lambda: None  # the command owns Ctrl-C
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self, timeout: float = 15.0) -> "WebServer":
        def run():
            try:
                self.server.run()
            except BaseException as exc:  # pragma: no cover - reported by start()
                self.error = exc

        self._thread = threading.Thread(target=run, name="twin-web", daemon=True)
        self._thread.start()
        import time

        end = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                raise OSError(f"web page could not be served on {self.host}:{self.port}"
                              + (f": {self.error}" if self.error else " (port in use?)"))
            time.sleep(0.02)
        if self.port == 0:
            sock = self.server.servers[0].sockets[0]
            self.port = sock.getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
