"""Online accuracy: score each forecast's first step when the realised reading arrives.

The worker records, per sensor, the first forecast step and the window's last
values (what persistence would have said). When the next reading of that
sensor arrives, right after the window it was made from, both errors are
folded into rolling means, exported per model and target next to each other,
so the metrics always say whether the model beats repeating the last value.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sensorcast.metrics import Metrics

ROLLING_WEIGHT = 0.01
"""Weight of the newest error in the rolling means (about the last 100 forecasts)."""


@dataclass(frozen=True, slots=True)
class Expected:
    """What the model and persistence said the reading after `window_ts` would be."""

    window_ts: float
    forecast: NDArray[np.float64]
    persistence: NDArray[np.float64]


class OnlineAccuracy:
    """Rolling MAE of the model and of persistence, per model and target."""

    def __init__(
        self,
        metrics: Metrics,
        features: list[str],
        targets: list[str],
        model_id: str,
        max_sensors: int,
    ) -> None:
        self._mae = metrics.online_mae
        self._persistence = metrics.online_persistence_mae
        self._scored = metrics.online_scored
        self._expected: dict[str, Expected] = {}
        self._lock = threading.Lock()
        self.max_sensors = max_sensors
        self.configure(features, targets, model_id)

    def configure(self, features: list[str], targets: list[str], model_id: str) -> None:
        """Score for this model from now on (after a reload)."""
        scored = [(i, t) for i, t in enumerate(targets) if t in features]
        self._target_idx = np.array([i for i, _ in scored], dtype=np.intp)
        self._feature_idx = np.array([features.index(t) for _, t in scored], dtype=np.intp)
        self._model = model_id
        self._mean = np.full(len(scored), np.nan)
        self._pmean = np.full(len(scored), np.nan)
        self._gauges = [
            (self._mae.labels(model_id, t), self._persistence.labels(model_id, t))
            for _, t in scored
        ]
        for mae, pmae in self._gauges:  # NaN, not 0, until something is scored
            mae.set(float("nan"))
            pmae.set(float("nan"))
        self._counter = self._scored.labels(model_id)
        with self._lock:
            self._expected.clear()

    def expect(
        self,
        sensor_id: str,
        window_ts: float,
        forecast: NDArray[np.float64],
        window: NDArray[np.float64],
    ) -> None:
        """Record a forecast (horizon, targets) made from `window` (timesteps, features)."""
        if not self._gauges:
            return
        entry = Expected(window_ts, forecast[0, self._target_idx], window[-1, self._feature_idx])
        with self._lock:
            self._expected.pop(sensor_id, None)
            self._expected[sensor_id] = entry
            if len(self._expected) > self.max_sensors:
                del self._expected[next(iter(self._expected))]

    def observe(self, sensor_id: str, previous_ts: float, values: tuple[float, ...]) -> None:
        """A reading arrived whose predecessor was at `previous_ts`; score what was expected."""
        with self._lock:
            entry = self._expected.get(sensor_id)
            if entry is None or entry.window_ts != previous_ts:
                return
            del self._expected[sensor_id]
        actual = np.asarray(values, dtype=np.float64)[self._feature_idx]
        err = np.abs(actual - entry.forecast)
        perr = np.abs(actual - entry.persistence)
        first = np.isnan(self._mean)
        self._mean = np.where(first, err, self._mean + ROLLING_WEIGHT * (err - self._mean))
        self._pmean = np.where(first, perr, self._pmean + ROLLING_WEIGHT * (perr - self._pmean))
        for (mae, pmae), m, p in zip(self._gauges, self._mean, self._pmean, strict=True):
            mae.set(m)
            pmae.set(p)
        self._counter.inc()
