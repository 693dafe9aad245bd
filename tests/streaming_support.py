"""Helpers for the streaming twin's tests: a throw-away PostgreSQL database, free ports, readings."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid

import pytest

PG_ADMIN = os.environ.get("TWIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def pg_database():
    """A uniquely named database on the local PostgreSQL server, dropped afterwards; its URL."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - the machine has the server
        pytest.skip(f"no PostgreSQL server at {PG_ADMIN}: {exc}")
    name = f"twin_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def reading(name="flow_rate", value=696.0, unit="cm3/h", station="coater", ts=None, line="line1",
            source="mqtt", received=None, **kw):
    from twin.readings import Reading

    now = time.time()
    ts = now - 1.0 if ts is None else ts
    return Reading(source=source, address=kw.pop("address", f"electrode/{line}/{station}/{name}"), line=line,
                   station=station, name=name, value=value, unit=unit, source_ts=ts,
                   server_ts=kw.pop("server_ts", None), received_ts=now if received is None else received, **kw)
