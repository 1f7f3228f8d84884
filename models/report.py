"""Test-tail evaluation against baselines, and the reports `train` and `inspect` print.

Pure numpy: `sensorcast inspect` runs on a gateway without TensorFlow. The
metrics dict built here is stored as bundle.json `metrics` and printed by the
one table formatter, `format_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sensorcast.models.bundle import BundleMeta, load_bundle

SEASONS_S = {"daily": 86_400.0, "weekly": 604_800.0, "yearly": 31_557_600.0}
SEASON_TOLERANCE = 0.05
"""A season counts when it spans a whole number of steps to within this fraction."""

Float64 = NDArray[np.float64]


def season_steps(cadence_s: float | None, timesteps: int) -> tuple[str, int] | None:
    """The shortest daily/weekly/yearly season that fits in the window, in steps."""
    if not cadence_s:
        return None
    for name, period in SEASONS_S.items():
        steps = period / cadence_s
        whole = round(steps)
        if 2 <= whole <= timesteps and abs(steps - whole) <= SEASON_TOLERANCE * steps:
            return name, whole
    return None


def baselines(history: Float64, horizon: int, season: int | None) -> tuple[Float64, Float64]:
    """Persistence and seasonal-naive (or window moving-average) forecasts, (n, H, K) each.

    `history` is the targets' own past, (n, T, K); the seasonal-naive forecast
    for step h repeats the value `season * ceil(h / season)` steps before it.
    """
    t = history.shape[1]
    persistence = np.repeat(history[:, -1:, :], horizon, axis=1)
    if season is None:
        return persistence, np.repeat(history.mean(axis=1, keepdims=True), horizon, axis=1)
    h = np.arange(1, horizon + 1)
    back = t - 1 + h - season * np.ceil(h / season).astype(int)
    return persistence, history[:, back, :]


def error_table(
    truth: Float64, forecasts: dict[str, Float64], targets: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per target: MAE and RMSE of each forecast, and skill = model MAE / persistence MAE."""
    out: dict[str, dict[str, Any]] = {}
    for j, target in enumerate(targets):
        row: dict[str, Any] = {}
        for name, pred in forecasts.items():
            err = pred[..., j] - truth[..., j]
            row[name] = {
                "mae": float(np.abs(err).mean()),
                "rmse": float(np.sqrt((err**2).mean())),
            }
        ref = row["persistence"]["mae"]
        row["skill"] = row["model"]["mae"] / ref if ref > 0 else None
        out[target] = row
    return out


def evaluate(
    pred: Float64,
    truth: Float64,
    history: Float64,
    targets: Sequence[str],
    season: tuple[str, int] | None,
) -> dict[str, Any]:
    """Metrics of a model's test-tail forecasts against persistence and a second baseline."""
    persistence, base = baselines(history, truth.shape[1], season[1] if season else None)
    forecasts = {"model": pred, "persistence": persistence, "baseline": base}
    if season:
        baseline = {"name": "seasonal_naive", "season": season[0], "steps": season[1]}
    else:
        baseline = {"name": "moving_average", "steps": history.shape[1]}
    return {"baseline": baseline, "targets": error_table(truth, forecasts, targets)}


def format_metrics(metrics: dict[str, Any]) -> str:
    """The metrics table (test tail, sensor units) that `train` and `inspect` print."""
    targets = metrics.get("targets")
    if not isinstance(targets, dict) or not targets:
        return "metrics: none recorded"
    base = metrics.get("baseline", {})
    base_name = _baseline_label(base if isinstance(base, dict) else {})
    sensors = metrics.get("sensors")
    suffix = " (all)" if isinstance(sensors, dict) and sensors else ""
    rows = [(f"{name}{suffix}", row) for name, row in targets.items()]
    if isinstance(sensors, dict):
        for sensor, per_target in sensors.items():
            if isinstance(per_target, dict):
                rows += [(f"{sensor}/{t}", row) for t, row in per_target.items()]
    width = max(12, *(len(name) for name, _ in rows))
    head = f"{'target':<{width}} {'model MAE':>10} {'RMSE':>10} {'persist MAE':>12} {'RMSE':>10}"
    lines = [
        f"test tail, sensor units: {metrics.get('n_test', '?')} windows; baseline = {base_name}",
        "skill = model MAE / persistence MAE (below 1 beats persistence)",
        f"{head} {'base MAE':>10} {'RMSE':>10} {'skill':>6}",
    ]
    lines += [_table_row(name, row, width) for name, row in rows]
    return "\n".join(lines)


def format_bundle(meta: BundleMeta) -> str:
    """Everything `sensorcast inspect` shows about a bundle, metrics table last."""
    arch = meta.architecture
    training = meta.training
    m = meta.metrics
    fields = [
        ("name", meta.name),
        ("model id", meta.model_id),
        ("created", meta.created),
        (
            "architecture",
            f"{arch.kind}: {arch.layers} LSTM layer(s) of {arch.units} units, "
            f"dropout {arch.dropout:g}",
        ),
        ("timesteps", str(meta.timesteps)),
        ("horizon", str(meta.horizon)),
        ("features", ", ".join(meta.features)),
        ("targets", ", ".join(meta.targets)),
        ("cadence", _cadence_label(meta.cadence_s)),
        ("normalisation", _normalisation_label(meta)),
        (
            "training",
            f"{training.get('data', '?')}, {training.get('rows', '?')} rows, "
            f"seed {training.get('seed', '?')}, {m.get('epochs', '?')} epochs, "
            f"best val_loss {_num(m.get('best_val_loss'))}",
        ),
        (
            "windows",
            f"train {m.get('n_train', '?')}, validation {m.get('n_val', '?')}, "
            f"test {m.get('n_test', '?')}",
        ),
        ("versions", ", ".join(f"{k} {v}" for k, v in meta.versions.items()) or "unknown"),
    ]
    width = max(len(k) for k, _ in fields)
    lines = [f"{k:<{width}}  {v}" for k, v in fields]
    return "\n".join([*lines, "", format_metrics(meta.metrics)])


def run_inspect(path: str | Path) -> int:
    """`sensorcast inspect BUNDLE_DIR`: validate the bundle and print its report."""
    print(format_bundle(load_bundle(path).meta))
    return 0


def _normalisation_label(meta: BundleMeta) -> str:
    norm = meta.normalisation
    if norm.mode == "window":
        return "window (each window scaled by its own mean and std)"
    pairs = zip(meta.features, norm.mean or [], norm.std or [], strict=False)
    stats = ", ".join(f"{f} {m:.4g}±{s:.4g}" for f, m, s in pairs)
    return f"global (training-split statistics: {stats})"


def _cadence_label(seconds: float | None) -> str:
    if not seconds:
        return "unknown (series differ, or too few readings)"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds:g} s ({seconds / size:.3g} {unit})"
    return f"{seconds:g} s"


def _baseline_label(base: dict[str, Any]) -> str:
    if base.get("name") == "seasonal_naive":
        return f"seasonal naive ({base.get('season')}, {base.get('steps')} steps)"
    return f"moving average of the window ({base.get('steps', '?')} steps)"


def _table_row(name: str, row: Any, width: int) -> str:
    if not isinstance(row, dict):
        return f"{name:<{width}} (malformed)"
    cells = []
    for key, size in (("model", 10), ("persistence", 12), ("baseline", 10)):
        found = row.get(key)
        scores = found if isinstance(found, dict) else {}
        cells += [f"{_num(scores.get('mae')):>{size}}", f"{_num(scores.get('rmse')):>10}"]
    return f"{name:<{width}} {' '.join(cells)} {_num(row.get('skill'), 3):>6}"


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}g}"
    return "-"
