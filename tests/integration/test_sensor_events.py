"""Sensor life events in the daemon's log: what a person watching `journalctl -f` learns."""

from __future__ import annotations

import logging

from ..conftest import daemon_settings
from ..mqtt_helpers import wait_for


def test_the_log_says_why_a_sensor_forecasts_or_stops(broker, client_factory, run_daemon, caplog):
    caplog.set_level(logging.INFO, "sensorcast.sensors")
    settings = daemon_settings(broker.port, input={"sensor_ttl": 1})
    daemon = run_daemon(settings)
    t = daemon.service.meta.timesteps
    sub = client_factory("forecasts/#")
    pub = client_factory()
    # readings sent by hand 0.2 s apart, then one 4 s later: the learned cadence makes it a gap
    for i in range(t):
        pub.publish("sensors/by-hand/reading", {"value": 20 + i % 2, "ts": 1e9 + 0.2 * i})
    wait_for(lambda: sub.received("forecasts/by-hand"))
    after_gap = 1e9 + 0.2 * (t - 1) + 4
    pub.publish("sensors/by-hand/reading", {"value": 20, "ts": after_gap})

    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "sensorcast.sensors"]

    reset = wait_for(lambda: [m for m in messages() if "window reset" in m])[0]
    assert reset == (
        "sensor by-hand: window reset: 4s since the last reading, more than 3 x its cadence "
        f"of 0.2s; forecasts resume after {t - 1} more readings"
    )
    # as many readings as the line says bring the next forecast, and not one fewer
    metrics = daemon.service.metrics
    for i in range(1, t - 1):
        pub.publish("sensors/by-hand/reading", {"value": 20 + i % 2, "ts": after_gap + 0.2 * i})
    wait_for(lambda: metrics.value("sensorcast_readings_total") == 2 * t - 1)
    assert metrics.value("sensorcast_forecasts_total") == 1
    pub.publish("sensors/by-hand/reading", {"value": 20, "ts": after_gap + 0.2 * (t - 1)})
    wait_for(lambda: len(sub.received("forecasts/by-hand")) == 2)

    wait_for(lambda: any("evicted" in m for m in messages()), timeout=10)
    lines = messages()
    assert lines[0] == "sensor by-hand: first reading"
    assert lines[1].startswith(f"sensor by-hand: window full ({t} readings), forecasting with ")
    assert lines[2] == reset
    assert lines[3] == lines[1]  # full again
    assert lines[4] == "sensor by-hand: evicted (not heard from for input.sensor_ttl)"
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "sensorcast.sensors")
