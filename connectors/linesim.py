"""SIMULATED electrode line: an OPC UA server and an MQTT publisher driven by the process chain model.

Nothing this module produces is measured on a real line. It stands in for a plant so that every feature of the
twin can be shown and tested on one machine: it says so in its OPC UA server name, in the description of every
station object, in every MQTT payload (``"simulated": true``) and in its log output.

Physics (:class:`LineModel`, pure: no I/O, no clock; time is passed in):

- **Process state.** Each process input of the scenario (default: the paper's use case) wanders around its
  setpoint as an AR(1) process whose stationary spread is ``process_variation`` x the scenario's spread,
  with correlation time ``correlation_time_s``; on top come **drifts** (``[drift]``, e.g. a calender heating
  up: ``gamma_c_intercept`` falling exponentially) and **step disturbances** (``[[steps]]``, e.g. the line load
  jumping by +8 N/mm at t = 120 s). Every published value carries sensor noise (``sensor_rel_std``).
- **Slurry batches.** Batch 1 was released one dead time before the start (it is at the die when the run
  starts); from the start on, every ``batch_period_s`` the mixer releases a new batch whose formulation (w_am, w_ca,
  w_pb, x_solids) is drawn from the scenario's distributions; the mixer publishes ``batch_id`` and the batch's
  values with the release time as timestamp. The batch reaches the slot die ``feed_dead_time_s`` later: web
  coated at time t is coated from the batch released at or before ``t - feed_dead_time_s``.
- **The web.** The coated length advances with the true web speed held between ticks (zero-order hold, as the
  twin's tracker integrates the measured speed). Each tick records the coater state of the web coated then.
  A station ``p`` metres downstream of the die (positions as in the twin's ``[line]`` table) measures the web
  that passed the die when the coated length was ``x(t) - p``; the chain model evaluated on that web's
  coating inputs and batch (and on the calender's state *now* for the calender) gives the true structural
  value, plus sensor noise. So a gauge shows a batch change, a flow step or the calender's drift exactly when
  the affected web passes it.

Stations and values (agreed with the twin core, README "Streaming twin"): mixer: w_am, w_ca, w_pb, x_solids,
rho_slurry, batch_id; coater: flow_rate, web_speed, coating_width; gauges (wet gauge behind the die): m_wet,
h_wet; dryer exit: m_dry, h_dry; calender: line_load, h_cal. The OPC UA server holds every one of them
(objects Mixer, Coater, Dryer, Calender, Gauges; canonical variable names; EngineeringUnits; an Advisor object
the twin writes advice to). By default the twin reads the PLC values (mixer, coater, calender line load) over
OPC UA and the inline gauges (m_wet, h_wet, m_dry, h_dry, h_cal) over MQTT; both sets are configurable. All
timestamps are whole milliseconds, so a value carried on both transports has the same key in the twin's store.

:class:`LineSimulator` runs the model on the wall clock with the servers; ``twin simulate`` runs it from the
command line against a real broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.quantities import QUANTITIES
from models.uncertainty import Drift

from twin.segments import LineLayout

from .naming import OPCUA_OBJECTS, STATIONS
from .threadloop import close_loop

__all__ = ["SimSettings", "LineModel", "LineSimulator", "Measurement", "OPCUA_VALUES", "MQTT_VALUES",
           "STATION_VALUES", "NAMESPACE_URI", "SIMULATED_BANNER"]

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:electrode-twin:simulated-line"
SIMULATED_BANNER = "SIMULATED electrode line (electrode-twin line simulator; no real plant behind these values)"

#: What each station measures (canonical names), agreed with the twin core.
STATION_VALUES: dict[str, tuple[str, ...]] = {
    "mixer": ("w_am", "w_ca", "w_pb", "x_solids", "rho_slurry", "batch_id"),
    "coater": ("flow_rate", "web_speed", "coating_width"),
    "gauges": ("m_wet", "h_wet"),
    "dryer": ("m_dry", "h_dry"),
    "calender": ("line_load", "h_cal"),
}
#: Default transport split: PLC values over OPC UA ...
OPCUA_VALUES: dict[str, tuple[str, ...]] = {
    "mixer": STATION_VALUES["mixer"],
    "coater": STATION_VALUES["coater"],
    "calender": ("line_load",),
}
#: ... inline gauges over MQTT.
MQTT_VALUES: dict[str, tuple[str, ...]] = {
    "gauges": ("m_wet", "h_wet"),
    "dryer": ("m_dry", "h_dry"),
    "calender": ("h_cal",),
}

_BATCH_INPUTS = ("w_am", "w_ca", "w_pb", "x_solids")
_COATER_INPUTS = ("flow_rate", "web_speed", "coating_width")
_CALENDER_INPUTS = ("line_load",)


# ---------------------------------------------------------------------------------------------- settings --

_LAYOUT = LineLayout()


class SimLine(BaseModel):
    """The line's geometry, the same table as the twin's ``[line]`` (other keys of that table are ignored).

    Defaults and checks are those of the twin's :class:`twin.segments.LineLayout`, so a simulator and a twin
    started from the same file (or from none) agree on where the stations are and when a batch reaches the die.
    """

    model_config = ConfigDict(extra="ignore")
    id: str = "line1"
    positions: dict[str, float] = dict(_LAYOUT.positions)
    feed_dead_time_s: float = _LAYOUT.feed_dead_time_s

    @model_validator(mode="after")
    def _geometry(self):
        LineLayout(positions=self.positions, feed_dead_time_s=self.feed_dead_time_s)  # raises naming the entry
        return self

    def position(self, station: str, name: str) -> float | None:
        p = self.positions.get(f"{station}/{name}")
        return p if p is not None else self.positions.get(station)


class DriftSpec(BaseModel):
    """A systematic change of a process input with time since the simulator started (a machine heating up)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["linear", "exponential"]
    rate: float = 0.0       # linear: unit per hour
    delta: float = 0.0      # exponential: final offset, in the input's unit
    tau: float = Field(600.0, gt=0)   # exponential: time constant [s]


class StepSpec(BaseModel):
    """A step disturbance: from ``at_s`` seconds after start, ``name`` is moved by ``delta`` or scaled by ``factor``.

    Formulation inputs (w_am, w_ca, w_pb, x_solids) change with the next slurry batch released after ``at_s``.
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    at_s: float = Field(ge=0)
    delta: float | None = None
    factor: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self):
        if (self.delta is None) == (self.factor is None):
            raise ValueError(f"step of {self.name}: give exactly one of delta, factor")
        return self


class SimSettings(BaseModel):
    """Configuration of the simulated line (``[simulator]`` table, or ``twin simulate --config``).

    Example::

        [simulator]
        period_s = 0.5
        batch_period_s = 120
        sensor_rel_std = { default = 0.002, h_cal = 0.004 }
        [simulator.drift]
        gamma_c_intercept = { kind = "exponential", delta = -12.0, tau = 240 }   # calender heating up
        [[simulator.steps]]
        name = "line_load"
        at_s = 90
        delta = 8.0
    """

    model_config = ConfigDict(extra="forbid")
    line: SimLine = SimLine()
    scenario: str | None = None
    seed: int = 0
    period_s: float = Field(0.5, gt=0, le=60)
    sensor_rel_std: dict[str, float] = {"default": 0.002}
    process_variation: float = Field(0.5, ge=0, le=10)
    correlation_time_s: float = Field(60.0, gt=0)
    batch_period_s: float = Field(120.0, ge=0)     # 0: one batch for the whole run
    drift: dict[str, DriftSpec] = {"gamma_c_intercept": DriftSpec(kind="exponential", delta=-12.0, tau=240.0)}
    steps: list[StepSpec] = []
    opcua_values: dict[str, list[str]] = {k: list(v) for k, v in OPCUA_VALUES.items()}
    mqtt_values: dict[str, list[str]] = {k: list(v) for k, v in MQTT_VALUES.items()}
    opcua_host: str = "127.0.0.1"
    opcua_port: int = Field(0, ge=0, le=65535)     # 0: a free port
    namespace_uri: str = NAMESPACE_URI
    apply_advice: bool = False                     # take setpoints the twin writes to the Advisor

    @model_validator(mode="after")
    def _names(self):
        from twin.scenario import quantity_hint

        for n, v in self.sensor_rel_std.items():
            if n != "default" and n not in QUANTITIES:
                raise ValueError(f"sensor_rel_std: {quantity_hint(n)}")
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"sensor_rel_std.{n} = {v} must be >= 0")
        for n in self.drift:
            if n not in QUANTITIES:
                raise ValueError(f"drift: {quantity_hint(n)}")
        for s in self.steps:
            if s.name not in QUANTITIES:
                raise ValueError(f"steps: {quantity_hint(s.name)}")
        for table in ("opcua_values", "mqtt_values"):
            for st, names in getattr(self, table).items():
                if st not in STATION_VALUES:
                    raise ValueError(f"{table}: station {st!r} is not one of {', '.join(STATION_VALUES)}")
                for n in names:
                    if n not in STATION_VALUES[st]:
                        raise ValueError(f"{table}.{st}: the simulated {st} does not measure {n!r} "
                                         f"(it measures {', '.join(STATION_VALUES[st])})")
        return self


@dataclass(frozen=True, slots=True)
class Measurement:
    """One simulated measurement: what a station reports (canonical name and unit)."""

    station: str
    name: str
    value: float | str
    unit: str | None
    ts: float


@dataclass(slots=True)
class _Slice:
    t: float                  # when this web passed the slot die [s since epoch]
    x: float                  # coated length at that moment [m]
    inputs: dict[str, float]  # true coating inputs and formulation of the web coated from here on
    batch: str


# ---------------------------------------------------------------------------------------------- physics ---

class LineModel:
    """The simulated line's physics; pure logic over the times it is given (see the module docstring)."""

    def __init__(self, settings: SimSettings | None = None, start_ts: float | None = None):
        from twin.montecarlo import chain_for
        from twin.scenario import load_scenario

        self.settings = s = settings or SimSettings()
        self.scenario = load_scenario(s.scenario)
        self.chain = chain_for(self.scenario)
        self.rng = np.random.default_rng(s.seed)
        self.start_ts = _ms(time.time() if start_ts is None else start_ts)
        self.nominal = self.scenario.nominal()
        self.setpoints: dict[str, float] = dict(self.nominal)        # what the operator set (advice moves them)
        self.spread = {n: _marginal_sd(m) for n, m in self.scenario.marginals.items()}
        self._ar: dict[str, float] = {n: 0.0 for n in self.nominal}
        self._drifts = {n: Drift(d.kind, d.rate, d.delta, d.tau) for n, d in s.drift.items()}
        self._drifts.update({n: d for n, d in self.scenario.drifts.items() if n not in self._drifts})
        self.slices: list[_Slice] = []
        self.batches: list[tuple[float, str, dict[str, float]]] = []   # (release ts, id, true formulation)
        self._last_t: float | None = None
        self._v = 0.0
        self._x = 0.0
        self._next_batch_ts: float | None = None
        self.truth: dict[tuple[str, str], float] = {}   # last true value per (station, name), for tests

    # -- process state --------------------------------------------------------------------------------------
    def _elapsed(self, t: float) -> float:
        return t - self.start_ts

    def _step_offset(self, name: str, value: float, elapsed: float) -> float:
        for st in self.settings.steps:
            if st.name == name and elapsed >= st.at_s:
                value = value * st.factor if st.factor is not None else value + st.delta
        return value

    def _process_value(self, name: str, t: float, dt: float) -> float:
        """True value of a continuously varying process input at time t (AR(1) + drift + steps)."""
        s = self.settings
        sd = self.spread.get(name, 0.0) * s.process_variation
        if sd > 0 and dt > 0:
            phi = math.exp(-dt / s.correlation_time_s)
            self._ar[name] = phi * self._ar[name] + math.sqrt(1 - phi * phi) * sd * self.rng.standard_normal()
        elapsed = self._elapsed(t)
        v = self.setpoints[name] + self._ar[name]
        d = self._drifts.get(name)
        if d is not None:
            v += float(d.offset(elapsed))
        return self._step_offset(name, v, elapsed)

    def _new_batch(self, ts: float) -> list[Measurement]:
        k = len(self.batches) + 1
        batch_id = f"B{k:04d}"
        elapsed = self._elapsed(ts)
        form = {}
        for n in _BATCH_INPUTS:
            sd = self.spread.get(n, 0.0)
            v = self.setpoints[n] + (sd * self.rng.standard_normal() if sd > 0 else 0.0)
            form[n] = self._step_offset(n, v, max(elapsed, 0.0))
        self.batches.append((ts, batch_id, form))
        rho_slurry = float(self.chain.evaluate({**self.nominal, **form})["rho_slurry"])
        out = [Measurement("mixer", "batch_id", batch_id, None, ts)]
        for n in _BATCH_INPUTS:
            out.append(self._measure("mixer", n, form[n], ts))
        out.append(self._measure("mixer", "rho_slurry", rho_slurry, ts))
        return out

    def batch_at_die(self, t: float) -> tuple[str, dict[str, float]]:
        """The batch web coated at time t is made of: released at or before t - feed_dead_time_s."""
        d = self.settings.line.feed_dead_time_s
        cur = self.batches[0]
        for b in self.batches:
            if b[0] <= t - d + 1e-9:
                cur = b
        return cur[1], cur[2]

    # -- measurements ---------------------------------------------------------------------------------------
    def _measure(self, station: str, name: str, true_value: float, ts: float) -> Measurement:
        self.truth[(station, name)] = true_value
        rel = self.settings.sensor_rel_std.get(name, self.settings.sensor_rel_std.get("default", 0.0))
        v = true_value * (1.0 + rel * self.rng.standard_normal()) if rel > 0 else true_value
        return Measurement(station, name, float(v), QUANTITIES[name].unit, ts)

    def _slice_at(self, x: float) -> _Slice | None:
        """The web at coated length x (None if not coated yet in this run)."""
        x += 1e-9          # a nanometre of slack: 3 s at 1 m/min is 0.05 m, not 0.04999999999999999 m
        if not self.slices or x < self.slices[0].x:
            return None
        lo, hi = 0, len(self.slices) - 1
        while lo < hi:                       # last slice with slice.x <= x
            mid = (lo + hi + 1) // 2
            if self.slices[mid].x <= x:
                lo = mid
            else:
                hi = mid - 1
        return self.slices[lo]

    def advance(self, t: float) -> list[Measurement]:
        """Move the line to time ``t`` [s since epoch] and return what every station measures at ``t``."""
        t = _ms(t)
        out: list[Measurement] = []
        if self._last_t is None:
            # batch 1 was released one dead time ago: it is at the die when the run starts
            first = _ms(t - self.settings.line.feed_dead_time_s)
            out += self._new_batch(first)
            period = self.settings.batch_period_s
            self._next_batch_ts = t + period if period > 0 else math.inf   # batch 2: one period after start
            dt = 0.0
        else:
            if t <= self._last_t:
                raise ValueError(f"time must advance: t = {t} is not after the previous tick {self._last_t}")
            dt = t - self._last_t
            self._x += self._v * dt / 60.0          # web_speed in m/min, held since the last tick
        while self._next_batch_ts is not None and self._next_batch_ts <= t:
            out += self._new_batch(_ms(self._next_batch_ts))
            self._next_batch_ts += self.settings.batch_period_s
        # the coater now: its true state is the state of the web coated from now until the next tick
        coat = {n: self._process_value(n, t, dt) for n in _COATER_INPUTS}
        cal = {n: self._process_value(n, t, dt) for n in _CALENDER_INPUTS}
        batch_id, form = self.batch_at_die(t)
        others = {n: self._process_value(n, t, dt) for n in self._drifts if n not in coat and n not in cal
                  and n not in _BATCH_INPUTS}
        self._v = coat["web_speed"]
        self.slices.append(_Slice(t, self._x, {**coat, **form, **others}, batch_id))
        self._forget(t)
        self._last_t = t
        for n in _COATER_INPUTS:
            out.append(self._measure("coater", n, coat[n], t))
        out.append(self._measure("calender", "line_load", cal["line_load"], t))
        line = self.settings.line
        for station, names in (("gauges", ("m_wet", "h_wet")), ("dryer", ("m_dry", "h_dry")),
                               ("calender", ("h_cal",))):
            for name in names:
                p = line.position(station, name)
                if p is None:
                    continue
                sl = self._slice_at(self._x - p)
                if sl is None:
                    continue
                inputs = {**self.nominal, **sl.inputs}
                if station == "calender":
                    inputs.update(cal)
                    inputs.update({n: self._process_value(n, t, 0.0) for n in others})
                result = self.chain.evaluate(inputs)
                out.append(self._measure(station, name, float(result[name]), t))
        return out

    def _forget(self, t: float) -> None:
        """Drop slices that every station has passed (keep the line's length plus a margin)."""
        reach = max(self.settings.line.positions.values(), default=0.0) + 1.0
        while len(self.slices) > 2 and self.slices[1].x < self._x - reach:
            self.slices.pop(0)

    def apply_setpoint(self, name: str, value: float) -> None:
        """An operator (or the twin's advice) moves a setpoint; checked against the physical range."""
        if name not in self.setpoints:
            raise KeyError(f"{name} is not a process input of the simulated line "
                           f"(inputs: {', '.join(sorted(self.setpoints))})")
        QUANTITIES[name].check(float(value), "simulator setpoint")
        self.setpoints[name] = float(value)


def _marginal_sd(m) -> float:
    """Standard deviation of a scenario input's distribution (0 for a constant)."""
    if m.is_constant:
        return 0.0
    try:
        return float(m.std)
    except NotImplementedError:
        return float(np.std(m.sample(np.random.default_rng(0), 4000)))


def _ms(t: float) -> float:
    """Round to whole milliseconds (MQTT payloads carry ms; OPC UA then carries the same instant)."""
    return round(t * 1000.0) / 1000.0


# ---------------------------------------------------------------------------------------------- servers ---

class LineSimulator:
    """The SIMULATED line on the wall clock: an asyncua server and (optionally) an MQTT publisher.

    ``await sim.start()`` starts the OPC UA server (``sim.endpoint``) and publishes the first batch;
    ``await sim.run(duration)`` ticks every ``period_s``; ``await sim.stop()``. ``start_thread()`` /
    ``stop_thread()`` do the same in a thread with its own event loop. ``mqtt`` is a
    :class:`connectors.mqtt.MqttSettings` (MQTT is off when it is ``None``).
    """

    def __init__(self, settings: SimSettings | None = None, mqtt=None):
        self.settings = settings or SimSettings()
        self.mqtt_settings = mqtt
        self.model: LineModel | None = None
        self.server = None
        self.endpoint: str | None = None
        self.port: int | None = None
        self._vars: dict[tuple[str, str], Any] = {}
        self._vtypes: dict[tuple[str, str], Any] = {}
        self._publisher = None
        self._pub_queue: queue.Queue | None = None
        self._pub_thread: threading.Thread | None = None
        self.published_mqtt = 0      # MQTT messages handed to the publisher (acknowledged by the broker at stop())
        self.written_opcua = 0       # OPC UA variable writes (every variable, subscribed or not)
        #: (transport, station, name) -> values emitted on that transport for the values of its split
        #: (``opcua_values`` / ``mqtt_values``): what a twin listening to both should store, exactly once each
        self.published: Counter = Counter()
        self._count_lock = threading.Lock()
        self._go = threading.Event()
        self._paused = threading.Event()
        self._ticking = threading.Lock()       # held while a tick writes (pause() waits for it)
        self.ticks = 0
        self.advice: list[dict] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.started = threading.Event()

    # -- OPC UA address space ---------------------------------------------------------------------------------
    async def _build_server(self):
        from asyncua import Server, ua

        s = self.settings
        srv = Server()
        await srv.init()
        srv.set_server_name(f"electrode-twin SIMULATED line {s.line.id}")
        port = s.opcua_port or _free_port(s.opcua_host)
        self.port = port
        self.endpoint = f"opc.tcp://{s.opcua_host}:{port}/electrode-twin/"
        srv.set_endpoint(self.endpoint)
        srv.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await srv.register_namespace(s.namespace_uri)
        objects = srv.nodes.objects
        for station in STATIONS:
            obj_name = OPCUA_OBJECTS[station]
            obj = await objects.add_object(ua.NodeId(obj_name, idx), ua.QualifiedName(obj_name, idx))
            await obj.write_attribute(ua.AttributeIds.Description, ua.DataValue(ua.Variant(
                ua.LocalizedText(f"SIMULATED {station} of line {s.line.id} (electrode-twin line simulator)"),
                ua.VariantType.LocalizedText)))
            for name in STATION_VALUES[station]:
                await self._add_variable(obj, idx, obj_name, station, name)
        await self._add_advisor(objects, idx)
        self.server = srv
        return srv

    async def _add_variable(self, obj, idx, obj_name, station, name):
        from asyncua import ua

        nid = ua.NodeId(f"{obj_name}.{name}", idx)
        if name == "batch_id":
            vtype, init = ua.VariantType.String, ""
        else:
            vtype, init = ua.VariantType.Double, 0.0
        var = await obj.add_variable(nid, ua.QualifiedName(name, idx), ua.Variant(init, vtype), varianttype=vtype)
        # until the line produces a value, a reader gets "waiting for initial data", not a made-up zero
        await var.write_value(ua.DataValue(ua.Variant(init, vtype),
                                           StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)))
        if name in QUANTITIES:
            q = QUANTITIES[name]
            await var.add_property(0, "EngineeringUnits", ua.EUInformation(
                NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact", UnitId=-1,
                DisplayName=ua.LocalizedText(q.unit), Description=ua.LocalizedText(q.description)))
            await var.add_property(0, "EURange", ua.Range(q.low, q.high))
            await var.write_attribute(ua.AttributeIds.Description, ua.DataValue(ua.Variant(
                ua.LocalizedText(f"SIMULATED {q.description} [{q.unit}]"), ua.VariantType.LocalizedText)))
        self._vars[(station, name)] = var.nodeid
        self._vtypes[(station, name)] = vtype

    async def _add_advisor(self, objects, idx):
        from asyncua import ua, uamethod

        adv = await objects.add_object(ua.NodeId("Advisor", idx), ua.QualifiedName("Advisor", idx))
        fields = {"segment": (ua.VariantType.Int64, 0), "parameter": (ua.VariantType.String, ""),
                  "setpoint": (ua.VariantType.Double, 0.0), "unit": (ua.VariantType.String, ""),
                  "p_out": (ua.VariantType.Double, 0.0), "message": (ua.VariantType.String, ""),
                  "advice_json": (ua.VariantType.String, "")}
        self._advisor_vars = {}
        for name, (vt, init) in fields.items():
            v = await adv.add_variable(ua.NodeId(f"Advisor.{name}", idx), ua.QualifiedName(name, idx),
                                       ua.Variant(init, vt))
            await v.set_writable()
            self._advisor_vars[name] = v
        sim = self

        @uamethod
        def advise(parent, text):
            sim._on_advice(text)
            return True

        await adv.add_method(ua.NodeId("Advisor.Advise", idx), ua.QualifiedName("Advise", idx), advise,
                             [ua.VariantType.String], [ua.VariantType.Boolean])

    async def _watch_advisor(self) -> None:
        """Advice written as variables (advice_json last) reaches the simulator through a server subscription."""
        sim = self

        class _Watch:
            def datachange_notification(self, node, val, data):
                if val:
                    sim._on_advice(val)

        sub = await self.server.create_subscription(50, _Watch())
        await sub.subscribe_data_change(self._advisor_vars["advice_json"])

    def _on_advice(self, text: str) -> None:
        try:
            doc = json.loads(text)
        except (TypeError, ValueError):
            log.warning("SIMULATED line: advice is not JSON: %r", text)
            return
        self.advice.append(doc)
        log.info("SIMULATED line: advice received: %s", doc)
        if self.settings.apply_advice and self.model is not None and isinstance(doc, dict):
            name, value = doc.get("parameter"), doc.get("setpoint")
            try:
                self.model.apply_setpoint(str(name), float(value))
                log.info("SIMULATED line: setpoint %s -> %s applied", name, value)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("SIMULATED line: advice not applied: %s", exc)

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def start(self, now: float | None = None) -> "LineSimulator":
        self._stop = asyncio.Event()
        srv = await self._build_server()
        await srv.start()
        await self._watch_advisor()
        if self.mqtt_settings is not None:
            self._start_publisher()
        self.model = LineModel(self.settings, now)
        log.warning("%s: OPC UA %s%s", SIMULATED_BANNER, self.endpoint,
                    f", MQTT {self.mqtt_settings.host}:{self.mqtt_settings.port}" if self.mqtt_settings else "")
        await self.tick(now)
        self.started.set()
        return self

    def _start_publisher(self):
        from .mqtt import MqttPublisher

        ms = self.mqtt_settings
        self._publisher = MqttPublisher(ms, client_id=f"{ms.client_id}-linesim").start()
        self._pub_queue = q = queue.Queue()

        def work():
            while True:
                item = q.get()
                if item is None:
                    q.task_done()
                    return
                try:
                    m, retain = item
                    self._publisher.publish_value(self.settings.line.id, m.station, m.name, m.value, m.unit, m.ts,
                                                  retain=retain, simulated=True)
                    with self._count_lock:
                        self.published_mqtt += 1
                        self.published[("mqtt", m.station, m.name)] += 1
                except Exception:
                    log.exception("SIMULATED line: MQTT publish failed")
                finally:
                    q.task_done()

        self._pub_thread = threading.Thread(target=work, name="linesim-mqtt", daemon=True)
        self._pub_thread.start()

    async def tick(self, now: float | None = None) -> list[Measurement]:
        """Advance to ``now`` (default: the wall clock) and publish every measurement."""
        from asyncua import ua

        ms = self.model.advance(time.time() if now is None else now)
        mqtt_sel = self.settings.mqtt_values
        opcua_sel = self.settings.opcua_values
        for m in ms:
            key = (m.station, m.name)
            nid = self._vars.get(key)
            if nid is not None:
                dt = datetime.fromtimestamp(m.ts, timezone.utc)
                await self.server.write_attribute_value(nid, ua.DataValue(
                    ua.Variant(m.value, self._vtypes[key]), SourceTimestamp=dt, ServerTimestamp=dt))
                self.written_opcua += 1
                if m.name in opcua_sel.get(m.station, ()):
                    with self._count_lock:
                        self.published[("opcua", m.station, m.name)] += 1
            if self._pub_queue is not None and m.name in mqtt_sel.get(m.station, ()):
                self._pub_queue.put((m, m.station == "mixer"))   # batch values retained: a late twin gets them
        self.ticks += 1
        return ms

    async def run(self, duration: float | None = None) -> None:
        """Tick every ``period_s`` until ``duration`` seconds have passed or :meth:`stop` is called."""
        if self._stop is None:
            self._stop = asyncio.Event()
        if self._stop.is_set():
            return
        period = self.settings.period_s
        t0 = time.monotonic()
        next_t = t0 + period
        while not self._stop.is_set():
            if duration is not None and time.monotonic() - t0 >= duration:
                break
            try:
                await asyncio.wait_for(self._stop.wait(), max(0.0, next_t - time.monotonic()))
                break
            except asyncio.TimeoutError:
                pass
            if self._paused.is_set():
                next_t = time.monotonic() + period  # paused: the line stands, the servers keep serving
                continue
            with self._ticking:
                if not self._paused.is_set():
                    await self.tick()
            next_t += period
            if next_t < time.monotonic():          # fell behind (machine busy): skip, never burst
                next_t = time.monotonic() + period

    def pause(self, timeout: float = 30.0) -> bool:
        """Stop ticking but keep the OPC UA server and the MQTT publisher up (call it from another thread
        than the simulator's event loop, e.g. the one that called :meth:`start_thread`).

        Returns once no tick is running any more and every MQTT message emitted so far is acknowledged by the
        broker (False if that took longer than ``timeout``), so a twin can drain everything the simulator
        counted in :attr:`published` before :meth:`stop_thread`. :meth:`resume` ticks on.
        """
        end = time.monotonic() + timeout
        self._paused.set()
        if not self._ticking.acquire(timeout=max(0.0, timeout)):
            return False
        self._ticking.release()
        q = self._pub_queue
        if q is not None:
            with q.all_tasks_done:                 # every queued message handed to paho
                while q.unfinished_tasks:
                    if not q.all_tasks_done.wait(max(0.0, end - time.monotonic())):
                        return False
        if self._publisher is not None:
            return self._publisher.flush(max(0.0, end - time.monotonic()))
        return True

    def resume(self) -> None:
        """Tick on after :meth:`pause`."""
        self._paused.clear()

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._pub_queue is not None:
            self._pub_queue.put(None)
            await asyncio.to_thread(self._pub_thread.join, 10)
            await asyncio.to_thread(self._publisher.stop, 10)
            self._pub_queue = None
        if self.server is not None:
            srv, self.server = self.server, None
            await srv.stop()

    def release(self) -> None:
        """Let a simulator started with ``start_thread(hold=True)`` begin ticking."""
        self._go.set()

    def start_thread(self, duration: float | None = None, timeout: float = 30.0,
                     hold: bool = False) -> "LineSimulator":
        """Start and run in a daemon thread with its own event loop; returns once the server is up.

        The first tick (batch 1 and every station's first value) is done at start. With ``hold=True`` the
        simulator then waits for :meth:`release` before ticking on, so a twin can subscribe first: an OPC UA
        subscription sees the value a variable holds when it is created, not the ones written before.
        """
        failure: list[BaseException] = []
        if not hold:
            self._go.set()

        def main():
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def go():
                try:
                    await self.start()
                except BaseException as exc:
                    failure.append(exc)
                    self.started.set()
                    return
                try:
                    while not self._go.is_set() and not (self._stop is not None and self._stop.is_set()):
                        await asyncio.sleep(0.02)
                    await self.run(duration)
                finally:
                    await self.stop()

            try:
                loop.run_until_complete(go())
            finally:
                close_loop(loop)

        self._thread = threading.Thread(target=main, name="linesim", daemon=True)
        self._thread.start()
        if not self.started.wait(timeout):
            raise RuntimeError(f"line simulator did not start within {timeout} s")
        if failure:
            raise RuntimeError(f"line simulator could not start: {failure[0]}") from failure[0]
        return self

    def stop_thread(self, timeout: float = 20.0) -> None:
        """Stop the thread: ticking ends, MQTT messages are flushed to the broker, the server stops."""
        if self._thread is None:
            return
        self._go.set()
        loop = self._loop
        if loop is not None and not loop.is_closed() and self._stop is not None:
            loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None

    # -- what the twin needs to listen ------------------------------------------------------------------------
    def opcua_settings(self, **kw):
        """:class:`connectors.opcua.OpcUaSettings` subscribing to this simulator's OPC UA values."""
        from .opcua import OpcUaSettings

        stations = {OPCUA_OBJECTS[st]: list(names) for st, names in self.settings.opcua_values.items()}
        return OpcUaSettings(endpoint=self.endpoint, line=self.settings.line.id,
                             namespace_uri=self.settings.namespace_uri, stations=stations, **kw)


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
