"""Scoring a trained model at the end of `sensorcast train`, and calibrating its intervals.

Forecasts go through the shared `Scaler`, exactly as the daemon makes them; the
test tail is scored in sensor units against persistence and a seasonal-naive (or
moving-average) baseline, overall and per horizon step, and the validation
windows, held back from fitting the weights, calibrate the intervals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sensorcast.models import calibrate, dataset, report
from sensorcast.models.bundle import Calibration
from sensorcast.models.preprocess import Scaler

if TYPE_CHECKING:
    import keras


def predict_scaled(
    model: keras.Model, scaler: Scaler, windows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts in sensor units for raw windows, through the shared `Scaler`, and each
    window's scale (n, 1, targets): the unit of the interval calibration."""
    x, ctx = scaler.transform(windows)
    forecast: np.ndarray = scaler.inverse(model.predict(x, batch_size=1024, verbose=0), ctx)
    return forecast, np.broadcast_to(ctx.scale, (len(x), 1, forecast.shape[2]))


def calibrate_intervals(
    model: keras.Model, scaler: Scaler, prep: dataset.Prepared, spec: dataset.WindowSpec,
    season: tuple[str, int] | None, test: tuple[np.ndarray, np.ndarray], metrics: dict[str, Any],
) -> Calibration:  # fmt: skip
    """Calibrate intervals on the validation windows (held back from fitting the weights;
    split conformal), and add per-step validation and test errors and the test coverage
    of those intervals to `metrics`. `test` is the test forecasts and their scales."""
    test_pred, test_scale = test
    val_pred, val_scale = predict_scaled(model, scaler, prep.val.x)
    val_steps = report.step_errors(val_pred, prep.val.y, prep.val.history, spec.targets, season)
    test_steps = report.step_errors(test_pred, prep.test.y, prep.test.history, spec.targets, season)
    metrics["steps"] = {
        t: {"validation": val_steps[t], "test": test_steps[t]} for t in spec.targets
    }
    cal = calibrate.conformal(calibrate.normalised_errors(val_pred, prep.val.y, val_scale))
    cov = calibrate.coverage(cal, calibrate.normalised_errors(test_pred, prep.test.y, test_scale))
    metrics["coverage"] = {
        "levels": list(calibrate.REPORT_LEVELS),
        "targets": {t: cov[:, :, j].tolist() for j, t in enumerate(spec.targets)},
    }
    metrics["beats_persistence"] = report.persistence_warning(metrics) is None
    return cal


def score(
    pred: np.ndarray, prep: dataset.Prepared, spec: dataset.WindowSpec, sensors: list[str] | None,
    season: tuple[str, int] | None,
) -> dict[str, Any]:  # fmt: skip
    """Test-tail metrics overall and, for the named sensors, per sensor."""
    test = prep.test
    out: dict[str, Any] = report.evaluate(pred, test.y, test.history, spec.targets, season)
    per_sensor = {}
    for sensor in sensors or []:
        mine = test.sensor == prep.sensors.index(sensor)
        if mine.any():
            scores = report.evaluate(
                pred[mine], test.y[mine], test.history[mine], spec.targets, season
            )
            per_sensor[sensor] = {**scores["targets"]}
    if per_sensor:
        out["sensors"] = per_sensor
    return out
