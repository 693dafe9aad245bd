"""The running twin: store, ingestion, segment tracking, update loop and live page wired together.

:class:`Twin` is the core as one object. Connectors (or a test) hand it readings through :meth:`Twin.submit`
(a thread-safe, non-blocking sink); listeners (the live page's event hub, an MQTT publisher of predictions)
get every stored prediction. It never imports a protocol library: ``twin run`` and ``twin demo`` build the
connectors and plug them in.

Start-up resumes from the store: the web position (tracker checkpoint plus the stored speed readings after
it), the slurry batches, the accumulated measurements of the recent segments, and a recomputation of every
recent segment whose latest prediction does not cover all its stored measurements (a crash between storing
a value and storing the prediction).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .ingest import Ingestor, replay_dead_letters
from .readings import Reading
from .runconfig import TwinSettings
from .scenario import load_scenario
from .store import Alert, Prediction, SQLiteStore, Store, open_store
from .update import Predictor, SegmentBook, UpdateLoop, load_cell_model

__all__ = ["Twin"]


log = logging.getLogger(__name__)


class Twin:
    """The twin core for one configuration."""

    def __init__(self, settings: TwinSettings | None = None, store: Store | None = None, cell="config"):
        self.settings = settings or TwinSettings()
        s = self.settings
        if store is None:
            url = s.store.resolved_url()
            store = open_store(url) if url.startswith(("postgres", )) else \
                open_store(url, synchronous=s.store.sqlite_synchronous)
        self.store = store
        self.ingestor = Ingestor(store, s.layout(), s.policy(), on_stored=self._on_stored,
                                 history_s=s.line.history_s)
        self.scenario = load_scenario(s.scenario_path())
        cell_model = load_cell_model(s.model.cell) if cell == "config" else cell
        self.predictor = Predictor(self.scenario, s.update_config(), cell=cell_model)
        self.book = SegmentBook(self.ingestor.trackers, hold=self.predictor.held_inputs(), hold_s=s.model.hold_s)
        shared = s.store.shared if s.store.shared is not None else not isinstance(store, SQLiteStore)
        self.updates = UpdateLoop(self.book, self.predictor, store, shared=shared, workers=1)
        self._cell_choice = s.model.cell if cell == "config" else None
        self.started_ts: float | None = None
        self.resumed: dict = {}
        self._running = False
        self._lock = threading.Lock()

    # -- wiring -----------------------------------------------------------------------------------------------
    def submit(self, reading: Reading, ack: Callable[[], None] | None = None) -> None:
        """Sink for connectors: thread-safe, never blocks."""
        self.ingestor.submit(reading, ack)

    def add_listener(self, cb: Callable[[Prediction, list[Alert]], None]) -> None:
        """``cb(prediction, alerts)`` after every stored prediction (update thread; must not block long)."""
        self.updates.listeners.append(cb)

    def _on_stored(self, measurements) -> None:
        self.book.add(measurements)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> "Twin":
        with self._lock:
            if self._running:
                return self
            procs = self.settings.model.processes
            if procs > 0 and self._cell_choice is not None:
                # the predictor is rebuilt in each process from the configuration (a cell object handed in by a
                # test cannot be: that twin predicts in threads)
                self.updates.use_processes(procs, {"scenario": self.settings.scenario_path(),
                                                   "config": self.predictor.config, "cell": self._cell_choice})
            self.resumed = self.resume()
            self.store.write_ingest((), (), (), {"config": self.settings.core_dict()})
            self.warm_up()
            self.ingestor.start()
            self.updates.start()
            self.started_ts = time.time()
            self._running = True
        return self

    def resume(self) -> dict:
        loaded = self.ingestor.resume()
        recent = 0
        stale = 0
        keep = self.book.keep
        for line in loaded:
            top = self.store._query("SELECT MAX(segment) AS k FROM segments WHERE line = ?", (line,))[0]["k"]
            if top is None:
                continue
            lo = int(top) - min(keep, 500)
            rows = self.store._query("SELECT * FROM measurements WHERE line = ? AND segment >= ? ORDER BY id",
                                     (line, lo))
            stations = tuple(self.settings.layout().batch_stations) or ("mixer",)
            rows += self.store._query(
                "SELECT * FROM measurements WHERE line = ? AND segment IS NULL AND station IN "
                f"({', '.join('?' for _ in stations)}) AND ts >= ? ORDER BY id",
                (line, *stations, time.time() - 86_400))
            self.book.load(rows)
            recent += len(rows)
            for r in self.store._query(
                    "SELECT s.segment FROM segments s LEFT JOIN predictions p ON p.id = s.prediction_id "
                    "WHERE s.line = ? AND s.segment >= ? AND s.n_measurements > 0 AND "
                    "(p.id IS NULL OR p.n_measurements < s.n_measurements)", (line, lo)):
                self.book.mark_dirty(line, int(r["segment"]))
                stale += 1
        return {"lines": loaded, "measurements_loaded": recent, "segments_recomputed": stale}

    def warm_up(self) -> None:
        """One throw-away prediction, so that the first real one does not pay for imports and caches."""
        from .update import SegmentSnapshot

        try:
            self.predictor.predict(SegmentSnapshot(self.settings.line.id, 0, {}, None, None, None, 0, [], "coating"))
        except Exception:  # a model problem shows (with an alert) on the first real prediction
            log.debug("warm-up prediction failed", exc_info=True)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until everything submitted is stored and every dirty segment has its prediction."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ok = self.ingestor.drain(max(0.0, end - time.monotonic()))
            ok = ok and self.updates.drain(max(0.0, end - time.monotonic()))
            if ok and self.ingestor.pending == 0 and self.book.dirty_count == 0:
                return True
        return False

    def stop(self, close_store: bool = True) -> None:
        """Store what is queued, finish the pending predictions, stop the threads (and close the store)."""
        with self._lock:
            if self._running:
                self.ingestor.stop()
                self.updates.drain(30.0)
                self.updates.stop()
                self._running = False
        if close_store:
            self.store.close()

    # -- queries ----------------------------------------------------------------------------------------------
    def status(self) -> dict:
        st = self.ingestor.stats.as_dict()
        st["pending"] = self.ingestor.pending
        lat = self.updates.latency.percentiles((50, 99))
        return {
            "line": self.settings.line.id,
            "started_ts": self.started_ts,
            "uptime_s": None if self.started_ts is None else time.time() - self.started_ts,
            "ingest": st,
            "predictions": self.updates.predictions,
            "update_errors": self.updates.errors,
            "dirty_segments": self.book.dirty_count,
            "latency_ms": {k: v * 1e3 for k, v in lat.items()},
            "latency_count": self.updates.latency.count,
            "model": self.predictor.model,
            "samples": self.predictor.config.samples,
            "store": self.store.url.split("@")[-1],
            "segment_length_m": self.settings.line.segment_length_m,
            "spec": {k: list(v) for k, v in self.predictor.config.spec.items()},
            "resumed": self.resumed,
        }

    def replay_dead_letters(self, ids=None) -> dict:
        return replay_dead_letters(self.ingestor, ids)
