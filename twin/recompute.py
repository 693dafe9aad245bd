"""Recompute predictions from the raw measurements alone (``twin recompute``).

The stored raw measurements are the truth; segment attribution and predictions are derived from them and the
configuration. After a change of the line geometry (a station's position, the segment length, the feed's dead
time), the sensor uncertainties, the specs, the scenario or the cell surrogate, this rebuilds the web position
and the slurry batches from every stored speed and batch signal, re-attributes every measurement, and appends
a fresh prediction for every segment (the history of predictions stays: the table is append-only).
"""

from __future__ import annotations

import time

from .ingest import Ingestor
from .segments import BATCH_SIGNAL, SegmentTracker, WebTracker
from .store import SegmentRow, Store
from .update import Predictor, SegmentBook, UpdateLoop

__all__ = ["recompute"]


def recompute(store: Store, settings, predictor: Predictor, line: str | None = None,
              first: int | None = None, last: int | None = None) -> dict:
    """Re-attribute every stored measurement and append a prediction for each segment in [first, last]."""
    layout = settings.layout()
    t0 = time.time()
    trackers: dict[str, SegmentTracker] = {}
    # 1. the web and the batches from every tracking signal, in time order (no history limit)
    for r in store._query("SELECT line, name, ts, value, text_value FROM measurements WHERE name IN (?, ?) "
                          + ("AND line = ? " if line else "") + "ORDER BY ts_us",
                          ("web_speed", BATCH_SIGNAL) + ((line,) if line else ())):
        tr = trackers.get(r["line"])
        if tr is None:
            tr = trackers[r["line"]] = SegmentTracker(layout, WebTracker(history_s=float("inf")))
        tr.observe(r["name"], r["ts"], r["value"] if r["name"] == "web_speed" else r["text_value"])
    # 2. re-attribute every measurement
    book = SegmentBook(trackers, keep_segments=10**9, hold=predictor.held_inputs(), hold_s=settings.model.hold_s)
    moved = total = 0
    rows = []
    for r in store.iter_measurements(line):
        total += 1
        if r["name"] == BATCH_SIGNAL:
            continue
        tr = trackers.get(r["line"])
        if tr is None:
            seg, bat = None, None
        else:
            a = tr.attribute(r["station"], r["name"], r["ts"])
            seg, bat = a.segment, a.batch
        if seg != r["segment"] or bat != r["batch"]:
            moved += 1
        rows.append({**r, "segment": seg, "batch": bat})
    book.load(rows)
    keys = sorted(k for k in book._seg if (first is None or k[1] >= first) and (last is None or k[1] <= last))
    # 3. segment rows and predictions
    seg_rows = []
    for ln, k in keys:
        tr = trackers.get(ln)
        snap = book.snapshot(ln, k)
        seg_rows.append(SegmentRow(ln, k, tr.segment_start_ts(k) if tr else None, snap.batch, snap.stage,
                                   snap.n_measurements, None))
    for i in range(0, len(seg_rows), 500):
        store.write_ingest((), (), seg_rows[i:i + 500], None)
    loop = UpdateLoop(book, predictor, store)
    for key in keys:
        book._dirty[key] = None
    loop.start()
    loop.drain(timeout=max(60.0, 1.0 * len(keys)))
    loop.stop()
    n = loop.predictions
    return {"measurements": total, "re_attributed": moved, "segments": len(keys), "predictions": n,
            "lines": sorted(trackers), "seconds": time.time() - t0}


def ingestor_for(store: Store, settings) -> Ingestor:
    """An ingestor on ``store`` with the configuration's geometry and policy, resumed from the store."""
    ing = Ingestor(store, settings.layout(), settings.policy(), history_s=settings.line.history_s)
    ing.resume()
    return ing
