"""Memory of the daemon's per-sensor state, and of a start-up restore, at N sensors.

Run on demand (not collected by pytest):

    python tests/perf/memory.py [--sensors 100000] [--rounds 8] [--adapt true|false]

Builds the daemon's `Service` (no connection) from its defaults, fills every
sensor's window from a snapshot-shaped table, serves `--rounds` further readings
of every sensor through the real ingest and worker code (windows, model,
adapted heads, intervals, guard, anomalies, online accuracy), writes the state
directory, then starts a fresh process that builds the `Service` and restores
buffers, scores and heads as `sensorcast run` does at start-up. Prints resident
memory (VmRSS) and its peak (VmHWM) at each stage, the last ones after the daemon
gave back what a snapshot or a restore freed. The in-process fleet (ids, values)
is not the daemon's: `sensorcast bench --flood` measures the daemon alone, with
its MQTT connections.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0, CADENCE = 1_700_000_000.0, 60.0


def memory() -> str:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return f"RSS {fields['VmRSS']:.0f} MB, peak {fields['VmHWM']:.0f} MB"


def value(sensor: int, round_: int, n: int) -> float:
    return 20.0 + 5.0 * math.sin(2 * math.pi * round_ / 24 + 2 * math.pi * sensor / n)


def build(n: int, rounds: int, state_dir: Path) -> None:
    import numpy as np

    from sensorcast.config import load_settings
    from sensorcast.service import Service
    from sensorcast.state import map_large_allocations

    map_large_allocations()  # as `sensorcast run` does
    service = Service(load_settings(None))
    print(f"built: {memory()}", flush=True)
    t = service.meta.timesteps
    ids = [f"s{i:06d}" for i in range(n)]
    ring = np.array([[value(s, r, n) for r in range(t)] for s in range(n)])
    service.table.load_arrays({
        "sensor_ids": np.array(ids, dtype=np.str_),
        "data": np.tile(ring, 2)[:, :, None],  # the layout every version restores
        "pos": np.zeros(n, dtype=np.int32),
        "count": np.full(n, t, dtype=np.int32),
        "last_ts": np.full(n, T0 + CADENCE * (t - 1)),
        "cadence": np.full(n, CADENCE),
    })  # fmt: skip
    del ring
    worker, queue = service.worker, service.queue
    worker._publish = lambda topic, payload, retain=None: True  # no broker here
    started = time.perf_counter()
    for r in range(t, t + rounds):
        for s, sid in enumerate(ids):
            payload = b'{"value":%.3f,"ts":%.1f}' % (value(s, r, n), T0 + CADENCE * r)
            service._ingest(f"sensors/{sid}/reading", payload, time.time())
            if len(queue) >= 256:
                worker._serve(queue.take(256))
        while len(queue):
            worker._serve(queue.take(256))
    elapsed = time.perf_counter() - started
    print(f"{n:,} sensors x {rounds} readings served in {elapsed:.0f} s: {memory()}", flush=True)
    service.settings.state.dir = state_dir
    service.snapshot()
    print(f"after a snapshot: {memory()}", flush=True)


def restore(state_dir: Path) -> None:
    from sensorcast.config import load_settings
    from sensorcast.service import Service
    from sensorcast.state import (
        load_heads,
        load_scores,
        load_snapshot,
        map_large_allocations,
        release_freed_memory,
    )

    map_large_allocations()
    service = Service(load_settings(None))
    print(f"restore: built: {memory()}", flush=True)
    with service.lock:
        n = load_snapshot(state_dir, service.table, service.meta)
    print(f"restore: buffers of {n:,} sensors: {memory()}", flush=True)
    slots = service.table.slots  # as `sensorcast run` restores them
    n = load_scores(state_dir, service.worker.served.scores, service.meta, slots)
    print(f"restore: scores of {n:,} sensors: {memory()}", flush=True)
    n = load_heads(state_dir, service.worker.served.heads, slots.canonical)
    print(f"restore: adapted heads of {n:,} sensors: {memory()}", flush=True)
    release_freed_memory()
    print(f"restore: freed memory released: {memory()}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sensors", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=8, help="readings per sensor after the fill")
    p.add_argument("--adapt", choices=["true", "false"], default="true")
    p.add_argument("--restore-only", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ["SENSORCAST_ADAPT__ENABLED"] = args.adapt
    os.environ.setdefault("SENSORCAST_LOG__LEVEL", "WARNING")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.restore_only is not None:
        restore(args.restore_only)
        return 0
    with tempfile.TemporaryDirectory(prefix="sensorcast-memory-") as tmp:
        build(args.sensors, args.rounds, Path(tmp))
        sizes = ", ".join(f"{f.name} {f.stat().st_size / 1e6:.0f} MB" for f in Path(tmp).iterdir())
        print(f"state: {sizes}", flush=True)
        argv = [sys.executable, __file__, "--adapt", args.adapt, "--restore-only", tmp]
        return subprocess.call(argv)


if __name__ == "__main__":
    sys.exit(main())
