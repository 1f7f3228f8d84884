"""Test helpers: small MQTT clients, polling; the broker is `sensorcast.sandbox.Mosquitto`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sensorcast.sandbox import Mosquitto, free_port

__all__ = ["Client", "Mosquitto", "free_port", "wait_for"]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll until `predicate()` is truthy; return its value or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Client:
    """A test-side MQTT client: publishes readings and records what arrives."""

    def __init__(self, port: int, *topics: str, client_id: str = "", qos: int = 1) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.qos: list[tuple[str, int]] = []
        """(topic, QoS) of each message as delivered."""
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        for topic in topics:
            subscribed.clear()
            self.client.subscribe(topic, qos)
            if not subscribed.wait(5):
                raise TimeoutError(f"subscription to {topic} not acknowledged")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self.qos.append((msg.topic, msg.qos))

    def publish(self, topic: str, payload: Any, qos: int = 1, retain: bool = False) -> None:
        if not isinstance(payload, (bytes, bytearray)):
            payload = json.dumps(payload) if not isinstance(payload, str) else payload
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish(5)

    def received(self, prefix: str = "") -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return [m for m in self.messages if m[0].startswith(prefix)]

    def qos_of(self, prefix: str = "") -> list[int]:
        with self._lock:
            return [q for t, q in self.qos if t.startswith(prefix)]

    def json(self, prefix: str) -> list[dict[str, Any]]:
        return [json.loads(p) for _, p, _ in self.received(prefix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
