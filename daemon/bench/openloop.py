"""Open-loop measurements: a flood, or a backlog queued while the system under test is down.

The closed loop of `measure` never lets work pile up; these do, as a restart,
an outage or a fleet reconnecting does. `flood` publishes N sensors x K readings
as fast as the socket takes them while the system runs; `backlog` starts the
system once (so the broker holds a session for it), stops it, queues the same
readings, and starts it again. Both then count what comes out: every output
names the reading it answers, so a lost or duplicated forecast is seen.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sensorcast.bench.load import CADENCE, Collector, Fleet, decode_outputs
from sensorcast.bench.measure import new_prefix
from sensorcast.bench.systems import RunningTarget, Target
from sensorcast.bench.wire import WireClient

CHUNK = 2000
"""Readings per socket write."""
QUIET = 20.0
"""Seconds without progress (outputs, or readings the system took) after which the outputs
still missing are counted as lost."""


@dataclass
class OpenLoopResult:
    """What one open-loop run found."""

    name: str
    mode: str
    sensors: int
    per_sensor: int
    readings: int = 0
    expected: int = 0
    """Outputs the readings should produce (every full window; every reading for a relay)."""
    delivered: int = 0
    """Distinct readings answered."""
    duplicates: int = 0
    elapsed_s: float = math.nan
    """From the first reading sent (flood) or the restart (backlog) to the last output."""
    readings_per_s: float = math.nan
    """Readings drained per second, counted by outputs delivered."""
    connections: int = 0
    """Connections the system made while draining (its fresh `online` status messages)."""
    rss_peak_mb: float = math.nan
    daemon: dict[str, float] = field(default_factory=dict)

    @property
    def delivered_share(self) -> float:
        return self.delivered / self.expected if self.expected else math.nan


def _publish_all(client: WireClient, fleet: Fleet, total: int) -> None:
    for k in range(0, total, CHUNK):
        client.send(fleet.packets(k, min(CHUNK, total - k)))


def _sync(client: WireClient) -> None:
    """Wait until the broker has processed everything sent on `client` (a SUBACK follows it)."""
    client.subscribe_now(f"bench-sync/{time.monotonic_ns()}")


def _count(
    result: OpenLoopResult,
    collector: Collector,
    fleet: Fleet,
    first_round: int,
    started: float,
    limit: float,
    taken: Callable[[], int],
) -> None:
    """Wait for the outputs (until all came, or no progress for `QUIET` s), then tally them."""
    n, k = fleet.n, result.per_sensor
    result.expected = n * max(0, k - first_round)
    deadline = time.monotonic() + limit
    last, since = -1, time.monotonic()
    while collector.count < result.expected and time.monotonic() < deadline:
        collector.wait(result.expected, 0.5)
        progress = collector.count + taken()
        if progress != last:
            last, since = progress, time.monotonic()
        elif time.monotonic() - since > QUIET:
            break
    decoded = decode_outputs(collector.outputs, fleet, collector.output_prefix)
    answered = {r for _, r in decoded if first_round * n <= r < n * k}
    result.delivered = len(answered)
    result.duplicates = len(decoded) - len(answered)
    if decoded:
        result.elapsed_s = max(t for t, _ in decoded) - started
        share = result.delivered / max(1, result.expected)
        result.readings_per_s = result.readings * share / result.elapsed_s


def run_open_loop(
    make_target: Callable[[str], Target],
    *,
    mode: str,
    host: str,
    port: int,
    features: list[str],
    sensors: int,
    per_sensor: int,
    logdir: Path,
    cadence: float = CADENCE,
    limit: float = 600.0,
    progress: Callable[[str], None] = lambda _: None,
) -> OpenLoopResult:
    """Flood the running target, or queue a backlog for it while it is stopped; see module doc."""
    if mode not in ("flood", "backlog"):
        raise ValueError(f"mode must be flood or backlog, not {mode!r}")
    prefix = new_prefix()
    target = make_target(prefix)
    fleet = Fleet(sensors, prefix, features, cadence)
    result = OpenLoopResult(target.name, mode, sensors, per_sensor, readings=sensors * per_sensor)
    collector = Collector(WireClient(host, port, f"{prefix}-collector"), target.output_prefix)
    publisher = WireClient(host, port, f"{prefix}-load")
    running: RunningTarget | None = None
    try:
        collector.start()
        running = RunningTarget(target, collector, logdir)
        if mode == "backlog":
            progress(f"{target.name}: stopped; queueing {result.readings:,} readings")
            running.stop()
            _publish_all(publisher, fleet, result.readings)
            _sync(publisher)
            progress(f"{target.name}: restarting to drain the backlog")
            started = time.perf_counter()
            running = RunningTarget(target, collector, logdir)
        else:
            progress(f"{target.name}: flooding with {result.readings:,} readings")
            started = time.perf_counter()
            _publish_all(publisher, fleet, result.readings)
        taken = running.readings_taken if target.metrics_port else lambda: 0
        _count(result, collector, fleet, target.first_output_round, started, limit, taken)
        result.connections = collector.onlines.get(target.status_topic, 0) - (mode == "backlog")
        result.rss_peak_mb = running.memory()[0]
        result.daemon = running.metrics()
    finally:
        publisher.close()
        if running is not None:
            running.stop()
        collector.client.close()
    return result


def format_open_loop(results: list[OpenLoopResult]) -> str:
    """One line per run: what was queued, what came out, how fast, on how many connections."""
    lines = []
    for r in results:
        lost = r.expected - r.delivered
        lines.append(
            f"{r.name} {r.mode} {r.sensors:,} x {r.per_sensor}: {r.delivered:,} of "
            f"{r.expected:,} answered ({100 * r.delivered_share:.2f}%), {lost:,} lost, "
            f"{r.duplicates:,} duplicates; {r.readings_per_s:,.0f} readings/s "
            f"({r.elapsed_s:.1f} s); connections {r.connections}; RSS peak {r.rss_peak_mb:.0f} MB"
        )
    return "\n".join(lines)
