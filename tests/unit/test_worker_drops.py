"""The inference worker's handling of a forecast it cannot publish."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sensorcast.handoff import Pending, ReadyQueue
from sensorcast.inference import InferenceWorker, ServedBundle
from sensorcast.metrics import Metrics
from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
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
