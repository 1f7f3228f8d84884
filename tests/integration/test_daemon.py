"""The daemon against a real mosquitto: readings in, forecasts out, as a user sees it."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

from sensorcast.models.bundle import load_bundle
from sensorcast.models.preprocess import Scaler
from sensorcast.topics import status_topic

from ..conftest import daemon_settings
from ..mqtt_helpers import wait_for

T0 = 1_700_000_000.0


def series(n: int, *, level: float, amplitude: float, period: int = 24) -> list[float]:
    """A realistic daily-cycle signal: level + cycle + a little deterministic noise."""
    rng = np.random.default_rng(int(level))
    t = np.arange(n)
    values = level + amplitude * np.sin(2 * np.pi * t / period) + rng.normal(0, amplitude / 20, n)
    return [round(float(v), 3) for v in values]


def keras_forecast(bundle_path: str, window: np.ndarray) -> np.ndarray:
    """What the bundle's Keras model computes on one raw window (sensor units)."""
    keras = pytest.importorskip("keras")
    bundle = load_bundle(bundle_path)
    model = keras.saving.load_model(bundle.keras_path, safe_mode=True, compile=False)
    meta = bundle.meta
    scaler = Scaler(meta.normalisation, meta.features, meta.targets)
    x, ctx = scaler.transform(window[None])
    y = np.asarray(model(x, training=False)).reshape(1, meta.horizon, len(meta.targets))
    return scaler.inverse(y, ctx)[0]


def test_forecasts_for_several_sensors_match_the_keras_model(broker, client_factory, run_daemon):
    # the model's own forecasts: with the guard, a new sensor is served the last value first
    settings = daemon_settings(broker.port, output={"guard": False})
    daemon = run_daemon(settings)
    meta = daemon.service.meta
    t = meta.timesteps
    sub = client_factory("forecasts/#")
    pub = client_factory()
    sensors = {"boiler-3": (60.0, 5.0), "room.kitchen": (21.0, 1.5), "co2:lab": (700.0, 80.0)}
    data = {sid: series(t + 3, level=lv, amplitude=amp) for sid, (lv, amp) in sensors.items()}
    for i in range(t + 3):
        for sid, values in data.items():
            pub.publish(f"sensors/{sid}/reading", {"value": values[i], "ts": T0 + 60 * i})

    wait_for(lambda: len(sub.received()) >= 4 * len(sensors))
    by_sensor: dict[str, list[dict[str, Any]]] = {}
    for topic, payload, _ in sub.received():
        msg = json.loads(payload)
        assert topic == f"forecasts/{msg['sensor_id']}"
        by_sensor.setdefault(msg["sensor_id"], []).append(msg)
    assert set(by_sensor) == set(sensors)
    for sid, msgs in by_sensor.items():
        # one forecast per reading from the t-th on, in order
        assert [m["ts"] for m in msgs] == [T0 + 60 * i for i in range(t - 1, t + 3)]
        for k, msg in enumerate(msgs):
            assert msg["model"] == meta.model_id
            assert len(msg["forecast"]) == meta.horizon
            assert msg["at"] == pytest.approx(
                [msg["ts"] + 60.0 * (s + 1) for s in range(meta.horizon)]
            )
            window = np.array(data[sid][k : k + t], dtype=np.float64)[:, None]
            expected = keras_forecast(str(settings.model.path), window)[:, 0]
            scale = max(float(np.std(window)), 1e-6)
            assert np.abs(np.array(msg["forecast"]) - expected).max() / scale < 1e-4


def test_bare_numbers_iso_timestamps_and_nested_fields(broker, client_factory, run_daemon):
    settings = daemon_settings(
        broker.port,
        input={
            "topic": "tele/{sensor_id}/SENSOR",
            "fields": {"value": "AM2301.Temperature"},
            "ts_field": "Time",
        },
    )
    daemon = run_daemon(settings)
    t = daemon.service.meta.timesteps
    sub = client_factory("forecasts/#")
    pub = client_factory()
    for i in range(t):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 + 10 * i))
        pub.publish(
            "tele/tasmota_1/SENSOR", {"Time": stamp, "AM2301": {"Temperature": 20 + i / 10}}
        )
    msgs = wait_for(lambda: sub.json("forecasts/tasmota_1"))
    assert msgs[0]["ts"] == T0 + 10 * (t - 1)  # ISO string in, epoch seconds out
    horizon = daemon.service.meta.horizon
    assert msgs[0]["at"] == pytest.approx([T0 + 10 * (t - 1 + s) for s in range(1, horizon + 1)])


def test_bare_number_payload_uses_receive_time(broker, client_factory, run_daemon):
    # back-to-back publishes on a busy machine arrive with irregular spacing: no gap rule here
    daemon = run_daemon(daemon_settings(broker.port, input={"max_gap": 1e6}))
    t = daemon.service.meta.timesteps
    sub = client_factory("forecasts/#")
    pub = client_factory()
    before = time.time()
    for i in range(t):
        pub.publish("sensors/plain/reading", f"{21.0 + (i % 3) / 10}")
        time.sleep(0.005)  # a steady cadence: several readings read at once would look like a gap
    msg = wait_for(lambda: sub.json("forecasts/plain"))[0]
    assert before <= msg["ts"] <= time.time()
    assert np.isfinite(msg["forecast"]).all()


def test_status_is_retained_online_and_offline_after_a_clean_stop(
    broker, client_factory, run_daemon
):
    settings = daemon_settings(broker.port)
    daemon = run_daemon(settings)
    topic = status_topic(settings.mqtt.client_id)
    late = client_factory(topic)  # subscribes after the fact: sees the retained value
    wait_for(lambda: late.received(topic))
    assert late.received(topic)[0][1:] == (b"online", True)
    assert daemon.stop() == 0
    wait_for(lambda: [m for m in late.received(topic) if m[1] == b"offline"])


def test_invalid_input_publishes_nothing_and_is_counted(broker, client_factory, run_daemon):
    daemon = run_daemon(daemon_settings(broker.port, input={"max_payload_bytes": 1024}))
    service = daemon.service
    t = service.meta.timesteps
    sub = client_factory("forecasts/#")
    pub = client_factory()
    bad: list[tuple[str, bytes]] = [
        ("sensors/a/reading", b"not json"),
        ("sensors/a/reading", b"\xff\xfe"),
        ("sensors/a/reading", b"NaN"),
        ("sensors/a/reading", b"1e999"),
        ("sensors/a/reading", b'{"value": "21"}'),
        ("sensors/a/reading", b'{"temp": 21}'),
        ("sensors/a/reading", b"[" * 1000),
        ("sensors/a/reading", b"1" * 2000),
        ("sensors/a/reading", b"true"),
        ("sensors/" + "x" * 65 + "/reading", b"21"),
    ]
    for _ in range(t + 2):
        for topic, payload in bad:
            pub.publish(topic, payload)
    wait_for(lambda: service.metrics.value("sensorcast_dropped_total", reason="not_json") >= t)
    time.sleep(0.3)
    assert sub.received() == []
    assert service.metrics.value("sensorcast_readings_total") == 0
    for reason in (
        "not_utf8",
        "not_finite",
        "wrong_type",
        "missing_feature",
        "too_large",
        "bad_sensor_id",
    ):
        assert service.metrics.value("sensorcast_dropped_total", reason=reason) > 0, reason
    # and the daemon still serves a good sensor
    for i in range(t):
        pub.publish("sensors/good/reading", {"value": 1.0 + i, "ts": T0 + i})
    wait_for(lambda: sub.json("forecasts/good"))


def test_a_slow_model_does_not_break_the_keepalive(broker, client_factory, run_daemon):
    settings = daemon_settings(broker.port, mqtt={"keepalive": 5})
    daemon = run_daemon(settings)
    service = daemon.service
    runner = service.worker._served.forecaster.backend
    fast_predict = runner.predict

    def slow_predict(x: Any) -> Any:
        time.sleep(9)  # longer than 1.5 x keepalive: the broker would drop a silent client
        return fast_predict(x)

    runner.predict = slow_predict  # type: ignore[method-assign]
    topic = status_topic(settings.mqtt.client_id)
    watch = client_factory(topic, "forecasts/#")
    pub = client_factory()
    t = service.meta.timesteps
    for i in range(t):
        pub.publish("sensors/slow/reading", {"value": float(i % 4), "ts": T0 + i})
    wait_for(lambda: watch.json("forecasts/slow"), timeout=30)
    assert [p for _, p, _ in watch.received(topic)] == [b"online"]  # no will fired
    assert service.link.connected.is_set()


def test_the_tensorflow_backend_serves_the_same_forecasts(broker, client_factory, run_daemon):
    pytest.importorskip("tensorflow")
    from sensorcast.models.runtime import Forecaster

    settings = daemon_settings(broker.port, model={"backend": "keras"}, output={"guard": False})
    daemon = run_daemon(settings)
    t = daemon.service.meta.timesteps
    sub = client_factory("forecasts/#")
    pub = client_factory()
    values = series(t, level=400.0, amplitude=30.0)
    for i, v in enumerate(values):
        pub.publish("sensors/tf/reading", {"value": v, "ts": T0 + i})
    msg = wait_for(lambda: sub.json("forecasts/tf"))[0]
    litert = Forecaster(load_bundle(settings.model.path)).forecast(np.array(values)[None, :, None])
    assert msg["forecast"] == pytest.approx(litert[0, :, 0].tolist(), rel=1e-5)
