"""The demo's simulated fleet through the worker's path, in process: what each sensor is served.

    python tests/perf/demo_fleet.py                 # 12 sensors, 400 readings each
    python tests/perf/demo_fleet.py --readings 92 --no-adapt

Each sensor of `sensorcast demo`'s fleet (faults included, one reading a simulated
second) goes through `guard_trace.trace`: the buffer's window, the shipped model,
the adapted head (unless --no-adapt), the per-sensor scores and guard, as in
`sensorcast run`. Per sensor it prints the MAE of the one-step forecasts served over
that of the last value, for the first 30 forecasts and for all of them: what the demo's
"MAE model" and "MAE last" columns show, without a broker.

Nothing here is collected by pytest; it is run by hand and prints its figures.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from guard_trace import trace

from sensorcast.demo.fleet import make_fleet
from sensorcast.models import DEFAULT_BUNDLE

FIRST = 30


def ratio(served: dict[int, float], last: dict[int, float], rows: list[int]) -> float:
    """The served forecasts' MAE over the last value's, on `rows`."""
    return float(np.mean([served[i] for i in rows]) / np.mean([last[i] for i in rows]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--readings", type=int, default=400, help="readings per sensor (400)")
    p.add_argument("--sensors", type=int, default=12)
    p.add_argument("--no-adapt", action="store_true", help="adaptation off")
    args = p.parse_args()
    worst = 0.0
    print(f"sensor              first {FIRST}    all  (served MAE / last value's, one step)")
    for sensor in make_fleet(args.sensors):
        times = 1.7e9 + np.arange(args.readings, dtype=np.float64)
        values = np.array([sensor.sample(float(t), 1.0) for t in times])
        out = trace(values, times, DEFAULT_BUNDLE, not args.no_adapt)
        served = {i: abs(out[i][0][0] - values[i + 1]) for i in out if i + 1 < len(values)}
        last = {i: abs(values[i] - values[i + 1]) for i in served}
        rows = sorted(served)
        whole = ratio(served, last, rows)
        worst = max(worst, whole)
        first = ratio(served, last, rows[:FIRST])
        print(f"{sensor.sensor_id:<18} {first:>8.3f} {whole:>6.3f}  ({len(rows)})")
    print(f"worst sensor over all its forecasts: {worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
