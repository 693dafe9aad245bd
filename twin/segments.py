"""Material tracking: which electrode segment sat under which station when a value was measured.

The coated web is cut into segments of equal length ``L`` (config ``[line] segment_length_m``). Its *coated
length* ``x(t)`` is the length of web that has passed the slot die since tracking started, the integral of the
measured web speed over time. Speed readings are integrated with a zero-order hold, the way a PLC sample is
meant: a speed measured at ``t_i`` holds until the next reading at ``t_{i+1}``::

    x(t) = x_i + v_i * (t - t_i)            for t_i <= t < t_{i+1}

A station sits ``p`` metres downstream of the slot die along the web path (coater 0, wet gauge, dryer exit,
calender ...). At time ``t`` it sees the web that was coated when the coated length was ``x(t) - p``, so a
value it measures at ``t`` belongs to segment::

    k = floor((x(t) - p) / L)               (none while x(t) < p: that web was not coated in this run)

Mixer and slurry values belong to a *slurry batch*, not to a place on the web. A batch starts feeding the coater
tank at its start time ``t_b``; the slurry reaches the slot die after the feed's dead time ``d``. A segment
whose start passed the die at ``t_k`` (``x(t_k) = k L``) is coated from the batch that started at or before
``t_k - d``; mixer values measured while a batch was current describe that batch.

Everything here is pure logic over timestamps (seconds since the epoch) and numbers: no I/O, no clock.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from models.quantities import QUANTITIES, STAGES

__all__ = ["LineLayout", "WebTracker", "BatchTracker", "SegmentTracker", "Attribution", "BATCH_SIGNAL",
           "stage_of"]

#: Name of the reading that signals a slurry batch change (value: the batch id).
BATCH_SIGNAL = "batch_id"

_MIN_PER_S = 1.0 / 60.0


def stage_of(name: str) -> str | None:
    """Process stage of a canonical quantity (``None`` for the batch signal or an unknown name)."""
    q = QUANTITIES.get(name)
    return q.stage if q is not None else None


@dataclass(frozen=True)
class LineLayout:
    """Geometry of the line.

    Attributes
    ----------
    segment_length_m : length of one segment [m]
    positions : station -> position along the web path downstream of the slot die [m]; a key
        ``"station/name"`` overrides the station's position for one quantity (a gauge mounted elsewhere)
    batch_stations : stations whose values belong to the slurry batch, not to a place on the web
    feed_dead_time_s : time from a batch's start to its slurry reaching the slot die [s]
    """

    segment_length_m: float = 1.0
    positions: Mapping[str, float] = field(default_factory=lambda: {
        "coater": 0.0, "gauges": 2.0, "dryer": 25.0, "calender": 35.0})
    batch_stations: tuple[str, ...] = ("mixer",)
    feed_dead_time_s: float = 0.0

    def __post_init__(self):
        if not (self.segment_length_m > 0 and math.isfinite(self.segment_length_m)):
            raise ValueError(f"segment_length_m = {self.segment_length_m} must be a positive number")
        if not (self.feed_dead_time_s >= 0 and math.isfinite(self.feed_dead_time_s)):
            raise ValueError(f"feed_dead_time_s = {self.feed_dead_time_s} must be >= 0")
        for k, p in self.positions.items():
            if not (math.isfinite(p) and p >= 0):
                raise ValueError(f"position of {k} = {p} m must be >= 0 (metres downstream of the slot die)")

    def position(self, station: str, name: str | None = None) -> float | None:
        """Position [m] where ``station`` measures ``name``; ``None`` for batch stations and unknown stations."""
        if station in self.batch_stations:
            return None
        if name is not None:
            p = self.positions.get(f"{station}/{name}")
            if p is not None:
                return float(p)
        p = self.positions.get(station)
        return None if p is None else float(p)

    @property
    def length_m(self) -> float:
        """Web path length from the slot die to the last station [m]."""
        return max(self.positions.values(), default=0.0)


class WebTracker:
    """Coated length x(t) [m] from measured web speeds [m/min], zero-order hold.

    Readings may come out of order: a late reading is inserted at its time and the positions after it are
    recomputed. The history is bounded to ``history_s`` seconds behind the newest reading; asking for an older
    time returns ``None``.
    """

    def __init__(self, history_s: float = 7200.0):
        self.history_s = float(history_s)
        self._t: list[float] = []
        self._x: list[float] = []
        self._v: list[float] = []  # m/s

    # -- state ------------------------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return bool(self._t)

    def state(self) -> dict:
        """JSON-able checkpoint (the breakpoints in the history window)."""
        return {"t": list(self._t), "x": list(self._x), "v": list(self._v), "history_s": self.history_s}

    @classmethod
    def from_state(cls, state: Mapping) -> "WebTracker":
        w = cls(state.get("history_s", 7200.0))
        w._t, w._x, w._v = list(state["t"]), list(state["x"]), list(state["v"])
        return w

    @property
    def last_ts(self) -> float | None:
        return self._t[-1] if self._t else None

    # -- updates ----------------------------------------------------------------------------------------------
    def add_speed(self, ts: float, speed_m_per_min: float) -> None:
        """Add a web speed reading [m/min] taken at ``ts`` [s]."""
        v = max(0.0, float(speed_m_per_min)) * _MIN_PER_S
        t = float(ts)
        if not self._t:
            self._t, self._x, self._v = [t], [0.0], [v]
            return
        if self._t[-1] - t > self.history_s:
            return  # older than the history window: too late to move the web
        i = bisect.bisect_right(self._t, t)
        if i > 0 and self._t[i - 1] == t:  # same instant: the newer value replaces the speed
            self._v[i - 1] = v
            self._recompute(i)
            return
        if i == 0:
            # before the first reading: positions already handed out stay where they are (x may go negative)
            self._x.insert(0, self._x[0] - v * (self._t[0] - t))
            self._t.insert(0, t)
            self._v.insert(0, v)
        else:
            self._t.insert(i, t)
            self._x.insert(i, self._x[i - 1] + self._v[i - 1] * (t - self._t[i - 1]))
            self._v.insert(i, v)
            self._recompute(i + 1)
        self._prune()

    def _recompute(self, start: int) -> None:
        for j in range(max(start, 1), len(self._t)):
            self._x[j] = self._x[j - 1] + self._v[j - 1] * (self._t[j] - self._t[j - 1])

    def _prune(self) -> None:
        limit = self._t[-1] - self.history_s
        k = bisect.bisect_left(self._t, limit) - 1
        if k > 0:
            del self._t[:k], self._x[:k], self._v[:k]

    # -- queries ----------------------------------------------------------------------------------------------
    def position_at(self, ts: float) -> float | None:
        """Coated length x(ts) [m]; ``None`` before the first speed reading (or before the history window)."""
        if not self._t or ts < self._t[0]:
            return None
        i = bisect.bisect_right(self._t, ts) - 1
        return self._x[i] + self._v[i] * (ts - self._t[i])

    def speed_at(self, ts: float) -> float | None:
        """Web speed [m/min] holding at ``ts``."""
        if not self._t or ts < self._t[0]:
            return None
        return self._v[bisect.bisect_right(self._t, ts) - 1] * 60.0

    def time_at(self, x: float) -> float | None:
        """Earliest time the coated length reached ``x`` [m]; ``None`` if it was never reached (the web stopped
        before it, it lies ahead of the newest reading at zero speed) or lies before the history window."""
        if not self._t or x < self._x[0]:
            return None
        i = bisect.bisect_right(self._x, x) - 1
        # walk back over stops (equal x) to the earliest time x was reached
        while i > 0 and self._x[i - 1] >= x:
            i -= 1
        if self._x[i] == x:
            return self._t[i]
        v = self._v[i]
        if v <= 0.0:
            return None
        t = self._t[i] + (x - self._x[i]) / v
        if i + 1 < len(self._t) and t > self._t[i + 1]:  # pragma: no cover - guarded by the bisect on x
            return None
        return t


class BatchTracker:
    """Slurry batches in time: which batch was current at the mixer at a given time."""

    def __init__(self):
        self._t: list[float] = []
        self._b: list[str] = []

    def add(self, ts: float, batch: str) -> bool:
        """Record that ``batch`` started at ``ts``; ``False`` if exactly that start was already known."""
        i = bisect.bisect_left(self._t, ts)
        if i < len(self._t) and self._t[i] == ts:
            if self._b[i] == batch:
                return False
            self._b[i] = batch
            return True
        self._t.insert(i, float(ts))
        self._b.insert(i, str(batch))
        return True

    def batch_at(self, ts: float) -> str | None:
        """Batch current at the mixer at ``ts`` (the latest start at or before ``ts``)."""
        i = bisect.bisect_right(self._t, ts) - 1
        return self._b[i] if i >= 0 else None

    def interval_at(self, ts: float) -> tuple[str, float, float] | None:
        """(batch, start, end) of the batch current at ``ts``; ``end`` is ``inf`` for the newest batch."""
        i = bisect.bisect_right(self._t, ts) - 1
        if i < 0:
            return None
        end = self._t[i + 1] if i + 1 < len(self._t) else math.inf
        return self._b[i], self._t[i], end

    def state(self) -> dict:
        return {"t": list(self._t), "b": list(self._b)}

    @classmethod
    def from_state(cls, state: Mapping) -> "BatchTracker":
        b = cls()
        b._t, b._b = list(state["t"]), list(state["b"])
        return b

    def __len__(self) -> int:
        return len(self._t)


@dataclass(frozen=True)
class Attribution:
    """Where one measurement belongs: a segment of the web, a slurry batch, or neither (with the reason)."""

    segment: int | None
    batch: str | None
    reason: str | None = None


class SegmentTracker:
    """Attributes measurements to segments and batches (web position from speed, batches from batch signals)."""

    def __init__(self, layout: LineLayout, web: WebTracker | None = None, batches: BatchTracker | None = None):
        self.layout = layout
        self.web = web or WebTracker()
        self.batches = batches or BatchTracker()

    def observe(self, name: str, ts: float, value) -> None:
        """Feed the tracking signals: ``web_speed`` [m/min] and the batch signal."""
        if name == "web_speed":
            self.web.add_speed(ts, float(value))
        elif name == BATCH_SIGNAL:
            self.batches.add(ts, str(value))

    def attribute(self, station: str, name: str, ts: float) -> Attribution:
        """The segment (or batch) a value of ``name`` measured at ``station`` at ``ts`` belongs to."""
        if station in self.layout.batch_stations:
            b = self.batches.batch_at(ts)
            return Attribution(None, b, None if b is not None else "no slurry batch signalled before this value")
        p = self.layout.position(station, name)
        if p is None:
            return Attribution(None, None, f"station {station!r} has no position in [line.positions]")
        x = self.web.position_at(ts)
        if x is None:
            return Attribution(None, None, "no web speed known at this time")
        u = x - p
        if u < 0:
            return Attribution(None, None, f"web under {station} at this time was coated before tracking started "
                                           f"(coated length {x:.3f} m < station position {p:g} m)")
        k = int(math.floor(u / self.layout.segment_length_m + 1e-9))
        return Attribution(k, None)

    def segment_start_ts(self, k: int) -> float | None:
        """When the start of segment ``k`` passed the slot die."""
        return self.web.time_at(k * self.layout.segment_length_m)

    def segment_batch(self, k: int) -> str | None:
        """The slurry batch segment ``k`` was coated from (feed dead time applied)."""
        t = self.segment_start_ts(k)
        if t is None:
            return None
        return self.batches.batch_at(t - self.layout.feed_dead_time_s)

    def segment_batch_interval(self, k: int) -> tuple[str, float, float] | None:
        """(batch, start, end) of the slurry batch segment ``k`` was coated from: its mixer values are those
        measured in [start, end)."""
        t = self.segment_start_ts(k)
        if t is None:
            return None
        return self.batches.interval_at(t - self.layout.feed_dead_time_s)

    def segments_at(self, ts: float) -> dict[str, int]:
        """Segment under each positioned station at ``ts`` (stations still over pre-tracking web left out)."""
        out = {}
        x = self.web.position_at(ts)
        if x is None:
            return out
        for st, p in self.layout.positions.items():
            if "/" in st or x < p:
                continue
            out[st] = int(math.floor((x - p) / self.layout.segment_length_m + 1e-9))
        return out

    def newest_segment(self, ts: float) -> int | None:
        """The segment being coated at ``ts``."""
        x = self.web.position_at(ts)
        return None if x is None else int(math.floor(x / self.layout.segment_length_m + 1e-9))

    def segment_stage(self, names: Iterable[str]) -> str:
        """The furthest process stage among measured quantity names (``"coating"`` if none is known)."""
        best = STAGES.index("coating")
        for n in names:
            s = stage_of(n)
            if s is not None and s != "cell":
                best = max(best, STAGES.index(s))
        return STAGES[best]

    def state(self) -> dict:
        return {"web": self.web.state(), "batches": self.batches.state()}

    @classmethod
    def from_state(cls, layout: LineLayout, state: Mapping) -> "SegmentTracker":
        return cls(layout, WebTracker.from_state(state["web"]), BatchTracker.from_state(state["batches"]))
