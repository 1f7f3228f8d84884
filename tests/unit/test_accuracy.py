"""Online accuracy: forecasts scored against the reading that realises them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from sensorcast.accuracy import OnlineAccuracy
from sensorcast.metrics import Metrics


def make(targets: list[str] | None = None) -> tuple[OnlineAccuracy, CollectorRegistry]:
    metrics = Metrics()
    features = ["temperature", "humidity"]
    acc = OnlineAccuracy(metrics, features, targets or ["temperature"], "m@1", max_sensors=10)
    return acc, metrics.registry


def value(registry: CollectorRegistry, name: str, target: str = "temperature") -> float | None:
    return registry.get_sample_value(name, {"model": "m@1", "target": target})


def window(last_temp: float) -> np.ndarray:
    return np.array([[20.0, 40.0], [last_temp, 41.0]])


def test_first_step_is_scored_against_the_next_reading_with_persistence_beside_it():
    acc, reg = make()
    acc.expect("s", 100.0, np.array([[21.0]]), window(20.5))
    acc.observe("s", 100.0, (21.5, 45.0))
    assert value(reg, "sensorcast_online_mae") == pytest.approx(0.5)
    assert value(reg, "sensorcast_online_persistence_mae") == pytest.approx(1.0)
    assert reg.get_sample_value("sensorcast_online_scored_total", {"model": "m@1"}) == 1


def test_a_reading_that_is_not_the_immediate_successor_is_not_scored():
    acc, reg = make()
    acc.expect("s", 100.0, np.array([[21.0]]), window(20.5))
    acc.observe("s", 160.0, (30.0, 45.0))  # the forecast came after a later reading
    acc.observe("other", 100.0, (30.0, 45.0))
    assert math.isnan(value(reg, "sensorcast_online_mae"))  # "no value yet", not a perfect 0
    assert reg.get_sample_value("sensorcast_online_scored_total", {"model": "m@1"}) == 0


def test_rolling_mean_moves_slowly_and_each_forecast_counts_once():
    acc, reg = make()
    for i in range(200):
        acc.expect("s", float(i), np.array([[10.0]]), window(10.0))
        acc.observe("s", float(i), (11.0 if i < 100 else 10.0, 0.0))
        acc.observe("s", float(i), (50.0, 0.0))  # a duplicate delivery: already scored
    mae = value(reg, "sensorcast_online_mae")
    assert mae is not None and 0.2 < mae < 0.5  # decayed from 1 towards 0 over 100 readings


def test_targets_that_are_not_features_are_not_scored():
    metrics = Metrics()
    registry = metrics.registry
    acc = OnlineAccuracy(metrics, ["temperature"], ["co2"], "m@1", max_sensors=10)
    acc.expect("s", 1.0, np.array([[500.0]]), np.array([[20.0]]))
    acc.observe("s", 1.0, (21.0,))
    assert registry.get_sample_value("sensorcast_online_scored_total", {"model": "m@1"}) == 0


def test_pending_expectations_are_bounded():
    acc, _ = make()
    for i in range(50):
        acc.expect(f"s{i}", 1.0, np.array([[1.0]]), window(1.0))
    assert len(acc._expected) == 10


def test_a_batch_is_expected_as_its_windows_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    windows = rng.normal(20.0, 2.0, size=(6, 5, 2))
    forecasts = rng.normal(20.0, 2.0, size=(6, 3, 1))
    ids = ["a", "b", "a", "c", "d", "b"]  # a sensor twice: its later window counts
    one, reg_one = make()
    batch, reg_batch = make()
    for sid, w, f in zip(ids, windows, forecasts, strict=True):
        one.expect(sid, 100.0, f, w)
    batch.expect_batch(ids, [100.0] * 6, forecasts, windows)
    for sid in ("a", "b", "c", "d", "e"):
        one.observe(sid, 100.0, (21.0, 40.0))
        batch.observe(sid, 100.0, (21.0, 40.0))
    for name in ("sensorcast_online_mae", "sensorcast_online_mase"):
        assert value(reg_batch, name) == pytest.approx(value(reg_one, name), rel=1e-6)
    scored = "sensorcast_online_scored_total"
    assert reg_batch.get_sample_value(scored, {"model": "m@1"}) == 4
    assert reg_one.get_sample_value(scored, {"model": "m@1"}) == 4
