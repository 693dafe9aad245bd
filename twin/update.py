"""Update loop: a segment's measured values -> its predicted structure and cell performance, as distributions.

When a segment receives a measurement its prediction is recomputed (bursts are coalesced: however many values
arrived since the last update, a dirty segment is recomputed once):

1. **Prior samples.** Monte Carlo of the scenario's inputs for that segment (``models.uncertainty``, seeded by
   (seed, segment), with the segment's cell-to-cell shift): every *measured input* (flow_rate, web_speed,
   coating_width, line_load, x_solids, w_am ...) is replaced by Normal(measured mean, u), where
   ``u = sqrt(u_sensor**2 + s**2)``: the sensor's standard uncertainty (config ``[uncertainty]``, per quantity)
   and ``s`` the standard deviation of the readings within the segment (its subcell variation). Unmeasured
   inputs keep their nominal distribution. Mixer values come from the segment's slurry batch.
2. **Chain.** The process chain turns every sample into structural parameters (m_wet ... rho_cal, phi_*),
   then the cell surrogate (when installed) into capacity and energy_density. The surrogate costs ~0.6 µs per
   sample against the chain's ~0.07 µs, so it runs on ``cell_samples`` (default 2000) of the samples, drawn by
   weight (systematic resampling) after the conditioning of step 3.
3. **Conditioning on gauges.** A measured *structural* value y (m_wet, h_wet, m_dry, h_dry, h_cal, rho_slurry
   ...) is not an input: the chain computes it. Its readings condition the samples by importance re-weighting
   with the gauge likelihood (Bayes' rule on the Monte Carlo sample)::

       w_i ∝ prod_g exp(-(ȳ_g - f_g(x_i))**2 / (2 σ_g**2)),   σ_g**2 = u_sensor,g**2 + s_g**2

   so samples whose predicted m_wet, h_cal ... disagree with the gauge lose weight, and every quantity
   correlated with the gauge (everything downstream, and upstream unmeasured inputs) narrows with it. ``s_g``
   is the spread of the gauge's readings within the segment; it is not divided by the number of readings,
   because readings of a fast gauge along one segment are strongly correlated and the samples describe the
   spread within the segment, not just its mean. The effective sample size ``ESS = (Σw)**2 / Σw**2`` is
   stored with every prediction. If it falls below ``min_ess`` the gauges contradict the model (a fault the
   model does not know, e.g. a clogged die): the weights would rest on a handful of samples, so the
   prediction falls back to *overriding* the chain with the gauge values (they become given inputs at
   Normal(ȳ, σ), downstream recomputed) and a ``model_mismatch`` alert names the gauge and its z-score.
   ``method`` in the stored prediction says what shaped it: ``prior`` (nothing measured yet), ``inputs``
   (measured inputs only), ``importance`` (gauges conditioned it) or ``override``.
4. **Summary.** Weighted mean, standard deviation, 5/50/95 % quantiles and a histogram of every structural
   parameter and of capacity/energy_density; the probability of being out of tolerance per quantity with a
   spec (config ``[spec]``) and overall (any spec violated). Stored per segment with its stage; an
   ``out_of_tolerance`` alert is raised when a quantity's probability first exceeds ``alert_p_out``.
"""

from __future__ import annotations

import bisect
import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from models.chain import ProcessChain
from models.quantities import QUANTITIES, STAGES
from models.uncertainty import Marginal, Normal, sample, segment_marginals

from .montecarlo import chain_for, ordered
from .scenario import FRACTIONS, Scenario
from .segments import BATCH_SIGNAL, SegmentTracker, stage_of
from .store import Alert, Measurement, Prediction, Store

__all__ = ["UpdateConfig", "SensorUncertainty", "Predictor", "SegmentBook", "UpdateLoop", "LatencyRecorder",
           "load_cell_model", "weighted_summary"]

log = logging.getLogger(__name__)

CELL_OUTPUTS = ("capacity", "energy_density")


@dataclass(frozen=True)
class SensorUncertainty:
    """Standard uncertainty of one reading: absolute ``std`` (canonical unit) or relative ``rel_std``."""

    std: float | None = None
    rel_std: float | None = None

    def at(self, value: float) -> float:
        if self.std is not None:
            return float(self.std)
        return float((self.rel_std or 0.0) * abs(value))


@dataclass(frozen=True)
class UpdateConfig:
    """Settings of the predictions.

    Attributes
    ----------
    samples : Monte Carlo samples per prediction
    seed : base seed; segment k samples from ``default_rng([seed, k])``
    sensors : per-quantity sensor uncertainty; ``default_sensor`` for the others
    spec : tolerance limits per quantity (canonical unit; ``None`` for an open side)
    alert_p_out : probability of being out of tolerance that raises an alert
    min_ess : smallest effective sample size the re-weighting may leave before falling back to overriding
    histogram_bins : bins of the stored histograms
    cell_samples : samples the cell surrogate is evaluated on, drawn from the (weighted) chain samples by
        systematic resampling; the surrogate costs far more per sample than the chain
    """

    samples: int = 10_000
    seed: int = 0
    sensors: Mapping[str, SensorUncertainty] = field(default_factory=dict)
    default_sensor: SensorUncertainty = SensorUncertainty(rel_std=0.005)
    spec: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    alert_p_out: float = 0.05
    min_ess: float = 200.0
    histogram_bins: int = 24
    cell_samples: int = 2000

    def sensor(self, name: str) -> SensorUncertainty:
        return self.sensors.get(name, self.default_sensor)


def load_cell_model(policy: str = "auto"):
    """The cell surrogate (``twin.cell.load_cell_surrogate``) or ``None`` when it is not available.

    ``policy``: ``"off"`` never loads it; ``"auto"`` loads it if the package provides one (``None`` with a log
    line otherwise); ``"required"`` raises if it cannot be loaded.
    """
    if policy == "off":
        return None
    try:
        from twin.cell import load_cell_surrogate  # type: ignore[import-not-found]
    except ImportError as exc:
        if policy == "required":
            raise RuntimeError(f"cell surrogate required but twin.cell is not available: {exc}") from None
        log.info("no cell surrogate (twin.cell not available): predicting structure only")
        return None
    try:
        return load_cell_surrogate(policy="nan")
    except Exception as exc:
        if policy == "required":
            raise
        log.warning("cell surrogate could not be loaded (%s): predicting structure only", exc)
        return None


# -- weighted statistics --------------------------------------------------------------------------------------

_QS = (0.05, 0.5, 0.95)
_FINE = 1024


def weighted_summary(samples: Mapping[str, np.ndarray], names: Iterable[str], w: np.ndarray | None,
                     bins: int = 24) -> dict[str, dict]:
    """{name: {unit, mean, std, p05, p50, p95, hist: {edges, density}}} with sample weights ``w`` (sum 1).

    Quantiles come from a weighted histogram of 1024 bins between each quantity's smallest and largest sample,
    with the CDF linear inside a bin: the bin is ~1/1000 of an 8-sigma range, against a Monte Carlo standard
    error of a 5 % quantile of ~0.02 sigma at 10^4 samples. Every quantity is binned in one vectorised pass:
    O(n), no sort. ``w=None``: equal weights (then ``std`` is the usual ddof=1 estimate).
    """
    names = [n for n in names if n in samples]
    if not names:
        return {}
    arrays = [np.asarray(samples[name], float) for name in names]
    n = max((x.size for x in arrays if x.ndim), default=1)
    nq = len(names)
    a = np.empty((nq, n))
    for j, x in enumerate(arrays):
        a[j] = x
    lo, hi = a.min(axis=1), a.max(axis=1)
    span = hi - lo
    if w is None:
        mean = a.mean(axis=1)
    else:
        mean = a @ w
    # centred, single precision: the spread is what matters and float32 keeps 7 digits of it
    c = np.subtract(a, mean[:, None], dtype=np.float32)
    if w is None:
        var = np.einsum("ij,ij->i", c, c, dtype=np.float64) / max(n - 1, 1)
    else:
        var = np.einsum("ij,ij,j->i", c, c, w.astype(np.float32), dtype=np.float64) / max(1e-300, 1.0 - float(w @ w))
    scale = np.where(span > 0, _FINE / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
    c += (mean - lo).astype(np.float32)[:, None]
    c *= scale[:, None]
    np.minimum(c, _FINE - 1, out=c)
    if w is None:
        c += (np.arange(nq, dtype=np.float32) * _FINE)[:, None]
        hist = np.bincount(c.astype(np.intp).ravel(), minlength=nq * _FINE).reshape(nq, _FINE) * (1.0 / n)
    else:
        idx = c.astype(np.intp)
        hist = np.empty((nq, _FINE))
        for j in range(nq):
            hist[j] = np.bincount(idx[j], weights=w, minlength=_FINE)
    cum = np.zeros((nq, _FINE + 1))
    np.cumsum(hist, axis=1, out=cum[:, 1:])
    total = cum[:, -1:]
    targets = np.array(_QS + (0.005, 0.995))
    # inverse CDF, vectorised over quantities and targets
    tgt = targets[None, :] * total                        # (nq, 5)
    k = np.empty((nq, len(targets)), dtype=np.intp)
    for j in range(nq):
        k[j] = np.searchsorted(cum[j], tgt[j], side="left")
    k = np.clip(k, 1, _FINE)
    c0 = np.take_along_axis(cum, k - 1, axis=1)
    h = np.take_along_axis(hist, k - 1, axis=1)
    frac = np.where(h > 0, (tgt - c0) / np.where(h > 0, h, 1.0), 0.0)
    width = span / _FINE
    qv = lo[:, None] + (k - 1 + np.clip(frac, 0, 1)) * width[:, None]
    # display histograms between the 0.5 % and 99.5 % quantiles
    e = np.linspace(0.0, 1.0, bins + 1)[None, :]
    edges = qv[:, 3:4] + (qv[:, 4:5] - qv[:, 3:4]) * e     # (nq, bins+1)
    pos = np.where(width[:, None] > 0, (edges - lo[:, None]) / np.where(width > 0, width, 1.0)[:, None], 0.0)
    pos = np.clip(pos, 0.0, _FINE)
    fl = np.minimum(np.floor(pos).astype(np.intp), _FINE - 1)
    cdf = np.take_along_axis(cum, fl, axis=1) + (pos - fl) * np.take_along_axis(hist, fl, axis=1)
    dw = (qv[:, 4] - qv[:, 3]) / bins
    dens = np.diff(cdf, axis=1) / np.where(dw > 0, total[:, 0] * dw, 1.0)[:, None]
    out = {}
    qv_l, mean_l, sd_l = qv.tolist(), mean.tolist(), np.sqrt(np.maximum(var, 0.0)).tolist()
    edges_l, dens_l = edges.tolist(), dens.tolist()
    for j, name in enumerate(names):
        unit = QUANTITIES[name].unit if name in QUANTITIES else ""
        if span[j] <= 0:
            v = float(lo[j])
            out[name] = {"unit": unit, "mean": v, "std": 0.0, "p05": v, "p50": v, "p95": v,
                         "hist": {"edges": [v, v], "density": [1.0]}}
            continue
        q = qv_l[j]
        hd = {"edges": edges_l[j], "density": dens_l[j]} if q[4] > q[3] else {"edges": [q[3], q[3]], "density": [1.0]}
        out[name] = {"unit": unit, "mean": mean_l[j], "std": sd_l[j], "p05": q[0], "p50": q[1], "p95": q[2], "hist": hd}
    return out


# -- per-segment accumulated measurements ---------------------------------------------------------------------

class _Acc:
    """Running mean and variance (Welford) of one quantity's readings."""

    __slots__ = ("n", "mean", "m2", "last", "last_ts")

    def __init__(self):
        self.n, self.mean, self.m2, self.last, self.last_ts = 0, 0.0, 0.0, None, None

    def add(self, v: float, ts: float) -> None:
        self.n += 1
        d = v - self.mean
        self.mean += d / self.n
        self.m2 += d * (v - self.mean)
        if self.last_ts is None or ts >= self.last_ts:
            self.last, self.last_ts = v, ts

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    def snapshot(self) -> tuple[float, float, int]:
        return self.mean, self.std, self.n


@dataclass
class SegmentSnapshot:
    """What a prediction of one segment is computed from."""

    line: str
    segment: int
    measured: dict[str, tuple[float, float, int]]        # name -> (mean, within-segment std, n)
    batch: str | None
    start_ts: float | None
    origin_ts: float | None
    n_measurements: int
    pending_received: list[float]
    stage: str


class SegmentBook:
    """In-memory accumulators of the recent segments and the mixer values, and the set of dirty segments.

    Filled by the ingestion thread (:meth:`add`), emptied by the update thread (:meth:`take_dirty`). Mixer
    (batch station) values are kept with their timestamps and assigned to a slurry batch only when a segment's
    prediction is computed, from the batch signals known then: the order in which a batch signal and the values
    of that batch arrive does not matter.
    """

    def __init__(self, trackers: Mapping[str, SegmentTracker], keep_segments: int = 2000,
                 keep_mixer: int = 200_000, hold: Iterable[str] = (), hold_s: float = 60.0):
        self.trackers = trackers
        self.hold_names = frozenset(hold)
        self.hold_s = float(hold_s)
        self._held: dict[tuple[str, str], tuple[str, list[float], list[float]]] = {}
        self._latest: dict[str, float] = {}
        self.keep = keep_segments
        self.keep_mixer = keep_mixer
        self._lock = threading.Lock()
        self._seg: dict[tuple[str, int], dict[str, _Acc]] = {}
        self._seg_n: dict[tuple[str, int], int] = {}
        self._mixer: dict[str, list[tuple[float, str, float]]] = {}
        self._mixer_version: dict[str, int] = {}
        self._batch_cache: dict[tuple[str, float, float], tuple[int, dict]] = {}
        self._pending: dict[tuple[str, int], list[float]] = {}
        self._dirty: collections.OrderedDict = collections.OrderedDict()
        self._claimed: set[tuple[str, int]] = set()
        self._newest: dict[str, int] = {}
        self._origin: dict[str, float] = {}
        self.wake = threading.Event()

    def _is_batch_value(self, line: str, station: str, segment) -> bool:
        if segment is not None:
            return False
        tr = self.trackers.get(line)
        return station in (tr.layout.batch_stations if tr is not None else ("mixer",))

    def _add_mixer(self, line: str, ts: float, name: str, value: float) -> None:
        lst = self._mixer.setdefault(line, [])
        if not lst or ts >= lst[-1][0]:
            lst.append((ts, name, value))
        else:
            bisect.insort(lst, (ts, name, value))
        if len(lst) > self.keep_mixer:
            del lst[: len(lst) - self.keep_mixer]
        self._mixer_version[line] = self._mixer_version.get(line, 0) + 1

    def add(self, measurements: Iterable[Measurement]) -> None:
        with self._lock:
            for m in measurements:
                if m.name == BATCH_SIGNAL or m.value is None:
                    continue
                if m.ts > self._latest.get(m.line, -math.inf):
                    self._latest[m.line] = m.ts
                if m.name in self.hold_names and not self._is_batch_value(m.line, m.station, None):
                    self._hold(m.line, m.station, m.name, m.ts, m.value)
                if m.segment is not None:
                    key = (m.line, m.segment)
                    self._seg.setdefault(key, {}).setdefault(m.name, _Acc()).add(m.value, m.ts)
                    self._seg_n[key] = self._seg_n.get(key, 0) + 1
                    self._pending.setdefault(key, []).append(m.received_ts)
                    self._dirty[key] = None
                    if m.segment > self._newest.get(m.line, -1):
                        self._newest[m.line] = m.segment
                    if m.line not in self._origin:
                        tr = self.trackers.get(m.line)
                        t0 = tr.web.time_at(0.0) if tr is not None else None
                        if t0 is not None:
                            self._origin[m.line] = t0
                elif self._is_batch_value(m.line, m.station, m.segment):
                    self._add_mixer(m.line, m.ts, m.name, m.value)
                    # the newest segment coated from this value's batch picks it up now, older ones at their
                    # next update
                    tr = self.trackers.get(m.line)
                    iv = tr.batches.interval_at(m.ts) if tr is not None else None
                    k = self._newest.get(m.line)
                    while iv is not None and k is not None and k >= 0 and (m.line, k) in self._seg:
                        siv = tr.segment_batch_interval(k)
                        if siv is not None and siv[1] == iv[1]:
                            key = (m.line, k)
                            self._pending.setdefault(key, []).append(m.received_ts)
                            self._dirty[key] = None
                            break
                        if siv is not None and siv[1] < iv[1]:
                            break  # older segments come from older batches
                        k -= 1
            self._forget()
        self.wake.set()

    def _hold(self, line: str, station: str, name: str, ts: float, value: float) -> None:
        entry = self._held.get((line, name))
        if entry is None:
            entry = self._held[(line, name)] = (station, [], [])
        _, tl, vl = entry
        if not tl or ts >= tl[-1]:
            tl.append(ts)
            vl.append(value)
        else:
            i = bisect.bisect_right(tl, ts)
            tl.insert(i, ts)
            vl.insert(i, value)
        if len(tl) > 4096:
            del tl[:1024], vl[:1024]

    def _held_values(self, line: str, k: int, tr, have) -> dict[str, tuple[float, float, int]]:
        """Process parameters this segment has no reading of, held from the last reading before the segment
        passed their station (PLC values hold); for a station the segment has not reached yet, the latest value
        (the current setpoint is the best forecast). ``n = 0`` marks a held value."""
        out = {}
        for (ln, name), (station, tl, vl) in self._held.items():
            if ln != line or name in have or not tl:
                continue
            p = tr.layout.position(station, name) if tr is not None else None
            ref = tr.web.time_at(k * tr.layout.segment_length_m + p) if (tr is not None and p is not None) else None
            if ref is None or ref > self._latest.get(line, -math.inf):
                out[name] = (vl[-1], 0.0, 0)    # not at that station yet: forecast with the current value
                continue
            i = bisect.bisect_right(tl, ref) - 1
            if i >= 0 and ref - tl[i] <= self.hold_s:
                out[name] = (vl[i], 0.0, 0)
        return out

    def _forget(self) -> None:
        if len(self._seg) <= self.keep:
            return
        for key in sorted(self._seg)[: len(self._seg) - self.keep]:
            if key in self._dirty:
                continue
            self._seg.pop(key, None)
            self._seg_n.pop(key, None)
            self._pending.pop(key, None)

    def _batch_values(self, line: str, start: float, end: float) -> dict[str, tuple[float, float, int]]:
        version = self._mixer_version.get(line, 0)
        ck = (line, start, end)
        hit = self._batch_cache.get(ck)
        if hit is not None and hit[0] == version:
            return hit[1]
        lst = self._mixer.get(line, [])
        i = bisect.bisect_left(lst, (start, "", -math.inf))
        accs: dict[str, _Acc] = {}
        while i < len(lst) and lst[i][0] < end:
            ts, name, v = lst[i]
            accs.setdefault(name, _Acc()).add(v, ts)
            i += 1
        out = {name: acc.snapshot() for name, acc in accs.items()}
        if len(self._batch_cache) > 256:
            self._batch_cache.clear()
        self._batch_cache[ck] = (version, out)
        return out

    def snapshot(self, line: str, k: int) -> SegmentSnapshot:
        key = (line, k)
        accs = self._seg.get(key, {})
        tr = self.trackers.get(line)
        iv = tr.segment_batch_interval(k) if tr is not None else None
        measured = dict(self._batch_values(line, iv[1], iv[2])) if iv is not None else {}
        for name, acc in accs.items():
            measured[name] = acc.snapshot()
        if self._held:
            measured.update(self._held_values(line, k, tr, measured))
        stage_idx = STAGES.index("coating")
        for name in accs:
            s = stage_of(name)
            if s is not None and s != "cell":
                stage_idx = max(stage_idx, STAGES.index(s))
        return SegmentSnapshot(line, k, measured, iv[0] if iv is not None else None,
                               tr.segment_start_ts(k) if tr is not None else None,
                               self._origin.get(line), self._seg_n.get(key, 0),
                               self._pending.pop(key, []), STAGES[stage_idx])

    def refresh_from_store(self, snap: SegmentSnapshot, store: Store) -> SegmentSnapshot:
        """Replace a snapshot's measured values by what the (shared) store holds for the segment and its batch.

        With several twin workers on one PostgreSQL store, each worker receives only its share of a line's
        messages; the prediction must rest on all of them. Called outside the book's lock (it queries)."""
        line, k = snap.line, snap.segment
        accs: dict[str, _Acc] = {}
        rows = store._query("SELECT name, value, ts FROM measurements WHERE line = ? AND segment = ? AND "
                            "value IS NOT NULL ORDER BY ts_us", (line, k))
        for r in rows:
            accs.setdefault(r["name"], _Acc()).add(r["value"], r["ts"])
        tr = self.trackers.get(line)
        measured: dict[str, tuple[float, float, int]] = {}
        iv = tr.segment_batch_interval(k) if tr is not None else None
        if iv is not None:
            stations = tuple(tr.layout.batch_stations) or ("mixer",)
            end = iv[2] if math.isfinite(iv[2]) else 1e18
            batch_accs: dict[str, _Acc] = {}
            for r in store._query(
                    "SELECT name, value, ts FROM measurements WHERE line = ? AND segment IS NULL AND value IS NOT "
                    f"NULL AND station IN ({', '.join('?' for _ in stations)}) AND ts_us >= ? AND ts_us < ? "
                    "ORDER BY ts_us", (line, *stations, int(round(iv[1] * 1e6)), int(round(end * 1e6)))):
                batch_accs.setdefault(r["name"], _Acc()).add(r["value"], r["ts"])
            measured.update({n: a.snapshot() for n, a in batch_accs.items()})
        measured.update({n: a.snapshot() for n, a in accs.items()})
        with self._lock:
            if self._held:
                measured.update(self._held_values(line, k, tr, measured))
        snap.measured = measured
        snap.n_measurements = len(rows)
        return snap

    def take_dirty(self, max_n: int | None = None, claim: bool = False) -> list[SegmentSnapshot]:
        """Snapshots of the dirty segments (oldest first), clearing them. With ``claim`` the segments are
        reserved for the caller until :meth:`release` (another worker skips them meanwhile)."""
        with self._lock:
            keys = []
            for key in self._dirty:
                if claim and key in self._claimed:
                    continue
                keys.append(key)
                if max_n and len(keys) >= max_n:
                    break
            for key in keys:
                del self._dirty[key]
                if claim:
                    self._claimed.add(key)
            return [self.snapshot(*key) for key in keys]

    def release(self, line: str, k: int) -> None:
        """The claim on a segment ends (its prediction is stored)."""
        with self._lock:
            self._claimed.discard((line, k))
            if self._dirty:
                self.wake.set()

    def mark_dirty(self, line: str, k: int) -> None:
        with self._lock:
            self._dirty[(line, k)] = None
        self.wake.set()

    def load(self, rows: Iterable[Mapping]) -> None:
        """Fill the accumulators from stored measurement rows (resume after a restart); marks nothing dirty."""
        with self._lock:
            for r in rows:
                if r["name"] == BATCH_SIGNAL or r["value"] is None:
                    continue
                if r["ts"] > self._latest.get(r["line"], -math.inf):
                    self._latest[r["line"]] = r["ts"]
                if r["name"] in self.hold_names and not self._is_batch_value(r["line"], r["station"], None):
                    self._hold(r["line"], r["station"], r["name"], r["ts"], r["value"])
                if r["segment"] is not None:
                    key = (r["line"], int(r["segment"]))
                    self._seg.setdefault(key, {}).setdefault(r["name"], _Acc()).add(r["value"], r["ts"])
                    self._seg_n[key] = self._seg_n.get(key, 0) + 1
                    self._newest[r["line"]] = max(self._newest.get(r["line"], -1), key[1])
                elif self._is_batch_value(r["line"], r["station"], None):
                    self._add_mixer(r["line"], r["ts"], r["name"], r["value"])

    @property
    def dirty_count(self) -> int:
        return len(self._dirty)


# -- the prediction -------------------------------------------------------------------------------------------

class Predictor:
    """Computes one segment's predicted distributions (see the module docstring)."""

    def __init__(self, scenario: Scenario, config: UpdateConfig | None = None, cell=None,
                 chain: ProcessChain | None = None):
        self.scenario = scenario
        self.config = config or UpdateConfig()
        self.chain = chain or chain_for(scenario)
        self.cell = cell
        self._free = set(self.chain.required_inputs()) | set(scenario.marginals)
        self.structural = [n for n in ordered(self.chain.outputs) if n in QUANTITIES]
        self.cell_inputs: tuple[str, ...] = tuple(getattr(cell, "inputs", ())) if cell is not None else ()
        if cell is not None:
            outs = tuple(getattr(cell, "outputs", CELL_OUTPUTS))
            self.cell_outputs = tuple(o for o in outs if o in QUANTITIES)
        else:
            self.cell_outputs = ()

    def _oot_alert(self, snap, name, p, lo, hi, summary, now) -> Alert:
        return Alert(snap.line, snap.segment, now, "out_of_tolerance", name, p,
                     _oot_alert_message(snap, name, p, lo, hi, summary[name], self.config.alert_p_out))

    @property
    def model(self) -> str:
        return "chain+cell" if self.cell is not None else "chain"

    def held_inputs(self) -> set[str]:
        """Inputs whose last reading holds for segments without one: the measurable process parameters (not
        formulation or material constants, which belong to a batch or a material)."""
        return {n for n in self._free if n in QUANTITIES and QUANTITIES[n].stage in ("coating", "drying",
                                                                                    "calendering")}

    def is_input(self, name: str) -> bool:
        return name in self._free and self.chain.producer(name) is None

    def _marginals(self, snap_measured: Mapping[str, tuple[float, float, int]], segment: int, t_s: float):
        cfg = self.config
        sc = self.scenario
        marg: dict[str, Marginal] = segment_marginals(sc.marginals, segment, t_s, sc.shifts, sc.drifts, cfg.seed)
        for name, (mean, s, _n) in snap_measured.items():
            if self.is_input(name):
                u = cfg.sensor(name).at(mean)
                sd = math.sqrt(u * u + s * s)
                marg[name] = Normal(mean, sd) if sd > 0 else Normal(mean, 1e-12 * max(abs(mean), 1.0))
        return marg

    def predict(self, snap: SegmentSnapshot) -> tuple[Prediction, list[Alert]]:
        t_start = time.perf_counter()
        wall_start = time.time()
        cfg = self.config
        n = cfg.samples
        t_s = (snap.start_ts - snap.origin_ts) if (snap.start_ts and snap.origin_ts) else 0.0
        marg = self._marginals(snap.measured, snap.segment, max(t_s, 0.0))
        corr = self.scenario.correlation
        if corr is not None and any(c in snap.measured for c in corr.names):
            corr = None  # a measured input leaves the copula: its value is known
        rng = np.random.default_rng([int(cfg.seed), int(snap.segment)])
        closed = FRACTIONS if self.scenario.closed_fractions else None
        inputs = sample(marg, n, rng, corr, closed)
        values = self.chain.evaluate(inputs)
        gauges = {name: v for name, v in snap.measured.items() if name in values and not self.is_input(name)
                  and name in QUANTITIES}
        alerts: list[Alert] = []
        now = time.time()
        w = None
        ess = float(n)
        method = "inputs" if any(self.is_input(k) for k in snap.measured) else "prior"
        if gauges:
            logw = np.zeros(n)
            sig = {}
            for name, (mean, s, _k) in gauges.items():
                u = cfg.sensor(name).at(mean)
                sigma = math.sqrt(u * u + s * s) or 1e-12 * max(abs(mean), 1.0)
                sig[name] = sigma
                f = np.broadcast_to(np.asarray(values[name], float), (n,))
                logw -= 0.5 * ((f - mean) / sigma) ** 2
            logw -= logw.max()
            w = np.exp(logw)
            w /= w.sum()
            ess = float(1.0 / (w @ w))
            method = "importance"
            if ess < cfg.min_ess:
                # the gauges contradict the model: override the chain with them instead of trusting a few samples
                for name, (mean, _s, _k) in gauges.items():
                    f = np.asarray(values[name], float)
                    z = (mean - float(f.mean())) / math.sqrt(float(f.var()) + sig[name] ** 2)
                    alerts.append(Alert(snap.line, snap.segment, now, "model_mismatch", name, mean,
                                        f"segment {snap.segment}: measured {name} = {mean:.4g} "
                                        f"{QUANTITIES[name].unit} is {z:+.1f} sigma from the model's prediction "
                                        f"{float(f.mean()):.4g} (effective sample size {ess:.0f} < {cfg.min_ess:g});"
                                        f" prediction overridden by the gauge"))
                given = dict(inputs)
                for name, (mean, _s, _k) in gauges.items():
                    given[name] = rng.normal(mean, sig[name], n)
                values = self.chain.evaluate(given)
                w, ess, method = None, float(n), "override"
        outputs = [q for q in self.structural if q in values]
        summary = weighted_summary(values, outputs, w, cfg.histogram_bins)
        ww = w if w is not None else np.full(n, 1.0 / n)
        outside = None
        sub = None          # indices of the cell step's subsample
        cell_vals: dict[str, np.ndarray] = {}
        cell_ok = None
        if self.cell is not None:
            try:
                sub = _systematic_resample(ww, min(cfg.cell_samples, n),
                                           np.random.default_rng([int(cfg.seed), int(snap.segment), 2]))
                cell_in = {k: np.broadcast_to(np.asarray(values[k], float), (n,))[sub] for k in self.cell_inputs}
                cell_out = self.cell(cell_in)
                cell_ok = np.ones(sub.size, bool)
                for k in self.cell_outputs:
                    cell_vals[k] = np.broadcast_to(np.asarray(cell_out[k], float), (sub.size,))
                    cell_ok &= np.isfinite(cell_vals[k])
                # samples outside the surrogate's design space give NaN: the cell prediction rests on the rest
                outside = float(1.0 - cell_ok.mean())
                if outside < 1.0:
                    w_sub = cell_ok / cell_ok.sum()
                    cell_vals = {k: np.where(cell_ok, v, 0.0) for k, v in cell_vals.items()}
                    summary.update(weighted_summary(cell_vals, self.cell_outputs, w_sub, cfg.histogram_bins))
                    for k in self.cell_outputs:
                        summary[k]["samples"] = int(cell_ok.sum())
            except Exception as exc:  # the structural prediction is still worth storing
                log.warning("cell surrogate failed on segment %s: %s", snap.segment, exc)
                sub, cell_vals = None, {}
        p_any = None
        if cfg.spec:
            bad = np.zeros(n, bool)
            bad_sub = np.zeros(sub.size, bool) if sub is not None and cell_vals else None
            for name, (lo, hi) in cfg.spec.items():
                if name not in summary:
                    continue
                lo_ = -np.inf if lo is None else lo
                hi_ = np.inf if hi is None else hi
                if name in cell_vals:
                    x = cell_vals[name]
                    b = cell_ok & ((x < lo_) | (x > hi_))
                    p = _prob(b.sum() / max(int(cell_ok.sum()), 1))
                    bad_sub |= b
                else:
                    x = np.broadcast_to(np.asarray(values[name], float), (n,))
                    b = (x < lo_) | (x > hi_)
                    p = _prob(ww @ b)
                    bad |= b
                summary[name]["p_out"] = p
                summary[name]["spec"] = [lo, hi]
                if p > cfg.alert_p_out:
                    alerts.append(self._oot_alert(snap, name, p, lo, hi, summary, now))
            # P(any spec violated): on the cell step's subsample when a cell output has a spec (the subsample is
            # drawn by weight, so every sample of it counts equally), else on all weighted samples
            if bad_sub is not None and any(k in cfg.spec for k in cell_vals):
                p_any = _prob(np.mean(bad[sub] | bad_sub))
            else:
                p_any = _prob(ww @ bad)
        measured = {k: {"mean": v[0], "std": v[1], "n": v[2], "unit": QUANTITIES[k].unit, **({"held": True}
                        if v[2] == 0 else {})} for k, v in snap.measured.items() if k in QUANTITIES}
        doc = {"quantities": summary, "measured": measured, "batch": snap.batch}
        if outside is not None:
            doc["cell_outside_design"] = outside
        doc["compute_ms"] = 1e3 * (time.perf_counter() - t_start)
        if snap.pending_received:
            doc["waited_ms"] = 1e3 * (wall_start - min(snap.pending_received))
        pred = Prediction(snap.line, snap.segment, snap.stage, now, n, snap.n_measurements, ess, method,
                          self.model, p_any, doc,
                          trigger_received_ts=min(snap.pending_received) if snap.pending_received else None)
        return pred, alerts


def _oot_alert_message(snap, name, p, lo, hi, s, alert_p):
    return (f"segment {snap.segment}: P({name} outside [{_fmt(lo)}, {_fmt(hi)}] {QUANTITIES[name].unit}) = "
            f"{p:.3f} > {alert_p:g} (predicted {s['mean']:.4g} ± {s['std']:.2g})")


def _systematic_resample(w: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` indices drawn by weight with systematic resampling (each index about ``m * w_i`` times)."""
    n = w.size
    if m >= n and np.allclose(w, w[0]):
        return np.arange(n)
    cw = np.cumsum(w)
    cw[-1] = 1.0
    u = (np.arange(m) + rng.random()) / m
    return np.minimum(np.searchsorted(cw, u), n - 1)


def _prob(x) -> float:
    return min(1.0, max(0.0, float(x)))


def _fmt(x) -> str:
    return "-inf" if x is None else f"{x:g}"


# -- latency ------------------------------------------------------------------------------------------------

class LatencyRecorder:
    """Arrival-to-stored-prediction latency of every measurement [s] (the most recent ``size``)."""

    def __init__(self, size: int = 500_000):
        self._d: collections.deque = collections.deque(maxlen=size)
        self.count = 0

    def add(self, values: Iterable[float]) -> None:
        for v in values:
            self._d.append(v)
            self.count += 1

    def percentiles(self, qs=(50, 90, 99)) -> dict[str, float]:
        if not self._d:
            return {f"p{q}": float("nan") for q in qs}
        a = np.fromiter(self._d, float)
        return {f"p{q}": float(np.percentile(a, q)) for q in qs}

    def clear(self) -> None:
        self._d.clear()


class UpdateLoop:
    """Worker threads that recompute dirty segments, store predictions and alerts, and tell listeners.

    Each worker takes the oldest dirty segment that no other worker is computing, predicts it and commits the
    prediction at once (numpy releases the GIL in its kernels, so two workers use both cores). A segment that
    gets new measurements while it is computed becomes dirty again and is recomputed afterwards: one segment's
    predictions are stored in order, and a burst of measurements costs one more prediction, not one each.
    """

    def __init__(self, book: SegmentBook, predictor: Predictor, store: Store,
                 listeners: Iterable[Callable[[Prediction, list[Alert]], None]] = (), max_per_cycle: int = 1,
                 workers: int | None = None, shared: bool = False):
        import os

        self.shared = shared   # several twin workers share the store: predict from what it holds
        self.book = book
        ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.workers = workers or min(2, ncpu)
        self.predictor = predictor
        self.store = store
        self.listeners = list(listeners)
        self.max_per_cycle = max_per_cycle
        self.latency = LatencyRecorder()
        self.predictions = 0
        self.errors = 0
        self._alerted: set = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._pool = None

    @property
    def idle(self) -> bool:
        return self._busy == 0

    def start(self) -> "UpdateLoop":
        self._stop.clear()
        self._threads = [threading.Thread(target=self._run, name=f"twin-update-{i}", daemon=True)
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.book.wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def use_processes(self, n: int, predictor_spec: dict) -> None:
        """Compute predictions in ``n`` worker processes (true parallelism: threads of one process contend for
        the GIL between numpy calls, which stretches a 10 ms prediction to 100 ms and more under load).
        ``predictor_spec`` rebuilds the predictor in each process: ``{"scenario", "config", "cell"}``."""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"), initializer=_init_remote,
                                         initargs=(predictor_spec,))
        # start them now (imports, surrogate loading), not on the first measurement
        for f in [self._pool.submit(_remote_ready) for _ in range(n)]:
            f.result(timeout=300)
        self.workers = n

    def drain(self, timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.book.dirty_count == 0 and self._busy == 0:
                return True
            time.sleep(0.005)
        return False

    def _run(self) -> None:
        while True:
            try:
                n = self.run_once()
            except Exception:
                self.errors += 1
                log.exception("update cycle failed")
                time.sleep(0.2)
                continue
            if n == 0:
                if self._stop.is_set() and self.book.dirty_count == 0:
                    return
                self.book.wake.wait(0.05)
                if self.book.dirty_count == 0:
                    self.book.wake.clear()

    def _predict(self, snap: SegmentSnapshot):
        try:
            if self._pool is not None:
                return self._pool.submit(_remote_predict, snap).result()
            return self.predictor.predict(snap)
        except Exception as exc:
            self.errors += 1
            log.warning("segment %s of %s: no prediction: %s", snap.segment, snap.line, exc)
            return None, [Alert(snap.line, snap.segment, time.time(), "prediction_failed", None, None,
                                f"segment {snap.segment}: no prediction from the measured values: {exc}")]

    def _new_alerts(self, alerts: list[Alert]) -> list[Alert]:
        out = []
        with self._lock:
            for a in alerts:
                key = (a.line, a.segment, a.kind, a.quantity)
                if key not in self._alerted:
                    self._alerted.add(key)
                    out.append(a)
            if len(self._alerted) > 100_000:
                self._alerted.clear()
        return out

    def run_once(self) -> int:
        """Take up to ``max_per_cycle`` dirty segments, predict and store them; how many were predicted."""
        with self._lock:
            self._busy += 1
        try:
            snaps = self.book.take_dirty(self.max_per_cycle, claim=True)
            if not snaps:
                return 0
            done = 0
            for snap in snaps:
                try:
                    if self.shared:
                        self.book.refresh_from_store(snap, self.store)
                    p, al = self._predict(snap)
                    alerts = self._new_alerts(al)
                    self.store.write_predictions([p] if p is not None else [], alerts)
                    if p is None:
                        continue
                    t = time.time()
                    with self._lock:
                        self.latency.add(t - r for r in snap.pending_received)
                        self.predictions += 1
                    done += 1
                    for cb in self.listeners:
                        try:
                            cb(p, alerts)
                        except Exception:
                            log.exception("prediction listener failed")
                finally:
                    self.book.release(snap.line, snap.segment)
            return done
        finally:
            with self._lock:
                self._busy -= 1


# -- prediction in worker processes ---------------------------------------------------------------------------

_REMOTE: Predictor | None = None


def _init_remote(spec: dict) -> None:
    global _REMOTE
    from .scenario import load_scenario

    cell = spec.get("cell", "off")
    cell_model = load_cell_model(cell) if isinstance(cell, str) else cell
    _REMOTE = Predictor(load_scenario(spec.get("scenario")), spec["config"], cell=cell_model)
    _REMOTE.predict(SegmentSnapshot("warm-up", 0, {}, None, None, None, 0, [], "coating"))


def _remote_ready() -> bool:
    return _REMOTE is not None


def _remote_predict(snap: SegmentSnapshot):
    return _REMOTE.predict(snap)
