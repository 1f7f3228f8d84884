"""Home Assistant discovery through a real mosquitto: what a Home Assistant subscriber sees."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.mqttio import status_topic

from ..conftest import daemon_settings
from ..mqtt_helpers import wait_for
from .conftest import write_config

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


def test_sensors_a_reload_evicts_for_a_lower_cap_leave_home_assistant(
    tmp_path, broker, client_factory, daemon_proc
):
    """A lower `input.max_sensors` on reload evicted the least recently seen silently: no
    line said so and their entities stayed in Home Assistant."""

    def config(max_sensors: int) -> Path:
        return write_config(
            tmp_path / "c.toml", broker.port, DEFAULT_BUNDLE, "sc-cap",
            f"[input]\nmax_sensors = {max_sensors}\n[homeassistant]\ndiscovery = true\n",
        )  # fmt: skip

    ha = client_factory("homeassistant/sensor/#", status_topic("sc-cap"))
    daemon = daemon_proc(config(10))
    wait_for(lambda: ha.received(status_topic("sc-cap")), timeout=20)
    pub = client_factory()
    t = load_bundle(DEFAULT_BUNDLE).meta.timesteps
    for sid in ("a", "b", "c", "d"):
        feed(pub, sid, t)
    wait_for(lambda: len(ha.received("homeassistant/sensor/")) == 4, timeout=20)
    config(2)
    daemon.signal(signal.SIGHUP)
    for sid in ("a", "b"):
        assert wait_for(lambda sid=sid: daemon.logged(f"sensor {sid}: evicted"), timeout=10)
        topic = f"homeassistant/sensor/sensorcast/{sid}_forecast_value/config"
        assert wait_for(lambda topic=topic: [m for m in ha.received(topic) if m[1] == b""])
    assert not daemon.logged("sensor c: evicted") and not daemon.logged("sensor d: evicted")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_a_restart_with_a_bundle_lacking_a_target_removes_that_targets_entity(
    tmp_path, broker, client_factory, run_daemon
):
    """A reload to a bundle without a target removes the target's forecast entities; a
    restart did not (it knew nothing of them), and Home Assistant kept each, unavailable
    for good. With state.dir, the targets served are kept, and a sensor's entities of those
    its bundle lacks are removed at its first announcement."""
    from ..hostile_bundles import rewritten

    level = rewritten(tmp_path / "level", features=["level"], targets=["level"])

    def settings(path: Path):
        return daemon_settings(
            broker.port,
            model={"path": str(path)},
            homeassistant={"discovery": True},
            state={"dir": str(tmp_path / "state")},
        )

    t = load_bundle(DEFAULT_BUNDLE).meta.timesteps
    ha = client_factory("homeassistant/sensor/#")
    pub = client_factory()
    old = "homeassistant/sensor/sensorcast/s_forecast_value/config"
    new = "homeassistant/sensor/sensorcast/s_forecast_level/config"
    first = run_daemon(settings(DEFAULT_BUNDLE))
    feed(pub, "s", t)
    assert wait_for(lambda: ha.received(old), timeout=10)
    assert first.stop() == 0
    run_daemon(settings(level))
    for i in range(t):
        pub.publish("sensors/s/reading", {"level": 21 + i % 3, "ts": 1e9 + 60.0 * (t + i)})
    assert wait_for(lambda: ha.received(new), timeout=10)
    assert wait_for(lambda: [m for m in ha.received(old) if m[1] == b""], timeout=5)
    configs = retained_configs(client_factory, 1)
    assert new in configs and old not in configs
