"""How much history is enough? Accuracy against days of training data, on a shipped series.

A dev script (needs the [train] extra). The office sensors of models/data/room_occupancy.csv
(16-minute readings over 5.6 days) are cut into a fixed test tail (the last 1.5 days) and,
before it, training histories of 0.5 to 4 days. Each history trains a bundle through
`sensorcast train` (its last 15%, at least 16 readings, validates, and 16 more are
train's own test tail; nothing of this test tail is seen), and every bundle, and the
shipped default model, then forecasts the same test tail through LiteRT as the daemon
would. Printed: MAE and MAE relative to persistence. `--normalisation` as for
`sensorcast train` (window, the default, or global). Small networks (8 readings, 16
units): with 12 readings and 32 units the exporter's LiteRT parity check refused most of
these bundles when this was written.

    python docs/history_needed.py [--column temperature] [--runs 1]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sensorcast.errors import UserError
from sensorcast.models import DATA_DIR, DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.models.runtime import Forecaster

DAY = 86400.0
TEST_DAYS = 1.5
HISTORIES = (0.5, 1.0, 2.0, 3.0, 4.0)
TIMESTEPS = 8


def load(column: str) -> tuple[np.ndarray, np.ndarray]:
    with (DATA_DIR / "room_occupancy.csv").open() as f:
        rows = list(csv.DictReader(f))
    stamps = [datetime.fromisoformat(r["time"]).replace(tzinfo=UTC) for r in rows]
    times = np.array([s.timestamp() for s in stamps])
    return times, np.array([float(r[column]) for r in rows])


def score(bundle_dir: Path, values: np.ndarray, test_from: int) -> tuple[float, float]:
    """MAE of the one-step forecast and of persistence on every test reading."""
    bundle = load_bundle(bundle_dir)
    t = bundle.meta.timesteps
    ends = np.arange(max(test_from, t), len(values))  # forecast values[i] from values[i-t:i]
    windows = np.stack([values[i - t : i] for i in ends])[:, :, None]
    forecast = Forecaster(bundle).forecast(windows)[:, 0, 0]
    actual = values[ends]
    return float(np.abs(forecast - actual).mean()), float(np.abs(values[ends - 1] - actual).mean())


def train(
    times: np.ndarray, values: np.ndarray, rows: slice, out: Path, seed: int, normalisation: str
) -> None:
    from sensorcast.models import train as train_cmd

    n = rows.stop - rows.start
    tail = 16 / n  # train's own validation and test tails need a window each

    data = out.with_suffix(".csv")
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "value"])
        w.writerows(zip(times[rows].tolist(), values[rows].tolist(), strict=True))
    parser = argparse.ArgumentParser()
    train_cmd.configure_parser(parser)
    args = parser.parse_args([
        str(data), "--out", str(out), "--timesteps", str(TIMESTEPS), "--units", "16",
        "--epochs", "60", "--patience", "8", "--batch-size", "16", "--test-frac", str(tail),
        "--val-frac", str(max(0.15, tail)), "--seed", str(seed), "--normalisation", normalisation,
        "--quiet",
    ])  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        train_cmd.run(args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--column", default="temperature")
    parser.add_argument("--runs", type=int, default=1, help="seeds per history length")
    parser.add_argument("--normalisation", choices=("window", "global"), default="window")
    args = parser.parse_args()
    times, values = load(args.column)
    test_from = int(np.searchsorted(times, times[-1] - TEST_DAYS * DAY))
    print(f"{args.column}: {len(values)} readings, test tail {len(values) - test_from} "
          f"readings ({TEST_DAYS} days)")  # fmt: skip
    print("| history | readings | MAE | MAE / persistence |")
    print("|---|---|---|---|")
    mae, last = score(DEFAULT_BUNDLE, values, test_from)
    print(f"| none (shipped default model) | 0 | {mae:.4g} | {mae / last:.2f} |")
    with tempfile.TemporaryDirectory() as tmp:
        for days in HISTORIES:
            start = int(np.searchsorted(times, times[test_from] - days * DAY))
            ratios, maes = [], []
            seed, failures = 0, 0
            while len(maes) < args.runs and failures < 3:
                out = Path(tmp) / f"d{days}-s{seed}"
                seed += 1
                try:
                    train(times, values, slice(start, test_from), out, seed, args.normalisation)
                except UserError as exc:  # e.g. the exporter's parity check refusing a bundle
                    failures += 1
                    print(f"  ({days:g} days, seed {seed}: {exc})", flush=True)
                    continue
                mae, last = score(out, values, test_from)
                maes.append(mae)
                ratios.append(mae / last)
            if not maes:
                print(f"| {days:g} days | {test_from - start} | no bundle: {failures} refused |")
                continue
            print(f"| {days:g} days | {test_from - start} | {np.mean(maes):.4g} | "
                  f"{np.mean(ratios):.2f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
