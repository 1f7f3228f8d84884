"""Home Assistant MQTT discovery: each forecast appears as a sensor entity.

Off by default. When on, the first full window of a sensor publishes one
retained config message per target under `<prefix>/sensor/<node>/<object>/config`,
with availability tied to the daemon's status topic; after every reconnect the
announcements are made again, in case the broker lost its retained messages.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable

from sensorcast.models.bundle import BundleMeta
from sensorcast.mqttio import STATUS_OFFLINE, STATUS_ONLINE
from sensorcast.topics import TopicTemplate

Publish = Callable[[str, bytes, bool], object]
"""(topic, payload, retain)"""

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def object_id(text: str) -> str:
    """Home Assistant accepts only [A-Za-z0-9_-] in discovery topic levels."""
    return _UNSAFE.sub("_", text)


class HomeAssistantDiscovery:
    """Announces forecast entities for sensors as they become ready."""

    def __init__(
        self,
        prefix: str,
        client_id: str,
        status_topic: str,
        output: TopicTemplate,
        meta: BundleMeta,
        publish: Publish,
    ) -> None:
        self.prefix = prefix
        self.node = object_id(client_id)
        self.status_topic = status_topic
        self.output = output
        self.meta = meta
        self._publish = publish
        self._announced: set[str] = set()
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Announce every sensor again (after a reconnect or a model change)."""
        with self._lock:
            self._announced.clear()

    def announce(self, sensor_id: str) -> None:
        with self._lock:
            if sensor_id in self._announced:
                return
            self._announced.add(sensor_id)
        for topic, payload in self.messages(sensor_id):
            self._publish(topic, payload, True)

    def messages(self, sensor_id: str) -> list[tuple[str, bytes]]:
        """The discovery config messages for one sensor, one per target."""
        single = len(self.meta.targets) == 1
        out = []
        for target in self.meta.targets:
            oid = object_id(f"{sensor_id}_{target}_forecast")
            path = "value_json.forecast[0]" + ("" if single else f"[{json.dumps(target)}]")
            config = {
                "name": f"{target} forecast",
                "unique_id": f"sensorcast_{self.node}_{oid}",
                "state_topic": self.output.format(sensor_id),
                "value_template": f"{{{{ {path} }}}}",
                "json_attributes_topic": self.output.format(sensor_id),
                "state_class": "measurement",
                "availability_topic": self.status_topic,
                "payload_available": STATUS_ONLINE.decode(),
                "payload_not_available": STATUS_OFFLINE.decode(),
                "device": {
                    "identifiers": [f"sensorcast_{self.node}_{object_id(sensor_id)}"],
                    "name": sensor_id,
                    "manufacturer": "sensorcast",
                    "model": self.meta.model_id,
                },
            }
            topic = f"{self.prefix}/sensor/{self.node}/{oid}/config"
            out.append((topic, json.dumps(config, separators=(",", ":")).encode()))
        return out
