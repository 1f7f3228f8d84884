"""Home Assistant discovery payloads, checked against the schema its documentation gives.

The schema below is transcribed from Home Assistant's MQTT documentation (integrations
`mqtt` (discovery topic, device, origin, availability), `sensor.mqtt` and
`binary_sensor.mqtt`); templates are rendered with Jinja's immutable sandbox, the
environment Home Assistant renders them in, against real forecast payloads.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import numpy as np
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sensorcast.buffer import SensorTable, Window
from sensorcast.config import SENSOR_DEVICE_CLASSES, EntityRule, config_warnings, load_settings
from sensorcast.discovery import (
    HomeAssistantDiscovery,
    anomaly_binary_sensors,
    escape,
    presentation_lookup,
)
from sensorcast.errors import ConfigError
from sensorcast.forecasts import ForecastEncoder
from sensorcast.topics import SENSOR_ID_RE, TopicTemplate

from .test_forecasts import make_meta

TOPIC_LEVEL = re.compile(r"^[a-zA-Z0-9_-]+$")
_str, _int = (str,), (int,)

DEVICE = {
    "identifiers": list,
    "connections": list,
    "name": _str,
    "manufacturer": _str,
    "model": _str,
    "model_id": _str,
    "hw_version": _str,
    "sw_version": _str,
    "serial_number": _str,
    "suggested_area": _str,
    "configuration_url": _str,
    "via_device": _str,
}
ORIGIN = {"name": _str, "sw_version": _str, "support_url": _str}
COMMON = {
    "name": (str, type(None)),
    "unique_id": _str,
    "state_topic": _str,
    "value_template": _str,
    "json_attributes_topic": _str,
    "json_attributes_template": _str,
    "availability_topic": _str,
    "payload_available": _str,
    "payload_not_available": _str,
    "device_class": _str,
    "expire_after": _int,
    "entity_category": _str,
    "device": dict,
    "origin": dict,
    "qos": _int,
    "enabled_by_default": (bool,),
}
SENSOR = {
    **COMMON,
    "unit_of_measurement": _str,
    "state_class": _str,
    "suggested_display_precision": _int,
    "force_update": (bool,),
}
BINARY_SENSOR = {**COMMON, "payload_on": _str, "payload_off": _str, "off_delay": _int}
STATE_CLASSES = {"measurement", "total", "total_increasing", "measurement_angle"}
BINARY_DEVICE_CLASSES = {"connectivity", "problem"}  # the ones sensorcast may use


def check_keys(doc: dict[str, Any], schema: dict[str, Any], where: str) -> None:
    for key, value in doc.items():
        assert key in schema, f"{where}: {key!r} is not a documented option"
        assert isinstance(value, schema[key]), f"{where}: {key} = {value!r}"


def check_config(topic: str, payload: bytes, prefix: str = "homeassistant") -> dict[str, Any]:
    """One discovery message, as the documentation describes it; returns the config."""
    levels = topic.split("/")
    assert levels[0] == prefix and levels[-1] == "config" and len(levels) in (4, 5), topic
    component = levels[1]
    assert all(TOPIC_LEVEL.match(level) for level in levels[2:-1]), topic
    config = json.loads(payload)
    schema = {"sensor": SENSOR, "binary_sensor": BINARY_SENSOR}[component]
    check_keys(config, schema, topic)
    assert "state_topic" in config and "#" not in config["state_topic"]
    assert "+" not in config["state_topic"]
    assert config["unique_id"]
    check_keys(config["device"], DEVICE, f"{topic} device")
    assert config["device"]["identifiers"], "a device needs identifiers"
    check_keys(config["origin"], ORIGIN, f"{topic} origin")
    assert config["origin"]["name"] == "sensorcast"
    for key in ("expire_after", "off_delay", "suggested_display_precision"):
        if key in config:
            assert config[key] >= (0 if key == "suggested_display_precision" else 1)
    if component == "sensor":
        assert config.get("state_class", "measurement") in STATE_CLASSES
        assert config.get("device_class", "temperature") in SENSOR_DEVICE_CLASSES
    else:
        assert config.get("device_class", "problem") in BINARY_DEVICE_CLASSES
    return config


class Published:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []

    def __call__(self, topic: str, payload: bytes, retain: bool) -> bool:
        self.messages.append((topic, payload, retain))
        return True

    def take(self) -> list[tuple[str, bytes, bool]]:
        taken, self.messages = self.messages, []
        return taken


def discovery(
    client_id: str = "sensorcast-gw1", targets: list[str] | None = None, **kw: Any
) -> tuple[HomeAssistantDiscovery, Published]:
    published = Published()
    meta = make_meta(targets=targets, features=targets)
    d = HomeAssistantDiscovery(
        "homeassistant",
        "sensorcast",
        client_id,
        f"sensorcast/{client_id}/status",
        TopicTemplate("forecasts/{sensor_id}", allow_wildcards=False),
        meta,
        published,
        **kw,
    )
    return d, published


def unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "_":
            out.append({"_": "_", "d": ".", "c": ":"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def test_escaping_is_one_to_one_so_ids_that_differ_only_in_punctuation_never_collide():
    d, _ = discovery()
    a = d.messages("living-room.temp", 60.0)
    b = d.messages("living-room_temp", 60.0)
    assert {t for t, _ in a}.isdisjoint({t for t, _ in b})
    ids = [json.loads(p)["unique_id"] for _, p in a + b]
    assert len(set(ids)) == len(ids)
    rng = random.Random(0)
    alphabet = "ab_.:-1"
    samples = {"".join(rng.choices(alphabet, k=rng.randint(1, 8))) for _ in range(20000)}
    assert all(SENSOR_ID_RE.fullmatch(s) for s in samples)
    escaped = {escape(s) for s in samples}
    assert len(escaped) == len(samples)  # no two ids share an escaped form
    assert all(unescape(escape(s)) == s for s in samples)
    assert all(TOPIC_LEVEL.match(e) for e in escaped)


def test_ids_and_topics_do_not_depend_on_the_host_name():
    host_a, _ = discovery("sensorcast-host-a")
    host_b, _ = discovery("sensorcast-host-b")
    for (ta, pa), (tb, pb) in zip(
        host_a.messages("boiler-3", 60.0), host_b.messages("boiler-3", 60.0), strict=True
    ):
        assert ta == tb
        assert json.loads(pa)["unique_id"] == json.loads(pb)["unique_id"]
        assert json.loads(pa)["device"]["identifiers"] == json.loads(pb)["device"]["identifiers"]


def test_every_payload_follows_the_documented_schema():
    d, published = discovery(
        anomaly_topic=TopicTemplate("anomalies/{sensor_id}", allow_wildcards=False),
        presentation=presentation_lookup(
            [EntityRule(sensors="boiler-*", unit="°C", device_class="temperature", precision=1)]
        ),
    )
    d.announce("boiler-3", 60.0)
    messages = published.take()
    assert all(retain for _, _, retain in messages)
    configs = {t: check_config(t, p) for t, p, _ in messages}
    gateway = configs[
        "homeassistant/binary_sensor/sensorcast/sensorcast_gateway_sensorcast-gw1/config"
    ]
    forecast = configs["homeassistant/sensor/sensorcast/boiler-3_forecast_value/config"]
    anomaly = configs["homeassistant/binary_sensor/sensorcast/boiler-3_anomaly/config"]
    assert len(configs) == 3
    assert gateway["state_topic"] == "sensorcast/sensorcast-gw1/status"
    assert gateway["device_class"] == "connectivity" and "availability_topic" not in gateway
    assert forecast["device"]["via_device"] == gateway["device"]["identifiers"][0]
    assert anomaly["device"] == forecast["device"]
    assert forecast["device"]["name"] == "boiler-3" and forecast["name"] == "Forecast"
    assert forecast["unit_of_measurement"] == "°C" and forecast["device_class"] == "temperature"
    assert forecast["suggested_display_precision"] == 1
    assert forecast["expire_after"] == 180  # max_gap (3) cadences of 60 s
    assert forecast["availability_topic"] == "sensorcast/sensorcast-gw1/status"
    assert anomaly["state_topic"] == "anomalies/boiler-3" and anomaly["off_delay"] == 60
    # a multi-target model: one entity per target, named after it
    multi, _ = discovery(targets=["temperature", "humidity"])
    names = [check_config(t, p)["name"] for t, p in multi.messages("room:1", 0.5)]
    assert names == ["temperature forecast", "humidity forecast"]
    assert json.loads(multi.messages("room:1", 0.5)[0][1])["expire_after"] == 10  # the floor


_MEASURED_NAMES = (
    "apparent_power aqi atmospheric_pressure battery blood_glucose_concentration "
    "carbon_monoxide carbon_dioxide conductivity current data_rate energy_distance "
    "energy_storage frequency humidity illuminance irradiance moisture nitrogen_dioxide "
    "nitrogen_monoxide nitrous_oxide ozone ph pm1 pm10 pm25 power_factor power "
    "precipitation_intensity pressure reactive_power signal_strength sound_pressure speed "
    "sulphur_dioxide temperature volatile_organic_compounds volatile_organic_compounds_parts "
    "voltage volume_storage volume_flow_rate wind_speed"
)
MEASURED = set(_MEASURED_NAMES.split())
ANY_STATE_CLASS = {"area", "data_size", "distance", "duration", "precipitation", "weight"}
NO_MEASUREMENT = {
    "energy": {"total", "total_increasing"},
    "gas": {"total", "total_increasing"},
    "monetary": {"total"},
    "volume": {"total", "total_increasing"},
    "water": {"total", "total_increasing"},
    "wind_direction": {"measurement_angle"},
}
"""Home Assistant's DEVICE_CLASS_STATE_CLASSES (sensor/const.py, 2025.4), transcribed."""


def test_the_state_class_is_one_home_assistant_allows_for_the_device_class():
    """`measurement` for an energy, gas, monetary, volume, water or wind direction sensor
    is "impossible considering device class" to Home Assistant, which logged a warning for
    every such forecast entity; they get no state class."""
    assert MEASURED | ANY_STATE_CLASS | set(NO_MEASUREMENT) == SENSOR_DEVICE_CLASSES
    for device_class in sorted(SENSOR_DEVICE_CLASSES):
        rule = EntityRule(sensors="*", device_class=device_class)
        d, _ = discovery(presentation=presentation_lookup([rule]))
        config = check_config(*d.messages("s1", 60.0)[0])
        allowed = NO_MEASUREMENT.get(device_class, {"measurement"})
        assert config.get("state_class", "none") in allowed | {"none"}, device_class
        if device_class not in NO_MEASUREMENT:
            assert config["state_class"] == "measurement", device_class
    d, _ = discovery()  # no device class: a measurement, for Home Assistant's statistics
    assert json.loads(d.messages("s1", 60.0)[0][1])["state_class"] == "measurement"


def render(template: str, payload: bytes) -> str:
    env = ImmutableSandboxedEnvironment()
    return env.from_string(template).render(value_json=json.loads(payload), value=payload)


def test_templates_render_state_and_interval_attributes_from_real_forecasts():
    d, _ = discovery()
    config = json.loads(d.messages("boiler-3", 60.0)[0][1])
    encoder = ForecastEncoder(make_meta(horizon=2, cadence_s=60.0))
    window = Window("boiler-3", np.zeros((4, 1)), 1_700_000_000.0, 60.0)
    payload = encoder.encode(
        window,
        np.array([[21.5], [21.75]]),
        lower=np.array([[20.9], [20.7]]),
        upper=np.array([[22.1], [22.8]]),
    )
    assert payload is not None
    assert float(render(config["value_template"], payload)) == 21.5
    attrs = json.loads(render(config["json_attributes_template"], payload))
    assert attrs["forecast"] == [21.5, 21.75] and attrs["at"] == [1_700_000_060.0, 1_700_000_120.0]
    assert attrs["lower"] == [20.9, 20.7] and attrs["upper"] == [22.1, 22.8]
    assert attrs["level"] == json.loads(payload)["level"] and attrs["source"] == "model"
    bare = {k: v for k, v in json.loads(payload).items() if k not in ("lower", "upper", "source")}
    attrs = json.loads(render(config["json_attributes_template"], json.dumps(bare).encode()))
    assert attrs["lower"] is None and attrs["source"] is None  # fields a forecast lacks: null

    multi, _ = discovery(targets=["temperature", "humidity"])
    humidity = json.loads(multi.messages("room", 60.0)[1][1])
    doc = {
        "sensor_id": "room",
        "model": "m@1",
        "ts": 1.0,
        "forecast": [{"temperature": 21.0, "humidity": 40.5}],
        "lower": [{"temperature": 20.0, "humidity": 38.0}],
        "upper": [{"temperature": 22.0, "humidity": 43.0}],
        "level": 0.9,
        "source": "persistence",
    }
    raw = json.dumps(doc).encode()
    assert float(render(humidity["value_template"], raw)) == 40.5
    attrs = json.loads(render(humidity["json_attributes_template"], raw))
    assert attrs == {
        "forecast": [40.5],
        "lower": [38.0],
        "upper": [43.0],
        "at": None,
        "level": 0.9,
        "source": "persistence",
        "model": "m@1",
    }


def test_announces_once_again_when_the_cadence_moves_and_after_a_reconnect():
    d, published = discovery()
    d.announce("s1", 60.0)
    first = published.take()  # the gateway, the forecast entity, and (anomalies off) ...
    assert len(first) == 3
    assert first[-1] == ("homeassistant/binary_sensor/sensorcast/s1_anomaly/config", b"", True)
    for cadence in (61.0, 55.0, 100.0):
        d.announce("s1", cadence)
    assert published.take() == []
    d.announce("s1", 200.0)  # over twice the announced cadence
    ((_, payload, _),) = published.take()
    assert json.loads(payload)["expire_after"] == 600
    d.refresh()  # reconnected: the broker may have lost retained messages
    d.announce("s1", 200.0)
    assert len(published.take()) == 2


def test_a_sensor_reporting_on_change_does_not_expire_while_its_window_is_kept():
    """`expire_after` is the silence that resets the sensor's window: `max_gap` cadences
    times its spread. At `max_gap` cadences alone, a sensor reporting as a Poisson process
    every minute on average went unavailable in Home Assistant at 256 of 3968 intervals
    (6%), though the daemon kept its window and went on forecasting."""
    d, published = discovery()
    table = SensorTable(32, 1, max_gap=3.0)
    times = 1.7e9 + np.cumsum(np.random.default_rng(0).exponential(60.0, 4000))
    expire_after, expired, prev = None, 0, None
    for ts in times.tolist():
        window = table.push("s", ts, (20.0,))
        if prev is not None and expire_after is not None:
            expired += ts - prev > expire_after
        prev = ts
        if isinstance(window, Window) and not window.refill:  # as the service announces
            d.announce("s", window.cadence, window.spread)
            for topic, payload, _ in published.take():
                if topic.endswith("_forecast_value/config"):
                    expire_after = json.loads(payload)["expire_after"]
    assert table.gap_resets == 0 and expire_after is not None
    assert expired == 0
    assert expire_after > 3 * 60 * 2  # its spread is several times 1
    # announced again when the spread alone moves by more than twice
    d.announce("t", 60.0, 1.0)
    published.take()
    d.announce("t", 60.0, 1.9)
    assert published.take() == []
    d.announce("t", 60.0, 4.6)
    ((_, payload, _),) = published.take()
    assert json.loads(payload)["expire_after"] == 828  # 3 x 60 s x 4.6


def test_the_gateway_is_announced_on_its_own_once_per_connection():
    d, published = discovery()
    d.announce_gateway()
    ((topic, payload, retain),) = published.take()
    assert (
        topic == "homeassistant/binary_sensor/sensorcast/sensorcast_gateway_sensorcast-gw1/config"
    )
    assert retain and json.loads(payload)["device_class"] == "connectivity"
    d.announce_gateway()
    d.announce("s1", 60.0)  # the sensor's entities, not the gateway again
    assert all("gateway" not in t for t, _, _ in published.take())
    d.refresh()  # reconnected
    d.announce_gateway()
    assert len(published.take()) == 1


def test_removal_on_eviction_and_when_a_reload_drops_a_target_or_the_anomaly_sensor():
    anomalies = TopicTemplate("anomalies/{sensor_id}", allow_wildcards=False)
    d, published = discovery(targets=["temperature", "humidity"], anomaly_topic=anomalies)
    d.announce("a", 60.0)
    d.announce("b", 60.0)
    announced = {t for t, _, _ in published.take()}
    d.remove("a")
    removed = published.take()
    assert all(p == b"" and retain for _, p, retain in removed)
    assert {t for t, _, _ in removed} == {t for t, _ in d.messages("a", 60.0)}
    d.remove("a")  # twice, or a sensor never announced: nothing
    assert published.take() == []
    d.configure(make_meta(targets=["temperature"], features=["temperature"]), None, None)
    removed = published.take()
    assert sorted(t for t, p, _ in removed if p == b"") == [
        "homeassistant/binary_sensor/sensorcast/b_anomaly/config",
        "homeassistant/sensor/sensorcast/b_forecast_humidity/config",
    ]
    assert {t for t, _, _ in removed} < announced
    d.announce("b", 60.0)  # the remaining entity is announced again with the new model
    assert [t for t, _, _ in published.take()][-1].endswith("b_forecast_temperature/config")


def test_presentation_rules_and_their_configuration_errors():
    settings = load_settings(
        None,
        homeassistant={
            "entities": [
                {"sensors": "boiler-*", "unit": "°C", "device_class": "temperature"},
                {"sensors": "*", "name": "Sensor {sensor_id}"},
            ]
        },
    )
    look = presentation_lookup(settings.homeassistant.entities)
    assert look("boiler-1").unit == "°C" and look("boiler-1").name is None
    assert look("co2").name == "Sensor {sensor_id}" and look("co2").unit is None
    with pytest.raises(ConfigError, match="device class"):
        load_settings(None, homeassistant={"entities": [{"sensors": "*", "device_class": "temp"}]})
    with pytest.raises(ConfigError, match="placeholder"):
        load_settings(None, homeassistant={"entities": [{"sensors": "*", "name": "{room}"}]})
    with pytest.raises(ConfigError, match="node_id"):
        load_settings(None, homeassistant={"node_id": "has_underscore"})
    for typo in ("boiler *", "[boiler-*", "boiler/*"):  # used to be taken, and matched nothing
        with pytest.raises(
            ConfigError, match=r"homeassistant.entities\[0\].sensors .* no sensor id"
        ):
            load_settings(None, homeassistant={"entities": [{"sensors": typo, "unit": "°C"}]})


def test_each_target_of_a_bundle_with_several_can_have_its_own_unit_and_device_class():
    """A room's temperature and CO2 were both announced in the one unit of their rule (ppm)."""
    settings = load_settings(
        None,
        homeassistant={
            "entities": [
                {
                    "sensors": "room-*",
                    "unit": "°C",
                    "device_class": "temperature",
                    "precision": 1,
                    "targets": {"co2": {"unit": "ppm", "device_class": "carbon_dioxide"}},
                }
            ]
        },
    )
    rules = settings.homeassistant.entities
    d, _ = discovery(targets=["temperature", "co2"], presentation=presentation_lookup(rules))
    configs = {json.loads(p)["name"]: json.loads(p) for _, p in d.messages("room-1", 60.0)}
    temperature, co2 = configs["temperature forecast"], configs["co2 forecast"]
    assert (temperature["unit_of_measurement"], temperature["device_class"]) == (
        "°C",
        "temperature",
    )
    assert (co2["unit_of_measurement"], co2["device_class"]) == ("ppm", "carbon_dioxide")
    assert temperature["suggested_display_precision"] == co2["suggested_display_precision"] == 1
    # an entity rule over a route: the rule's fields win, a target's own fields over both
    route = EntityRule(
        sensors="*", unit="K", name="Room {sensor_id}", targets={"co2": {"unit": "ppm"}}
    )
    rule = EntityRule(sensors="room-*", unit="°C", targets={"humidity": {"unit": "%"}})
    look = rule.over(route)
    assert look.name == "Room {sensor_id}"
    assert [look.for_target(t).unit for t in ("temperature", "co2", "humidity")] == [
        "°C",
        "°C",
        "%",
    ]
    assert route.over(EntityRule(sensors="*")).for_target("co2").unit == "ppm"
    with pytest.raises(ValueError, match="device class"):
        EntityRule(sensors="*", targets={"co2": {"device_class": "co2"}})
    warnings = load_settings(
        None,
        homeassistant={
            "discovery": True,
            "entities": [
                {
                    "sensors": "*",
                    "unit": "°C",
                    "targets": {"co2": {"device_class": "carbon_dioxide"}},
                }
            ],
        },
    )
    (warning,) = config_warnings(warnings)
    assert "target co2" in warning and "ppm" in warning and "'°C'" in warning


def test_with_anomalies_off_an_anomaly_sensor_an_earlier_run_announced_is_removed_once():
    """anomaly.enabled takes a restart, which knows nothing of what the run before announced:
    each sensor's anomaly config is cleared (empty, retained) at its first announcement."""
    d, published = discovery()
    d.announce("s1", 60.0)
    d.announce("s2", 60.0)
    cleared = [t for t, p, retain in published.take() if p == b"" and retain]
    assert cleared == [
        "homeassistant/binary_sensor/sensorcast/s1_anomaly/config",
        "homeassistant/binary_sensor/sensorcast/s2_anomaly/config",
    ]
    d.refresh()
    d.announce("s1", 60.0)
    assert all(p != b"" for _, p, _ in published.take())


def test_anomaly_binary_sensors_follow_the_anomaly_settings():
    found = anomaly_binary_sensors(load_settings(None, anomaly={"topic": "alerts/{sensor_id}"}))
    assert found is not None and found.format("x") == "alerts/x"
    assert anomaly_binary_sensors(load_settings(None, anomaly={"enabled": False})) is None


def test_forecast_entities_of_targets_served_before_a_restart_are_removed_once():
    """A restart with a bundle lacking a target (or other routes) left that target's forecast
    entity retained for good: Home Assistant kept it, unavailable once expired. A reload
    removes it; after a restart, the targets served before (kept in state.dir) are cleared
    at each sensor's first announcement."""
    d, published = discovery(targets=["co2"])
    d.remember(["temperature", "co2"])
    d.announce("room-1", 60.0)
    cleared = {t for t, p, retain in published.take() if p == b"" and retain}
    assert "homeassistant/sensor/sensorcast/room-1_forecast_temperature/config" in cleared
    assert "homeassistant/sensor/sensorcast/room-1_forecast_co2/config" not in cleared
    d.announce("room-1", 60.0)
    assert published.take() == []  # once per sensor and run
    assert d.targets() == ["co2", "temperature"]  # kept for the next restart


def test_a_first_announcement_clears_no_target_its_bundle_still_has():
    d, published = discovery(targets=["temperature", "humidity"])
    d.announce("room-1", 60.0)
    forecasts = [(t, p) for t, p, _ in published.take() if "/sensor/" in t]
    assert len(forecasts) == 2 and all(p for _, p in forecasts)
