"""Floods and backlogs: held at the broker, never dropped silently, never a lost connection.

The readings come from the bench's raw-socket publisher (QoS 0, as fast as the
socket takes them), so the broker really builds a backlog for the daemon.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from sensorcast.bench.load import Collector, Fleet
from sensorcast.bench.wire import WireClient
from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.mqttio import status_topic
from sensorcast.sandbox import ServiceThread

from ..conftest import daemon_settings
from ..mqtt_helpers import Client, Mosquitto, wait_for

PREFIX = "fl"
T = load_bundle(DEFAULT_BUNDLE).meta.timesteps
"""Readings per full window of the shipped model (the daemon under test serves it)."""


@pytest.fixture
def outputs(broker: Mosquitto) -> Iterator[Collector]:
    """Counts every forecast (and watches the daemon's status) on a raw socket."""
    collector = Collector(WireClient(broker.host, broker.port, "forecast-counter"), "forecasts/")
    collector.start()
    yield collector
    collector.client.close()


def flood(broker: Mosquitto, sensors: int, per_sensor: int) -> int:
    """Publish sensors x per_sensor readings at once; return the windows they complete."""
    fleet = Fleet(sensors, PREFIX, ["value"])
    client = WireClient(broker.host, broker.port, "flooder")
    try:
        for k in range(0, sensors * per_sensor, 2000):
            client.send(fleet.packets(k, min(2000, sensors * per_sensor - k)))
        client.subscribe_now("sync/flooder")  # the broker has taken every reading
    finally:
        client.close()
    return sensors * (per_sensor - T + 1)


def settings_for(port: int, **sections: dict[str, object]):  # type: ignore[no-untyped-def]
    sections.setdefault("input", {})["topic"] = PREFIX + "/sensors/{sensor_id}/reading"
    return daemon_settings(port, **sections)


def finished(daemon: ServiceThread, windows: int) -> bool:
    m = daemon.service.metrics
    done = m.value("sensorcast_forecasts_total")
    return done + m.value("sensorcast_forecasts_dropped_total", reason="superseded") >= windows


@pytest.mark.parametrize("overload", ["backpressure", "coalesce"])
def test_a_flood_waits_at_the_broker_instead_of_being_dropped(
    broker, run_daemon, outputs, overload
):
    settings = settings_for(
        broker.port, inference={"max_pending": 100, "max_batch": 8, "overload": overload}
    )
    daemon = run_daemon(settings)
    windows = flood(broker, 200, 60)
    wait_for(lambda: finished(daemon, windows), timeout=60)
    m = daemon.service.metrics
    superseded = m.value("sensorcast_forecasts_dropped_total", reason="superseded")
    if overload == "backpressure":  # the default: every window forecast, reading was held
        assert superseded == 0
        wait_for(lambda: outputs.count == windows, timeout=20)
        daemon.service._housekeeping()
        assert m.value("sensorcast_input_held_seconds_total") > 0
    else:  # coalescing: the newest window of a sensor wins, the others are counted
        assert superseded > 0
        assert m.value("sensorcast_forecasts_total") == windows - superseded
    assert m.value("sensorcast_readings_total") == 200 * 60


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_the_connection_survives_a_backlog_longer_than_the_keepalive(
    broker, run_daemon, outputs, protocol
):
    # QoS 0 readings need no acknowledgement, so nothing but PINGREQs goes out on the
    # readings connection, and each PINGRESP waits at the broker behind the backlog. The
    # first model call takes 12 s (over twice the keepalive), so reading is held that
    # long with the backlog waiting unread; then the backlog drains.
    settings = settings_for(
        broker.port,
        mqtt={"keepalive": 5, "protocol": protocol},
        inference={"max_pending": 200, "max_batch": 8},
    )
    online = outputs.watch_status(status_topic(settings.mqtt.client_id))
    daemon = run_daemon(settings)
    runner = daemon.service.worker._served.forecaster.backend
    fast_predict = runner.predict
    calls: list[float] = []

    def slow_first(x: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(12)
        return fast_predict(x)

    runner.predict = slow_first  # type: ignore[method-assign]
    assert online.wait(5)
    windows = flood(broker, 100, 120)
    wait_for(lambda: outputs.count >= windows, timeout=90)
    m = daemon.service.metrics
    daemon.service._housekeeping()
    assert m.value("sensorcast_input_held_seconds_total") > 10  # held through the slow call
    assert m.value("sensorcast_broker_connects_total") == 1  # never reconnected
    assert outputs.onlines[status_topic(settings.mqtt.client_id)] == 1  # no will fired
    assert m.value("sensorcast_forecasts_total") == windows
    assert m.value("sensorcast_forecasts_dropped_total", reason="superseded") == 0


def test_a_backlog_queued_while_stopped_is_all_forecast_on_one_connection(
    broker, run_daemon, outputs
):
    settings = settings_for(broker.port, mqtt={"session_expiry": 600}, output={"qos": 0})
    daemon = run_daemon(settings)
    daemon.stop()
    # QoS 1 readings: the broker queues them for the stopped daemon's session
    fleet = Fleet(50, PREFIX, ["value"])
    pub = Client(broker.port)
    for k in range(50 * 40):
        sensor, round_ = k % 50, k // 50
        pub.publish(
            f"{PREFIX}/sensors/{fleet.ids[sensor]}/reading",
            {"value": fleet.value(sensor, round_), "ts": 1_700_000_000 + 60 * round_},
            qos=1,
        )
    pub.close()
    online = outputs.watch_status(status_topic(settings.mqtt.client_id))
    daemon = run_daemon(settings)
    windows = 50 * (40 - T + 1)
    wait_for(lambda: outputs.count >= windows, timeout=60)
    time.sleep(0.3)
    assert online.is_set()
    m = daemon.service.metrics
    assert m.value("sensorcast_readings_total") == 50 * 40
    assert m.value("sensorcast_forecasts_total") == outputs.count == windows
    assert m.value("sensorcast_broker_connects_total") == 1


def test_forecasts_at_qos_0(broker, run_daemon, client_factory):
    settings = settings_for(broker.port, output={"qos": 0})
    run_daemon(settings)
    sub = client_factory("forecasts/#", qos=1)
    windows = flood(broker, 5, T + 5)
    wait_for(lambda: len(sub.received("forecasts/")) == windows)
    assert all(qos == 0 for qos in sub.qos_of("forecasts/"))
