"""Regenerate the shipped default bundle: `python -m sensorcast.models.default_model`.

Univariate (`value`), 32 timesteps, horizon 6, one LSTM(50), `last`
normalisation with each window's own trimmed step scale (so one model serves
sensors of any magnitude, its untrained start is persistence, and a jump in the
window does not set the scale), MAE loss. It trains on
the real series in `DATA_DIR` that are not held out (see `realdata`), plus
synthetic sensors drawn with a fixed seed (random walks among them), written as
one long-format CSV and passed through the same code as `sensorcast train`.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from sensorcast.errors import UserError
from sensorcast.models import DEFAULT_BUNDLE, train
from sensorcast.models.realdata import TUNING

SEED = 20_240_601
SYNTHETIC_SENSORS = 45
SYNTHETIC_ROWS = 2_400
KINDS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 5, 6, 7, 8, 9)
"""Synthetic kinds in turn: five cycles, then each random walk twice."""
CADENCES_S = (300.0, 600.0, 900.0, 1_800.0, 3_600.0)
DAY_S, WEEK_S = 86_400.0, 604_800.0
TIMESTEPS, HORIZON = 32, 6
REAL_SERIES = tuple(s.name for s in TUNING)

Series = tuple[str, NDArray[np.float64], NDArray[np.float64]]


def real_series() -> Iterator[Series]:
    """The shipped real measurements not held out, one `(sensor_id, times, values)` each."""
    for s in TUNING:
        yield (s.name, *s.load())


def synthetic_sensor(rng: np.random.Generator, index: int) -> Series:
    """One made-up sensor, `KINDS[index % len(KINDS)]` picking its kind.

    A third are cycles (kinds 0-4): smooth, clipped at zero (light), quantised (a
    cheap thermometer), switching (on/off loads), nearly a random walk; daily and
    weekly cycles, trend, AR(1) noise and level steps. Two thirds are random walks
    (5-9), where a forecast can do no better than the last value (or, under
    measurement noise, a smoothed one): Gaussian or heavy-tailed steps, quantised,
    noisy, jumping. A model that extrapolates every wiggle loses to persistence on
    them, so they teach it to move only on evidence. All scaled to magnitudes
    from about 0.01 to 1e4 with offsets; a few gaps.
    """
    n, kind = SYNTHETIC_ROWS, KINDS[index % len(KINDS)]
    cadence = float(rng.choice(CADENCES_S))
    times = 1.6e9 + cadence * (np.arange(n) + rng.uniform(-0.02, 0.02, n))
    scale = 10 ** rng.uniform(-2, 4)
    if kind >= 5:
        values = scale * (rng.uniform(-2, 20) + _walk(rng, n, kind))
    else:
        values = scale * _cycle(rng, n, kind, times)
        if kind == 2:
            values = np.round(values / (scale / 20)) * (scale / 20)
    values[rng.random(n) < 0.003] = np.nan
    keep = rng.random(n) > 0.003
    return f"synthetic_{index:02d}", times[keep], values[keep]


def _cycle(
    rng: np.random.Generator, n: int, kind: int, times: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Kinds 0-4: daily and weekly cycles, trend, AR(1) noise, level steps, offsets."""
    phase = rng.uniform(0, 2 * np.pi, 2)
    shape = rng.uniform(0.3, 1) * np.sin(2 * np.pi * times / DAY_S + phase[0])
    shape += rng.uniform(0, 0.3) * np.sin(2 * np.pi * times / WEEK_S + phase[1])
    shape += rng.normal(0, 0.5) * np.linspace(0, 1, n) + _level_steps(rng, n, rng.poisson(1.5))
    phi = 0.999 if kind == 4 else rng.uniform(0.9, 0.995)
    shape += _ar1(rng, n, phi, rng.uniform(0.005, 0.1)) + rng.normal(0, rng.uniform(0, 0.02), n)
    if kind == 1:
        clipped: NDArray[np.float64] = np.maximum(shape, 0.0)
        return clipped
    if kind == 3:
        shape = _level_steps(rng, n, n // 40) + rng.normal(0, 0.01, n)
    out: NDArray[np.float64] = shape + rng.uniform(-2, 20)
    return out


def _walk(rng: np.random.Generator, n: int, kind: int) -> NDArray[np.float64]:
    """Kinds 5-9: random walks with Gaussian, Student-t (3), quantised, noisy or jump steps."""
    step = rng.uniform(0.005, 0.05)
    if kind == 6:
        return np.cumsum(rng.standard_t(3, n)) * step
    walk = np.cumsum(rng.normal(0, 1, n)) * step
    if kind == 7:  # read by a sensor with a coarse resolution
        quantum = step * rng.uniform(0.5, 3)
        return np.round(walk / quantum) * quantum
    if kind == 8:  # measurement noise on top
        return walk + rng.normal(0, step * rng.uniform(0.2, 1.5), n)
    if kind == 9:  # rare jumps, otherwise small steps
        jumps = (rng.random(n) < 0.02) * rng.normal(0, 20, n)
        return walk + np.cumsum(jumps) * step
    return walk


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> NDArray[np.float64]:
    """AR(1) noise: each step keeps `phi` of the last (no vectorised form)."""
    shocks = rng.normal(0, sigma, n)
    out = np.zeros(n)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + shocks[i]
    return out


def _level_steps(rng: np.random.Generator, n: int, count: int) -> NDArray[np.float64]:
    """A piecewise-constant signal that jumps by N(0, 1) at `count` random rows."""
    out = np.zeros(n)
    for at in rng.integers(0, n, count):
        out[at:] += rng.normal(0, 1)
    return out


def write_training_csv(path: Path, seed: int = SEED) -> list[str]:
    """Write every series as one long-format CSV (`time,sensor_id,value`); return the ids."""
    rng = np.random.default_rng(seed)
    synthetic = (synthetic_sensor(rng, i) for i in range(SYNTHETIC_SENSORS))
    series = [*real_series(), *synthetic]
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["time", "sensor_id", "value"])
        for name, times, values in series:
            for t, v in zip(times, values, strict=True):
                out.writerow([f"{t:.3f}", name, "" if np.isnan(v) else repr(float(v))])
    return [name for name, _, _ in series]


def main(argv: list[str] | None = None) -> int:
    """Build the training CSV in a temporary directory and run `sensorcast train` on it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_BUNDLE, help="bundle directory")
    p.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    opts = p.parse_args(argv)
    parser = argparse.ArgumentParser()
    train.configure_parser(parser)
    with tempfile.TemporaryDirectory(prefix="sensorcast-default-") as tmp:
        data = Path(tmp) / "default_training.csv"
        write_training_csv(data)
        args = parser.parse_args([
            str(data), "--out", str(opts.out), "--name", "default",
            "--timesteps", str(TIMESTEPS), "--horizon", str(HORIZON), "--layers", "1",
            "--units", "50", "--normalisation", "last", "--step-scale", "trimmed", "--loss", "mae",
            "--epochs", str(opts.epochs), "--batch-size", "128",
            "--patience", "5", "--seed", "0", "--sensor-metrics", ",".join(REAL_SERIES),
            *(["--quiet"] if opts.quiet else []),
        ])  # fmt: skip
        try:
            return int(train.run(args))
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    raise SystemExit(main())
