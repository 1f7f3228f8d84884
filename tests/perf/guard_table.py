"""The guard on every shipped series at once, adaptation off and on, in process.

    python tests/perf/guard_table.py               # the tuning series and 6 random walks
    python tests/perf/guard_table.py --walks 0 --jobs 1
    python tests/perf/guard_table.py --held-out    # the held-out series only: once, at the end

Each series goes through `guard_trace.trace`, the worker's path for one sensor
(the same figures as `tests/perf/replay.py`, without MQTT), with adaptation off
and on. Per series and mode it prints, on the test tail (the last `--tail`),
what was served over persistence at each step and the worst of them, and the
share of tail windows served the model. The random walks (Gaussian steps, seeds
0, 1, ...) are where persistence is the best forecast: a guard that works serves
them at 1.000. Series marked held out in `sensorcast.models.realdata` are left
out unless `--held-out` is given, so that nothing is tuned on them.

Nothing here is collected by pytest; it is run by hand and prints its figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from guard_trace import trace
from numpy.typing import NDArray

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.realdata import HELD_OUT, TUNING


@dataclass(frozen=True)
class Job:
    name: str
    adapt: bool
    tail: float
    bundle: Path
    walk_seed: int | None = None


def series(job: Job) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Times and values, gaps dropped; times before 1970 moved to end yesterday, as the
    replay does (the daemon takes epoch seconds from 0 on)."""
    if job.walk_seed is not None:
        rng = np.random.default_rng(job.walk_seed)
        values = 20 + np.cumsum(rng.normal(0, 0.3, 3000))
        return 1.7e9 + 600.0 * np.arange(len(values)), values
    (real,) = [s for s in (*TUNING, *HELD_OUT) if s.name == job.name]
    times, values = real.load()
    keep = ~np.isnan(values)
    times, values = times[keep], values[keep]
    if times[0] < 0:
        times = times - times[-1] + time.time() - 86_400
    return times, values


def measure(job: Job) -> tuple[list[float], list[float]]:
    """Served MAE over persistence, and the share of windows served the model, per step."""
    times, values = series(job)
    out = trace(values, times, job.bundle, job.adapt)
    n, start = len(values), int(len(values) * (1 - job.tail))
    horizon = len(next(iter(out.values()))[0])
    ratios, on_model = [], []
    for k in range(horizon):
        rows = [i for i in out if i >= start and i + k + 1 < n]
        truth = values[[i + k + 1 for i in rows]]
        served = np.array([out[i][0][k] for i in rows])
        ratios.append(float(np.abs(served - truth).mean() / np.abs(values[rows] - truth).mean()))
        on_model.append(float(np.mean([not out[i][2][k] for i in rows])))
    return ratios, on_model


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    p.add_argument("--tail", type=float, default=0.3, help="share scored at the end (0.3)")
    p.add_argument("--walks", type=int, default=6, help="random walks added (6)")
    p.add_argument("--held-out", action="store_true", help="the held-out series only")
    p.add_argument("--jobs", type=int, default=2, help="processes (2)")
    args = p.parse_args()
    names: list[tuple[str, int | None]]
    if args.held_out:
        names = [(s.name, None) for s in HELD_OUT]
    else:
        names = [(s.name, None) for s in TUNING]
        names += [(f"random_walk_{i}", i) for i in range(args.walks)]
    modes = (False, True)
    jobs = [Job(n, adapt, args.tail, args.bundle, seed) for n, seed in names for adapt in modes]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(measure, jobs))
    horizon = len(results[0][0])
    steps = " ".join(f"{k:>6}" for k in range(1, horizon + 1))
    print(f"{'series':<20} {'adapt':<5} {'worst':>6}  {steps}  model served")
    for job, (ratios, on_model) in zip(jobs, results, strict=True):
        cells = " ".join(f"{r:>6.3f}" for r in ratios)
        print(f"{job.name:<20} {'on' if job.adapt else 'off':<5} {max(ratios):>6.3f}  {cells}  "
              f"{np.mean(on_model):>11.0%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
