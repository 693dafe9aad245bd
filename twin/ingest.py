"""Ingestion: every :class:`~twin.readings.Reading` is validated, then stored once or dead-lettered with a reason.

Connectors hand readings to :meth:`Ingestor.submit` (thread-safe, never blocks: a deque append). A writer thread
drains the queue in batches and, for each reading, in this order:

1. applies the address mapping of the configuration (``[mapping]``: a topic or node id -> canonical name,
   station, unit), and re-parses the raw MQTT payload if the connector could not;
2. rejects it with a reason naming the field, the value and the limit when: the connector flagged an error;
   the address maps to no canonical quantity; the OPC UA status is not accepted; the timestamp is missing, not
   finite, further in the future than ``max_future_s`` or older than ``max_age_s``; the value is not a real
   number (or, for the ``batch_id`` signal, not a non-empty string); it is NaN or infinite; its unit cannot be
   converted to the canonical unit; the converted value is outside the quantity's physical range or the
   configured plausibility limits;
3. converts the value to the canonical unit (:func:`twin.units.conversion`);
4. drops exact duplicates (same natural key ``(line, station, name, ts)`` and the same value; MQTT QoS 1
   redelivers) and dead-letters conflicting ones (same key, another value);
5. attributes it to a segment or a slurry batch (:mod:`twin.segments`), after feeding the batch's web speed
   and batch signals to the tracker;
6. writes the batch in one transaction (measurements idempotently, dead letters, segment rows, tracker
   checkpoint), then calls each reading's ``ack`` and hands the new measurements to the update loop.

Nothing is dropped silently: :attr:`Ingestor.stats` counts received, stored, duplicate and dead-lettered
readings, and ``received == stored + duplicates + dead_lettered + pending`` at all times.
:func:`replay_dead_letters` re-validates open dead letters after a fix (a mapping, a unit, a limit).
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
import numbers
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from models.quantities import QUANTITIES

from .readings import Reading
from .segments import BATCH_SIGNAL, LineLayout, SegmentTracker, WebTracker
from .store import DeadLetter, Measurement, SegmentRow, Store
from .units import UnitError, conversion

__all__ = ["ValidationPolicy", "AddressMapping", "Rejected", "validate", "parse_payload", "Ingestor",
           "IngestStats", "replay_dead_letters", "dead_letter_key"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddressMapping:
    """Configuration override for one address (topic or node id): what it measures and in which unit."""

    name: str | None = None
    station: str | None = None
    unit: str | None = None
    line: str | None = None


@dataclass(frozen=True)
class ValidationPolicy:
    """What ingestion accepts.

    Attributes
    ----------
    max_future_s : a timestamp further ahead of the receive time is rejected (clock skew allowance) [s]
    max_age_s : a timestamp older than this at receipt is rejected [s] (a broker may hold messages for a
        disconnected persistent session, so it is generous by default)
    limits : plausibility limits per quantity in canonical units, tighter than the physical range
        (``None`` for an open side)
    accept_status : OPC UA status code names accepted (``"Good"`` always; add e.g. ``"UncertainLastUsableValue"``)
    mapping : address -> :class:`AddressMapping`
    """

    max_future_s: float = 5.0
    max_age_s: float = 86_400.0
    limits: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    accept_status: tuple[str, ...] = ("Good",)
    mapping: Mapping[str, AddressMapping] = field(default_factory=dict)


class Rejected(Exception):
    """A reading failed validation: ``reason`` names the field, the value and the limit."""

    def __init__(self, reason: str, field: str, value=None, limit: str | None = None):
        super().__init__(reason)
        self.reason, self.field, self.value, self.limit = reason, field, value, limit


def _where(r: Reading) -> str:
    return f"{r.source} {r.address}"


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else repr(x)


def parse_payload(payload: str) -> tuple[object, str | None, float | None]:
    """(value, unit, ts) of an MQTT JSON payload ``{"value": .., "unit": .., "ts": ISO-8601 or epoch s}``.

    Raises ``ValueError`` naming what is wrong.
    """
    try:
        doc = json.loads(payload)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"payload is not JSON: {exc}") from None
    if not isinstance(doc, dict) or "value" not in doc:
        raise ValueError("payload has no 'value'")
    ts = doc.get("ts")
    if isinstance(ts, str):
        from datetime import datetime, timezone

        try:
            d = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"ts {ts!r} is not ISO-8601") from None
        if d.tzinfo is None:
            d = d.replace(tzinfo=timezone.utc)
        ts = d.timestamp()
    elif ts is not None and not isinstance(ts, (int, float)):
        raise ValueError(f"ts {ts!r} is neither ISO-8601 text nor epoch seconds")
    return doc["value"], doc.get("unit"), None if ts is None else float(ts)


def apply_mapping(r: Reading, policy: ValidationPolicy) -> Reading:
    """The reading with the configured mapping of its address applied (and its payload re-parsed if needed)."""
    mp = policy.mapping.get(r.address)
    if mp is None:
        return r
    changes: dict = {}
    if mp.name is not None:
        changes["name"] = mp.name
    if mp.station is not None:
        changes["station"] = mp.station
    if mp.line is not None:
        changes["line"] = mp.line
    if r.error is not None and r.payload:
        # the connector could not map or parse it; with the mapping we may now be able to
        try:
            value, unit, ts = parse_payload(r.payload)
        except ValueError:
            pass
        else:
            changes.update(value=value, unit=unit, source_ts=ts if ts is not None else r.source_ts, error=None)
    elif r.error is not None and r.name is None and mp.name is not None:
        changes["error"] = None
    if mp.unit is not None:
        changes["unit"] = mp.unit
    return replace(r, **changes)


def validate(r: Reading, policy: ValidationPolicy) -> Measurement:
    """Check one reading and convert it to canonical units; :class:`Rejected` with the reason otherwise."""
    where = _where(r)
    for fld in ("line", "station"):
        v = getattr(r, fld)
        if not isinstance(v, str) or not v.strip() or "\x00" in v:
            raise Rejected(f"{fld} = {v!r} is not a line/station name (non-empty text) ({where})", fld, v,
                           "non-empty text")
    if r.error is not None:
        raise Rejected(f"{r.error} ({where})", "payload", r.payload, "parseable by the connector")
    name = r.name
    if name is None:
        raise Rejected(f"address {r.address!r} maps to no quantity; add it to [mapping] ({where})", "name",
                       None, "a canonical quantity name")
    if name not in QUANTITIES and name != BATCH_SIGNAL:
        import difflib

        close = difflib.get_close_matches(name, list(QUANTITIES) + [BATCH_SIGNAL], n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise Rejected(f"name {name!r} is not a canonical quantity{hint} ({where})", "name", name,
                       "a canonical quantity name")
    if r.status not in policy.accept_status:
        raise Rejected(f"{name}: status {r.status!r} is not accepted (accepted: {', '.join(policy.accept_status)}) "
                       f"({where})", "status", r.status, ", ".join(policy.accept_status))
    ts = r.source_ts if r.source_ts is not None else r.server_ts
    if ts is None:
        raise Rejected(f"{name}: ts missing (no source or server timestamp) ({where})", "ts", None,
                       "a source or server timestamp")
    if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts):
        raise Rejected(f"{name}: ts = {ts!r} is not a finite time ({where})", "ts", ts, "finite seconds since epoch")
    ahead = ts - r.received_ts
    if ahead > policy.max_future_s:
        raise Rejected(f"{name}: ts is {ahead:.3f} s in the future of its receipt (limit {policy.max_future_s:g} s)"
                       f" ({where})", "ts", ts, f"{policy.max_future_s:g} s ahead")
    if -ahead > policy.max_age_s:
        raise Rejected(f"{name}: ts is {-ahead:.1f} s old at receipt (limit {policy.max_age_s:g} s) ({where})",
                       "ts", ts, f"{policy.max_age_s:g} s old")
    v = r.value
    if name == BATCH_SIGNAL:
        if isinstance(v, bool) or not isinstance(v, (str, int)) or (isinstance(v, str) and not v.strip()):
            raise Rejected(f"{name} = {v!r} is not a batch id (a non-empty text) ({where})", "value", v,
                           "non-empty text")
        return Measurement(r.line, r.station, name, float(ts), None, "-", r.source, r.address, r.received_ts,
                           r.source_ts, r.server_ts, r.status, repr(v), r.unit, text_value=str(v).strip())
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise Rejected(f"{name} = {v!r} ({type(v).__name__}) is not a number ({where})", "value", v, "a real number")
    fv = float(v)
    if not math.isfinite(fv):
        raise Rejected(f"{name} = {fv} is not a finite number ({where})", "value", fv, "finite")
    q = QUANTITIES[name]
    if r.unit is None:
        a, b = 1.0, 0.0
    else:
        try:
            a, b = conversion(str(r.unit), name)
        except UnitError as exc:
            raise Rejected(f"{exc} ({where})", "unit", r.unit, q.unit) from None
    cv = a * fv + b
    try:
        q.check(cv, where)
    except ValueError as exc:
        raise Rejected(str(exc), "value", cv, f"[{q.low:g}, {q.high:g}] {q.unit}") from None
    lim = policy.limits.get(name)
    if lim is not None:
        lo, hi = lim
        if (lo is not None and cv < lo) or (hi is not None and cv > hi):
            rng = f"[{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}] {q.unit}"
            raise Rejected(f"{name} = {cv:g} {q.unit} is outside its plausibility limits {rng} ({where})",
                           "value", cv, rng)
    return Measurement(r.line, r.station, name, float(ts), cv, q.unit, r.source, r.address, r.received_ts,
                       r.source_ts, r.server_ts, r.status, _num(v), r.unit)


def dead_letter_key(r: Reading) -> str:
    """Identity of a rejected reading: the same message redelivered gives the same key."""
    ts = r.source_ts if r.source_ts is not None else r.server_ts
    raw = r.payload if r.payload is not None else repr(r.value)
    s = json.dumps([r.source, r.address, r.line, r.station, r.name, repr(ts), raw, r.unit, r.status, r.error])
    return hashlib.sha1(s.encode("utf-8", "replace")).hexdigest()


def _reading_dict(r: Reading) -> dict:
    d = r.to_dict()
    v = d["value"]
    if not (v is None or isinstance(v, (str, bool, int)) or (isinstance(v, float))):
        d["value"] = repr(v)
    return d


def _dead_letter(r: Reading, exc: Rejected) -> DeadLetter:
    val = exc.value
    return DeadLetter(dead_letter_key(r), _reading_dict(r), exc.reason, exc.field,
                      None if val is None else (val if isinstance(val, str) else repr(val)), exc.limit, time.time())


@dataclass
class IngestStats:
    """Counters; ``received == stored + duplicates + dead_lettered + pending`` (``pending``: queued now)."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    dead_letters_repeated: int = 0   # part of dead_lettered: the same bad message again
    conflicts: int = 0               # part of dead_lettered: same key, another value
    unattributed: int = 0            # part of stored: no segment/batch known for it
    batches: int = 0
    write_errors: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class _RecentKeys:
    """Bounded memory of recently stored natural keys and their values (exact-duplicate / conflict test)."""

    def __init__(self, size: int = 200_000):
        self.size = size
        self._d: collections.OrderedDict = collections.OrderedDict()

    def get(self, key):
        return self._d.get(key)

    def put(self, key, value) -> None:
        self._d[key] = value
        if len(self._d) > self.size:
            self._d.popitem(last=False)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))
    return a == b


class Ingestor:
    """Validates, attributes and stores readings; feeds new measurements to a consumer (the update loop).

    Parameters
    ----------
    store : the state store
    layout : geometry of the line(s) (one layout for every line)
    policy : validation policy
    on_stored : called from the writer thread with the list of newly stored measurements of each batch
    batch_max : largest batch written in one transaction
    flush_s : how long the writer waits for more readings before writing a non-full batch (0: never; readings
        that arrive while a batch is written form the next batch, so bursts batch by themselves)
    checkpoint_s : how often the tracker checkpoint is written
    """

    def __init__(self, store: Store, layout: LineLayout | None = None, policy: ValidationPolicy | None = None,
                 on_stored: Callable[[list[Measurement]], None] | None = None, batch_max: int = 5000,
                 flush_s: float = 0.0, checkpoint_s: float = 2.0, history_s: float = 1800.0):
        self.store = store
        self.layout = layout or LineLayout()
        self.policy = policy or ValidationPolicy()
        self.on_stored = on_stored
        self.batch_max = batch_max
        self.flush_s = flush_s
        self.checkpoint_s = checkpoint_s
        self.history_s = history_s
        self.trackers: dict[str, SegmentTracker] = {}
        self.stats = IngestStats()
        self._q: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._recent = _RecentKeys()
        self._seg_n: dict[tuple[str, int], int] = {}
        self._seg_names: dict[tuple[str, int], set] = {}
        self._last_checkpoint = 0.0
        self._failures = 0
        self._lock = threading.Lock()     # one batch at a time (writer thread, replay)
        self._count_lock = threading.Lock()
        self.idle = threading.Event()
        self.idle.set()

    # -- connector side ---------------------------------------------------------------------------------------
    def submit(self, reading: Reading, ack: Callable[[], None] | None = None) -> None:
        """Queue one reading (thread-safe, never blocks). ``ack`` is called once it is durable."""
        with self._count_lock:
            self.stats.received += 1
        self.idle.clear()
        self._q.append((reading, ack))
        self._wake.set()

    __call__ = submit

    @property
    def pending(self) -> int:
        return len(self._q)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def tracker(self, line: str) -> SegmentTracker:
        t = self.trackers.get(line)
        if t is None:
            t = self.trackers[line] = SegmentTracker(self.layout, WebTracker(self.history_s))
        return t

    def resume(self) -> dict:
        """Rebuild the trackers from the store (checkpoint + stored speed and batch signals); what was loaded."""
        loaded = {}
        rows = self.store._query("SELECT key, value FROM state WHERE key LIKE 'tracker/%'")
        for row in rows:
            line = row["key"].split("/", 1)[1]
            anchor = json.loads(row["value"])
            web = WebTracker(self.history_s)
            if anchor:
                web._t, web._x, web._v = [anchor["t"]], [anchor["x"]], [anchor["v"]]
                speeds = self.store._query(
                    "SELECT ts, value FROM measurements WHERE line = ? AND name = 'web_speed' AND ts_us > ? "
                    "ORDER BY ts_us", (line, int(round(anchor["t"] * 1e6))))
                for s in speeds:
                    web.add_speed(s["ts"], s["value"])
            tr = SegmentTracker(self.layout, web)
            for b in self.store._query("SELECT ts, text_value FROM measurements WHERE line = ? AND name = ? "
                                       "ORDER BY ts_us", (line, BATCH_SIGNAL)):
                tr.batches.add(b["ts"], b["text_value"])
            self.trackers[line] = tr
            for s in self.store._query("SELECT segment, n_measurements FROM segments WHERE line = ? "
                                       "AND n_measurements > 0", (line,)):
                self._seg_n[(line, int(s["segment"]))] = int(s["n_measurements"])
            loaded[line] = {"speed_points": len(web._t), "batches": len(tr.batches)}
        return loaded

    def start(self) -> "Ingestor":
        self._thread = threading.Thread(target=self._run, name="twin-ingest", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is written; ``False`` on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self._q and self.idle.is_set():
                return True
            time.sleep(0.005)
        return not self._q and self.idle.is_set()

    def _run(self) -> None:
        while True:
            if not self._q:
                if self._stop.is_set():
                    self.idle.set()
                    return
                self.idle.set()
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            if len(self._q) < self.batch_max and self.flush_s > 0:
                time.sleep(self.flush_s)   # let a burst gather: fewer, larger transactions
            items = []
            while self._q and len(items) < self.batch_max:
                items.append(self._q.popleft())
            try:
                self.process(items)
                self._failures = 0
            except Exception as exc:  # never let the writer die
                self.stats.write_errors += 1
                self._failures += 1
                if self._failures >= 3:
                    # the store refuses this batch again and again: isolate the reading it refuses
                    log.error("ingestion batch of %d readings failed %d times (%s); writing them one by one",
                              len(items), self._failures, exc)
                    left = self._one_by_one(items)
                    if left:
                        self._q.extendleft(reversed(left))
                        time.sleep(0.5)
                    continue
                log.exception("ingestion batch of %d readings failed; retrying", len(items))
                self._q.extendleft(reversed(items))   # nothing acknowledged: nothing lost
                time.sleep(0.5)

    def _one_by_one(self, items) -> list:
        """Write readings singly; one the store refuses alone is dead-lettered with the store's reason. Returns
        what could not be written at all (the store is down): it is retried."""
        left = []
        for i, it in enumerate(items):
            try:
                self.process([it])
                continue
            except Exception as exc:
                reason = f"the store refused it: {exc}"
            r, ack = (it, None) if isinstance(it, Reading) else it
            try:
                with self._lock:
                    res = self.store.write_ingest((), [_dead_letter(r, Rejected(reason, "reading"))], (), None)
                self.stats.dead_lettered += 1
                self.stats.dead_letters_repeated += res.dead_letters_repeated
                if ack is not None:
                    ack()
            except Exception:
                left.extend(items[i:])
                return left
        self._failures = 0
        return left

    # -- the work ---------------------------------------------------------------------------------------------
    def process(self, items: Iterable[tuple[Reading, Callable | None] | Reading]) -> dict:
        """Validate, attribute and write one batch synchronously; counts of what happened."""
        with self._lock:
            return self._process(items)

    def _process(self, items) -> dict:
        measurements: list[Measurement] = []
        dead: list[DeadLetter] = []
        acks = []
        n_dup = n_conf = 0
        batch_keys: dict = {}
        origin: dict[int, Reading] = {}
        for it in items:
            r, ack = (it, None) if isinstance(it, Reading) else it
            if ack is not None:
                acks.append(ack)
            try:
                r = apply_mapping(r, self.policy)
                m = validate(r, self.policy)
            except Rejected as exc:
                dead.append(_dead_letter(r, exc))
                continue
            except Exception as exc:  # a bug must not lose the reading either
                log.exception("validation crashed on %r", r)
                dead.append(_dead_letter(r, Rejected(f"validation failed: {exc!r}", "reading", None, None)))
                continue
            key = m.key
            val = m.value if m.name != BATCH_SIGNAL else m.text_value
            prev = batch_keys.get(key, self._recent.get(key))
            if prev is not None:
                if _same(prev, val):
                    n_dup += 1
                    continue
                n_conf += 1
                dead.append(_dead_letter(r, Rejected(
                    f"{m.name} at ts {m.ts:.6f} = {_num(val)} conflicts with the stored value {_num(prev)} for the same "
                    f"measurement ({_where(r)})", "value", val, f"{_num(prev)} (stored)")))
                continue
            batch_keys[key] = val
            measurements.append(m)
            origin[id(m)] = r
        # tracking signals first, then attribution (readings of one batch may come in any order)
        for m in measurements:
            if m.name == "web_speed" or m.name == BATCH_SIGNAL:
                self.tracker(m.line).observe(m.name, m.ts, m.value if m.name == "web_speed" else m.text_value)
        unattributed = 0
        for m in measurements:
            tr = self.tracker(m.line)
            if m.name == BATCH_SIGNAL:
                m.batch = m.text_value
                continue
            a = tr.attribute(m.station, m.name, m.ts)
            m.segment, m.batch = a.segment, a.batch
            if a.segment is None and a.batch is None:
                unattributed += 1
        now = time.time()
        state = None
        if now - self._last_checkpoint >= self.checkpoint_s:
            state = {}
            for line, tr in self.trackers.items():
                w = tr.web
                state[f"tracker/{line}"] = ({"t": w._t[0], "x": w._x[0], "v": w._v[0]} if w.started else None)
            self._last_checkpoint = now
        # segment rows are written in the same transaction, counted as if every measurement is new; the store
        # may still find a duplicate (redelivered after a restart), which is corrected right after
        touched = self._touch(measurements, +1)
        try:
            res = self.store.write_ingest(measurements, dead, list(touched.values()), state)
        except BaseException:
            self._touch(measurements, -1)   # nothing was written: the batch is retried with the counts as before
            raise
        late_conflicts: list[DeadLetter] = []
        if res.duplicates:
            # the store already held these keys (from before a restart, or another worker): the same value is a
            # duplicate; another value is a conflict and is dead-lettered, never dropped silently
            fixed = self._touch(res.duplicates, -1)
            for m in res.duplicates:
                rows = self.store._query("SELECT value, text_value FROM measurements WHERE line = ? AND station = ? "
                                         "AND name = ? AND ts_us = ?", m.key)
                val = m.text_value if m.name == BATCH_SIGNAL else m.value
                prev = (rows[0]["text_value"] if m.name == BATCH_SIGNAL else rows[0]["value"]) if rows else val
                if _same(prev, val):
                    self._recent.put(m.key, prev)
                    continue
                r = origin[id(m)]
                late_conflicts.append(_dead_letter(r, Rejected(
                    f"{m.name} at ts {m.ts:.6f} = {_num(val)} conflicts with the stored value {_num(prev)} for the "
                    f"same measurement ({_where(r)})", "value", val, f"{_num(prev)} (stored)")))
            res2 = self.store.write_ingest((), late_conflicts, list(fixed.values()), None)
            res.dead_letters_repeated += res2.dead_letters_repeated
        for m in res.inserted:
            self._recent.put(m.key, m.value if m.name != BATCH_SIGNAL else m.text_value)
        for ack in acks:
            try:
                ack()
            except Exception:  # an ack failing (connection gone) is the connector's business
                log.debug("ack failed", exc_info=True)
        st = self.stats
        st.stored += len(res.inserted)
        st.duplicates += n_dup + len(res.duplicates) - len(late_conflicts)
        st.dead_lettered += len(dead) + len(late_conflicts)
        st.dead_letters_repeated += res.dead_letters_repeated
        st.conflicts += n_conf + len(late_conflicts)
        st.unattributed += sum(1 for m in res.inserted if m.segment is None and m.batch is None)
        st.batches += 1
        if res.inserted and self.on_stored is not None:
            try:
                self.on_stored(res.inserted)
            except Exception:
                log.exception("update hand-off failed")
        return {"stored": len(res.inserted), "duplicates": n_dup + len(res.duplicates) - len(late_conflicts),
                "dead_lettered": len(dead) + len(late_conflicts),
                "unattributed": unattributed}

    def _touch(self, measurements, sign: int) -> dict[tuple[str, int], SegmentRow]:
        rows: dict[tuple[str, int], SegmentRow] = {}
        for m in measurements:
            if m.segment is None:
                continue
            k = (m.line, m.segment)
            self._seg_n[k] = self._seg_n.get(k, 0) + sign
            if sign > 0:
                self._seg_names.setdefault(k, set()).add(m.name)
            row = rows.get(k)
            if row is None:
                tr = self.tracker(m.line)
                row = rows[k] = SegmentRow(m.line, m.segment, tr.segment_start_ts(m.segment),
                                           tr.segment_batch(m.segment))
            row.n_measurements = self._seg_n[k]
            row.last_ts = m.ts if row.last_ts is None else max(row.last_ts, m.ts)
            row.stage = self.tracker(m.line).segment_stage(self._seg_names.get(k, ()))
        if len(self._seg_names) > 20_000:  # keep memory bounded: forget the oldest segments
            for k in sorted(self._seg_names)[:10_000]:
                self._seg_names.pop(k, None)
                self._seg_n.pop(k, None)
        return rows


def reading_from_dict(d: Mapping) -> Reading:
    fields = Reading.__dataclass_fields__
    return Reading(**{k: d.get(k) for k in fields if k in d})


def replay_dead_letters(ingestor: Ingestor, ids: Iterable[int] | None = None, limit: int = 100_000) -> dict:
    """Re-validate open dead letters with the ingestor's current policy (mapping, limits ...).

    Each one that now passes is ingested through ``ingestor`` (attributed, stored, handed to the update loop)
    and marked ``replayed`` with its measurement's id (``duplicate`` if that measurement was stored meanwhile);
    one that still fails stays ``open`` with the new reason in ``replay_note``. Returns counts and the outcome of
    each letter.
    """
    store = ingestor.store
    rows = store.dead_letters(state="open", ids=ids, limit=limit)
    out = {"replayed": 0, "duplicates": 0, "still_invalid": 0, "letters": []}
    for row in rows:
        r = apply_mapping(reading_from_dict(row["reading"]), ingestor.policy)
        try:
            m = validate(r, ingestor.policy)
        except Rejected as exc:
            store.mark_replayed(row["id"], None, exc.reason, state="open")
            out["still_invalid"] += 1
            out["letters"].append({"id": row["id"], "outcome": "still_invalid", "reason": exc.reason})
            continue
        with ingestor._count_lock:
            ingestor.stats.received += 1
        result = ingestor.process([r])
        if result["dead_lettered"]:
            reason = "conflicts with a stored value for the same measurement"
            store.mark_replayed(row["id"], None, reason, state="open")
            out["still_invalid"] += 1
            out["letters"].append({"id": row["id"], "outcome": "still_invalid", "reason": reason})
            continue
        mid = store.measurement_id(m.line, m.station, m.name, m.ts)
        outcome = "replayed" if result["stored"] else "duplicate"
        store.mark_replayed(row["id"], mid, f"{outcome}: measurement {mid}", state="replayed")
        out["replayed" if result["stored"] else "duplicates"] += 1
        out["letters"].append({"id": row["id"], "outcome": outcome, "measurement_id": mid})
    return out
