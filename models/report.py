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
ACF_MIN = 0.3
"""An autocorrelation peak counts as a season from this correlation up."""
ACF_WINDOWS = 5_000
"""Training windows the autocorrelation is measured on (evenly spaced)."""

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


def autocorrelation_season(history: Float64) -> int | None:
    """The lag (2 .. T-1) of the highest autocorrelation peak of the windows `history`
    (n, T, K), each window's own mean removed, when that peak reaches `ACF_MIN`."""
    n, t = history.shape[:2]
    if n == 0 or t < 4:
        return None
    pick = np.linspace(0, n - 1, min(n, ACF_WINDOWS)).astype(int)
    h = history[pick] - history[pick].mean(axis=1, keepdims=True)
    acf = [1.0]
    for lag in range(1, t - 1):
        a, b = h[:, lag:].ravel(), h[:, :-lag].ravel()
        denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
        acf.append(float((a * b).sum()) / denom if denom > 0 else 0.0)
    peaks = [
        k for k in range(2, t - 1)
        if acf[k] > acf[k - 1] and (k + 1 >= len(acf) or acf[k] >= acf[k + 1])
    ]  # fmt: skip
    best = max(peaks, key=lambda k: acf[k], default=None)
    return best if best is not None and acf[best] >= ACF_MIN else None


def choose_season(
    cadence_s: float | None, timesteps: int, history: Float64
) -> tuple[str, int] | None:
    """The seasonal-naive season: daily/weekly/yearly from the cadence when one fits in
    the window, else the training windows' autocorrelation peak, else none."""
    season = season_steps(cadence_s, timesteps)
    if season is None:
        lag = autocorrelation_season(history)
        season = None if lag is None else ("autocorrelation", lag)
    return season


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


def step_errors(
    pred: Float64, truth: Float64, history: Float64, targets: Sequence[str],
    season: tuple[str, int] | None,
) -> dict[str, dict[str, list[float]]]:  # fmt: skip
    """Per target, per horizon step: MAE of the model, persistence and the baseline."""
    persistence, base = baselines(history, truth.shape[1], season[1] if season else None)
    out = {}
    for j, target in enumerate(targets):
        out[target] = {
            name: np.abs(f[..., j] - truth[..., j]).mean(axis=0).tolist()
            for name, f in (("model", pred), ("persistence", persistence), ("baseline", base))
        }
    return out


def persistence_warning(metrics: dict[str, Any]) -> str | None:
    """One line when the model does not beat persistence on validation at some step.

    A flat stretch (a stuck sensor, say) makes persistence exact; its ratio is then
    `n/a`, not a division by zero after the whole training run.
    """
    steps = metrics.get("steps")
    if not isinstance(steps, dict):
        return None
    losing, exact = [], False
    for target, splits in steps.items():
        val = splits.get("validation", {}) if isinstance(splits, dict) else {}
        pairs = zip(val.get("model", []), val.get("persistence", []), strict=False)
        for i, (m, p) in enumerate(pairs):
            if not m < p:
                ratio = f"{m / p:.2f}x" if p > 0 else "n/a"
                losing.append(f"{target} step {i + 1} ({ratio})")
                exact = exact or ratio == "n/a"
    if not losing:
        return None
    return (
        "warning: the model does not beat persistence on validation at "
        + ", ".join(losing[:6])
        + (", ..." if len(losing) > 6 else "")
        + ": repeating the last value forecasts better there"
        + ("; n/a: persistence is exact (error 0)" if exact else "")
    )


def format_steps(metrics: dict[str, Any]) -> list[str]:
    """Per-step validation and test MAE against persistence and the baseline, and the
    test coverage of the calibrated intervals."""
    steps = metrics.get("steps")
    if not isinstance(steps, dict) or not steps:
        return []
    cover = metrics.get("coverage")
    cover = cover if isinstance(cover, dict) else {}
    levels = cover.get("levels", [])
    cols = ("val model", "persist", "base", "ratio", "test model", "persist", "base", "ratio")
    head = f"{'target':<12} {'step':>4} " + " ".join(f"{c:>10}" for c in cols)
    head += "".join(f" {'cov' + format(v * 100, 'g'):>6}" for v in levels)
    lines = [
        "per step, MAE in sensor units; ratio = model / persistence; "
        "cov = test coverage of the calibrated interval",
        head,
    ]
    for target, splits in steps.items():
        if not isinstance(splits, dict):
            continue
        coverage = cover.get("targets", {}).get(target, [])
        for i in range(len(splits.get("test", {}).get("model", []))):
            cells = [*_step_cells(splits.get("validation"), i), *_step_cells(splits.get("test"), i)]
            cells += [f"{_num(row[i], 3):>6}" for row in coverage if i < len(row)]
            lines.append(f"{target:<12} {i + 1:>4} " + " ".join(cells))
    return lines


def _step_cells(part: Any, i: int) -> list[str]:
    """Model, persistence and baseline MAE at step i, and model / persistence."""
    part = part if isinstance(part, dict) else {}
    got = [part.get(k, []) for k in ("model", "persistence", "baseline")]
    m, p, b = (v[i] if isinstance(v, list) and i < len(v) else None for v in got)
    ratio = "-"
    if isinstance(m, float) and isinstance(p, float):
        ratio = _num(m / p) if p > 0 else "n/a"  # persistence exact: no ratio
    return [*(f"{_num(v):>10}" for v in (m, p, b)), f"{ratio:>10}"]


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
    steps = format_steps(metrics)
    warning = persistence_warning(metrics)
    lines += ["", *steps] if steps else []
    return "\n".join([*lines, *([warning] if warning else [])])


def format_bundle(meta: BundleMeta) -> str:
    """Everything `sensorcast inspect` shows about a bundle, metrics table last."""
    arch = meta.architecture
    training = meta.training
    m = meta.metrics
    fields = [
        ("name", meta.name),
        ("model id", meta.model_id),
        ("content hash", meta.content_hash),
        ("schema", f"version {meta.schema_version}"),
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
        ("calibration", _calibration_label(meta)),
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
    return "\n".join([*lines, "", _shown_metrics(meta.metrics)])


def _shown_metrics(metrics: dict[str, Any]) -> str:
    """The metrics table, or one line where it cannot be made: metrics are not part of the
    content hash, so a bundle.json edited by hand (or by other software) may hold anything
    there while its model still serves."""
    try:
        return format_metrics(metrics)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return "metrics: malformed (not as sensorcast train writes them); not shown"


def run_inspect(path: str | Path) -> int:
    """`sensorcast inspect BUNDLE_DIR`: validate the bundle and print its report."""
    print(format_bundle(load_bundle(path).meta))
    return 0


def _normalisation_label(meta: BundleMeta) -> str:
    norm = meta.normalisation
    if norm.mode == "window":
        return "window (each window scaled by its own mean and std)"
    if norm.mode == "last":
        if norm.scale is None and norm.step_scale == "trimmed":
            return "last (relative to the last reading, per-window trimmed RMS step scale)"
        if norm.scale is None:
            return "last (relative to the last reading, per-window RMS step scale)"
        scales = ", ".join(f"{f} {v:.4g}" for f, v in zip(meta.features, norm.scale, strict=False))
        return f"last (relative to the last reading, training-split step scale: {scales})"
    pairs = zip(meta.features, norm.mean or [], norm.std or [], strict=False)
    stats = ", ".join(f"{f} {m:.4g}±{s:.4g}" for f, m, s in pairs)
    return f"global (training-split statistics: {stats})"


def _calibration_label(meta: BundleMeta) -> str:
    cal = meta.interval_calibration
    q90 = ", ".join(_num(row[0], 3) for row in cal.quantile(0.9))
    where = (
        f"split conformal on {cal.n} held-back windows"
        if meta.calibration is not None
        else f"none stored (schema {meta.schema_version}): the documented default"
    )
    return f"{where}; 90% half-width per step, in scale units: {q90}"


def _cadence_label(seconds: float | None) -> str:
    if not seconds:
        return "unknown (series differ, or too few readings)"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds:g} s ({seconds / size:.3g} {unit})"
    return f"{seconds:g} s"


def _baseline_label(base: dict[str, Any]) -> str:
    if base.get("name") == "seasonal_naive":
        how = base.get("season")
        how = "by autocorrelation" if how == "autocorrelation" else how
        return f"seasonal naive ({how}, {base.get('steps')} steps)"
    return f"moving average of the window ({base.get('steps', '?')} steps)"


def _table_row(name: str, row: Any, width: int) -> str:
    if not isinstance(row, dict):
        return f"{name:<{width}} (malformed)"
    cells = []
    for key, size in (("model", 10), ("persistence", 12), ("baseline", 10)):
        found = row.get(key)
        scores = found if isinstance(found, dict) else {}
        cells += [f"{_num(scores.get('mae')):>{size}}", f"{_num(scores.get('rmse')):>10}"]
    skill = _num(row.get("skill"), 3)
    persistence = row.get("persistence")
    if isinstance(persistence, dict) and persistence.get("mae") == 0:
        skill = "n/a"  # persistence is exact, so `skill` is stored as null
    return f"{name:<{width}} {' '.join(cells)} {skill:>6}"


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}g}"
    return "-"
