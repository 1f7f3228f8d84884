"""`sensorcast bench`: this machine's capacity for a bundle, measured end to end over MQTT.

A private mosquitto (or `--host/--port`), a load generator for N sensors, the
daemon as its own `python -m sensorcast run` process, and a subscriber timing
every forecast. Two phases of `--duration` seconds each: saturated (closed loop,
about `--queue-ms` of readings in flight) for sustained readings/s, then a
steady `--rate` for reading-to-forecast latency. `--flood K` and `--backlog K`
add open-loop runs (`openloop`): N sensors x K readings published at once while
the daemon runs, or queued while it is stopped, then drained. The load code is
shared with tests/perf/compare.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from sensorcast.bench.measure import Load, Result, measure, prefill_snapshot
from sensorcast.bench.openloop import OpenLoopResult, format_open_loop, run_open_loop
from sensorcast.bench.systems import Target, sensorcast_target, workdir
from sensorcast.config import is_setting
from sensorcast.errors import UserError
from sensorcast.sandbox import Mosquitto

__all__ = ["Load", "Result", "Target", "format_table", "measure", "run"]

PREFILL_ABOVE = 200_000
"""Warm-up readings beyond which the daemon starts from a snapshot of full windows instead."""


BACKLOG_SESSION = 600
"""Session expiry (s) of the daemon in a backlog run: the broker queues for it while it is down."""


def start_broker(nodelay: bool) -> Mosquitto:
    """A private mosquitto that queues the bench's warm-up bursts and backlogs (the bench
    publishes at QoS 0, which mosquitto queues for a stopped persistent session only when
    told to)."""
    try:
        extra = "queue_qos0_messages true"
        return Mosquitto(nodelay=nodelay, max_queued=4_000_000, extra=extra).start()
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(f"{exc}; or pass --host/--port of a running broker") from None


def configure_parser(p: argparse.ArgumentParser) -> None:
    """The options of `sensorcast bench`."""
    p.add_argument("--sensors", type=int, default=1000, help="simulated sensors (default 1000)")
    p.add_argument(
        "--rate", type=float, default=2000.0, help="readings/s of the latency phase (2000)"
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per phase (default 10)")
    p.add_argument(
        "--cadence",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between a sensor's readings, by their timestamps (default 60; 1800 "
        "gives the adapted heads a day longer than the window)",
    )
    p.add_argument("--bundle", metavar="DIR", help="model bundle (default: the shipped one)")
    p.add_argument("--backend", choices=["litert", "keras"], default="litert")
    p.add_argument("--max-batch", type=int, default=256, help="inference.max_batch (256)")
    p.add_argument("--max-wait-ms", type=float, default=0.0, help="inference.max_wait_ms (0)")
    p.add_argument("--host", help="use this broker instead of starting mosquitto")
    p.add_argument("--port", type=int, default=1883, help="port of --host (1883)")
    p.add_argument(
        "--tcp-nodelay", action="store_true", help="start mosquitto with set_tcp_nodelay true"
    )
    p.add_argument(
        "--prefill",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start the daemon from a snapshot of full windows (default: when warm-up "
        f"would exceed {PREFILL_ABOVE} readings)",
    )
    p.add_argument("--queue-ms", type=float, default=100.0, help="work in flight when saturated")
    p.add_argument("--no-throughput", action="store_true", help="skip the saturated phase")
    p.add_argument("--no-latency", action="store_true", help="skip the steady-rate phase")
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="any other daemon setting, e.g. mqtt.protocol=3.1.1 (repeatable)",
    )
    p.add_argument(
        "--flood",
        type=int,
        metavar="K",
        help="open loop: publish K readings per sensor at once while the daemon runs",
    )
    p.add_argument(
        "--backlog",
        type=int,
        metavar="K",
        help="open loop: queue K readings per sensor while the daemon is stopped, then drain",
    )
    p.add_argument(
        "--routes",
        type=_route_counts,
        default=[1],
        metavar="N[,N...]",
        help="serve the sensors through N routes, each with its own copy of the bundle "
        "(the default route included; ids ending in digit k go to route k); several "
        "counts, e.g. 1,10, are measured one after the other in one run (default 1)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def _route_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: route counts, e.g. 1,10") from None
    if not counts or any(not 1 <= n <= 10 for n in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: each count is 1 to 10")
    return counts


def route_env(bundle: Path, n: int, root: Path) -> dict[str, str]:
    """SENSORCAST_ROUTES for `n` routes (the default route the last): route k takes the ids
    that end in digit k, served by its own copy of the bundle (so its own interpreter)."""
    if n == 1:
        return {}
    routes = []
    for k in range(n - 1):
        copy = root / f"route-{k}"
        if not copy.exists():
            shutil.copytree(bundle, copy)
        routes.append({"sensors": f"*{k}", "model": str(copy)})
    return {"SENSORCAST_ROUTES": json.dumps(routes)}


def _fmt(v: float, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def format_table(results: Sequence[Result]) -> str:
    """Results side by side: one column per system, one row per measure."""
    rows: list[tuple[str, list[str]]] = [
        ("start-up to subscribed (s)", [_fmt(r.startup_s, ".2f") for r in results]),
        ("sustained readings/s (answered)", [_fmt(r.readings_per_s, ",.0f") for r in results]),
        ("  readings sent/s", [_fmt(r.sent_per_s, ",.0f") for r in results]),
        ("  answered (%)", [_fmt(100 * r.delivered, ".1f") for r in results]),
        ("  CPU used (cores)", [_fmt(r.cpu_cores, ".2f") for r in results]),
        ("  load generator CPU (cores)", [_fmt(r.bench_cpu_cores, ".2f") for r in results]),
        ("latency at (readings/s)", [_fmt(r.latency_rate, ",.0f") for r in results]),
        ("  p50 (ms)", [_fmt(r.p50_ms, ".2f") for r in results]),
        ("  p99 (ms)", [_fmt(r.p99_ms, ".2f") for r in results]),
        ("  max (ms)", [_fmt(r.max_ms, ".1f") for r in results]),
        ("  unanswered", [str(r.latency_missing) for r in results]),
        ("RSS peak at start-up (MB)", [_fmt(r.rss_start_mb, ".1f") for r in results]),
        ("RSS peak (MB)", [_fmt(r.rss_peak_mb, ".1f") for r in results]),
        ("RSS at end (MB)", [_fmt(r.rss_end_mb, ".1f") for r in results]),
    ]
    names = [r.name for r in results]
    width = max(len(label) for label, _ in rows)
    cols = [max(len(n), *(len(cells[i]) for _, cells in rows)) for i, n in enumerate(names)]

    def line(label: str, cells: Sequence[str]) -> str:
        padded = (s.rjust(c) for s, c in zip(cells, cols, strict=True))
        return "  ".join([label.ljust(width), *padded])

    return "\n".join([line("", names), *(line(label, cells) for label, cells in rows)])


def daemon_counters(result: Result | OpenLoopResult) -> str:
    """The daemon's own account of the run, from its Prometheus counters."""
    m = result.daemon
    if not m:
        return ""

    def get(name: str) -> int:
        return int(m.get(name, 0))

    dropped = {
        reason: get(f'sensorcast_forecasts_dropped_total{{reason="{reason}"}}')
        for reason in ("superseded", "queue_full", "error", "not_finite")
    }
    forecasts = get("sensorcast_forecasts_total")
    windows = forecasts + sum(dropped.values())
    share = f" ({100 * forecasts / windows:.1f}% of {windows} windows)" if windows else ""
    lost = ", ".join(f"{k} {v}" for k, v in dropped.items() if v) or "none"
    batches = m.get("sensorcast_batch_size_count", 0.0)
    per_batch = ""
    if batches:
        size = m.get("sensorcast_batch_size_sum", 0.0) / batches
        model_ms = 1000 * m.get("sensorcast_inference_seconds_sum", 0.0) / batches
        per_batch = f"; {batches:.0f} model calls, {size:.1f} windows and {model_ms:.2f} ms each"
    return (
        f"daemon: {get('sensorcast_readings_total')} readings accepted, "
        f"{forecasts} forecasts published{share}; not published: {lost}{per_batch}"
    )


def _overrides(pairs: Sequence[str]) -> dict[str, str]:
    """`--set section.key=value` as the daemon's environment variables."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {pair!r}: expected KEY=VALUE, e.g. mqtt.protocol=3.1.1")
        if not is_setting(key.strip()):
            raise UserError(
                f"--set {pair!r}: {key.strip()} is not a setting (sensorcast check-config "
                "prints them all)"
            )
        env["SENSORCAST_" + key.strip().upper().replace(".", "__")] = value
    return env


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with parsed `configure_parser` arguments; print the report."""
    try:
        result, open_loop = _run(args)
    except (UserError, FileNotFoundError, RuntimeError, ConnectionError, TimeoutError) as exc:
        print(f"sensorcast bench: error: {exc}", file=sys.stderr)
        return 1
    if result:
        print(format_table(result))
        for r in result:
            counters = daemon_counters(r)
            if counters:
                print(f"{r.name}: {counters}" if len(result) > 1 else counters)
            for note in r.notes:
                print(f"note: {note}")
    if open_loop:
        print("open loop:")
        print(format_open_loop(open_loop))
        for o in open_loop:
            counters = daemon_counters(o)
            if counters:
                print(f"  {o.mode} {counters}")
    if args.json:
        data: dict[str, object] = dataclasses.asdict(result[0]) if result else {}
        if len(result) > 1:
            data["routes"] = [dataclasses.asdict(r) for r in result]
        data["open_loop"] = [dataclasses.asdict(r) for r in open_loop]
        try:
            Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            print(f"sensorcast bench: error: --json {args.json}: {exc.strerror}", file=sys.stderr)
            return 1
    return 0


def _check_writable(path: Path) -> None:
    """UserError if the results could not be written to `path`: said before the run, not
    after minutes of measuring."""
    where = path.parent
    if path.is_dir():
        raise UserError(f"--json {path}: is a directory")
    if not where.is_dir():
        raise UserError(f"--json {path}: directory {where} does not exist")
    if not os.access(path if path.exists() else where, os.W_OK):
        raise UserError(f"--json {path}: not writable")


def _run(args: argparse.Namespace) -> tuple[list[Result], list[OpenLoopResult]]:
    from sensorcast.models import DEFAULT_BUNDLE
    from sensorcast.models.bundle import load_bundle

    bundle = Path(args.bundle) if args.bundle else DEFAULT_BUNDLE
    meta = load_bundle(bundle).meta
    finite = all(math.isfinite(v) for v in (args.duration, args.rate, args.cadence))
    if args.sensors < 1 or not finite or not min(args.duration, args.rate, args.cadence) > 0:
        raise UserError("--sensors, --duration, --rate and --cadence must be positive numbers")
    if not (math.isfinite(args.queue_ms) and args.queue_ms > 0):
        raise UserError("--queue-ms must be a positive number")
    if not (math.isfinite(args.max_wait_ms) and args.max_wait_ms >= 0):
        raise UserError("--max-wait-ms must be a number of 0 or more")
    for flag in ("flood", "backlog"):
        k = getattr(args, flag)
        if k is not None and k < meta.timesteps:
            raise UserError(f"--{flag} {k}: at least {meta.timesteps} readings per sensor")
    if args.json:
        _check_writable(Path(args.json))
    closed_loop = not (args.no_throughput and args.no_latency)
    if not closed_loop and args.flood is None and args.backlog is None:
        raise UserError(
            "nothing to measure: --no-throughput and --no-latency without --flood K or --backlog K"
        )
    overrides = _overrides(args.set)
    wd = workdir()
    broker: Mosquitto | None = None
    try:
        if args.host:
            host, port = args.host, args.port
        else:
            broker = start_broker(args.tcp_nodelay)
            host, port = broker.host, broker.port
        prefill = args.prefill
        if prefill is None:
            prefill = closed_loop and args.sensors * (meta.timesteps - 1) > PREFILL_ABOVE
        state_dir, rounds = None, 0
        if prefill:
            state_dir = wd / "state"
            rounds = prefill_snapshot(state_dir, bundle, args.sensors, args.cadence)

        def make(prefix: str, session: int = 0, closed: bool = True, routes: int = 1) -> Target:
            target = sensorcast_target(
                host=host,
                port=port,
                prefix=prefix,
                bundle=bundle,
                timesteps=meta.timesteps,
                backend=args.backend,
                max_batch=args.max_batch,
                max_wait_ms=args.max_wait_ms,
                state_dir=state_dir if closed else None,
                max_sensors=max(args.sensors, 100_000),
            )
            target.env["SENSORCAST_MQTT__SESSION_EXPIRY"] = str(session)
            target.env.update(route_env(bundle, routes, wd))
            target.env.update(overrides)
            if len(args.routes) > 1:
                target.name = f"{routes} route{'s' if routes > 1 else ''}"
            return target

        load = Load(
            sensors=args.sensors,
            rate=args.rate,
            duration=args.duration,
            queue_s=args.queue_ms / 1000,
            # a broker of unknown configuration: mosquitto queues 1000 messages by default
            warmup_ahead=500 if args.host else 100_000,
            throughput=not args.no_throughput,
            latency=not args.no_latency,
            cadence=args.cadence,
        )
        print(
            f"bench: {meta.model_id} ({args.backend}), {args.sensors} sensors, broker "
            f"{host}:{port}{' (prefilled windows)' if prefill else ''}",
            file=sys.stderr,
        )

        def progress(msg: str) -> None:
            print(f"bench: {msg}", file=sys.stderr)

        result = []
        for n in args.routes if closed_loop else ():
            result.append(
                measure(
                    lambda prefix, n=n: make(prefix, routes=n),  # type: ignore[misc]
                    host=host,
                    port=port,
                    features=meta.features,
                    load=load,
                    logdir=wd,
                    prefilled_rounds=rounds,
                    progress=progress,
                )
            )
        open_loop = []
        for mode in ("flood", "backlog"):
            per_sensor = getattr(args, mode)
            if per_sensor is None:
                continue
            session = BACKLOG_SESSION if mode == "backlog" else 0
            open_loop.append(
                run_open_loop(
                    lambda prefix, s=session: make(  # type: ignore[misc]
                        prefix, s, closed=False, routes=args.routes[-1]
                    ),
                    mode=mode,
                    host=host,
                    port=port,
                    features=meta.features,
                    sensors=args.sensors,
                    per_sensor=per_sensor,
                    logdir=wd,
                    cadence=args.cadence,
                    progress=progress,
                )
            )
    finally:
        if broker is not None:
            broker.close()
    shutil.rmtree(wd, ignore_errors=True)
    return result, open_loop
