"""Home Assistant discovery through a real mosquitto: what a Home Assistant subscriber sees."""

from __future__ import annotations

import json
import time

from ..conftest import daemon_settings
from ..mqtt_helpers import wait_for

GATEWAY = "homeassistant/binary_sensor/sensorcast/sensorcast_gateway_sc-test/config"


def feed(pub, sensor_id: str, n: int, start: float = 1e9, cadence: float = 60.0) -> None:
    for i in range(n):
        pub.publish(
            f"sensors/{sensor_id}/reading", {"value": 21 + i % 3, "ts": start + cadence * i}
        )


def retained_configs(client_factory, expected: int) -> dict[str, dict]:
    """What Home Assistant finds when it (re)starts: the retained discovery configs."""
    late = client_factory("homeassistant/#")
    wait_for(lambda: len(late.received("homeassistant/")) >= expected, timeout=3)
    time.sleep(0.2)  # and nothing more arrives
    return {t: json.loads(p) for t, p, retained in late.received() if retained and p}


def test_the_gateway_is_announced_at_start_before_any_sensor_has_a_window(
    broker, client_factory, run_daemon
):
    """It used to wait for the first sensor's full window: until then Home Assistant had no
    sign of the daemon, not even its connectivity entity."""
    ha = client_factory("homeassistant/#")
    run_daemon(daemon_settings(broker.port, homeassistant={"discovery": True}))
    wait_for(lambda: ha.received(GATEWAY), timeout=5)
    configs = retained_configs(client_factory, 1)  # and kept for a Home Assistant to come
    assert set(configs) == {GATEWAY}
    assert configs[GATEWAY]["state_topic"] == "sensorcast/sc-test/status"


def test_sensors_whose_ids_differ_only_in_punctuation_get_separate_entities(
    broker, client_factory, run_daemon
):
    daemon = run_daemon(daemon_settings(broker.port, homeassistant={"discovery": True}))
    t = daemon.service.meta.timesteps
    ha = client_factory("homeassistant/#", "forecasts/#")
    pub = client_factory()
    feed(pub, "living-room.temp", t + 1)
    feed(pub, "living-room_temp", t + 1)
    wait_for(lambda: len(ha.received("forecasts/")) == 4)
    # the gateway, and a forecast and an anomaly entity each: once, not per forecast
    assert len(ha.received("homeassistant/")) == 5
    configs = retained_configs(client_factory, 5)
    assert set(configs) == {
        GATEWAY,
        "homeassistant/sensor/sensorcast/living-room_dtemp_forecast_value/config",
        "homeassistant/sensor/sensorcast/living-room__temp_forecast_value/config",
        "homeassistant/binary_sensor/sensorcast/living-room_dtemp_anomaly/config",
        "homeassistant/binary_sensor/sensorcast/living-room__temp_anomaly/config",
    }
    dotted = configs["homeassistant/sensor/sensorcast/living-room_dtemp_forecast_value/config"]
    assert dotted["state_topic"] == "forecasts/living-room.temp"
    assert dotted["device"]["name"] == "living-room.temp"
    assert dotted["device"]["via_device"] == configs[GATEWAY]["device"]["identifiers"][0]
    assert dotted["expire_after"] == 180  # 3 cadences of 60 s
    assert configs[GATEWAY]["state_topic"] == "sensorcast/sc-test/status"
    anomaly = configs["homeassistant/binary_sensor/sensorcast/living-room_dtemp_anomaly/config"]
    assert anomaly["state_topic"] == "anomalies/living-room.temp"
    forecast = json.loads(ha.received("forecasts/living-room.temp")[0][1])
    assert {"lower", "upper", "level", "source"} <= set(forecast)  # the attributes' sources


def test_an_evicted_sensor_leaves_home_assistant(broker, client_factory, run_daemon):
    settings = daemon_settings(
        broker.port, homeassistant={"discovery": True}, input={"max_sensors": 2}
    )
    daemon = run_daemon(settings)
    t = daemon.service.meta.timesteps
    ha = client_factory("homeassistant/#", "forecasts/#")
    pub = client_factory()
    feed(pub, "old", t)
    feed(pub, "new", t)
    wait_for(lambda: len(ha.received("homeassistant/sensor/")) == 2)
    pub.publish("sensors/third/reading", {"value": 1.0, "ts": 1e9})  # evicts "old"
    topic = "homeassistant/sensor/sensorcast/old_forecast_value/config"
    assert wait_for(lambda: [m for m in ha.received(topic) if m[1] == b""])
    configs = retained_configs(client_factory, 3)
    assert topic not in configs
    assert "homeassistant/binary_sensor/sensorcast/old_anomaly/config" not in configs
    assert "homeassistant/sensor/sensorcast/new_forecast_value/config" in configs
