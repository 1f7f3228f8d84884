"""Online accuracy: score each forecast's first step when the realised reading arrives.

The worker records, per sensor, the first forecast step and the window's last
values (what persistence would have said). When the next reading of that
sensor arrives, right after the window it was made from, both errors are
folded into rolling means, exported per model and target next to each other,
so the metrics always say whether the model beats repeating the last value.

Errors in sensor units average badly across sensors (degrees, ppm and lux
summed: the largest unit decides), so each error is also divided by its
window's own scale, the mean absolute change between consecutive readings
(the MASE scaling); these scaled means and their ratio are scale-free.

What is expected lives in preallocated arrays (float32 values, float64 window
timestamps), one row per sensor, found through one dict of sensor id to row:
no objects per sensor beyond that entry.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from functools import partial

import numpy as np
from numpy.typing import NDArray

from sensorcast.buffer import free_slots
from sensorcast.metrics import Metrics

ROLLING_WEIGHT = 0.01
"""Weight of the newest error in the rolling means (about the last 100 forecasts)."""
SCALE_FLOOR = 1e-3
"""A window's scale is at least this fraction of its mean magnitude, so one nearly flat
window (a quantised sensor that did not change) cannot outweigh a hundred others; a window
that is flat at zero is not scaled at all."""

Floats = NDArray[np.float64]
INITIAL_ROWS = 1024


def window_scale(windows: Floats) -> Floats:
    """Per window and column of (..., timesteps, columns): the mean absolute change between
    consecutive readings, floored."""
    floor: Floats = SCALE_FLOOR * np.abs(windows).mean(axis=-2)
    if windows.shape[-2] < 2:
        return floor
    change: Floats = np.abs(np.diff(windows, axis=-2)).mean(axis=-2)
    return np.maximum(change, floor)


def _fold(means: list[float], k: int, new: float) -> None:
    """The rolling mean `means[k]` updated with `new`; NaN means nothing folded yet."""
    mean = means[k]
    means[k] = new if math.isnan(mean) else mean + ROLLING_WEIGHT * (new - mean)


def _mean(means: list[float], k: int) -> float:
    return means[k]


def _ratio(means: list[float]) -> float:
    """The model's scaled MAE over persistence's: below 1, the model wins."""
    model, persistence = means[2], means[3]
    if persistence == 0:
        return math.inf if model > 0 else math.nan
    return model / persistence


class OnlineAccuracy:
    """Rolling MAE and scaled MAE of the model and of persistence, per model and target."""

    def __init__(
        self,
        metrics: Metrics,
        features: list[str],
        targets: list[str],
        model_id: str,
        max_sensors: int,
    ) -> None:
        self._metrics = metrics
        self._expected: dict[str, int] = {}
        """Sensor id -> row of the arrays below, oldest expectation first."""
        self._free: list[int] = []
        self._lock = threading.Lock()
        self.max_sensors = max_sensors
        self._model: str | None = None
        self._scored_targets: list[str] = []
        self.configure(features, targets, model_id)

    def configure(self, features: list[str], targets: list[str], model_id: str) -> None:
        """Score for this model from now on (after a reload); the old model's series go."""
        m = self._metrics
        if self._model is not None and self._model != model_id:
            m.forget_model(self._model, self._scored_targets)
        scored = [(i, t) for i, t in enumerate(targets) if t in features]
        self._target_idx = np.array([i for i, _ in scored], dtype=np.intp)
        self._feature_idx = np.array([features.index(t) for _, t in scored], dtype=np.intp)
        self._model = model_id
        self._scored_targets = [t for _, t in scored]
        n = len(scored)
        self._columns = list(zip(self._feature_idx.tolist(), range(n), strict=True))
        self._means = [[math.nan] * 4 for _ in range(n)]
        """Per scored target: rolling MAE of the model, of persistence, and both scaled (NaN,
        not 0, until something is scored). The gauges read them when they are scraped, so a
        reading costs a few float operations, not five gauge updates."""
        families = (
            m.online_mae,
            m.online_persistence_mae,
            m.online_mase,
            m.online_persistence_mase,
        )
        for means, (_, target) in zip(self._means, scored, strict=True):
            for k, family in enumerate(families):
                family.labels(model_id, target).set_function(partial(_mean, means, k))
            m.online_relative_error.labels(model_id, target).set_function(partial(_ratio, means))
        self._counter = m.online_scored.labels(model_id)
        with self._lock:
            self._expected.clear()
            self._free = []
            self._ts = np.full(0, np.nan)
            self._values = np.zeros((0, 3, n), dtype=np.float32)  # forecast, persistence, scale

    def _grow(self) -> None:
        n = len(self._ts)
        rows = max(n + 1, min(max(2 * n, INITIAL_ROWS), self.max_sensors))
        ts = np.full(rows, np.nan)
        values = np.zeros((rows, *self._values.shape[1:]), dtype=np.float32)
        ts[:n], values[:n] = self._ts, self._values
        self._ts, self._values = ts, values
        self._free.extend(free_slots(n, rows))

    def _row(self, sensor_id: str) -> int:
        row = self._expected.get(sensor_id)
        if row is not None:
            return row
        if len(self._expected) >= self.max_sensors:
            oldest = next(iter(self._expected))
            self._free.append(self._expected.pop(oldest))
        if not self._free:
            self._grow()
        row = self._free.pop()
        self._expected[sensor_id] = row
        return row

    def expect(self, sensor_id: str, window_ts: float, forecast: Floats, window: Floats) -> None:
        """Record a forecast (horizon, targets) made from `window` (timesteps, features)."""
        self.expect_batch([sensor_id], [window_ts], forecast[None], window[None])

    def expect_batch(
        self,
        sensor_ids: Sequence[str],
        window_ts: Sequence[float],
        forecasts: Floats,
        windows: Floats,
    ) -> None:
        """`expect` for a batch at once: forecasts (n, horizon, targets) made from windows
        (n, timesteps, features); of a sensor that appears twice, the later one counts."""
        n = len(sensor_ids)
        if not self._columns or not n:
            return
        columns = windows[:, :, self._feature_idx]
        scale = window_scale(columns)
        first = forecasts[:, 0, self._target_idx]
        last = columns[:, -1]
        with self._lock:
            rows = np.array([self._row(s) for s in sensor_ids], dtype=np.intp)
            at = np.arange(n)
            if len(np.unique(rows)) < n:  # keep each row's last occurrence only
                latest = {int(r): i for i, r in enumerate(rows.tolist())}
                at = np.array(sorted(latest.values()), dtype=np.intp)
                rows = rows[at]
            self._ts[rows] = np.asarray(window_ts, dtype=np.float64)[at]
            values = self._values
            values[rows, 0] = first[at]
            values[rows, 1] = last[at]
            values[rows, 2] = scale[at]

    def observe(self, sensor_id: str, previous_ts: float, values: tuple[float, ...]) -> None:
        """A reading arrived whose predecessor was at `previous_ts`; score what was expected."""
        with self._lock:
            row = self._expected.get(sensor_id)
            if row is None or self._ts[row] != previous_ts:
                return
            self._ts[row] = np.nan  # scored once; the row stays the sensor's
            forecast, persistence, scale = self._values[row].tolist()
        for feature, k in self._columns:
            actual = values[feature]
            err = abs(actual - forecast[k])
            perr = abs(actual - persistence[k])
            means = self._means[k]
            _fold(means, 0, err)
            _fold(means, 1, perr)
            if scale[k] > 0:
                _fold(means, 2, err / scale[k])
                _fold(means, 3, perr / scale[k])
        self._counter.inc()
