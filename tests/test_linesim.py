"""The SIMULATED line: its physics (pure, on given times) and its servers (asyncua server, MQTT over the embedded
amqtt broker, the demo's path), read back through the twin's own connectors."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest

from connectors.linesim import STATION_VALUES, LineModel, LineSimulator, SimSettings

T0 = 1_795_600_000.0
LINE = {"id": "line1", "positions": {"coater": 0.0, "gauges": 0.05, "dryer": 0.3, "calender": 0.5},
        "feed_dead_time_s": 20.0, "segment_length_m": 0.05}      # the demo's [line] table (extra key ignored)


def _quiet(**kw) -> SimSettings:
    """No process variation, no sensor noise, no drift: values are the chain's, exactly."""
    base = dict(line=LINE, process_variation=0.0, sensor_rel_std={"default": 0.0}, drift={}, batch_period_s=0)
    return SimSettings(**{**base, **kw})


def _run(model: LineModel, seconds: float, period: float = 0.5):
    out = []
    k = 0
    while k * period <= seconds:
        out += model.advance(T0 + k * period)
        k += 1
    return out


def _series(ms, station, name):
    return [(m.ts - T0, m.value) for m in ms if (m.station, m.name) == (station, name)]


def test_gauges_report_the_chain_model_of_the_web_under_them(paper_scenario):
    from twin.montecarlo import chain_for

    model = LineModel(_quiet(), start_ts=T0)
    ms = _run(model, 40)
    form = model.batches[0][2]
    expected = chain_for(paper_scenario).evaluate({**paper_scenario.nominal(), **form})
    for station, name in (("gauges", "m_wet"), ("gauges", "h_wet"), ("dryer", "m_dry"), ("dryer", "h_dry"),
                          ("calender", "h_cal")):
        values = [v for _, v in _series(ms, station, name)]
        assert values, f"{station}/{name} never measured"
        assert values == pytest.approx([float(expected[name])] * len(values), rel=1e-12)
    rho = [v for _, v in _series(ms, "mixer", "rho_slurry")]
    assert rho == pytest.approx([float(expected["rho_slurry"])])


def test_a_station_measures_only_once_the_web_has_reached_it():
    model = LineModel(_quiet(), start_ts=T0)          # web speed 1 m/min: 0.05 m in 3 s, 0.3 m in 18 s
    ms = _run(model, 40)
    assert _series(ms, "gauges", "m_wet")[0][0] == pytest.approx(3.0)
    assert _series(ms, "dryer", "m_dry")[0][0] == pytest.approx(18.0)
    assert _series(ms, "calender", "h_cal")[0][0] == pytest.approx(30.0)
    assert _series(ms, "coater", "web_speed")[0][0] == 0.0 and _series(ms, "calender", "line_load")[0][0] == 0.0


def test_a_flow_step_reaches_the_dryer_gauge_one_transit_time_later():
    model = LineModel(_quiet(steps=[{"name": "flow_rate", "at_s": 20.0, "factor": 1.1}]), start_ts=T0)
    ms = _run(model, 60)
    flow = dict(_series(ms, "coater", "flow_rate"))
    assert flow[19.5] == pytest.approx(696.0) and flow[20.0] == pytest.approx(696.0 * 1.1)
    m_dry = _series(ms, "dryer", "m_dry")
    before = [v for t, v in m_dry if t < 38.0]
    after = [v for t, v in m_dry if t >= 38.0]           # 20 s + 0.3 m / (1 m/min) = 38 s
    assert len(set(round(v, 9) for v in before)) == 1 and len(set(round(v, 9) for v in after)) == 1
    assert after[0] / before[0] == pytest.approx(1.1, rel=1e-9)    # m_dry is proportional to the flow


def test_a_slurry_batch_reaches_the_web_after_the_feed_dead_time():
    settings = _quiet(batch_period_s=30.0, sensor_rel_std={"default": 0.0})
    model = LineModel(settings, start_ts=T0)
    ms = _run(model, 70)
    batches = [(m.ts - T0, m.value) for m in ms if m.name == "batch_id"]
    assert batches == [(-20.0, "B0001"), (30.0, "B0002"), (60.0, "B0003")]
    mixer_ts = {m.ts - T0 for m in ms if m.station == "mixer"}
    assert mixer_ts == {-20.0, 30.0, 60.0}                # every mixer value carries its batch's release time
    assert model.batch_at_die(T0 + 49.9)[0] == "B0001" and model.batch_at_die(T0 + 50.0)[0] == "B0002"
    b1, b2 = model.batches[0][2], model.batches[1][2]
    m_wet = _series(ms, "gauges", "m_wet")
    # web coated from batch 2 passes the die at 30 + 20 s and the wet gauge (0.05 m) 3 s later
    first_b2 = [v for t, v in m_wet if t >= 53.0][0]
    last_b1 = [v for t, v in m_wet if t < 53.0][-1]
    from twin.montecarlo import chain_for

    chain = chain_for(model.scenario)
    assert last_b1 == pytest.approx(float(chain.evaluate({**model.nominal, **b1})["m_wet"]))
    assert first_b2 == pytest.approx(float(chain.evaluate({**model.nominal, **b2})["m_wet"]))


def test_a_heating_calender_drifts_the_calendered_thickness_down():
    heating = {"gamma_c_intercept": {"kind": "exponential", "delta": -12.0, "tau": 60.0}}
    model = LineModel(_quiet(drift=heating), start_ts=T0)
    h_cal = [v for _, v in _series(_run(model, 300, period=1.0), "calender", "h_cal")]
    assert h_cal[0] > h_cal[-1] and all(b <= a + 1e-12 for a, b in zip(h_cal, h_cal[1:]))


def test_noise_and_variation_are_seeded_and_stay_physical():
    a = _run(LineModel(SimSettings(line=LINE, seed=3), start_ts=T0), 30)
    b = _run(LineModel(SimSettings(line=LINE, seed=3), start_ts=T0), 30)
    assert [m.value for m in a] == [m.value for m in b]
    speeds = [v for _, v in _series(a, "coater", "web_speed")]
    assert len(set(speeds)) > 1 and all(0.9 < v < 1.1 for v in speeds)


def test_bad_settings_and_time_going_backwards_are_refused_with_the_entry_named():
    with pytest.raises(ValueError, match="'flow_rat' is not a canonical quantity"):
        SimSettings(steps=[{"name": "flow_rat", "at_s": 1, "delta": 1}])
    with pytest.raises(ValueError, match="the simulated dryer does not measure 'h_cal'"):
        SimSettings(mqtt_values={"dryer": ["h_cal"]})
    with pytest.raises(ValueError, match="exactly one of delta, factor"):
        SimSettings(steps=[{"name": "line_load", "at_s": 1}])
    model = LineModel(_quiet(), start_ts=T0)
    model.advance(T0 + 1)
    with pytest.raises(ValueError, match="time must advance"):
        model.advance(T0 + 0.5)
    with pytest.raises(ValueError, match="line_load = -5 N/mm is outside its physical range"):
        model.apply_setpoint("line_load", -5.0)


# ------------------------------------------------------------------------------------------- servers ----

@pytest.mark.integration
def test_simulated_line_on_opcua_and_embedded_mqtt_is_read_back_exactly_once_per_transport():
    """The demo's path: amqtt broker (MQTT 3.1.1) + the simulator's asyncua server, read by the twin's
    connectors; every value the simulator emitted for a transport's split arrives once on that transport."""
    from connectors.broker import EmbeddedBroker
    from connectors.mqtt import MqttSettings, MqttSource
    from connectors.opcua import OpcUaSource
    from connectors.sinks import CollectingSink

    with EmbeddedBroker() as broker:
        ms = MqttSettings(port=broker.port, protocol="3.1.1", username="twin", client_id="test-linesim",
                          lines=["line1"])
        sink = CollectingSink()
        msrc = MqttSource(ms, sink).start()
        assert msrc.wait_subscribed(10)
        sim = LineSimulator(SimSettings(line=LINE, period_s=0.1, batch_period_s=2.0, seed=1),
                            mqtt=ms.model_copy(update={"client_id": "sim"}))
        sim.start_thread(hold=True)
        osrc = OpcUaSource(sim.opcua_settings(publishing_ms=20), sink).start(timeout=20)
        got = []
        try:
            assert osrc.subscribed.is_set()
            sim.release()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and sim.ticks < 60:   # 6 s of line: gauges reached at 3 s
                time.sleep(0.05)
            assert sim.pause(10)                                   # line stands, servers keep serving
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(got) < sum(sim.published.values()):
                got += sink.drain()
                time.sleep(0.05)
            time.sleep(0.2)                                        # anything beyond would be a duplicate
        finally:
            osrc.stop_thread()
            msrc.stop()
            sim.stop_thread()
        got += sink.drain()
        assert all(r.error is None and r.status == "Good" for r in got), [r for r in got if r.error][:3]
        seen = Counter((r.source, r.station, r.name) for r in got)
        assert sim.published and seen == sim.published
        assert seen[("mqtt", "gauges", "m_wet")] > 0 and seen[("opcua", "mixer", "batch_id")] >= 2
        keys = Counter((r.source, r.station, r.name, r.source_ts) for r in got)
        assert max(keys.values()) == 1                           # no duplicates either
        units = {(r.station, r.name): r.unit for r in got}
        assert units[("coater", "web_speed")] == "m/min" and units[("gauges", "m_wet")] == "mg/cm2"
        mq = next(r for r in got if r.source == "mqtt")
        assert json.loads(mq.payload)["simulated"] is True


@pytest.mark.integration
def test_server_says_it_is_simulated_exposes_every_station_and_takes_advice():
    async def main():
        from asyncua import Client, ua

        from connectors.opcua import OpcUaAdvisor

        sim = LineSimulator(SimSettings(line=LINE, apply_advice=True))
        await sim.start()
        try:
            async with Client(sim.endpoint) as c:
                endpoints = await c.get_endpoints()
                assert all("SIMULATED" in e.Server.ApplicationName.Text for e in endpoints)
                idx = await c.get_namespace_index("urn:electrode-twin:simulated-line")
                for station, names in STATION_VALUES.items():
                    obj = await c.nodes.objects.get_child(f"{idx}:{station.capitalize()}")
                    desc = await obj.read_description()
                    assert desc.Text.startswith("SIMULATED")
                    for n in names:
                        var = await obj.get_child(f"{idx}:{n}")
                        if n != "batch_id":
                            eu = await (await var.get_child("0:EngineeringUnits")).read_value()
                            from models.quantities import QUANTITIES

                            assert eu.DisplayName.Text == QUANTITIES[n].unit
                web = await c.get_node(ua.NodeId("Coater.web_speed", idx)).read_data_value()
                assert web.StatusCode.is_good() and 0.9 < web.Value.Value < 1.1
                gauge = await c.get_node(ua.NodeId("Dryer.m_dry", idx)).read_data_value(raise_on_bad_status=False)
                assert gauge.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData   # no web there yet
            adv = OpcUaAdvisor(sim.opcua_settings())
            await adv.write({"segment": 41, "parameter": "line_load", "setpoint": 90.0, "unit": "N/mm",
                             "p_out": 0.31, "message": "raise the line load to 90 N/mm"})
            await adv.close()
            method = OpcUaAdvisor(sim.opcua_settings(advisor={"mode": "method"}))
            await method.write({"segment": 42, "parameter": "flow_rate", "setpoint": 700.0})
            await method.close()
            for _ in range(100):
                if len(sim.advice) >= 2:
                    break
                await asyncio.sleep(0.05)
            assert sorted(a["segment"] for a in sim.advice) == [41, 42]      # variables and method
            assert sim.model.setpoints["line_load"] == 90.0 and sim.model.setpoints["flow_rate"] == 700.0
        finally:
            await sim.stop()

    asyncio.run(main())


@pytest.mark.integration
def test_twin_simulate_runs_the_simulated_line_standalone_and_says_so():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "twin.cli", "simulate", "--opcua-port", "0", "--no-mqtt",
                          "--duration", "1.5", "--seed", "4", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["simulated"] is True and doc["ticks"] >= 2 and doc["batches"] == ["B0001"]
    assert doc["published"]["opcua/coater/web_speed"] == doc["ticks"]
    assert "SIMULATED" in out.stderr
    bad = subprocess.run([sys.executable, "-m", "twin.cli", "simulate", "--mqtt", "nohost"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--mqtt 'nohost' is not HOST:PORT" in bad.stderr


@pytest.mark.integration
def test_pause_stops_the_line_but_keeps_serving_until_resumed():
    from connectors.opcua import OpcUaSource
    from connectors.sinks import CollectingSink

    sim = LineSimulator(SimSettings(line=LINE, period_s=0.05)).start_thread()
    src = None
    try:
        deadline = time.monotonic() + 20
        while sim.ticks < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sim.pause(10)
        ticks = sim.ticks
        sink = CollectingSink()
        src = OpcUaSource(sim.opcua_settings(publishing_ms=20), sink).start(timeout=20)
        assert src.subscribed.is_set()                          # the server still serves while paused
        time.sleep(0.3)                                         # six periods
        assert sim.ticks == ticks
        held = [r for r in sink.drain() if r.name == "web_speed"]
        assert len(held) == 1                                   # the value it holds, nothing new
        sim.resume()
        deadline = time.monotonic() + 20
        while sim.ticks < ticks + 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sim.ticks >= ticks + 3
    finally:
        if src is not None:
            src.stop_thread()
        sim.stop_thread()
