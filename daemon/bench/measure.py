"""One measurement of one system under test: start-up, saturated throughput, paced latency, RSS.

The same function measures sensorcast (`sensorcast bench`) and the baselines
of the side-by-side comparison (tests/perf/compare.py), so every number in both
comes from one load generator and one clock.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from sensorcast.bench.load import CADENCE, T0, Collector, Fleet, Generator, Sent, decode_outputs
from sensorcast.bench.systems import RunningTarget, Target
from sensorcast.bench.wire import WireClient

_runs = itertools.count(1)


@dataclass
class Load:
    """The load of one measurement."""

    sensors: int = 1000
    rate: float = 2000.0
    duration: float = 10.0
    queue_s: float = 0.1
    warmup_ahead: int = 100_000
    """Warm-up readings the broker may hold for the daemon (its queue limit must allow it)."""
    throughput: bool = True
    latency: bool = True
    cadence: float = CADENCE
    """Seconds between a sensor's readings, by their timestamps."""


@dataclass
class Result:
    """What one measurement found; NaN where a phase did not run."""

    name: str
    startup_s: float = math.nan
    readings_per_s: float = math.nan
    sent_per_s: float = math.nan
    delivered: float = math.nan
    cpu_cores: float = math.nan
    bench_cpu_cores: float = math.nan
    latency_rate: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    latency_missing: int = 0
    rss_start_mb: float = math.nan
    rss_peak_mb: float = math.nan
    rss_end_mb: float = math.nan
    daemon: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def new_prefix() -> str:
    """A topic prefix no other run on the broker uses."""
    return f"bench-{os.getpid()}-{next(_runs)}"


def throughput(sent: Sent, decoded: list[tuple[float, int]], settle: float) -> float:
    """Outputs per second for readings of `sent`, counted once the pipeline is full."""
    times = sorted(t for t, k in decoded if sent.first <= k < sent.last)
    if not times:
        return 0.0
    start = min(times[0] + settle, sent.ended - 0.2)
    counted = sum(1 for t in times if start <= t <= sent.ended)
    return float(counted / max(sent.ended - start, 1e-3))


def latencies(
    sent: Sent, decoded: list[tuple[float, int]], settle: float
) -> tuple[NDArray[np.float64], int]:
    """Reading-to-output latencies (s) of readings sent after `settle`, and how many got none."""
    arrived: dict[int, float] = {}
    for t, k in decoded:
        arrived.setdefault(k, t)
    cutoff = sent.started + settle
    lat, missing = [], 0
    for k, t_sent in sent.times.items():
        if t_sent < cutoff:
            continue
        t_out = arrived.get(k)
        if t_out is None:
            missing += 1
        else:
            lat.append(t_out - t_sent)
    return np.asarray(lat, dtype=np.float64), missing


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def measure(
    make_target: Callable[[str], Target],
    *,
    host: str,
    port: int,
    features: list[str],
    load: Load,
    logdir: Path,
    prefilled_rounds: int = 0,
    progress: Callable[[str], None] = lambda _: None,
) -> Result:
    """Start the target, drive the load through it, and stop it; see `Result`."""
    prefix = new_prefix()
    target = make_target(prefix)
    result = Result(target.name)
    fleet = Fleet(load.sensors, prefix, features, load.cadence)
    collector = Collector(WireClient(host, port, f"{prefix}-collector"), target.output_prefix)
    publisher: WireClient | None = None
    running: RunningTarget | None = None
    try:
        collector.start()
        progress(f"{target.name}: starting")
        running = RunningTarget(target, collector, logdir)
        result.startup_s = running.startup
        result.rss_start_mb = running.memory()[0]
        publisher = WireClient(host, port, f"{prefix}-load")
        first = prefilled_rounds * fleet.n
        gen = Generator(publisher, fleet, collector, target.first_output_round, first)
        warm = max(0, target.first_output_round - prefilled_rounds)
        if warm:
            progress(f"{target.name}: warm-up, {warm} rounds of {fleet.n} sensors")
            taken = running.readings_taken if target.metrics_port else None
            gen.warm_up(warm, taken, load.warmup_ahead)
            running.wait_idle()
        if load.throughput:
            progress(f"{target.name}: saturating for {load.duration:g} s")
            _saturated_phase(gen, running, load, result)
        if load.latency:
            _latency_phase(gen, load, result, progress)
        result.rss_peak_mb, result.rss_end_mb = running.memory()
        result.daemon = running.metrics()
    finally:
        if publisher is not None:
            publisher.close()
        if running is not None:
            running.stop()
        collector.client.close()
    return result


def _settle(load: Load) -> float:
    """Seconds at the start of a phase that are not counted (the pipeline fills)."""
    return min(1.0, 0.2 * load.duration)


def _saturated_phase(gen: Generator, running: RunningTarget, load: Load, result: Result) -> None:
    col = gen.collector
    mark = len(col.outputs)
    cpu0, own0 = running.cpu_seconds(), _own_cpu()
    sent = gen.saturate(load.duration, load.queue_s)
    wall = sent.ended - sent.started
    result.cpu_cores = (running.cpu_seconds() - cpu0) / wall
    result.bench_cpu_cores = (_own_cpu() - own0) / wall
    gen.drain()
    decoded = decode_outputs(col.outputs[mark:], gen.fleet, col.output_prefix)
    result.readings_per_s = throughput(sent, decoded, _settle(load))
    result.sent_per_s = (sent.last - sent.first) / wall
    answered = sum(1 for _, k in decoded if sent.first <= k < sent.last)
    result.delivered = answered / max(1, sent.last - sent.first)
    if sent.lost:
        result.notes.append(f"{result.name}: {sent.lost} outputs never came (written off)")


def _latency_phase(
    gen: Generator, load: Load, result: Result, progress: Callable[[str], None]
) -> None:
    col, settle, rate = gen.collector, _settle(load), load.rate
    if load.throughput and rate > 0.8 * result.readings_per_s:
        rate = max(1.0, 0.5 * result.readings_per_s)
        result.notes.append(
            f"{result.name}: latency measured at {rate:.0f}/s, half its throughput "
            f"(it cannot sustain {load.rate:g}/s)"
        )
    progress(f"{result.name}: {rate:.0f} readings/s for {load.duration + settle:g} s")
    mark = len(col.outputs)
    sent = gen.paced(rate, load.duration + settle)
    gen.drain(quiet=2.0)
    decoded = decode_outputs(col.outputs[mark:], gen.fleet, col.output_prefix)
    lat, result.latency_missing = latencies(sent, decoded, settle)
    result.latency_rate = rate
    if lat.size:
        p50, p99 = np.percentile(lat, [50, 99]) * 1000
        result.p50_ms, result.p99_ms, result.max_ms = float(p50), float(p99), lat.max() * 1000


def prefill_snapshot(state_dir: Path, bundle: Path, sensors: int, cadence: float = CADENCE) -> int:
    """Write a buffer snapshot with every bench sensor's window full; return its rounds."""
    from sensorcast.buffer import SensorTable
    from sensorcast.models.bundle import load_bundle
    from sensorcast.state import save_snapshot

    meta = load_bundle(bundle).meta
    t, f = meta.timesteps, len(meta.features)
    fleet = Fleet(sensors, "", meta.features, cadence)
    values = np.array([[fleet.value(s, r) for r in range(t)] for s in range(sensors)])
    data = np.repeat(np.tile(values, 2)[:, :, None], f, axis=2)
    table = SensorTable(t, f, max_sensors=sensors)
    table.load_arrays({
        "sensor_ids": np.array(fleet.ids, dtype=np.str_),
        "data": data.astype(np.float64),
        "pos": np.zeros(sensors, dtype=np.int32),
        "count": np.full(sensors, t, dtype=np.int32),
        "last_ts": np.full(sensors, T0 + cadence * (t - 1)),
        "cadence": np.full(sensors, cadence),
    })  # fmt: skip
    save_snapshot(state_dir, table, meta)
    return int(t)
