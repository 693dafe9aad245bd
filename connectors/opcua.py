"""OPC UA connector: subscribe to a line's PLC values (:class:`OpcUaSource`), write advice back (:class:`OpcUaAdvisor`).

Built on asyncua. A declarative subscription spec (:class:`NodeSpec`: node id, canonical name, unit, sampling
interval, queue size, deadband) says what to read; :class:`OpcUaSource` does the rest:

- **Callbacks only enqueue.** asyncua puts every notification on the subscription's (unbounded) queue; one
  consumer task per subscription turns it into a :class:`~twin.readings.Reading` and calls the non-blocking
  sink. Nothing waits for the twin core inside the client's event loop.
- **Supervisor.** A dead connection is detected by asyncua's keep-alive probe (a read of the server state every
  ``watchdog_s``), by a bad subscription status (``BadTimeout``, ``BadShutdown`` ...) or by a failing request.
  The supervisor then throws the client away, builds a fresh one, reconnects with exponential backoff
  (``reconnect_min_s`` doubling up to ``reconnect_max_s``) and re-creates every subscription and monitored
  item from the spec. asyncua's own in-place reconnection is not used: a fresh client per connection leaves no
  half-dead session state behind, whatever the server did (restart, new namespace order, new certificate).
- **Many nodes** are spread over several subscriptions of at most ``nodes_per_subscription`` items each (the
  server's publish loop is the bottleneck, ~20,000 data changes/s measured for asyncua).
- **Provenance kept.** Each reading carries the node id, the SourceTimestamp (``source_ts``) and
  ServerTimestamp (``server_ts``), and the StatusCode's name (``status``); a value with a bad or uncertain
  status is passed on, not dropped, and the ingest step decides (dead letter with the status as reason). A
  server-side queue overflow (values lost on the server because ``queue_size`` was too small for the
  publishing interval) is logged and counted in ``stats.overflows``.
- **Units**: a spec's ``unit`` is used if given, else the node's ``EngineeringUnits`` (its DisplayName, read
  on every connection), else none (= canonical). Conversion is done in the ingest step.
- **Security**: policy ``Basic256Sha256`` with mode ``Sign`` or ``SignAndEncrypt``; the client's application
  instance certificate and key from files; user authentication anonymous, user name and password (secret from
  environment or file) or an X.509 user certificate.

What "nothing lost" means for OPC UA (unlike MQTT there is no broker that stores values for an absent
client): a subscription observes the values the server holds while the subscription exists. While the server
is down, nothing can be observed; values a PLC wrote to a dead server never existed for any client. When the
connection comes back, the supervisor re-creates every monitored item, each delivers the value the server
holds at that moment (OPC UA's initial data change) and then every later change, with its source timestamp.
So, after a reconnection, no value the server holds is missed: the stream resumes with the current value and
has no gap from then on. Writes with unchanged value are reported too (trigger StatusValueTimestamp when the
deadband is 0), so every write with a new timestamp becomes a reading. Server-side queue overflow is the one
remaining way to lose values; size ``queue_size`` >= (writes per second) x (publishing interval) and watch
``stats.overflows``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from twin.readings import Reading

from .naming import OPCUA_OBJECTS, is_known_name
from .secrets import SecretRef
from .sinks import Sink
from .threadloop import close_loop

__all__ = ["NodeSpec", "OpcUaSettings", "SecuritySettings", "AuthSettings", "AdvisorSettings", "OpcUaSource",
           "OpcUaAdvisor", "SourceStats", "build_client", "status_name"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- settings --

class NodeSpec(BaseModel):
    """One monitored node: where it is, what it means, how to sample it.

    ``node_id`` as OPC UA writes it: ``ns=2;s=Coater.web_speed``, ``ns=3;i=1234`` or, robust against a
    server that renumbers its namespaces, ``nsu=urn:plant:line1;s=Coater.web_speed`` (resolved on each
    connection).
    """

    model_config = ConfigDict(extra="forbid")
    node_id: str
    station: str
    name: str
    line: str | None = None           # default: OpcUaSettings.line
    unit: str | None = None           # default: the node's EngineeringUnits
    sampling_ms: float = Field(0.0, ge=0)       # 0: as fast as the server can
    queue_size: int = Field(100, ge=1, le=100_000)
    deadband: float = Field(0.0, ge=0)
    deadband_type: Literal["absolute", "percent"] = "absolute"

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, v):
        from asyncua import ua

        try:
            ua.NodeId.from_string(v)
        except Exception as exc:
            raise ValueError(f"node_id {v!r} is not an OPC UA node id (e.g. ns=2;s=Coater.web_speed): {exc}") \
                from None
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not is_known_name(v):
            from twin.scenario import quantity_hint

            raise ValueError(quantity_hint(v))
        return v

    @model_validator(mode="after")
    def _deadband(self):
        if self.deadband_type == "percent" and self.deadband > 100:
            raise ValueError(f"deadband = {self.deadband} % is above 100 %")
        return self


class SecuritySettings(BaseModel):
    """Secure channel. ``policy = "Basic256Sha256"`` needs the client's certificate and private key."""

    model_config = ConfigDict(extra="forbid")
    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: Path | None = None          # the client's application instance certificate (DER or PEM)
    private_key: Path | None = None
    private_key_password: SecretRef = SecretRef()
    # the trusted server certificate; None: take the one the endpoint presents (trust on first use)
    server_certificate: Path | None = None
    application_uri: str = "urn:electrode-twin:client"   # must equal the URI in the client certificate

    @model_validator(mode="after")
    def _files(self):
        if self.policy != "None":
            for k in ("certificate", "private_key"):
                if getattr(self, k) is None:
                    raise ValueError(f"security.policy = {self.policy!r} needs security.{k}")
        for k in ("certificate", "private_key", "server_certificate"):
            p = getattr(self, k)
            if p is not None and not Path(p).is_file():
                raise ValueError(f"security.{k} = {str(p)!r} is not a file")
        return self


class AuthSettings(BaseModel):
    """User authentication: anonymous, user name + password, or an X.509 user certificate."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["anonymous", "username", "certificate"] = "anonymous"
    username: str | None = None
    password: SecretRef = SecretRef()
    certificate: Path | None = None
    private_key: Path | None = None
    private_key_password: SecretRef = SecretRef()

    @model_validator(mode="after")
    def _complete(self):
        if self.method == "username" and not self.username:
            raise ValueError("auth.method = 'username' needs auth.username (and auth.password)")
        if self.method == "certificate":
            for k in ("certificate", "private_key"):
                p = getattr(self, k)
                if p is None:
                    raise ValueError(f"auth.method = 'certificate' needs auth.{k}")
                if not Path(p).is_file():
                    raise ValueError(f"auth.{k} = {str(p)!r} is not a file")
        return self


class AdvisorSettings(BaseModel):
    """Where the twin writes advice: the server's Advisor object (variables, or a method taking JSON)."""

    model_config = ConfigDict(extra="forbid")
    object_id: str = "nsu=urn:electrode-twin:simulated-line;s=Advisor"
    mode: Literal["variables", "method"] = "variables"
    method_name: str = "Advise"


class OpcUaSettings(BaseModel):
    """Connection to one OPC UA server (the ``[opcua]`` table of the twin's TOML configuration).

    Example::

        [opcua]
        endpoint = "opc.tcp://plc-line1.plant.local:4840"
        line = "line1"
        namespace_uri = "urn:plant:line1"
        publishing_ms = 100
        [opcua.stations]                       # nodes from node_id_template, one per name
        Mixer = ["w_am", "w_ca", "w_pb", "x_solids", "rho_slurry", "batch_id"]
        Coater = ["flow_rate", "web_speed", "coating_width"]
        Calender = ["line_load"]
        [[opcua.nodes]]                        # or one by one, with everything a node can have
        node_id = "ns=3;i=1234"
        station = "calender"
        name = "line_load"
        unit = "kN/m"
        deadband = 0.1
        [opcua.security]
        policy = "Basic256Sha256"
        mode = "SignAndEncrypt"
        certificate = "/etc/electrode-twin/opcua-client.der"
        private_key = "/etc/electrode-twin/opcua-client.pem"
        server_certificate = "/etc/electrode-twin/plc-line1.der"
        [opcua.auth]
        method = "username"
        username = "twin"
        password = { env = "TWIN_OPCUA_PASSWORD" }
    """

    model_config = ConfigDict(extra="forbid")
    endpoint: str = "opc.tcp://127.0.0.1:4840"
    line: str = "line1"
    namespace_uri: str = "urn:electrode-twin:simulated-line"
    node_id_template: str = "nsu={namespace_uri};s={object}.{name}"
    stations: dict[str, list[str]] = {}       # OPC UA object -> canonical names (nodes from the template)
    nodes: list[NodeSpec] = []
    sampling_ms: float = Field(0.0, ge=0)     # defaults for nodes from `stations`
    queue_size: int = Field(100, ge=1, le=100_000)
    publishing_ms: float = Field(100.0, gt=0)
    nodes_per_subscription: int = Field(200, ge=1, le=10_000)
    timeout_s: float = Field(4.0, gt=0)
    watchdog_s: float = Field(1.0, gt=0)
    session_timeout_s: float = Field(60.0, gt=0)
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    security: SecuritySettings = SecuritySettings()
    auth: AuthSettings = AuthSettings()
    advisor: AdvisorSettings = AdvisorSettings()

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v):
        if not v.startswith("opc.tcp://"):
            raise ValueError(f"endpoint {v!r} must start with opc.tcp://")
        return v

    @model_validator(mode="after")
    def _check(self):
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"reconnect_max_s = {self.reconnect_max_s} is below reconnect_min_s = "
                             f"{self.reconnect_min_s}")
        for obj, names in self.stations.items():
            for n in names:
                if not is_known_name(n):
                    from twin.scenario import quantity_hint

                    raise ValueError(f"stations.{obj}: {quantity_hint(n)}")
        specs = self.node_specs()
        seen: dict[str, str] = {}
        for s in specs:
            if s.node_id in seen:
                raise ValueError(f"node {s.node_id} is listed twice ({seen[s.node_id]} and {s.station}/{s.name})")
            seen[s.node_id] = f"{s.station}/{s.name}"
        return self

    def node_specs(self) -> list[NodeSpec]:
        """Every monitored node: ``stations`` expanded through ``node_id_template``, then ``nodes``."""
        out = []
        explicit = {n.node_id for n in self.nodes}
        for obj, names in self.stations.items():
            for n in names:
                nid = self.node_id_template.format(namespace_uri=self.namespace_uri, object=obj, name=n,
                                                   line=self.line)
                if nid not in explicit:
                    out.append(NodeSpec(node_id=nid, station=obj.lower(), name=n, sampling_ms=self.sampling_ms,
                                        queue_size=self.queue_size))
        return out + list(self.nodes)

    @classmethod
    def for_stations(cls, endpoint: str, stations: Mapping[str, Sequence[str]], **kw) -> "OpcUaSettings":
        """Settings for ``{station: [names]}`` with station in lower case (``coater``) or as object (``Coater``)."""
        objs = {OPCUA_OBJECTS.get(s, s): list(v) for s, v in stations.items()}
        return cls(endpoint=endpoint, stations=objs, **kw)


# ------------------------------------------------------------------------------------------- helpers -----

def status_name(code: Any) -> str:
    """Name of an OPC UA StatusCode (severity and sub-code; info bits dropped): ``Good``, ``BadTimeout`` ..."""
    from asyncua.ua import status_codes

    value = getattr(code, "value", code)
    if value is None:
        return "Good"
    value = int(value) & 0xFFFF0000
    if value == 0:
        return "Good"
    try:
        return status_codes.get_name_and_doc(value)[0]
    except Exception:
        return f"0x{value:08X}"


_OVERFLOW_BIT = 0x80        # InfoType DataValue: Overflow
_INFOTYPE_DATAVALUE = 0x400


def _epoch(dt: datetime | None) -> float | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    t = dt.timestamp()
    # OPC UA's "no timestamp" is 1601-01-01 (DateTime 0); asyncua may hand it over as a datetime
    return None if t <= -11_644_473_600 + 1 else t


@dataclass
class SourceStats:
    """Counters of an :class:`OpcUaSource`."""

    received: int = 0          # data changes turned into readings
    not_good: int = 0          # ... of which with a status other than Good
    errors: int = 0            # readings with an error (unmapped notification, connector failure)
    overflows: int = 0         # data changes flagged Overflow: the server's queue dropped older values
    connects: int = 0          # successful connections (with every subscription created)
    failed_attempts: int = 0   # connection attempts that failed
    lost: int = 0              # connections detected dead
    failed_nodes: dict[str, str] = field(default_factory=dict)   # node id -> why it could not be monitored


@dataclass
class _Item:
    spec: NodeSpec
    line: str
    node_id: Any = None      # resolved ua.NodeId
    unit: str | None = None  # unit used on readings


class _ConnectionLost(Exception):
    pass


# ---------------------------------------------------------------------------------------------- source ----

class OpcUaSource:
    """Subscribe to the nodes of ``settings`` and hand each data change to ``sink`` as a :class:`Reading`.

    Run it on an event loop (``await source.run()``, ended by ``await source.stop()`` or cancellation), or in
    its own thread (``source.start()`` / ``source.stop_thread()``). ``connected`` and ``subscribed`` are
    :class:`threading.Event` s; ``subscribed`` is set once every subscription of a connection exists.
    """

    def __init__(self, settings: OpcUaSettings, sink: Sink):
        self.settings = settings
        self._sink = sink
        self.specs = settings.node_specs()
        if not self.specs:
            raise ValueError("OPC UA: no nodes to monitor ([opcua] stations = ... or [[opcua.nodes]])")
        self.stats = SourceStats()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client = None                   # the current asyncua Client (None between connections)
        self._stopping = False
        self._lost: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task | None = None
        self.generation = 0                  # connection number; bumps on every successful (re)subscription

    # -- lifecycle --------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, subscribe, and keep doing so after every loss, until :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        delay = self.settings.reconnect_min_s
        while not self._stopping:
            self._lost = asyncio.Event()
            self._lost_reason = None
            consumers: list[asyncio.Task] = []
            client = None
            try:
                client = await self._new_client()
                self.client = client
                await asyncio.wait_for(client.connect(), self.settings.timeout_s * 3)
                self.connected.set()
                items = await self._resolve(client)
                consumers = await self._subscribe(client, items)
                self.stats.connects += 1
                self.generation += 1
                self.subscribed.set()
                log.info("OPC UA %s: %d nodes in %d subscriptions (connection %d)", self.settings.endpoint,
                         sum(1 for i in items if i.node_id is not None), len(consumers), self.generation)
                delay = self.settings.reconnect_min_s
                await self._watch(client, consumers)
            except asyncio.CancelledError:
                self._stopping = True
                raise
            except Exception as exc:
                if self._stopping:
                    break
                if self.subscribed.is_set():
                    self.stats.lost += 1
                    log.warning("OPC UA %s: connection lost (%s); reconnecting", self.settings.endpoint,
                                _describe(exc))
                else:
                    self.stats.failed_attempts += 1
                    log.warning("OPC UA %s: connection attempt failed (%s); next in %.1f s",
                                self.settings.endpoint, _describe(exc), delay)
            finally:
                self.connected.clear()
                self.subscribed.clear()
                for t in consumers:
                    t.cancel()
                if consumers:
                    await asyncio.gather(*consumers, return_exceptions=True)
                if client is not None:
                    await self._close(client)
                self.client = None
            if self._stopping:
                break
            await self._sleep(delay)
            delay = min(delay * 2, self.settings.reconnect_max_s)

    async def stop(self) -> None:
        """End :meth:`run` (from the loop it runs on)."""
        self._stopping = True
        if self._lost is not None:
            self._lost.set()

    def start(self, timeout: float | None = None) -> "OpcUaSource":
        """Run in a daemon thread with its own event loop. ``timeout``: wait that long for the first subscription."""
        if self._thread is not None:
            return self

        def main():
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._task = loop.create_task(self.run())
                loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
            finally:
                close_loop(loop)

        self._thread = threading.Thread(target=main, name="opcua-source", daemon=True)
        self._thread.start()
        if timeout is not None:
            self.subscribed.wait(timeout)
        return self

    def stop_thread(self, timeout: float = 15.0) -> None:
        """Stop the thread started by :meth:`start`."""
        if self._thread is None:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.stop()))
        self._thread.join(timeout)
        if self._thread.is_alive() and loop is not None and self._task is not None:
            loop.call_soon_threadsafe(self._task.cancel)
            self._thread.join(5)
        self._thread = None

    async def _sleep(self, delay: float) -> None:
        assert self._lost is not None
        self._lost.clear()
        try:
            await asyncio.wait_for(self._lost.wait(), delay)   # stop() interrupts the back-off
        except asyncio.TimeoutError:
            pass

    # -- one connection ---------------------------------------------------------------------------------
    async def _new_client(self):
        async def lost(exc):
            self._signal_lost(f"keep-alive failed: {_describe(exc)}")

        return await build_client(self.settings, lost)

    def _signal_lost(self, why: str) -> None:
        if self._lost is not None and not self._lost.is_set():
            log.info("OPC UA %s: %s", self.settings.endpoint, why)
            self._lost_reason = why
            self._lost.set()

    async def _resolve(self, client) -> list[_Item]:
        """Node ids (namespace URIs resolved) and units for this connection."""
        from asyncua import ua

        ns_cache: dict[str, int] = {}
        items = []
        for spec in self.specs:
            item = _Item(spec, spec.line or self.settings.line)
            try:
                nid = ua.NodeId.from_string(spec.node_id)
                uri = getattr(nid, "NamespaceUri", None)
                if uri:
                    if uri not in ns_cache:
                        ns_cache[uri] = await client.get_namespace_index(uri)
                    nid = ua.NodeId(nid.Identifier, ns_cache[uri], nid.NodeIdType)
                item.node_id = nid
            except Exception as exc:
                self._node_failed(spec, f"cannot resolve: {_describe(exc)}")
            items.append(item)
        await self._units(client, [i for i in items if i.node_id is not None and i.spec.unit is None])
        for i in items:
            if i.spec.unit is not None:
                i.unit = i.spec.unit
        return items

    async def _units(self, client, items: list[_Item]) -> None:
        """EngineeringUnits of nodes without a configured unit (one browse + one read per node, at connect)."""
        from asyncua import ua

        for item in items:
            try:
                prop = await client.get_node(item.node_id).get_child("0:EngineeringUnits")
                eu = await prop.read_value()
                if isinstance(eu, ua.EUInformation) and eu.DisplayName and eu.DisplayName.Text:
                    item.unit = eu.DisplayName.Text
            except ua.UaError:
                pass                       # no EngineeringUnits: canonical unit assumed
            except Exception as exc:
                if isinstance(exc, (ConnectionError, OSError, asyncio.TimeoutError)):
                    raise
                log.debug("OPC UA: EngineeringUnits of %s unreadable: %s", item.spec.node_id, exc)

    async def _subscribe(self, client, items: list[_Item]) -> list[asyncio.Task]:
        from asyncua import ua

        s = self.settings
        live = [i for i in items if i.node_id is not None]
        consumers = []
        for k in range(0, len(live), s.nodes_per_subscription):
            chunk = live[k:k + s.nodes_per_subscription]
            params = ua.CreateSubscriptionParameters()
            params.RequestedPublishingInterval = s.publishing_ms
            params.RequestedLifetimeCount = 10_000
            params.RequestedMaxKeepAliveCount = client.get_keepalive_count(s.publishing_ms)
            params.MaxNotificationsPerPublish = 0          # no limit
            params.PublishingEnabled = True
            params.Priority = 0
            sub = await client.create_subscription(params, None, queue_maxsize=0)  # iterator mode, unbounded
            handles: dict[int, _Item] = {}
            requests = []
            for j, item in enumerate(chunk):
                handle = k + j + 1
                handles[handle] = item
                requests.append(_monitored_item_request(item, handle))
            results = await sub.create_monitored_items(requests)
            for item, res in zip(chunk, results):
                if isinstance(res, ua.StatusCode):
                    self._node_failed(item.spec, status_name(res))
                else:
                    self.stats.failed_nodes.pop(item.spec.node_id, None)
            consumers.append(asyncio.create_task(self._consume(sub, handles), name=f"opcua-consume-{k}"))
        return consumers

    def _node_failed(self, spec: NodeSpec, why: str) -> None:
        if self.stats.failed_nodes.get(spec.node_id) != why:
            log.error("OPC UA %s: node %s (%s/%s) is not monitored: %s", self.settings.endpoint, spec.node_id,
                      spec.station, spec.name, why)
        self.stats.failed_nodes[spec.node_id] = why

    async def _watch(self, client, consumers: list[asyncio.Task]) -> None:
        """Return (by raising) when the connection is lost or :meth:`stop` is called."""
        assert self._lost is not None
        lost = asyncio.create_task(self._lost.wait())
        try:
            done, _ = await asyncio.wait([lost, *consumers], return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if self._stopping:
            return
        for t in consumers:
            if t in done and not t.cancelled() and t.exception() is not None:
                raise _ConnectionLost(f"subscription consumer failed: {_describe(t.exception())}")
        raise _ConnectionLost(self._lost_reason or "connection lost")

    _lost_reason: str | None = None

    async def _consume(self, sub, handles: dict[int, _Item]) -> None:
        """The only code between asyncua's queue and the sink: build readings, never block."""
        from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent

        async for ev in sub:
            if isinstance(ev, DataChangeEvent):
                self._deliver(ev, handles)
            elif isinstance(ev, StatusChangeEvent):
                status = ev.notification.Status
                if not status.is_good():
                    self._signal_lost(f"subscription status {status_name(status)}")

    def _deliver(self, ev, handles: dict[int, _Item]) -> None:
        now = time.time()
        try:
            mi = ev.data.monitored_item
            item = handles.get(mi.ClientHandle)
            dv = mi.Value
            if item is None:
                r = Reading("opcua", ev.node.nodeid.to_string(), self.settings.line, "", None, ev.value, None,
                            _epoch(dv.SourceTimestamp) if dv else None, _epoch(dv.ServerTimestamp) if dv else None,
                            now, status_name(dv.StatusCode if dv else None), repr(dv),
                            f"notification for unknown client handle {mi.ClientHandle}")
            else:
                code = dv.StatusCode
                raw = getattr(code, "value", 0) or 0
                if raw & _INFOTYPE_DATAVALUE and raw & _OVERFLOW_BIT:
                    self.stats.overflows += 1
                    log.warning("OPC UA: server queue overflow on %s: values were lost on the server; raise "
                                "queue_size (now %d) or lower publishing_ms", item.spec.node_id, item.spec.queue_size)
                status = status_name(code)
                value = ev.value
                r = Reading("opcua", item.spec.node_id, item.line, item.spec.station, item.spec.name, value,
                            item.unit, _epoch(dv.SourceTimestamp), _epoch(dv.ServerTimestamp), now, status,
                            None if status == "Good" else repr(value), None)
                if status != "Good":
                    self.stats.not_good += 1
        except Exception as exc:   # never let a malformed notification stop the consumer
            log.exception("OPC UA: building a reading failed")
            r = Reading("opcua", str(getattr(getattr(ev, "node", None), "nodeid", "?")), self.settings.line, "",
                        None, getattr(ev, "value", None), None, None, None, now, "Good", repr(ev),
                        f"connector error: {type(exc).__name__}: {exc}")
        self.stats.received += 1
        if r.error:
            self.stats.errors += 1
        try:
            self._sink(r)
        except Exception:
            log.exception("OPC UA: sink refused a reading from %s", r.address)

    async def _close(self, client) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), self.settings.timeout_s)
        except Exception:
            # a dead server: drop the socket and the client's tasks without a goodbye
            try:
                client.disconnect_socket()
            except Exception:
                pass
            for name in ("_supervisor_task", "_stale_watchdog_task", "_renew_channel_task"):
                t = getattr(client, name, None)
                if t is not None and not t.done():
                    t.cancel()


async def build_client(s: OpcUaSettings, on_lost=None):
    """A fresh asyncua Client for ``s``: timeouts, keep-alive probe, security policy and user authentication
    set, not yet connected. ``on_lost``: coroutine function called with the exception when the keep-alive
    probe fails."""
    from asyncua import Client, ua
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    c = Client(s.endpoint, timeout=s.timeout_s, watchdog_intervall=s.watchdog_s, auto_reconnect=False)
    c.session_timeout = int(s.session_timeout_s * 1000)
    c.name = c.description = "electrode-twin"
    c.application_uri = s.security.application_uri
    c.product_uri = "urn:electrode-twin"
    if s.security.policy == "Basic256Sha256":
        mode = getattr(ua.MessageSecurityMode, s.security.mode)
        await c.set_security(SecurityPolicyBasic256Sha256, certificate=str(s.security.certificate),
                             private_key=str(s.security.private_key),
                             private_key_password=s.security.private_key_password.resolve(
                                 "opcua.security.private_key_password"),
                             server_certificate=str(s.security.server_certificate)
                             if s.security.server_certificate else None, mode=mode)
    a = s.auth
    if a.method == "username":
        c.set_user(a.username)
        pw = a.password.resolve("opcua.auth.password")
        if pw is not None:
            c.set_password(pw)
    elif a.method == "certificate":
        await c.load_client_certificate(str(a.certificate))
        await c.load_private_key(str(a.private_key), a.private_key_password.resolve(
            "opcua.auth.private_key_password"))
    if on_lost is not None:
        c.connection_lost_callback = on_lost
    return c


def _monitored_item_request(item: _Item, handle: int):
    from asyncua import ua

    spec = item.spec
    rv = ua.ReadValueId()
    rv.NodeId = item.node_id
    rv.AttributeId = ua.AttributeIds.Value
    p = ua.MonitoringParameters()
    p.ClientHandle = handle
    p.SamplingInterval = spec.sampling_ms
    p.QueueSize = spec.queue_size
    p.DiscardOldest = True
    f = ua.DataChangeFilter()
    if spec.deadband > 0:
        f.Trigger = ua.DataChangeTrigger.StatusValue
        f.DeadbandType = ua.DeadbandType.Absolute if spec.deadband_type == "absolute" else ua.DeadbandType.Percent
        f.DeadbandValue = spec.deadband
    else:
        # every write, even of an unchanged value, is a measurement with its own timestamp
        f.Trigger = ua.DataChangeTrigger.StatusValueTimestamp
        f.DeadbandType = ua.DeadbandType.None_
        f.DeadbandValue = 0.0
    p.Filter = f
    mir = ua.MonitoredItemCreateRequest()
    mir.ItemToMonitor = rv
    mir.MonitoringMode = ua.MonitoringMode.Reporting
    mir.RequestedParameters = p
    return mir


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------- advisor ----

#: Fields of an advice the Advisor object may hold as variables (those it has are written; JSON always).
ADVICE_FIELDS = ("segment", "parameter", "setpoint", "unit", "p_out", "message")


class OpcUaAdvisor:
    """Write advice to the server's Advisor object, over its own connection (async).

    ``mode = "variables"``: every key of the advice that the Advisor has as a child variable is written
    (``segment``, ``parameter``, ``setpoint``, ``unit``, ``p_out``, ``message``), plus ``advice_json`` with the
    whole document if present. ``mode = "method"``: the Advisor's method (``Advise``) is called with the JSON
    text. Errors are raised to the caller (the advisor decides whether to retry); the connection is rebuilt
    on the next call after a failure.
    """

    def __init__(self, settings: OpcUaSettings):
        self.settings = settings
        self._client = None
        self._vars: dict[str, Any] = {}
        self._object = None
        self._lock = asyncio.Lock()

    async def _connect(self):
        from asyncua import ua

        c = await build_client(self.settings)
        await asyncio.wait_for(c.connect(), self.settings.timeout_s * 3)
        nid = ua.NodeId.from_string(self.settings.advisor.object_id)
        uri = getattr(nid, "NamespaceUri", None)
        if uri:
            nid = ua.NodeId(nid.Identifier, await c.get_namespace_index(uri), nid.NodeIdType)
        obj = c.get_node(nid)
        self._vars = {}
        for child in await obj.get_children():
            bn = await child.read_browse_name()
            self._vars[bn.Name] = child
        self._object, self._client = obj, c

    async def write(self, advice: Mapping[str, Any]) -> None:
        """Write one advice document (JSON-able mapping)."""
        import json

        from asyncua import ua

        async with self._lock:
            try:
                if self._client is None:
                    await self._connect()
                text = json.dumps(advice, allow_nan=False, default=str)
                if self.settings.advisor.mode == "method":
                    m = self._vars.get(self.settings.advisor.method_name)
                    if m is None:
                        raise LookupError(f"Advisor object {self.settings.advisor.object_id} has no method "
                                          f"{self.settings.advisor.method_name!r}")
                    await self._object.call_method(m, ua.Variant(text, ua.VariantType.String))
                    return
                written = 0
                for key, value in list(advice.items()) + [("advice_json", text)]:
                    node = self._vars.get(key)
                    if node is None or value is None:
                        continue
                    vtype = await node.read_data_type_as_variant_type()
                    await node.write_value(ua.DataValue(ua.Variant(_coerce(value, vtype), vtype),
                                                        SourceTimestamp=datetime.now(timezone.utc)))
                    written += 1
                if not written:
                    raise LookupError(f"Advisor object {self.settings.advisor.object_id} has none of the variables "
                                      f"{', '.join(advice)} or advice_json")
            except Exception:
                await self.close()
                raise

    async def close(self) -> None:
        c, self._client = self._client, None
        if c is not None:
            try:
                await asyncio.wait_for(c.disconnect(), self.settings.timeout_s)
            except Exception:
                pass


def _coerce(value: Any, vtype) -> Any:
    from asyncua import ua

    if vtype in (ua.VariantType.Double, ua.VariantType.Float):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"advice value {value!r} is not finite")
        return v
    if vtype in (ua.VariantType.Int16, ua.VariantType.Int32, ua.VariantType.Int64, ua.VariantType.UInt16,
                 ua.VariantType.UInt32, ua.VariantType.UInt64):
        return int(value)
    if vtype == ua.VariantType.String:
        return str(value)
    if vtype == ua.VariantType.Boolean:
        return bool(value)
    return value
