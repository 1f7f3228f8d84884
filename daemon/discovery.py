"""Home Assistant MQTT discovery: forecasts as sensor entities, anomalies as binary sensors.

Off by default. When on, every sensor with a full window becomes a Home Assistant
device (named after the sensor, `via_device` the gateway) with one forecast sensor
entity per model target and, with anomalies on, an anomaly binary sensor; the
gateway itself is a device with a connectivity entity fed by the status topic.

- Unique ids and config topics are built from `homeassistant.node_id` (not the
  host name) and the sensor id escaped one-to-one (`_` -> `__`, `.` -> `_d`,
  `:` -> `_c`), so `living-room.temp` and `living-room_temp` never collide and
  renaming the host changes nothing.
- Configs are retained and carry `origin`. `expire_after` is `max_gap` cadences
  times the sensor's spread (buffer.py: 1 for a sensor reporting regularly, about 4.6
  for one reporting on change): by then the daemon would start the sensor's window
  over, so the forecast is stale. Home Assistant restores an MQTT sensor's state
  across its own restart while `expire_after` has not run out (RestoreSensor in its
  mqtt/sensor.py).
- An evicted sensor's configs are removed (an empty retained payload); so are
  configs a reload no longer produces (a target or the anomaly sensor gone), and,
  when a sensor is first announced, its anomaly sensor with anomalies off and its
  forecast entities of targets that bundles served before had and its bundle lacks
  (a run before a restart may have announced them; with state.dir, the targets
  served are kept across restarts).
"""

from __future__ import annotations

import fnmatch
import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sensorcast import __version__
from sensorcast.config import EntityRule, Presentation, Settings
from sensorcast.models.bundle import BundleMeta
from sensorcast.mqttio import STATUS_OFFLINE, STATUS_ONLINE
from sensorcast.topics import TopicTemplate

Publish = Callable[[str, bytes, bool], object]
"""(topic, payload, retain)"""

ORIGIN = {"name": "sensorcast", "sw_version": __version__}
MIN_EXPIRE_AFTER = 10
"""Seconds; below this, network jitter alone would flip a fast sensor to unavailable."""
CADENCE_SLACK = 2.0
"""Announce again when a sensor's cadence, or its cadence times its spread, moved by more
than this factor (off_delay, expire_after)."""
_ESCAPES = str.maketrans({"_": "__", ".": "_d", ":": "_c"})
NOT_MEASUREMENT = frozenset({"energy", "gas", "monetary", "volume", "water", "wind_direction"})
"""Device classes whose sensors Home Assistant does not accept as `state_class: measurement`
(DEVICE_CLASS_STATE_CLASSES, 2025.4: totals, and `measurement_angle` for wind direction,
which versions before 2025.3 refuse): a forecast of them gets no state class, where
`measurement` drew a warning per entity ("impossible considering device class")."""


def escape(text: str) -> str:
    """A one-to-one map of sensor ids and target names onto Home Assistant's [A-Za-z0-9_-]."""
    return text.translate(_ESCAPES)


def presentation_lookup(rules: Sequence[EntityRule]) -> Callable[[str], Presentation]:
    """The first rule whose glob matches a sensor id, else no presentation."""
    none = Presentation()

    def lookup(sensor_id: str) -> Presentation:
        for rule in rules:
            if fnmatch.fnmatchcase(sensor_id, rule.sensors):
                return rule
        return none

    return lookup


@dataclass(frozen=True, slots=True)
class _Announced:
    cadence: float | None
    spread: float
    topics: frozenset[str]
    generation: int


class HomeAssistantDiscovery:
    """Announces, updates and removes the entities of sensors as they come and go."""

    def __init__(
        self,
        prefix: str,
        node_id: str,
        client_id: str,
        status_topic: str,
        output: TopicTemplate,
        meta: BundleMeta,
        publish: Publish,
        *,
        presentation: Callable[[str], Presentation] | None = None,
        anomaly_topic: TopicTemplate | None = None,
        max_gap: float = 3.0,
        models: Callable[[str], BundleMeta | None] | None = None,
    ) -> None:
        """`models`: the bundle serving a sensor, when routes serve several (else `meta`)."""
        self.prefix = prefix
        self.node = node_id
        self.status_topic = status_topic
        self.output = output
        self.max_gap = max_gap
        self.client_id = client_id
        self.gateway_id = f"sensorcast_gateway_{escape(client_id)}"
        self._publish = publish
        self._models = models or (lambda sensor_id: None)
        self._lock = threading.Lock()
        self._announced: dict[str, _Announced] = {}
        self._targets: set[str] = set()
        """Every target a served bundle has, in this run and (`remember`) runs before."""
        self._generation = 0
        self._gateway_generation = -1
        self.configure(meta, presentation, anomaly_topic)

    def configure(
        self,
        meta: BundleMeta,
        presentation: Callable[[str], Presentation] | None = None,
        anomaly_topic: TopicTemplate | None = None,
    ) -> None:
        """Serve this model and presentation from now on (at start and on reload): configs
        it no longer produces are removed, the others are announced again at the next window."""
        self.meta = meta
        with self._lock:
            self._targets.update(meta.targets)
        self.presentation = presentation or presentation_lookup(())
        self.anomaly_topic = anomaly_topic
        with self._lock:
            announced = list(self._announced.items())
        for sensor_id, known in announced:
            current = {topic for topic, _ in self.messages(sensor_id, known.cadence, known.spread)}
            for topic in sorted(known.topics - current):
                self._publish(topic, b"", True)
        self.refresh()

    def remember(self, targets: Sequence[str]) -> None:
        """Targets bundles served before a restart had (state.dir): a sensor's forecast
        entities of those its bundle now lacks are removed when it is first announced."""
        with self._lock:
            self._targets.update(targets)

    def targets(self) -> list[str]:
        """Every target served in this run and the runs `remember`ed, to keep (state.dir)."""
        with self._lock:
            return sorted(self._targets)

    def refresh(self) -> None:
        """Announce everything again (after a reconnect, in case the broker lost retained
        messages, or a reload): the gateway now, each sensor at its next window."""
        with self._lock:
            self._generation += 1

    def announce_gateway(self) -> None:
        """The gateway device and its connectivity entity, once after each `refresh` (start,
        reconnect, reload), so Home Assistant has them before any sensor's window is full."""
        with self._lock:
            if self._gateway_generation == self._generation:
                return
            self._gateway_generation = self._generation
        for topic, payload in self.gateway_messages():
            self._publish(topic, payload, True)

    def announce(self, sensor_id: str, cadence: float | None, spread: float = 1.0) -> None:
        """Called for every full window (network thread): publishes only what changed.

        `spread`: how irregular the sensor's intervals are (buffer.py's SPREAD_LEVEL
        quantile of interval over cadence); its window resets after max_gap x cadence x
        spread without a reading, and its forecast expires in Home Assistant then."""
        known = self._announced.get(sensor_id)
        if (
            known is not None
            and known.generation == self._generation
            and (known.cadence == cadence or _close(known.cadence, cadence))
            and (
                known.spread == spread
                or _close(_span(known.cadence, known.spread), _span(cadence, spread))
            )
        ):
            return
        messages = self.messages(sensor_id, cadence, spread)
        with self._lock:
            generation = self._generation
            self._announced[sensor_id] = _Announced(
                cadence, spread, frozenset(t for t, _ in messages), generation
            )
            gateway = self._gateway_generation != generation
            self._gateway_generation = generation
        if gateway:
            messages = self.gateway_messages() + messages
        if known is None and self.anomaly_topic is None:
            # anomalies off: clear the anomaly sensor a run with them on may have announced
            # (retained; a reload that turns them off removes it, a restart knew nothing of it)
            messages.append((self._anomaly_config_topic(sensor_id), b""))
        if known is None:
            # likewise the forecast entities of targets a bundle served before had and the
            # sensor's bundle now lacks (a restart with another bundle or other routes)
            meta = self._models(sensor_id) or self.meta
            with self._lock:
                self._targets.update(meta.targets)
                gone = sorted(self._targets.difference(meta.targets))
            messages += [(self._forecast_config_topic(sensor_id, t), b"") for t in gone]
        for topic, payload in messages:
            self._publish(topic, payload, True)

    def remove(self, sensor_id: str) -> None:
        """Delete an evicted sensor's entities from Home Assistant."""
        with self._lock:
            known = self._announced.pop(sensor_id, None)
        for topic in sorted(known.topics if known else ()):
            self._publish(topic, b"", True)

    def announced(self) -> list[str]:
        with self._lock:
            return list(self._announced)

    # --- payloads -----------------------------------------------------------
    def gateway_messages(self) -> list[tuple[str, bytes]]:
        """The gateway device and its connectivity entity, fed by the status topic."""
        config: dict[str, object] = {
            "name": "Status",
            "unique_id": f"{self.gateway_id}_status",
            "state_topic": self.status_topic,
            "payload_on": STATUS_ONLINE.decode(),
            "payload_off": STATUS_OFFLINE.decode(),
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "device": {
                "identifiers": [self.gateway_id],
                "name": f"sensorcast {self.client_id}",
                "manufacturer": "sensorcast",
                "model": "forecasting gateway",
                "sw_version": __version__,
            },
            "origin": ORIGIN,
        }
        topic = f"{self.prefix}/binary_sensor/{self.node}/{self.gateway_id}/config"
        return [(topic, _dump(config))]

    def messages(
        self, sensor_id: str, cadence: float | None, spread: float = 1.0
    ) -> list[tuple[str, bytes]]:
        """A sensor's config messages: one forecast sensor per target, and the anomaly
        binary sensor when anomalies are on."""
        look = self.presentation(sensor_id)
        meta = self._models(sensor_id) or self.meta
        sid = escape(sensor_id)
        device = {
            "identifiers": [f"{self.node}_{sid}"],
            "name": look.name.format(sensor_id=sensor_id) if look.name else sensor_id,
            "manufacturer": "sensorcast",
            "model": meta.model_id,
            "sw_version": __version__,
            "via_device": self.gateway_id,
        }
        common: dict[str, object] = {
            "availability_topic": self.status_topic,
            "payload_available": STATUS_ONLINE.decode(),
            "payload_not_available": STATUS_OFFLINE.decode(),
            "device": device,
            "origin": ORIGIN,
        }
        cadence = cadence or meta.cadence_s
        out = []
        single = len(meta.targets) == 1
        state_topic = self.output.format(sensor_id)
        for target in meta.targets:
            shown = look.for_target(target)
            object_id = _forecast_object_id(sensor_id, target)
            config: dict[str, object] = {
                "name": "Forecast" if single else f"{target} forecast",
                "unique_id": f"{self.node}_{object_id}",
                "state_topic": state_topic,
                "value_template": _state_template(None if single else target),
                "json_attributes_topic": state_topic,
                "json_attributes_template": _attributes_template(None if single else target),
            }
            if shown.device_class not in NOT_MEASUREMENT:
                config["state_class"] = "measurement"
            if shown.unit is not None:
                config["unit_of_measurement"] = shown.unit
            if shown.device_class is not None:
                config["device_class"] = shown.device_class
            if shown.precision is not None:
                config["suggested_display_precision"] = shown.precision
            if cadence is not None and math.isfinite(cadence):
                gap = self.max_gap * cadence * max(spread, 1.0)  # the window's reset
                config["expire_after"] = max(MIN_EXPIRE_AFTER, math.ceil(gap))
            config.update(common)
            out.append((self._forecast_config_topic(sensor_id, target), _dump(config)))
        if self.anomaly_topic is not None:
            out.append(self._anomaly_message(sensor_id, cadence, common))
        return out

    def _anomaly_message(
        self, sensor_id: str, cadence: float | None, common: dict[str, object]
    ) -> tuple[str, bytes]:
        """The anomaly binary sensor: on when an anomaly event arrives (SPEC 5a), off again
        one cadence later unless another follows; the event's fields are its attributes."""
        assert self.anomaly_topic is not None
        object_id = f"{escape(sensor_id)}_anomaly"
        topic = self.anomaly_topic.format(sensor_id)
        config: dict[str, object] = {
            "name": "Anomaly",
            "unique_id": f"{self.node}_{object_id}",
            "state_topic": topic,
            "value_template": "{{ 'ON' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "problem",
            "json_attributes_topic": topic,
            "off_delay": max(1, math.ceil(cadence)) if cadence else MIN_EXPIRE_AFTER,
            **common,
        }
        return self._anomaly_config_topic(sensor_id), _dump(config)

    def _forecast_config_topic(self, sensor_id: str, target: str) -> str:
        return f"{self.prefix}/sensor/{self.node}/{_forecast_object_id(sensor_id, target)}/config"

    def _anomaly_config_topic(self, sensor_id: str) -> str:
        return f"{self.prefix}/binary_sensor/{self.node}/{escape(sensor_id)}_anomaly/config"


def _forecast_object_id(sensor_id: str, target: str) -> str:
    return f"{escape(sensor_id)}_forecast_{escape(target)}"


def anomaly_binary_sensors(settings: Settings) -> TopicTemplate | None:
    """The anomaly topic to announce binary sensors for: SPEC 5a's `anomaly.topic` when
    `anomaly.enabled`, else None."""
    anomaly = settings.anomaly
    return TopicTemplate(anomaly.topic, allow_wildcards=False) if anomaly.enabled else None


def _span(cadence: float | None, spread: float) -> float | None:
    return None if cadence is None else cadence * spread


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return 1 / CADENCE_SLACK <= a / b <= CADENCE_SLACK


def _dump(config: dict[str, object]) -> bytes:
    return json.dumps(config, ensure_ascii=False, separators=(",", ":")).encode()


def _state_template(target: str | None) -> str:
    pick = "" if target is None else f"[{json.dumps(target)}]"
    return f"{{{{ value_json.forecast[0]{pick} }}}}"


_FIELDS = ("forecast", "lower", "upper")
_SHARED = ("at", "level", "source", "model")


def _attributes_template(target: str | None) -> str:
    """The whole horizon (`forecast`, `lower`, `upper`, and `at`), the interval's `level`,
    `source` and `model`, as attributes; fields a forecast lacks are null."""
    parts = []
    for key in _FIELDS:
        value = f"value_json.get({json.dumps(key)})"
        if target is not None:
            value = f"(({value} or []) | map(attribute={json.dumps(target)}) | list) or none"
        parts.append(f"{json.dumps(key)}: {value}")
    parts += [f"{json.dumps(k)}: value_json.get({json.dumps(k)})" for k in _SHARED]
    return "{{ {" + ", ".join(parts) + "} | tojson }}"
