"""Bounds that keep a gateway alive: hostile bursts, sensor cardinality, outbound queue."""

from __future__ import annotations

import random
import threading
import time

from sensorcast.config import load_settings
from sensorcast.metrics import Metrics
from sensorcast.mqttio import MQTTLink

from ..conftest import daemon_settings
from ..mqtt_helpers import free_port, wait_for

T0 = 1_700_000_000.0


def hostile_payloads(n: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """A mix of everything SPEC section 4 says must be dropped."""
    rng = random.Random(seed)
    bad_payloads = [
        b"",
        b"{",
        b"nan",
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e999",
        b"3.5e38",
        b"1" * 400,
        b'{"value": null}',
        b'{"value": true}',
        b'{"value": [1]}',
        b'{"value": {"x": 1}}',
        b'{"other": 1}',
        b'"21.5"',
        b"[21.5]",
        b"\xc3\x28",
        b"\xff" * 10,
        b'{"value": 1, "ts": "yesterday"}',
        b'{"value": 1, "ts": true}',
        b"[" * 5000,
        b'{"a":' * 3000,
        b"0" * 70000,
    ]
    bad_ids = ["a+b", "#", "$SYS", "x" * 65, "", "bad id", "nul\x00"]
    out = []
    for i in range(n):
        if i % 5 == 0:
            out.append((f"sensors/{rng.choice(bad_ids)}/reading", b"21.5"))
        elif i % 7 == 0:
            out.append(("sensors/too/many/levels/reading", b"21.5"))
        else:
            out.append((f"sensors/s{i % 13}/reading", rng.choice(bad_payloads)))
    return out


def test_a_burst_of_1000_bad_messages_changes_nothing(broker, client_factory, run_daemon):
    daemon = run_daemon(daemon_settings(broker.port))
    service = daemon.service
    sub = client_factory("forecasts/#")
    pub = client_factory()
    threads_before = threading.active_count()
    for topic, payload in hostile_payloads(1000):
        if any(c in topic for c in "+#\0"):  # mosquitto disconnects a client that sends these
            service.on_message(topic, payload)  # so hand them over as a faulty broker would
        else:
            pub.client.publish(topic, payload, qos=0)
    # the valid window still produces its forecast
    for i in range(service.meta.timesteps):
        pub.publish("sensors/valid/reading", {"value": 3.0 + i % 2, "ts": T0 + i})
    wait_for(lambda: sub.json("forecasts/valid"), timeout=20)
    assert [m["sensor_id"] for m in sub.json("forecasts/")] == ["valid"]
    assert service.metrics.value("sensorcast_readings_total") == service.meta.timesteps
    assert service.worker.is_alive() and service.link.connected.is_set()
    assert threading.active_count() == threads_before
    assert len(service.table) == 1  # nothing bad reached a buffer


def test_sensor_cap_evicts_the_least_recently_seen(broker, client_factory, run_daemon):
    daemon = run_daemon(daemon_settings(broker.port, input={"max_sensors": 3}))
    service = daemon.service
    pub = client_factory()
    for i, sid in enumerate(["a", "b", "c", "a", "d", "e"]):
        pub.publish(f"sensors/{sid}/reading", {"value": 1.0, "ts": T0 + i})
    wait_for(lambda: service.metrics.value("sensorcast_sensors_evicted_total") == 2)
    assert list(service.table.slots) == ["a", "d", "e"]  # b and c were least recently seen
    wait_for(lambda: service.metrics.value("sensorcast_sensors") == 3)


def test_idle_sensors_are_evicted_by_arrival_time_not_reading_time(
    broker, client_factory, run_daemon
):
    daemon = run_daemon(daemon_settings(broker.port, input={"sensor_ttl": 1.5}))
    service = daemon.service
    pub = client_factory()
    pub.publish("sensors/old-data/reading", {"value": 1.0, "ts": 1.0e9})  # a 2001 timestamp
    pub.publish("sensors/quiet/reading", {"value": 1.0})
    wait_for(lambda: len(service.table) == 2)
    time.sleep(0.8)
    assert len(service.table) == 2  # heard from recently, whatever the reading's ts says
    for i in range(8):
        pub.publish("sensors/old-data/reading", {"value": 1.0, "ts": 1.0e9 + i + 1})
        time.sleep(0.25)
    assert list(service.table.slots) == ["old-data"]
    assert service.metrics.value("sensorcast_sensors_evicted_total") >= 1


def test_outbound_queue_is_bounded_while_the_broker_is_unreachable():
    port = free_port()  # nothing listens here
    cfg = load_settings(None, mqtt={"host": "127.0.0.1", "port": port}).mqtt
    link = MQTTLink(cfg, "sensors/+/reading", lambda *_: None, Metrics(), max_queue=100)
    link.start()
    try:
        accepted = [link.publish(f"forecasts/s{i}", b"{}") for i in range(250)]
        assert accepted[:100] == [True] * 100
        assert accepted[100:] == [False] * 150  # refused and counted by the caller, not lost
    finally:
        link.stop(timeout=0.5)


def test_stop_input_returns_only_after_the_reading_being_taken_in():
    """A drain stops input, then empties the queue: a reading half taken in when input
    stops must be in the buffers and queue before the drain starts, never after."""
    cfg = load_settings(None, mqtt={"host": "127.0.0.1", "port": free_port()}).mqtt
    inside, release = threading.Event(), threading.Event()

    def slow_reading(topic: str, payload: bytes, retained: bool) -> None:
        inside.set()
        release.wait(10)

    link = MQTTLink(cfg, "sensors/+/reading", slow_reading, Metrics())
    taken: list[bool] = []
    reader = threading.Thread(
        target=lambda: taken.append(link._handle_raw(b"sensors/a/reading", b"1", False))
    )
    reader.start()
    assert inside.wait(10)
    stopper = threading.Thread(target=link.stop_input)
    stopper.start()
    stopper.join(0.3)
    assert stopper.is_alive()  # still waiting for the reading in progress
    release.set()
    stopper.join(10)
    reader.join(10)
    assert not stopper.is_alive() and taken == [True]
    assert link._handle_raw(b"sensors/b/reading", b"2", False) is False  # not acknowledged


def test_sensors_evicted_when_idle_are_no_longer_counted_on_the_last_value(
    broker, client_factory, run_daemon
):
    """`sensorcast_sensors_on_persistence` counts tracked sensors only: a sensor evicted for
    being idle leaves it with its window."""
    daemon = run_daemon(daemon_settings(broker.port, input={"sensor_ttl": 1.5}))
    service = daemon.service
    pub = client_factory()
    for i in range(service.meta.timesteps):
        for sid in ("a", "b"):
            pub.publish(f"sensors/{sid}/reading", {"value": 1.0 + i % 3, "ts": T0 + i})
    wait_for(lambda: service.metrics.value("sensorcast_forecasts_total") == 2)
    wait_for(lambda: service.metrics.value("sensorcast_sensors_on_persistence") == 2)
    wait_for(lambda: service.metrics.value("sensorcast_sensors") == 0, timeout=10)
    wait_for(lambda: service.metrics.value("sensorcast_sensors_on_persistence") == 0)
