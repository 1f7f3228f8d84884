"""Online accuracy: forecasts scored against the reading that realises them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from sensorcast.accuracy import ROLLING_WEIGHT, OnlineAccuracy
from sensorcast.metrics import Metrics
from sensorcast.scoring import SensorScores

from .slotted import slotted
from .test_forecasts import make_meta

FEATURES = ["temperature", "humidity"]


class Served:
    """Scores and the online accuracy of one model, fed windows as the worker feeds them."""

    def __init__(self, targets: list[str] | None = None) -> None:
        meta = make_meta(targets=targets or ["temperature"], features=FEATURES, horizon=2)
        self.metrics = Metrics()
        self.accuracy = OnlineAccuracy(self.metrics, meta.features, meta.targets, "m@1")
        self.scores = SensorScores(meta, level=0.9, anomaly_level=0.99, max_sensors=10)
        self.seq: dict[str, int] = {}

    def serve(self, items: list[tuple[str, list[float], float]]) -> None:
        """One batch: per window (sensor, its temperatures oldest first, the model's
        forecast of the next one); consecutive windows of a sensor are one reading apart,
        unless a gap of numbers is given by `skip`."""
        windows, forecasts = [], []
        for sid, temps, forecast in items:
            seq = self.seq[sid] = self.seq.get(sid, 100) + 1
            values = np.column_stack([temps, np.full(len(temps), 40.0)])
            windows.append(slotted(sid, values, float(seq), 60.0, seq=seq))
            forecasts.append([[forecast], [forecast]])
        fc = np.asarray(forecasts, dtype=np.float64)
        self.scores.score(windows, fc, np.ones((len(items), 1, 1)), accuracy=self.accuracy)

    def skip(self, sid: str) -> None:
        self.seq[sid] += 1

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def value(self, name: str) -> float | None:
        return self.registry.get_sample_value(name, {"model": "m@1", "target": "temperature"})

    def scored(self) -> float | None:
        return self.registry.get_sample_value("sensorcast_online_scored_total", {"model": "m@1"})


def test_first_step_is_scored_against_the_next_reading_with_persistence_beside_it() -> None:
    s = Served()
    s.serve([("s", [20.0, 20.5], 21.0)])
    assert s.scored() == 0
    s.serve([("s", [20.5, 21.5], 22.0)])  # 21.5 realises the forecast 21.0; the last was 20.5
    assert s.value("sensorcast_online_mae") == pytest.approx(0.5)
    assert s.value("sensorcast_online_persistence_mae") == pytest.approx(1.0)
    # scaled by the mean absolute change of the window the forecast was made from (0.5)
    assert s.value("sensorcast_online_mase") == pytest.approx(1.0)
    assert s.value("sensorcast_online_persistence_mase") == pytest.approx(2.0)
    assert s.scored() == 1


def test_a_reading_that_is_not_the_immediate_successor_is_not_scored() -> None:
    s = Served()
    s.serve([("s", [20.0, 20.5], 21.0)])
    s.skip("s")  # a reading in between was never forecast from (a superseded window)
    s.serve([("s", [21.0, 30.0], 31.0), ("other", [1.0, 2.0], 3.0)])
    assert math.isnan(s.value("sensorcast_online_mae"))  # "no value yet", not a perfect 0
    assert s.scored() == 0


def test_rolling_mean_moves_slowly_and_each_forecast_counts_once() -> None:
    s = Served()
    s.serve([("s", [10.0, 10.0], 10.0)])
    for i in range(200):
        s.serve([("s", [10.0, 11.0 if i < 100 else 10.0], 10.0)])
    mae = s.value("sensorcast_online_mae")
    assert mae is not None and 0.2 < mae < 0.5  # decayed from 1 towards 0 over 100 readings
    assert s.scored() == 200


def test_a_batch_folds_as_its_readings_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    ids = ["a", "b", "c", "d"]
    rounds = [
        [(sid, rng.normal(20, 2, 4).tolist(), float(rng.normal(20, 2))) for sid in ids]
        for _ in range(4)
    ]
    one, batch = Served(), Served()
    for items in rounds:
        for item in items:
            one.serve([item])
        batch.serve(items)
    for name in ("sensorcast_online_mae", "sensorcast_online_persistence_mase"):
        assert batch.value(name) == pytest.approx(one.value(name), rel=1e-9)
    assert batch.scored() == one.scored() == 3 * len(ids)
    batch.serve([("a", [1.0, 2.0], 3.0), ("a", [2.0, 3.0], 4.0)])  # one sensor twice: in order
    assert batch.scored() == 3 * len(ids) + 2


def test_fold_is_the_rolling_mean_of_each_value_in_turn() -> None:
    metrics = Metrics()
    acc = OnlineAccuracy(metrics, ["value"], ["value"], "m@1")
    errors = np.array([[3.0], [1.0], [4.0], [1.0], [5.0]])
    acc.fold(errors, 2 * errors, np.array([[1.0], [0.0], [2.0], [1.0], [1.0]]))
    mean = 3.0
    for x in (1.0, 4.0, 1.0, 5.0):
        mean += ROLLING_WEIGHT * (x - mean)
    labels = {"model": "m@1", "target": "value"}
    assert metrics.value("sensorcast_online_mae", **labels) == pytest.approx(mean)
    assert metrics.value("sensorcast_online_persistence_mae", **labels) == pytest.approx(2 * mean)
    scaled = 3.0  # the window of scale 0 is not scaled
    for x in (2.0, 1.0, 5.0):
        scaled += ROLLING_WEIGHT * (x - scaled)
    assert metrics.value("sensorcast_online_mase", **labels) == pytest.approx(scaled)


def test_targets_that_are_not_features_are_not_scored() -> None:
    metrics = Metrics()
    acc = OnlineAccuracy(metrics, ["temperature"], ["co2"], "m@1")
    acc.fold(np.ones((1, 1)), np.ones((1, 1)), np.ones((1, 1)))
    assert metrics.value("sensorcast_online_scored_total", model="m@1") == 0
    assert metrics.registry.get_sample_value("sensorcast_online_mae", {"model": "m@1"}) is None
