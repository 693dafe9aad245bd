"""End to end over OPC UA: the simulated line's asyncua server is killed (SIGKILL) mid-stream and comes back on
the same port; the twin's OPC UA source reconnects and resubscribes, and everything the twin received before
and after is stored exactly once, with nothing of the second server's values lost."""

from __future__ import annotations

import time

import pytest
from streaming_support import free_port

pytestmark = pytest.mark.integration

pytest.importorskip("connectors.opcua")
from connectors.opcua import OpcUaSettings  # noqa: E402

from twin.cli.demo import LineSide, demo_settings  # noqa: E402
from twin.cli.runner import Runner  # noqa: E402


def _wait(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_opcua_server_killed_and_back_loses_nothing(tmp_path):
    port = free_port()
    settings = demo_settings(str(tmp_path / "opcua.sqlite"), 0, samples=2000)
    settings = settings.model_copy(update={"web": settings.web.model_copy(update={"enabled": False})})
    line_cfg = settings.line.model_dump()
    first = LineSide(line_cfg, seed=1, steps=[], opcua_port=port)
    second = None
    runner = Runner(settings, web=False, cell=None)
    try:
        runner.add_opcua(OpcUaSettings.model_validate({**first.info["opcua"], "publishing_ms": 50.0}))
        runner.start()
        src = runner.opcua
        assert src.subscribed.wait(20)
        first.release()
        twin = runner.twin
        _wait(lambda: twin.ingestor.stats.received >= 60, 30, "values from the first server")
        first.kill(hard=True)                                  # SIGKILL: the server vanishes
        _wait(lambda: not src.connected.is_set(), 30, "the source to notice the lost server")
        assert twin.drain(30)
        before = twin.ingestor.stats.received
        assert twin.ingestor.stats.stored + twin.ingestor.stats.duplicates + twin.ingestor.stats.dead_lettered \
            == before
        stored_before = twin.store.counts()["measurements"]
        connects_before = src.stats.connects
        time.sleep(1.5)                                        # the twin retries against a closed port
        second = LineSide(line_cfg, seed=2, steps=[], opcua_port=port)
        _wait(lambda: src.subscribed.is_set() and src.stats.connects > connects_before, 60,
              "reconnection and resubscription")
        second.release()
        time.sleep(6.0)
        result = second.stop_line()                            # stop ticking, keep serving
        published = sum(n for k, n in result["published"].items() if k.startswith("opcua/"))
        assert published > 20
        _wait(lambda: twin.ingestor.stats.received - before >= published, 30, "every value of the second server")
        assert twin.drain(30)
        st = twin.ingestor.stats
        after = st.received - before
        assert after == published                              # nothing of the second server lost
        assert st.received == st.stored + st.duplicates + st.dead_lettered
        assert twin.store.counts()["measurements"] == st.stored > stored_before
        assert st.dead_lettered == 0
        # tracking continued across the outage: the web speed of both servers is in the store
        rows = twin.store._query("SELECT COUNT(*) AS n FROM measurements WHERE name = 'web_speed'")
        assert rows[0]["n"] >= 10
        assert src.stats.lost >= 1
    finally:
        runner.stop()
        runner.close()
        first.close()
        if second is not None:
            second.close()
