"""Online accuracy: each forecast's first step scored when the realised reading arrives.

The per-sensor scores (scoring.py) keep every sensor's pending forecast; when a
window's newest reading realises the first step of the forecast made from the
window before it, they hand the model's error and persistence's (the last
value's) here, where both are folded into rolling means, exported per model
and target next to each other, so the metrics always say whether the model
beats repeating the last value. The model's own forecast is scored, whichever
the guard served.

Errors in sensor units average badly across sensors (degrees, ppm and lux
summed: the largest unit decides), so each error is also divided by its
window's own scale, the mean absolute change between consecutive readings
(the MASE scaling); these scaled means and their ratio are scale-free.

Nothing here is per sensor: the scores keep what is pending, in their arrays.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial

import numpy as np
from numpy.typing import NDArray

from sensorcast.metrics import Metrics

ROLLING_WEIGHT = 0.01
"""Weight of the newest error in the rolling means (about the last 100 forecasts)."""
SCALE_FLOOR = 1e-3
"""A window's scale is at least this fraction of its mean magnitude, so one nearly flat
window (a quantised sensor that did not change) cannot outweigh a hundred others; a window
that is flat at zero is not scaled at all."""

Floats = NDArray[np.float64]


def window_scale(windows: Floats) -> Floats:
    """Per window and column of (..., timesteps, columns): the mean absolute change between
    consecutive readings, floored."""
    floor: Floats = SCALE_FLOOR * np.abs(windows).mean(axis=-2)
    if windows.shape[-2] < 2:
        return floor
    change: Floats = np.abs(np.diff(windows, axis=-2)).mean(axis=-2)
    return np.maximum(change, floor)


def _fold(means: list[float], k: int, new: Floats) -> None:
    """The rolling mean `means[k]` updated with each of `new` in turn; NaN means nothing
    folded yet (the first value is then the mean)."""
    mean = means[k]
    if not len(new):
        return
    if math.isnan(mean):
        mean, new = float(new[0]), new[1:]
    n = len(new)
    if n:  # n steps of mean += w (x - mean) at once: x_i weighs w (1 - w)^(n - 1 - i)
        keep_n, weights = _weights(n)
        mean = mean * keep_n + float(weights @ new)
    means[k] = mean


@lru_cache(maxsize=512)
def _weights(n: int) -> tuple[float, Floats]:
    """(1 - w)^n and the weights of n values folded at once (made once per batch size)."""
    keep = 1.0 - ROLLING_WEIGHT
    weights = ROLLING_WEIGHT * keep ** np.arange(n - 1, -1, -1, dtype=np.float64)
    weights.flags.writeable = False
    return keep**n, weights


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
    ) -> None:
        self._metrics = metrics
        self._model: str | None = None
        self._scored_targets: list[str] = []
        self.configure(features, targets, model_id)

    def configure(self, features: list[str], targets: list[str], model_id: str) -> None:
        """Score for this model from now on (after a reload); the old model's series go.
        As for intervals and the guard, only a bundle whose targets are all features has its
        forecasts scored (a model that forecasts CO2 from temperature cannot see the CO2)."""
        m = self._metrics
        if self._model is not None and self._model != model_id:
            m.forget_model(self._model, self._scored_targets)
        scored = targets if all(t in features for t in targets) else []
        self._model = model_id
        self._scored_targets = list(scored)
        self._means = [[math.nan] * 4 for _ in scored]
        """Per target: rolling MAE of the model, of persistence, and both scaled (NaN, not
        0, until something is scored). The gauges read them when they are scraped, so a
        batch costs a few array operations, not five gauge updates per reading."""
        families = (
            m.online_mae,
            m.online_persistence_mae,
            m.online_mase,
            m.online_persistence_mase,
        )
        for means, target in zip(self._means, scored, strict=True):
            for k, family in enumerate(families):
                family.labels(model_id, target).set_function(partial(_mean, means, k))
            m.online_relative_error.labels(model_id, target).set_function(partial(_ratio, means))
        self._counter = m.online_scored.labels(model_id)

    def fold(self, model_err: Floats, persistence_err: Floats, scale: Floats) -> None:
        """Fold first-step absolute errors (n, targets) of the model and of persistence, in
        the order they were realised, with their windows' scales (n, targets; 0: not scaled).
        Called by the inference worker only."""
        n = len(model_err)
        if not n or not self._means:
            return
        for k, means in enumerate(self._means):
            _fold(means, 0, model_err[:, k])
            _fold(means, 1, persistence_err[:, k])
            ok = scale[:, k] > 0
            if ok.any():
                _fold(means, 2, model_err[ok, k] / scale[ok, k])
                _fold(means, 3, persistence_err[ok, k] / scale[ok, k])
        self._counter.inc(n)
