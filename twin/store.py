"""The twin's durable state: raw measurements, segments, predictions, alerts, dead letters.

Two back ends behind one interface (:class:`Store`): SQLite in WAL mode, the embedded default (one file, one
twin process), and PostgreSQL through psycopg 3 for several twin workers sharing a line. :func:`open_store`
picks one from a URL (``postgresql://...``) or a file path.

Tables (the same columns on both back ends)

``measurements``  append-only raw values, validated and in canonical units, one row per measurement. The
    natural key ``(line, station, name, ts_us)`` is UNIQUE and every insert is idempotent (``ON CONFLICT DO
    NOTHING``), so a value redelivered by MQTT QoS 1 or re-sent by an OPC UA re-subscription is stored once.
    ``ts_us`` is the source timestamp (else the OPC UA server timestamp) in integer microseconds. The
    received value and unit are kept next to the converted ones, and the segment/batch the value was
    attributed to at ingestion. Slurry batch signals are rows too (``name = 'batch_id'``, ``text_value``).
``dead_letters``  every rejected reading, whole (``reading`` as JSON), with the reason and the field, value
    and limit it violated; UNIQUE ``dl_key`` so a redelivered bad message is one dead letter. ``state`` is
    ``open`` until a replay stores it (``replayed``, with the measurement's id).
``segments``  one row per segment: when its start passed the slot die, its slurry batch, furthest stage,
    number of measurements, and ``prediction_id``, the latest prediction.
``predictions``  append-only; one row per update of a segment: stage, samples, effective sample size,
    conditioning method, probability of being out of tolerance and a JSON summary (mean, std, quantiles,
    histogram of every structural parameter and of capacity/energy_density).
``alerts``  append-only.
``state``  key -> JSON: the tracker checkpoint that lets a restarted twin resume where it stopped.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Store", "SQLiteStore", "PostgresStore", "open_store", "Measurement", "DeadLetter", "SegmentRow",
           "Prediction", "Alert", "IngestResult", "ts_key", "measurement_from_row"]


def ts_key(ts: float) -> int:
    """Integer microseconds of a timestamp: the time part of the natural key."""
    return int(round(ts * 1e6))


@dataclass(slots=True)
class Measurement:
    """A validated value in canonical units, ready to store."""

    line: str
    station: str
    name: str
    ts: float                       # source timestamp (else server timestamp) [s since epoch]
    value: float | None             # canonical unit; None for text signals (slurry_batch)
    unit: str                       # canonical unit
    source: str
    address: str
    received_ts: float
    source_ts: float | None = None
    server_ts: float | None = None
    status: str = "Good"
    raw_value: str | None = None    # as received (repr when not a number)
    raw_unit: str | None = None
    text_value: str | None = None
    segment: int | None = None
    batch: str | None = None
    stored_ts: float | None = None

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.line, self.station, self.name, ts_key(self.ts))


@dataclass(slots=True)
class DeadLetter:
    """A rejected reading and why: the reason names the field, the value and the limit."""

    key: str
    reading: dict
    reason: str
    field: str | None = None
    value: str | None = None
    limit: str | None = None
    created_ts: float = 0.0


@dataclass(slots=True)
class SegmentRow:
    line: str
    segment: int
    start_ts: float | None = None
    batch: str | None = None
    stage: str | None = None
    n_measurements: int = 0
    last_ts: float | None = None


@dataclass(slots=True)
class Prediction:
    line: str
    segment: int
    stage: str
    computed_ts: float
    n_samples: int
    n_measurements: int
    ess: float
    method: str
    model: str
    p_out: float | None
    summary: dict
    trigger_received_ts: float | None = None
    id: int | None = None


@dataclass(slots=True)
class Alert:
    line: str
    segment: int | None
    ts: float
    kind: str
    quantity: str | None
    value: float | None
    message: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    id {pk},
    line TEXT NOT NULL, station TEXT NOT NULL, name TEXT NOT NULL, ts_us BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL, value DOUBLE PRECISION, text_value TEXT, unit TEXT,
    raw_value TEXT, raw_unit TEXT, source TEXT, address TEXT,
    source_ts DOUBLE PRECISION, server_ts DOUBLE PRECISION, received_ts DOUBLE PRECISION,
    stored_ts DOUBLE PRECISION, status TEXT, segment BIGINT, batch TEXT,
    UNIQUE (line, station, name, ts_us)
);
CREATE INDEX IF NOT EXISTS measurements_segment ON measurements (line, segment);
CREATE INDEX IF NOT EXISTS measurements_name_ts ON measurements (line, name, ts_us);
CREATE TABLE IF NOT EXISTS dead_letters (
    id {pk},
    dl_key TEXT NOT NULL UNIQUE,
    line TEXT, station TEXT, name TEXT, source TEXT, address TEXT,
    received_ts DOUBLE PRECISION, reason TEXT NOT NULL, field TEXT, value TEXT, limit_text TEXT,
    reading TEXT NOT NULL, created_ts DOUBLE PRECISION,
    state TEXT NOT NULL DEFAULT 'open', replayed_ts DOUBLE PRECISION, replay_note TEXT, measurement_id BIGINT
);
CREATE INDEX IF NOT EXISTS dead_letters_state ON dead_letters (state, id);
CREATE TABLE IF NOT EXISTS segments (
    line TEXT NOT NULL, segment BIGINT NOT NULL,
    start_ts DOUBLE PRECISION, batch TEXT, stage TEXT, n_measurements BIGINT DEFAULT 0,
    last_ts DOUBLE PRECISION, prediction_id BIGINT,
    PRIMARY KEY (line, segment)
);
CREATE TABLE IF NOT EXISTS predictions (
    id {pk},
    line TEXT NOT NULL, segment BIGINT NOT NULL, stage TEXT, computed_ts DOUBLE PRECISION,
    trigger_received_ts DOUBLE PRECISION, n_samples BIGINT, n_measurements BIGINT, ess DOUBLE PRECISION,
    method TEXT, model TEXT, p_out DOUBLE PRECISION, summary TEXT
);
CREATE INDEX IF NOT EXISTS predictions_segment ON predictions (line, segment, id);
CREATE TABLE IF NOT EXISTS alerts (
    id {pk},
    line TEXT, segment BIGINT, ts DOUBLE PRECISION, kind TEXT, quantity TEXT, value DOUBLE PRECISION,
    message TEXT
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_M_COLS = ("line", "station", "name", "ts_us", "ts", "value", "text_value", "unit", "raw_value", "raw_unit",
           "source", "address", "source_ts", "server_ts", "received_ts", "stored_ts", "status", "segment", "batch")


def _m_row(m: Measurement, now: float) -> tuple:
    return (m.line, m.station, m.name, ts_key(m.ts), m.ts, m.value, m.text_value, m.unit, m.raw_value,
            m.raw_unit, m.source, m.address, m.source_ts, m.server_ts, m.received_ts, now, m.status, m.segment,
            m.batch)


def _json(obj) -> str:
    try:  # the common case: nothing to clean
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        pass

    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    return json.dumps(clean(obj), separators=(",", ":"), default=str)


_SEG_UPSERT = """
INSERT INTO segments (line, segment, start_ts, batch, stage, n_measurements, last_ts)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (line, segment) DO UPDATE SET
    start_ts = COALESCE(excluded.start_ts, segments.start_ts),
    batch = COALESCE(excluded.batch, segments.batch),
    stage = COALESCE(excluded.stage, segments.stage),
    n_measurements = excluded.n_measurements,
    last_ts = excluded.last_ts
"""

_DL_INSERT = """
INSERT INTO dead_letters (dl_key, line, station, name, source, address, received_ts, reason, field, value,
                          limit_text, reading, created_ts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dl_key) DO NOTHING
"""

_P_COLS = ("line", "segment", "stage", "computed_ts", "trigger_received_ts", "n_samples", "n_measurements", "ess",
           "method", "model", "p_out", "summary")


def _dl_row(d: DeadLetter) -> tuple:
    r = d.reading
    return (d.key, r.get("line"), r.get("station"), r.get("name"), r.get("source"), r.get("address"),
            r.get("received_ts"), d.reason, d.field, d.value, d.limit, _json(r), d.created_ts or time.time())


@dataclass
class IngestResult:
    """What a write of one ingestion batch did."""

    inserted: list[Measurement] = field(default_factory=list)
    duplicates: list[Measurement] = field(default_factory=list)
    dead_letters_new: int = 0
    dead_letters_repeated: int = 0


class Store(ABC):
    """Interface of the state store (see the module docstring for the tables)."""

    url: str

    # -- writing ----------------------------------------------------------------------------------------------
    @abstractmethod
    def write_ingest(self, measurements: Sequence[Measurement], dead_letters: Sequence[DeadLetter] = (),
                     segments: Sequence[SegmentRow] = (), state: dict | None = None) -> IngestResult:
        """Write one ingestion batch in one transaction: measurements (idempotent), dead letters (idempotent),
        segment rows (upsert) and state entries."""

    @abstractmethod
    def write_predictions(self, predictions: Sequence[Prediction], alerts: Sequence[Alert] = ()) -> list[int]:
        """Append predictions (and point their segments at them) and alerts in one transaction; their ids."""

    @abstractmethod
    def mark_replayed(self, dead_letter_id: int, measurement_id: int | None, note: str,
                      state: str = "replayed") -> None:
        """Record the outcome of replaying a dead letter."""

    # -- reading ----------------------------------------------------------------------------------------------
    @abstractmethod
    def _query(self, sql: str, params: Sequence = ()) -> list[dict]:
        ...

    def get_state(self, key: str):
        rows = self._query("SELECT value FROM state WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else None

    def counts(self) -> dict[str, int]:
        out = {}
        for t in ("measurements", "dead_letters", "segments", "predictions", "alerts"):
            out[t] = int(self._query(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"])
        out["dead_letters_open"] = int(self._query(
            "SELECT COUNT(*) AS n FROM dead_letters WHERE state = 'open'")[0]["n"])
        return out

    def measurement_id(self, line: str, station: str, name: str, ts: float) -> int | None:
        rows = self._query("SELECT id FROM measurements WHERE line = ? AND station = ? AND name = ? AND ts_us = ?",
                           (line, station, name, ts_key(ts)))
        return int(rows[0]["id"]) if rows else None

    def measurements(self, line: str | None = None, segment: int | None = None, after_id: int = 0,
                     limit: int = 10_000) -> list[dict]:
        sql, params = "SELECT * FROM measurements WHERE id > ?", [after_id]
        if line is not None:
            sql += " AND line = ?"
            params.append(line)
        if segment is not None:
            sql += " AND segment = ?"
            params.append(segment)
        return self._query(sql + " ORDER BY id LIMIT ?", params + [limit])

    def iter_measurements(self, line: str | None = None, chunk: int = 20_000) -> Iterator[dict]:
        """Every measurement in insertion order (in chunks, for recomputation)."""
        last = 0
        while True:
            rows = self.measurements(line, after_id=last, limit=chunk)
            if not rows:
                return
            yield from rows
            last = rows[-1]["id"]

    def dead_letters(self, state: str | None = "open", limit: int = 1000, ids: Iterable[int] | None = None
                     ) -> list[dict]:
        sql, params = "SELECT * FROM dead_letters WHERE 1 = 1", []
        if state is not None:
            sql += " AND state = ?"
            params.append(state)
        if ids is not None:
            ids = [int(i) for i in ids]
            if not ids:
                return []
            sql += f" AND id IN ({', '.join('?' for _ in ids)})"
            params += ids
        rows = self._query(sql + " ORDER BY id LIMIT ?", params + [limit])
        for r in rows:
            r["reading"] = json.loads(r["reading"])
        return rows

    def segments(self, line: str | None = None, last: int | None = None, with_predictions: bool = True
                 ) -> list[dict]:
        """Segments, newest first, each with its latest prediction (``None`` if it has none yet)."""
        sql = ("SELECT s.line, s.segment, s.start_ts, s.batch, s.stage AS segment_stage, s.n_measurements, "
               "s.last_ts, p.id AS prediction_id, p.stage, p.computed_ts, p.n_samples, p.ess, p.method, p.model, "
               "p.p_out, p.summary FROM segments s LEFT JOIN predictions p ON p.id = s.prediction_id")
        params: list = []
        if line is not None:
            sql += " WHERE s.line = ?"
            params.append(line)
        sql += " ORDER BY s.segment DESC, s.line"
        if last is not None:
            sql += " LIMIT ?"
            params.append(int(last))
        rows = self._query(sql, params)
        out = []
        for r in rows:
            pred = None
            if r["prediction_id"] is not None and with_predictions:
                pred = {"id": r["prediction_id"], "stage": r["stage"], "computed_ts": r["computed_ts"],
                        "n_samples": r["n_samples"], "ess": r["ess"], "method": r["method"], "model": r["model"],
                        "p_out": r["p_out"], **json.loads(r["summary"])}
            out.append({"line": r["line"], "segment": int(r["segment"]), "start_ts": r["start_ts"],
                        "batch": r["batch"], "stage": r["segment_stage"], "n_measurements": r["n_measurements"],
                        "last_ts": r["last_ts"], "prediction": pred})
        return out

    def predictions(self, line: str, segment: int) -> list[dict]:
        rows = self._query("SELECT * FROM predictions WHERE line = ? AND segment = ? ORDER BY id", (line, segment))
        for r in rows:
            r["summary"] = json.loads(r["summary"])
        return rows

    def alerts(self, last: int = 100) -> list[dict]:
        return self._query("SELECT * FROM alerts ORDER BY id DESC LIMIT ?", (int(last),))

    def lines(self) -> list[str]:
        return [r["line"] for r in self._query("SELECT DISTINCT line FROM segments ORDER BY line")]

    @abstractmethod
    def close(self) -> None:
        ...

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SQLiteStore(Store):
    """SQLite in WAL mode. One writer connection behind a lock; a reader connection per thread.

    ``synchronous``: ``"FULL"`` (default) syncs the WAL at every commit, so a committed batch survives a power
    cut; ``"NORMAL"`` survives a crash of the process but may lose the last commits on a power cut.
    """

    def __init__(self, path: str | Path, synchronous: str = "FULL"):
        if synchronous.upper() not in ("FULL", "NORMAL", "OFF", "EXTRA"):
            raise ValueError(f"sqlite synchronous = {synchronous!r} is not one of FULL, NORMAL, OFF, EXTRA")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{self.path}"
        self._sync = synchronous.upper()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._w = self._connect()
        self._w.executescript(_SCHEMA.format(pk="INTEGER PRIMARY KEY AUTOINCREMENT"))
        self._w.commit()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={self._sync}")
        con.execute("PRAGMA busy_timeout=30000")
        return con

    def _reader(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            con.row_factory = sqlite3.Row
            self._local.con = con
            self._readers = getattr(self, "_readers", []) + [con]
        return con

    def _query(self, sql, params=()):
        return [dict(r) for r in self._reader().execute(sql, tuple(params)).fetchall()]

    def write_ingest(self, measurements, dead_letters=(), segments=(), state=None):
        res = IngestResult()
        now = time.time()
        ins = f"INSERT INTO measurements ({', '.join(_M_COLS)}) VALUES ({', '.join('?' for _ in _M_COLS)}) " \
              "ON CONFLICT DO NOTHING"
        with self._lock:
            cur = self._w.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for m in measurements:
                    cur.execute(ins, _m_row(m, now))
                    if cur.rowcount == 1:
                        m.stored_ts = now
                        res.inserted.append(m)
                    else:
                        res.duplicates.append(m)
                for d in dead_letters:
                    cur.execute(_DL_INSERT, _dl_row(d))
                    if cur.rowcount == 1:
                        res.dead_letters_new += 1
                    else:
                        res.dead_letters_repeated += 1
                if segments:
                    cur.executemany(_SEG_UPSERT, [(s.line, s.segment, s.start_ts, s.batch, s.stage,
                                                   s.n_measurements, s.last_ts) for s in segments])
                for k, v in (state or {}).items():
                    cur.execute("INSERT INTO state (key, value) VALUES (?, ?) "
                                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (k, _json(v)))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return res

    def write_predictions(self, predictions, alerts=()):
        ids = []
        ins = f"INSERT INTO predictions ({', '.join(_P_COLS)}) VALUES ({', '.join('?' for _ in _P_COLS)})"
        with self._lock:
            cur = self._w.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for p in predictions:
                    cur.execute(ins, (p.line, p.segment, p.stage, p.computed_ts, p.trigger_received_ts,
                                      p.n_samples, p.n_measurements, p.ess, p.method, p.model, p.p_out,
                                      _json(p.summary)))
                    p.id = cur.lastrowid
                    ids.append(p.id)
                    cur.execute("INSERT INTO segments (line, segment, prediction_id) VALUES (?, ?, ?) "
                                "ON CONFLICT (line, segment) DO UPDATE SET prediction_id = excluded.prediction_id",
                                (p.line, p.segment, p.id))
                for a in alerts:
                    cur.execute("INSERT INTO alerts (line, segment, ts, kind, quantity, value, message) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (a.line, a.segment, a.ts, a.kind, a.quantity, a.value, a.message))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return ids

    def mark_replayed(self, dead_letter_id, measurement_id, note, state="replayed"):
        with self._lock:
            self._w.execute("UPDATE dead_letters SET state = ?, replayed_ts = ?, replay_note = ?, measurement_id = ? "
                            "WHERE id = ?", (state, time.time(), note, measurement_id, int(dead_letter_id)))

    def close(self):
        with self._lock:
            try:
                self._w.close()
            except Exception:  # pragma: no cover
                pass
        for con in getattr(self, "_readers", []):
            try:
                con.close()
            except Exception:  # pragma: no cover - a reader of another thread
                pass


def _pg_text(row: tuple) -> tuple:
    """PostgreSQL text cannot hold NUL characters: a reading that carries one keeps it as U+FFFD."""
    return tuple(v.replace("\x00", "\ufffd") if isinstance(v, str) and "\x00" in v else v for v in row)


class PostgresStore(Store):
    """PostgreSQL through psycopg 3: the shared store for several twin workers.

    Measurements go through a temporary table filled with COPY and one ``INSERT ... SELECT ... ON CONFLICT DO
    NOTHING RETURNING`` per batch, so a batch costs a few round trips whatever its size and the database itself
    decides which rows are new (two workers receiving the same redelivered message store it once).
    """

    def __init__(self, url: str):
        import psycopg
        from psycopg.rows import dict_row

        self.url = url
        self._psycopg = psycopg
        self._lock = threading.Lock()
        self._w = psycopg.connect(url, autocommit=True)
        self._r = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        self._rlock = threading.Lock()
        with self._w.transaction():
            # several workers may start at once: serialise schema creation
            self._w.execute("SELECT pg_advisory_xact_lock(611806)")
            for stmt in _SCHEMA.format(pk="BIGSERIAL PRIMARY KEY").split(";"):
                if stmt.strip():
                    self._w.execute(stmt)

    def _query(self, sql, params=()):
        with self._rlock:
            sql = sql.replace("%", "%%").replace("?", "%s")   # a literal % (LIKE 'a/%') is not a placeholder
            return [dict(r) for r in self._r.execute(sql, tuple(params)).fetchall()]

    def write_ingest(self, measurements, dead_letters=(), segments=(), state=None):
        res = IngestResult()
        now = time.time()
        with self._lock, self._w.transaction():
            cur = self._w.cursor()
            if measurements:
                cur.execute("CREATE TEMP TABLE IF NOT EXISTS m_in (LIKE measurements INCLUDING DEFAULTS) "
                            "ON COMMIT DELETE ROWS")
                with cur.copy(f"COPY m_in ({', '.join(_M_COLS)}, id) FROM STDIN") as cp:
                    for i, m in enumerate(measurements):
                        cp.write_row(_pg_text(_m_row(m, now)) + (i,))
                cur.execute(f"INSERT INTO measurements ({', '.join(_M_COLS)}) "
                            f"SELECT {', '.join(_M_COLS)} FROM m_in ORDER BY id "
                            "ON CONFLICT DO NOTHING RETURNING line, station, name, ts_us")
                new = {tuple(r) for r in cur.fetchall()}
                for m in measurements:
                    if m.key in new:
                        new.discard(m.key)  # a duplicate inside the batch counts once
                        m.stored_ts = now
                        res.inserted.append(m)
                    else:
                        res.duplicates.append(m)
            for d in dead_letters:
                cur.execute(_DL_INSERT.replace("?", "%s"), _pg_text(_dl_row(d)))
                if cur.rowcount == 1:
                    res.dead_letters_new += 1
                else:
                    res.dead_letters_repeated += 1
            if segments:
                cur.executemany(_SEG_UPSERT.replace("?", "%s"),
                                [(s.line, s.segment, s.start_ts, s.batch, s.stage, s.n_measurements, s.last_ts)
                                 for s in segments])
            for k, v in (state or {}).items():
                cur.execute("INSERT INTO state (key, value) VALUES (%s, %s) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (k, _json(v)))
        return res

    def write_predictions(self, predictions, alerts=()):
        ids = []
        with self._lock, self._w.transaction():
            cur = self._w.cursor()
            for p in predictions:
                cur.execute(f"INSERT INTO predictions ({', '.join(_P_COLS)}) "
                            f"VALUES ({', '.join('%s' for _ in _P_COLS)}) RETURNING id",
                            (p.line, p.segment, p.stage, p.computed_ts, p.trigger_received_ts, p.n_samples,
                             p.n_measurements, p.ess, p.method, p.model, p.p_out, _json(p.summary)))
                p.id = int(cur.fetchone()[0])
                ids.append(p.id)
                cur.execute("INSERT INTO segments (line, segment, prediction_id) VALUES (%s, %s, %s) "
                            "ON CONFLICT (line, segment) DO UPDATE SET prediction_id = "
                            "GREATEST(segments.prediction_id, excluded.prediction_id)", (p.line, p.segment, p.id))
            for a in alerts:
                cur.execute("INSERT INTO alerts (line, segment, ts, kind, quantity, value, message) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            (a.line, a.segment, a.ts, a.kind, a.quantity, a.value, a.message))
        return ids

    def mark_replayed(self, dead_letter_id, measurement_id, note, state="replayed"):
        with self._lock:
            self._w.execute("UPDATE dead_letters SET state = %s, replayed_ts = %s, replay_note = %s, "
                            "measurement_id = %s WHERE id = %s",
                            (state, time.time(), note, measurement_id, int(dead_letter_id)))

    def close(self):
        for con in (self._w, self._r):
            try:
                con.close()
            except Exception:  # pragma: no cover
                pass


def open_store(url: str | Path, **options) -> Store:
    """A store from a URL: ``postgresql://...`` (or ``postgres://``), ``sqlite:///path`` or a plain file path."""
    u = str(url)
    if u.startswith(("postgresql://", "postgres://")):
        return PostgresStore(u)
    if u.startswith("sqlite:///"):
        u = u[len("sqlite:///"):]
    elif u.startswith("sqlite://"):
        raise ValueError(f"store url {u!r}: write sqlite:///path/to/file.sqlite")
    return SQLiteStore(u, **options)


def measurement_from_row(row: dict) -> Measurement:
    """A stored row back into a :class:`Measurement` (for recomputation)."""
    keys = set(Measurement.__slots__)
    return Measurement(**{k: row[k] for k in keys if k in row})

