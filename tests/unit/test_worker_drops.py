"""The inference worker's handling of a forecast it cannot publish, or must not retain."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from sensorcast.config import load_settings
from sensorcast.handoff import Pending, ReadyQueue
from sensorcast.inference import InferenceWorker, ServedBundle
from sensorcast.metrics import Metrics
from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.service import Service
from sensorcast.topics import TopicTemplate

from .slotted import slotted


def test_a_forecast_that_is_not_finite_is_counted_and_logged_once_a_minute(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The encoder refuses a forecast or interval that is not finite (strict JSON); the worker
    counts it and names the sensor in one log line, then stays quiet for a minute."""
    bundle = load_bundle(DEFAULT_BUNDLE)
    served = ServedBundle.load(bundle)
    monkeypatch.setattr(served.encoder, "encode_each", lambda windows, *rest: [None] * len(windows))
    published: list[str] = []
    metrics = Metrics()
    worker = InferenceWorker(
        ReadyQueue(16),
        served,
        lambda topic, payload, retain: published.append(topic) or True,
        TopicTemplate("forecasts/{sensor_id}", allow_wildcards=False),
        metrics,
    )
    t = bundle.meta.timesteps
    windows = [
        Pending(slotted(f"s{i}", np.full((t, 1), 20.0 + i), 1.7e9, 60.0, seq=t), 0.0)
        for i in range(3)
    ]
    with caplog.at_level(logging.WARNING, logger="sensorcast.inference"):
        worker._serve(windows[:2])
        worker._serve(windows[2:])
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["forecast for 's0' not published: not_finite (the forecast or its interval "
                     "is NaN or infinite)"]  # fmt: skip
    assert not published
    dropped = metrics.registry.get_sample_value(
        "sensorcast_forecasts_dropped_total", {"reason": "not_finite"}
    )
    assert dropped == 3


def test_the_forecast_of_a_sensor_evicted_while_its_window_waited_is_not_retained() -> None:
    """With `output.retain`, an evicted sensor's retained forecast is taken away; a window of
    it still waiting for the worker (a flood, a backlog) is forecast all the same, but not
    retained: it put the forecast back at the broker for good (342 of 390 sensors evicted
    in a flood of 400 with `input.max_sensors = 10`)."""
    settings = load_settings(
        None,
        mqtt={"host": "127.0.0.1", "port": 1},
        input={"max_sensors": 1},
        output={"retain": True},
    )
    service = Service(settings)  # built, never started: messages are fed to it directly
    published: list[tuple[str, bytes, bool]] = []

    def publish(topic: str, payload: bytes, retain: bool | None = None) -> bool:
        published.append((topic, payload, settings.output.retain if retain is None else retain))
        return True

    service.link.publish = publish  # type: ignore[method-assign]
    service.worker._publish = publish
    for i in range(service.meta.timesteps):  # a full window of "a" waits for the worker
        reading = json.dumps({"value": 20 + i % 3, "ts": 1.7e9 + 60 * i}).encode()
        service._ingest("sensors/a/reading", reading, 1.7e9 + 60 * i)
    service._ingest("sensors/b/reading", b"21.0", 1.7e9 + 60 * 40)  # "a" is evicted
    service._housekeeping()  # ... and its retained forecast taken away
    service.worker._serve(service.queue.take(256))
    to_a = [
        (payload != b"", retain) for topic, payload, retain in published if topic == "forecasts/a"
    ]
    assert to_a == [(False, True), (True, False)]  # the removal, then the forecast, live only
    # nor is the state its window took for it kept: it counted a sensor no longer tracked
    served = service.router.default.lane.served
    assert len(served.scores) == 0 and served.scores.on_persistence == 0
    assert served.heads is not None and len(served.heads) == 0
