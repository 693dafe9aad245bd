"""OPC UA connector against real asyncua servers: in-process ones for behaviour, and a separate server process
(``tests/opcua_counter_server.py``) that is killed with SIGKILL and started again for the supervisor.

"Nothing lost" for OPC UA, as tested here (see connectors/opcua.py): after every (re)connection the supervisor
re-creates all monitored items; each delivers the value its node holds at that moment and then every later
write, so per node the stream of values observed from a server is gap-free from its first value to its last.
Values written while no subscription existed (the server was down, or the client had not reconnected yet) are
not observable and not counted as lost.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.opcua import NodeSpec, OpcUaSettings, OpcUaSource, status_name
from connectors.sinks import CollectingSink

pytestmark = pytest.mark.integration

COUNTER_SERVER = Path(__file__).with_name("opcua_counter_server.py")
NS = "urn:electrode-twin:test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _until(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def _server(port: int, n_vars: int = 3, security=None, users=None, certs=None):
    """An asyncua server with object Coater and variables v0..v{n-1} (EngineeringUnits m/min)."""
    from asyncua import Server, ua

    if users is not None:
        from asyncua.crypto.permission_rules import User, UserRole
        from asyncua.server.user_managers import UserManager

        class Users(UserManager):
            def get_user(self, iserver, username=None, password=None, certificate=None):
                if username is not None and users.get(username) == password:
                    return User(role=UserRole.User, name=username)
                return None

        srv = Server(user_manager=Users())
    else:
        srv = Server()
    await srv.init()
    srv.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    srv.set_security_policy(security or [ua.SecurityPolicyType.NoSecurity])
    if certs is not None:
        await srv.load_certificate(str(certs["server_cert"]))
        await srv.load_private_key(str(certs["server_key"]))
    if users is not None:
        srv.set_identity_tokens([ua.UserNameIdentityToken])
    idx = await srv.register_namespace(NS)
    obj = await srv.nodes.objects.add_object(ua.NodeId("Coater", idx), ua.QualifiedName("Coater", idx))
    nodes = []
    for i in range(n_vars):
        v = await obj.add_variable(ua.NodeId(f"Coater.v{i}", idx), ua.QualifiedName(f"v{i}", idx),
                                   ua.Variant(0.0, ua.VariantType.Double))
        await v.add_property(0, "EngineeringUnits", ua.EUInformation(DisplayName=ua.LocalizedText("m/min")))
        nodes.append(v.nodeid)
    return srv, nodes


async def _write(srv, nid, value, ts=None, status=None):
    from asyncua import ua

    ts = ts or datetime.now(timezone.utc)
    dv = ua.DataValue(ua.Variant(float(value), ua.VariantType.Double), SourceTimestamp=ts, ServerTimestamp=ts,
                      StatusCode=ua.StatusCode(status) if status is not None else ua.StatusCode(0))
    await srv.write_attribute_value(nid, dv)


def _specs(n, **kw):
    return [NodeSpec(node_id=f"nsu={NS};s=Coater.v{i}", station="coater", name="web_speed", **kw)
            for i in range(n)]


def _settings(port, nodes, **kw):
    kw.setdefault("publishing_ms", 20)
    kw.setdefault("watchdog_s", 0.5)
    kw.setdefault("reconnect_min_s", 0.2)
    kw.setdefault("reconnect_max_s", 2.0)
    return OpcUaSettings(endpoint=f"opc.tcp://127.0.0.1:{port}/", namespace_uri=NS, nodes=nodes, **kw)


def _by_address(readings):
    out: dict[str, list] = {}
    for r in readings:
        out.setdefault(r.address, []).append(r)
    return out


def _gap_free(values) -> bool:
    return list(values) == [float(v) for v in range(int(values[0]), int(values[0]) + len(values))]


# ------------------------------------------------------------------------------------------- settings ----

def test_settings_errors_name_the_entry():
    with pytest.raises(ValueError, match="node_id 'Coater.web_speed' is not an OPC UA node id"):
        NodeSpec(node_id="Coater.web_speed", station="coater", name="web_speed")
    with pytest.raises(ValueError, match="'web_sped' is not a canonical quantity; did you mean web_speed"):
        NodeSpec(node_id="ns=2;s=x", station="coater", name="web_sped")
    with pytest.raises(ValueError, match="must start with opc.tcp://"):
        OpcUaSettings(endpoint="http://plc:4840")
    with pytest.raises(ValueError, match="needs security.certificate"):
        OpcUaSettings(security={"policy": "Basic256Sha256"})
    with pytest.raises(ValueError, match="needs auth.username"):
        OpcUaSettings(auth={"method": "username"})
    dup = {"node_id": "ns=2;s=Coater.web_speed", "station": "coater", "name": "web_speed"}
    with pytest.raises(ValueError, match="node ns=2;s=Coater.web_speed is listed twice"):
        OpcUaSettings(nodes=[dup, {**dup, "name": "flow_rate"}])
    # an explicit node replaces the one the template would make for the same node id
    over = OpcUaSettings(stations={"Coater": ["web_speed"]},
                         nodes=[{"node_id": "nsu=urn:electrode-twin:simulated-line;s=Coater.web_speed",
                                 "station": "coater", "name": "web_speed", "deadband": 0.01}]).node_specs()
    assert len(over) == 1 and over[0].deadband == 0.01
    s = OpcUaSettings.for_stations("opc.tcp://h:4840", {"coater": ["web_speed"], "Mixer": ["batch_id"]})
    assert [n.node_id for n in s.node_specs()] == [
        "nsu=urn:electrode-twin:simulated-line;s=Coater.web_speed",
        "nsu=urn:electrode-twin:simulated-line;s=Mixer.batch_id"]
    assert status_name(0) == "Good" and status_name(0x80320000) == "BadWaitingForInitialData"


# ------------------------------------------------------------------------------------ in-process server ---

def test_values_units_timestamps_and_status_codes_are_kept():
    async def main():
        from asyncua import ua

        port = _free_port()
        srv, nodes = await _server(port, 3)
        async with srv:
            specs = _specs(2) + [NodeSpec(node_id=f"nsu={NS};s=Coater.v2", station="calender", name="line_load",
                                          unit="kN/m"),
                                 NodeSpec(node_id=f"nsu={NS};s=Coater.missing", station="coater",
                                          name="flow_rate")]
            sink = CollectingSink()
            src = OpcUaSource(_settings(port, specs), sink)
            task = asyncio.create_task(src.run())
            await _until(src.subscribed.is_set, 15, "subscription")
            t = datetime(2026, 11, 25, 15, 0, 0, 123000, tzinfo=timezone.utc)
            await _write(srv, nodes[0], 1.25, ts=t)
            await _write(srv, nodes[1], 7.0, status=ua.StatusCodes.BadSensorFailure)
            await _write(srv, nodes[2], 84.0)
            got = []
            await _until(lambda: (got.extend(sink.drain()) or True) and len(got) >= 6, 10, "6 readings")
            await src.stop()
            await task
            by = _by_address(got)
            r0 = by[f"nsu={NS};s=Coater.v0"][-1]
            assert (r0.source, r0.line, r0.station, r0.name, r0.value, r0.unit, r0.status) == \
                ("opcua", "line1", "coater", "web_speed", 1.25, "m/min", "Good")
            assert r0.source_ts == t.timestamp() and r0.server_ts == t.timestamp() and r0.error is None
            r1 = by[f"nsu={NS};s=Coater.v1"][-1]
            assert r1.status == "BadSensorFailure" and r1.error is None     # passed on; ingest dead-letters it
            r2 = by[f"nsu={NS};s=Coater.v2"][-1]
            assert (r2.name, r2.unit, r2.value) == ("line_load", "kN/m", 84.0)   # spec unit wins over EU
            assert "BadNodeIdUnknown" in src.stats.failed_nodes[f"nsu={NS};s=Coater.missing"]
            assert src.stats.not_good == 1

    asyncio.run(main())


def test_many_nodes_are_spread_over_subscriptions_and_every_write_is_delivered():
    async def main():
        port = _free_port()
        n, writes = 25, 30
        srv, nodes = await _server(port, n)
        async with srv:
            sink = CollectingSink()
            src = OpcUaSource(_settings(port, _specs(n, queue_size=50), nodes_per_subscription=7), sink)
            task = asyncio.create_task(src.run())
            await _until(src.subscribed.is_set, 15, "subscriptions")
            assert len([s for s in src.client._subscriptions if not s.is_deleted]) == 4     # 7 + 7 + 7 + 4
            for k in range(1, writes + 1):
                for nid in nodes:
                    await _write(srv, nid, k)
                await asyncio.sleep(0.005)
            got = []
            await _until(lambda: (got.extend(sink.drain()) or True) and len(got) >= n * (writes + 1), 20,
                         "every write")
            await src.stop()
            await task
            by = _by_address(got)
            assert len(by) == n
            for addr, rs in by.items():
                assert [r.value for r in rs] == [float(k) for k in range(writes + 1)], addr   # initial 0 + writes

    asyncio.run(main())


def test_writes_of_an_unchanged_value_are_readings_and_deadband_filters_small_changes():
    async def main():
        port = _free_port()
        srv, nodes = await _server(port, 2)
        async with srv:
            sink = CollectingSink()
            specs = [NodeSpec(node_id=f"nsu={NS};s=Coater.v0", station="coater", name="web_speed"),
                     NodeSpec(node_id=f"nsu={NS};s=Coater.v1", station="coater", name="flow_rate", deadband=1.0)]
            src = OpcUaSource(_settings(port, specs), sink)
            task = asyncio.create_task(src.run())
            await _until(src.subscribed.is_set, 15, "subscription")
            t0 = datetime.now(timezone.utc)
            for k in range(5):                                   # same value, new timestamps
                await _write(srv, nodes[0], 1.0, ts=t0 + timedelta(milliseconds=k))
            for k in range(1, 31):                               # 0.1 steps up to 3.0
                await _write(srv, nodes[1], k / 10)
            await asyncio.sleep(0.3)
            got = []
            await _until(lambda: (got.extend(sink.drain()) or True) and len(got) >= 6, 10, "readings")
            await asyncio.sleep(0.2)
            got.extend(sink.drain())
            await src.stop()
            await task
            by = _by_address(got)
            same = by[f"nsu={NS};s=Coater.v0"]
            assert [r.value for r in same] == [0.0] + [1.0] * 5
            assert len({r.source_ts for r in same[1:]}) == 5
            db = [r.value for r in by[f"nsu={NS};s=Coater.v1"]]
            assert db[0] == 0.0 and len(db) < 10
            assert all(abs(b - a) > 1.0 - 1e-9 for a, b in zip(db, db[1:]))

    asyncio.run(main())


# ---------------------------------------------------------------------- server killed and restarted ------

def _counter_server(port: int, start: int, count: int, rate: float, n_vars: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, str(COUNTER_SERVER), "--port", str(port), "--vars", str(n_vars),
                          "--start", str(start), "--count", str(count), "--rate", str(rate)],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("ready"):
        p.kill()
        raise RuntimeError(f"counter server did not start: {line!r}")
    return p


def test_server_killed_and_restarted_loses_nothing_after_reconnection():
    """SIGKILL the server mid-stream, start a new one on the same port: the supervisor rebuilds the client and
    every subscription; from each server, each node's values arrive without a gap, up to the last one."""
    async def main():
        port, n_vars, rate = _free_port(), 10, 50.0
        ns = "urn:electrode-twin:test-counters"
        nodes = [NodeSpec(node_id=f"nsu={ns};s=Counter.c{i}", station="coater", name="web_speed")
                 for i in range(n_vars)]
        first = _counter_server(port, 0, 100_000, rate, n_vars)
        second = None
        sink = CollectingSink()
        src = OpcUaSource(OpcUaSettings(endpoint=f"opc.tcp://127.0.0.1:{port}/", namespace_uri=ns, nodes=nodes,
                                        publishing_ms=50, nodes_per_subscription=4, watchdog_s=0.5,
                                        reconnect_min_s=0.2, reconnect_max_s=2.0), sink)
        task = asyncio.create_task(src.run())
        got = []
        try:
            await _until(lambda: (got.extend(sink.drain()) or True) and len(got) >= 400, 30, "first stream")
            first.kill()                                             # SIGKILL: no goodbye to the client
            first.wait()
            await _until(lambda: src.stats.lost >= 1, 15, "the supervisor to notice")
            await _until(lambda: src.stats.failed_attempts >= 1, 15, "a refused reconnection attempt")
            second = _counter_server(port, 1_000_000, 150, rate, n_vars)
            last = 1_000_000 + 150 - 1.0
            await _until(lambda: (got.extend(sink.drain()) or True) and
                         sum(1 for r in got if r.value == last) == n_vars, 60, "the second server's last values")
            assert src.generation == 2 and src.stats.connects == 2
        finally:
            await src.stop()
            await task
            for p in (first, second):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
        by = _by_address(got)
        assert len(by) == n_vars
        for addr, rs in by.items():
            one = [r.value for r in rs if r.value < 1_000_000]
            two = [r.value for r in rs if r.value >= 1_000_000]
            assert one and _gap_free(one), f"{addr}: gap before the kill"
            assert two and _gap_free(two) and two[-1] == last, f"{addr}: gap after the reconnection"
            assert all(r.status == "Good" and r.error is None for r in rs)

    asyncio.run(main())


# ------------------------------------------------------------------------------------------- security ----

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Self-signed application instance certificates for a server and a client (asyncua's generator)."""
    from asyncua.crypto.cert_gen import (
        dump_private_key_as_pem,
        generate_private_key,
        generate_self_signed_app_certificate,
    )
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    d = tmp_path_factory.mktemp("opcua-certs")
    out = {}
    for who, uri, use in (("server", "urn:electrode-twin:test-server", ExtendedKeyUsageOID.SERVER_AUTH),
                          ("client", "urn:electrode-twin:client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = generate_private_key()
        cert = generate_self_signed_app_certificate(
            key, f"electrode-twin test {who}", {"organizationName": "electrode-twin"},
            [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost"), x509.DNSName(socket.gethostname())],
            [use])
        (d / f"{who}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
        (d / f"{who}.pem").write_bytes(dump_private_key_as_pem(key))
        out[f"{who}_cert"], out[f"{who}_key"] = d / f"{who}.der", d / f"{who}.pem"
    return out


@pytest.mark.parametrize("mode", ["SignAndEncrypt", "Sign"])
def test_basic256sha256_with_username_from_config(certs, monkeypatch, mode):
    async def main():
        from asyncua import ua

        port = _free_port()
        policy = getattr(ua.SecurityPolicyType, f"Basic256Sha256_{mode}")
        srv, nodes = await _server(port, 1, security=[policy], users={"twin": "s3cret"}, certs=certs)
        monkeypatch.setenv("TWIN_TEST_OPCUA_PW", "s3cret")
        security = {"policy": "Basic256Sha256", "mode": mode, "certificate": certs["client_cert"],
                    "private_key": certs["client_key"], "server_certificate": certs["server_cert"]}
        async with srv:
            sink = CollectingSink()
            good = OpcUaSource(_settings(port, _specs(1), security=security,
                                         auth={"method": "username", "username": "twin",
                                               "password": {"env": "TWIN_TEST_OPCUA_PW"}}), sink)
            task = asyncio.create_task(good.run())
            await _until(good.subscribed.is_set, 30, "secured subscription")
            assert good.client.security_policy.URI.endswith("#Basic256Sha256")
            assert good.client.security_policy.Mode == getattr(ua.MessageSecurityMode, mode)
            await _write(srv, nodes[0], 3.5)
            got = []
            await _until(lambda: (got.extend(sink.drain()) or True) and any(r.value == 3.5 for r in got), 10,
                         "a value over the encrypted channel")
            await good.stop()
            await task

            bad = OpcUaSource(_settings(port, _specs(1), security=security,
                                        auth={"method": "username", "username": "twin", "password": "wrong"}),
                              CollectingSink())
            task = asyncio.create_task(bad.run())
            await _until(lambda: bad.stats.failed_attempts >= 2, 30, "refused attempts")
            assert not bad.subscribed.is_set()
            await bad.stop()
            await task

            plain = OpcUaSource(_settings(port, _specs(1)), CollectingSink())    # no security: no endpoint
            task = asyncio.create_task(plain.run())
            await _until(lambda: plain.stats.failed_attempts >= 1, 30, "refused unsecured attempt")
            assert not plain.subscribed.is_set()
            await plain.stop()
            await task

    asyncio.run(main())
