"""`sensorcast train`: fit a seed LSTM on a sensor CSV and write a verified bundle.

The data is cut at gaps and split by time per series (train / validation / test
tail); normalisation goes through the same `Scaler` the daemon uses. At the end
the test tail is scored in sensor units against persistence and a seasonal or
moving-average baseline, printed and stored in bundle.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sensorcast.errors import UserError
from sensorcast.models import dataset, export, install_hint, report
from sensorcast.models.build import ModelShape, build_network
from sensorcast.models.bundle import (
    MAX_COLUMNS,
    MAX_HORIZON,
    MAX_SIGNATURE_VALUES,
    MAX_TIMESTEPS,
    NAME_PATTERN,
    Normalisation,
    signature_values,
)
from sensorcast.models.evaluate import calibrate_intervals, predict_scaled, score
from sensorcast.models.preprocess import Scaler
from sensorcast.models.runtime import native_info_held

if TYPE_CHECKING:
    import keras

PARITY_WINDOWS = 300
"""Test windows the exported LiteRT model is checked on (enough to use every signature)."""
MAX_TRAIN_Z = 10.0
"""Training and validation windows with a normalised target beyond this are left out.

With window normalisation, a jump after a flat window is tens of thousands of
window-scales; the loss would chase it. With `last` the bound grows with the
square root of the step (a random walk's spread). Test windows are always kept.
"""
NORMALISATIONS = ("last", "window", "global")
DEFAULT_NORMALISATION = "last"
LOSSES = {"mae": "mean_absolute_error", "huber": "huber", "mse": "mean_squared_error"}


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated column names")
    return names


DESCRIPTION = """\
Train an LSTM forecaster on a sensor CSV and write a bundle (model.keras,
model.tflite, bundle.json) that `sensorcast run` serves.

CSV: wide (time,<feature>...) or long (time,sensor_id,<feature>...). The time
column is the first named time/date/timestamp/ts, else the first column; epoch
seconds, ISO-8601 (naive = UTC) or YYYYMMDD; epoch numbers of 1e11 or more
(the year 5138 in seconds) are taken as milliseconds, microseconds or
nanoseconds, the first that gives a date, and converted with a notice. Empty
cells are gaps. A missing value or a step longer than --max-gap x the series'
cadence cuts the series; no window crosses a cut. Each series is split by time
into train, validation and test tail. Features default to every numeric
column, targets to every feature. Training and validation windows whose
normalised target exceeds 10 (a jump after a flat window, say) are left out;
the test tail keeps them all.

The table at the end scores the test tail in sensor units: the model against
persistence (last value) and a seasonal-naive forecast when a daily, weekly or
yearly season fits in the window, else at the lag of the training windows'
autocorrelation peak (at least 0.3), else the window's mean; then per horizon
step, on validation and test, with the test coverage of the intervals
calibrated on the validation windows (split conformal, stored in bundle.json).
A warning line says where the model does not beat persistence on validation."""

_NUMBERS: tuple[tuple[str, type, Any, str, str], ...] = (
    ("--timesteps", int, 20, "T", "window length"),
    ("--horizon", int, None, "H", "steps to forecast (default 1; with --seq2seq: T)"),
    ("--epochs", int, 50, "E", "maximum epochs"),
    ("--layers", int, 1, "L", "LSTM layers; 2 or more is the stacked shape"),
    ("--units", int, 50, "U", "units per LSTM layer"),
    ("--dropout", float, 0.0, "D", "dropout after each LSTM layer"),
    ("--batch-size", int, 64, "B", "training batch size"),
    ("--patience", int, 5, "N", "epochs without validation improvement before stopping"),
    ("--seed", int, 0, "N", "random seed"),
    ("--max-gap", float, 1.5, "FACTOR", "a time step above FACTOR x the cadence is a gap"),
    ("--val-frac", float, 0.15, "F", "share of each series for validation"),
    ("--test-frac", float, 0.15, "F", "share of each series for the test tail"),
)


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add `sensorcast train`'s arguments and description to `p`."""
    p.description = DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("data", type=Path, metavar="DATA.csv", help="training data")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="bundle directory")
    for flag, kind, default, metavar, text in _NUMBERS:
        text += "" if default is None else f" (default {default})"
        p.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)
    p.add_argument("--features", type=_names, metavar="A,B", help="inputs (default: all numeric)")
    p.add_argument("--targets", type=_names, metavar="A,B", help="outputs (default: all features)")
    p.add_argument("--seq2seq", action="store_true", help="forecast T steps, one per input step")
    p.add_argument(
        "--normalisation",
        choices=NORMALISATIONS,
        default=DEFAULT_NORMALISATION,
        help=f"last: relative to the window's last reading, in steps (an untrained model is "
        f"persistence); window: each window by its own mean/std; global: the training "
        f"split's mean/std (default {DEFAULT_NORMALISATION})",
    )
    p.add_argument(
        "--step-scale",
        choices=("auto", "split", "window", "trimmed"),
        default="auto",
        help="with last: divide by the training split's RMS step (split) or by each window's "
        "own (window: one model for sensors of any magnitude; trimmed: the same without the "
        "window's largest steps, so a jump does not set it); auto (default): split for one "
        "series, window for several",
    )
    p.add_argument("--loss", choices=tuple(LOSSES), default="mae",
                   help="training loss (default mae: robust to jumps)")  # fmt: skip
    p.add_argument(
        "--format", choices=("auto", "csv", "homeassistant", "influx"), default="auto",
        help="the data file's kind (default: detected): a sensor CSV, a Home Assistant "
        "history export, an InfluxDB annotated CSV",
    )  # fmt: skip
    p.add_argument("--resample", type=float, metavar="S",
                   help="Home Assistant exports: grid step in seconds (default: the median "
                   "time between changes)")  # fmt: skip
    p.add_argument("--name", help="bundle name (default: the --out directory's name)")
    p.add_argument("--sensor-metrics", type=_names, metavar="ID,ID",
                   help="also score these sensor_ids' test tails one by one")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress display")


def run(args: argparse.Namespace) -> int:
    """Train, evaluate, export and verify; print the metrics table. Errors are `UserError`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF C++ chatter; errors still raise
    try:
        with native_info_held() if args.quiet else contextlib.nullcontext():
            import tensorflow  # noqa: F401  (needed right after; fail early with one clear line)
    except ImportError:
        raise UserError(
            f"training needs TensorFlow, the [train] extra: {install_hint('train')}"
        ) from None
    horizon, name = _check_options(args)
    export.check_out_dir(Path(args.out))
    table, spec, prep = load_data(args, horizon)
    shape = ModelShape(args.timesteps, len(spec.features), horizon, len(spec.targets),
                       args.layers, args.units, args.dropout, args.seq2seq,
                       zero_head=args.normalisation == "last")  # fmt: skip
    norm = _normalisation(args, prep)
    scaler = Scaler(norm, spec.features, spec.targets)
    _say(args, f"training {shape.kind} on {len(prep.train)} windows (validation "
         f"{len(prep.val)}, test {len(prep.test)}) from {table.path.name}")  # fmt: skip
    model, metrics = fit(shape, scaler, prep, args)
    season = report.choose_season(prep.cadence_s, spec.timesteps, prep.train.history)
    test_pred, test_scale = predict_scaled(model, scaler, prep.test.x)
    metrics |= score(test_pred, prep, spec, args.sensor_metrics, season)
    calibration = calibrate_intervals(model, scaler, prep, spec, season, (test_pred, test_scale),
                                      metrics)  # fmt: skip
    fields = {
        "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "timesteps": spec.timesteps, "features": spec.features, "targets": spec.targets,
        "horizon": spec.horizon, "cadence_s": prep.cadence_s,
        "normalisation": norm.model_dump(exclude_none=True),
        "calibration": calibration.model_dump(),
        "architecture": {"kind": shape.kind, "layers": shape.layers, "units": shape.units,
                         "dropout": shape.dropout},
        "metrics": metrics, "versions": versions(), "training": _training_info(args, table, prep),
    }  # fmt: skip
    check = slice(0, PARITY_WINDOWS)
    with native_info_held() if args.quiet else contextlib.nullcontext():
        meta = export.export_bundle(
            model, Path(args.out), fields, prep.test.x[check], prep.test.y[check]
        )
    print(report.format_metrics(metrics))
    print(f"wrote {args.out} ({meta.model_id})")
    return 0


def load_data(
    args: argparse.Namespace, horizon: int
) -> tuple[dataset.Table, dataset.WindowSpec, dataset.Prepared]:
    """Read the CSV, resolve the columns and window the three splits."""
    table = dataset.read_csv(args.data, args.format, args.resample)
    if table.time_unit != "seconds":  # shown even with --quiet: it is what the times mean
        print(f"{table.path.name}: the times are epoch {table.time_unit} (too large for "
              f"seconds); converted to seconds", flush=True)  # fmt: skip
    feats, tgts = dataset.resolve_columns(table, args.features, args.targets)
    if args.normalisation != "global" and not set(tgts) <= set(feats):
        raise UserError(f"--normalisation {args.normalisation} needs every target to be a feature")
    spec = dataset.WindowSpec(feats, tgts, args.timesteps, horizon, args.max_gap,
                              args.val_frac, args.test_frac)  # fmt: skip
    _check_bundle_shape(spec)
    series = dataset.load_series(table, spec.columns)
    for k, column in enumerate(spec.columns):  # else: 'the longest training stretch has 0'
        if all(np.isnan(s.values[:, k]).all() for s in series):
            raise UserError(f"{table.path.name}: column {column!r} has no value in any row")
    repeated = sum(s.duplicates for s in series)
    if repeated:  # shown even with --quiet: rows of the data are not trained on
        hint = "; a file of several sensors needs a sensor_id column"
        several = "" if table.sensor_column is not None else hint
        print(f"{table.path.name}: left out {repeated} of {len(table.rows)} rows, whose time "
              f"repeats an earlier row's of the same series{several}", flush=True)  # fmt: skip
    unknown = set(args.sensor_metrics or []) - {s.name for s in series}
    if unknown:
        raise UserError(f"--sensor-metrics: no sensor_id {sorted(unknown)[0]!r} in the data")
    return table, spec, dataset.prepare(series, spec)


def fit(
    shape: ModelShape, scaler: Scaler, prep: dataset.Prepared, args: argparse.Namespace
) -> tuple[keras.Model, dict[str, Any]]:
    """Seeded build and fit with Adam, the chosen loss and early stopping on validation."""
    import keras
    import tensorflow as tf

    x, y, dropped = _scaled(scaler, prep.train, args.normalisation)
    vx, vy, vdropped = _scaled(scaler, prep.val, args.normalisation)
    if not len(x) or not len(vx):
        raise UserError("every training or validation window is an outlier jump; check the data")
    if dropped + vdropped:
        _say(args, f"left out {dropped + vdropped} windows with a normalised target beyond "
             f"{MAX_TRAIN_Z:g}")  # fmt: skip
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()  # same seed, same bundle
    model = build_network(shape)
    model.compile(optimizer=keras.optimizers.Adam(), loss=LOSSES[args.loss])
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=args.patience, restore_best_weights=True
    )
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    history = model.fit(
        x,
        y,
        validation_data=(vx, vy),
        epochs=args.epochs,
        batch_size=args.batch_size,
        callbacks=[stop],
        verbose=verbose,
    )
    return model, {
        "n_train": len(x),
        "n_val": len(vx),
        "n_test": len(prep.test),
        "n_dropped": dropped + vdropped,
        "epochs": len(history.epoch),
        "best_val_loss": float(min(history.history["val_loss"])),
    }


def versions() -> dict[str, str]:
    """Library versions that produced a bundle."""
    import keras
    import tensorflow as tf

    from sensorcast import __version__

    return {
        "sensorcast": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _check_options(args: argparse.Namespace) -> tuple[int, str]:
    """Check the numeric options; return the horizon and the bundle name."""
    checks = [
        (args.timesteps >= 1, "--timesteps must be at least 1"),
        (args.horizon is None or args.horizon >= 1, "--horizon must be at least 1"),
        (
            not args.seq2seq or args.horizon in (None, args.timesteps),
            "--seq2seq forecasts `timesteps` steps: leave out --horizon or set it equal",
        ),
        (
            min(args.epochs, args.layers, args.units) >= 1,
            "--epochs, --layers and --units must be at least 1",
        ),
        (0.0 <= args.dropout < 1.0, "--dropout must be in [0, 1)"),
        (args.batch_size >= 1 and args.patience >= 0, "--batch-size must be >= 1, --patience >= 0"),
        (args.max_gap >= 1.0, "--max-gap must be at least 1 (a factor of the cadence)"),
        (
            args.resample is None or 0 < args.resample < math.inf,
            "--resample must be a positive number of seconds",
        ),
        (
            args.val_frac > 0 and args.test_frac > 0 and args.val_frac + args.test_frac < 0.9,
            "--val-frac and --test-frac must be positive and sum to less than 0.9",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    horizon = args.timesteps if args.seq2seq else (args.horizon or 1)
    _check_bundle_limits(args, horizon)
    name = args.name or Path(args.out).resolve().name
    if not re.match(NAME_PATTERN, name):
        raise UserError(f"bundle name {name!r} is not 1-64 of A-Z a-z 0-9 _ . -: use --name")
    return horizon, name


def _check_bundle_limits(args: argparse.Namespace, horizon: int) -> None:
    """Refuse before training what the bundle schema would refuse only when written."""
    if args.timesteps > MAX_TIMESTEPS:
        raise UserError(f"--timesteps must be at most {MAX_TIMESTEPS} (the bundle's limit)")
    if horizon > MAX_HORIZON:
        flag = "with --seq2seq, --timesteps (the horizon)" if args.seq2seq else "--horizon"
        raise UserError(f"{flag} must be at most {MAX_HORIZON} (the bundle's limit)")
    for flag, names in (("--features", args.features), ("--targets", args.targets)):
        twice = next((n for i, n in enumerate(names or []) if n in names[:i]), None)
        if twice is not None:
            raise UserError(f"{flag} names {twice!r} twice")


def _check_bundle_shape(spec: dataset.WindowSpec) -> None:
    """The bundle limits that depend on the columns, known once the CSV is read."""
    for role, names in (("features", spec.features), ("targets", spec.targets)):
        if len(names) > MAX_COLUMNS:
            raise UserError(
                f"{len(names)} {role}: a bundle takes at most {MAX_COLUMNS} (choose with --{role})"
            )
    batch = max(export.BATCH_SIZES)
    shape = (spec.timesteps, len(spec.features), spec.horizon, len(spec.targets))
    if signature_values(*shape, batch) > MAX_SIGNATURE_VALUES:
        raise UserError(
            f"{spec.timesteps} timesteps x {len(spec.features)} features (or horizon "
            f"{spec.horizon} x {len(spec.targets)} targets) at batch {batch} exceed a bundle's "
            f"{MAX_SIGNATURE_VALUES} values per tensor: use fewer timesteps or columns"
        )


def _normalisation(args: argparse.Namespace, prep: dataset.Prepared) -> Normalisation:
    mode = args.normalisation
    if mode == "window":
        return Normalisation(mode="window")
    if mode == "last":
        split = args.step_scale == "split" or (args.step_scale == "auto" and len(prep.sensors) == 1)
        if split:
            return Normalisation(mode="last", scale=prep.step_scale.tolist())
        trimmed = args.step_scale == "trimmed"
        return Normalisation(mode="last", step_scale="trimmed" if trimmed else None)
    return Normalisation(
        mode="global",
        mean=prep.mean.tolist(),
        std=prep.std.tolist(),
        target_mean=prep.target_mean.tolist(),
        target_std=prep.target_std.tolist(),
    )


def _scaled(scaler: Scaler, w: dataset.Windows, mode: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Normalised inputs and targets, leaving out windows whose targets exceed `MAX_TRAIN_Z`."""
    x, ctx = scaler.transform(w.x)
    y = scaler.transform_targets(w.y, ctx)
    steps = np.arange(1, y.shape[1] + 1)[None, :, None]
    bound = MAX_TRAIN_Z * (np.sqrt(steps) if mode == "last" else 1.0)
    keep = (np.abs(y) <= bound).all(axis=(1, 2))
    return x[keep], y[keep], int((~keep).sum())


def _training_info(
    args: argparse.Namespace, table: dataset.Table, prep: dataset.Prepared
) -> dict[str, Any]:
    skip = {"data", "out", "func", "command"}
    options = {k: v for k, v in vars(args).items() if k not in skip and _is_json(v)}
    return {
        "data": Path(args.data).name,
        "rows": len(table.rows),
        "sensors": len(prep.sensors),
        "duplicate_rows_dropped": prep.duplicates,
        "seed": args.seed,
        "val_frac": args.val_frac,
        "test_frac": args.test_frac,
        "max_gap": args.max_gap,
        "max_train_z": MAX_TRAIN_Z,
        "args": options,
    }


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, flush=True)
