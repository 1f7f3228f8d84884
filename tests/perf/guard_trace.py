"""Trace the per-step guard on one series, in process, without MQTT.

    python tests/perf/guard_trace.py models/data/room_occupancy.csv --column humidity --step 5
    python tests/perf/guard_trace.py DATA.csv --column C --no-adapt

The worker's path for one sensor, one window at a time: the buffer's window, the
bundle's model, the adapted head (unless --no-adapt), the per-sensor scores and
guard; the same code as `sensorcast run`, so on the series of the README's
"Adaptation" table it gives `tests/perf/replay.py`'s figures. It prints, on the
test tail (the last `--tail`), per step: what was served and what the forecast
the guard watches (the adapted one with adaptation on) would have scored on its
own, both over persistence, and on how many tail windows the model was served.
Then, for `--step`, each stretch of readings the guard served the model or the
last value, with the model's error minus persistence's summed over it (positive:
the model lost), in the sensor's units.

Nothing here is collected by pytest; it is run by hand and prints its figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from replay import read_column, series_arguments

from sensorcast.buffer import SensorTable, Window
from sensorcast.config import AdaptConfig
from sensorcast.inference import ServedBundle
from sensorcast.models.bundle import load_bundle

Trace = dict[int, tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]]
"""Reading index of each window's last reading: (served, watched forecast, served pers)."""


def trace(
    values: NDArray[np.float64], times: NDArray[np.float64], bundle: Path, adapt: bool
) -> Trace:
    loaded = load_bundle(bundle)
    meta = loaded.meta
    served = ServedBundle.load(loaded, adapt=AdaptConfig(enabled=adapt))
    table = SensorTable(meta.timesteps, 1)
    out: Trace = {}
    for i, (t, v) in enumerate(zip(times, values, strict=True)):
        w = table.push("s", float(t), (float(v),))
        if not isinstance(w, Window):
            continue
        raw = w.values[None]
        run = served.forecaster.run(raw)
        y = run.y
        adapted = None
        if served.heads is not None:
            c = served.heads.correct([w], run.x, y, run.center, run.scale, raw)
            y, adapted = c.y, c.adapted
        forecast = served.forecaster.inverse(y, run)
        got = served.scores.score([w], forecast, run.scale, raw, adapted=adapted)
        out[i] = (got.forecast[0, :, 0], forecast[0, :, 0], got.persistence_steps[0])
    return out


def main() -> int:
    p = series_arguments(__doc__)
    p.add_argument("--step", type=int, default=1, help="the step whose stretches are listed")
    p.add_argument("--no-adapt", action="store_true", help="adaptation off")
    args = p.parse_args()
    column, times, values = read_column(args.csv, args.column)
    out = trace(values, times, args.bundle, not args.no_adapt)
    n, start = len(values), int(len(values) * (1 - args.tail))
    horizon = len(next(iter(out.values()))[0])
    print(f"{args.csv.name} [{column}], adaptation {'off' if args.no_adapt else 'on'}")
    print("step  served/pers  watched/pers  model served on")
    for k in range(horizon):
        rows = [i for i in out if i >= start and i + k + 1 < n]
        truth = values[[i + k + 1 for i in rows]]
        pers = np.abs(values[rows] - truth).mean()
        served = np.mean([abs(out[i][0][k] - values[i + k + 1]) for i in rows]) / pers
        watched = np.mean([abs(out[i][1][k] - values[i + k + 1]) for i in rows]) / pers
        on_model = sum(not out[i][2][k] for i in rows)
        print(f"{k + 1:>4} {served:>12.3f} {watched:>13.3f}  {on_model} of {len(rows)}")
    k = args.step - 1
    print(f"step {args.step}: stretches (readings, served, model error - persistence error)")
    rows = sorted(i for i in out if i + k + 1 < n)
    first = 0
    for j in range(1, len(rows) + 1):
        if j < len(rows) and out[rows[j]][2][k] == out[rows[first]][2][k]:
            continue
        part = rows[first:j]
        diff = sum(
            abs(out[i][1][k] - values[i + k + 1]) - abs(values[i] - values[i + k + 1]) for i in part
        )
        source = "persistence" if out[part[0]][2][k] else "model"
        print(f"  {part[0]:>6}-{part[-1]:<6} {source:<12} {diff:+.4g}")
        first = j
    return 0


if __name__ == "__main__":
    sys.exit(main())
