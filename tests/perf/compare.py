"""Side by side, on one broker and one load: (a) a plain paho relay, (b) the Keras
`model.predict`-per-window daemon, (c) sensorcast with LiteRT; plus the broker's
floor with mosquitto's C clients. Run on demand (not collected by pytest):

    python tests/perf/compare.py [--sensors 1000] [--rate 2000] [--duration 10] [--flood 60]

Everything runs twice: on a mosquitto with `set_tcp_nodelay false` (its
default), then on one with `set_tcp_nodelay true`. `--flood K` adds an open-loop
run of (a) and (c) on the second: every sensor's K readings published at once,
counted by the outputs delivered (`sensorcast.bench.openloop`).
Every system is measured by `sensorcast.bench.measure`, the code behind
`sensorcast bench`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from floor import available, floor_latency, floor_rate

from sensorcast.bench.command import Load, Result, Target, format_table, measure, start_broker
from sensorcast.bench.openloop import OpenLoopResult, format_open_loop, run_open_loop
from sensorcast.bench.systems import sensorcast_target, workdir
from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import BundleMeta, load_bundle

HERE = Path(__file__).resolve().parent
Factory = Callable[[str, int], Callable[[str], Target]]


def script_target(script: str, name: str, first_round: int, *extra: str) -> Factory:
    """A baseline from this directory, speaking the bench's topics and status convention."""

    def for_broker(host: str, port: int) -> Callable[[str], Target]:
        def make(prefix: str) -> Target:
            cid = f"{prefix}-{script.removesuffix('.py')}"
            return Target(
                name=name,
                argv=[
                    *(sys.executable, str(HERE / script), "--host", host, "--port", str(port)),
                    *("--client-id", cid, "--input", f"{prefix}/sensors/+/reading"),
                    *("--output-prefix", f"{prefix}/forecasts/", *extra),
                ],
                status_topic=f"bench/{cid}/status",
                output_prefix=f"{prefix}/forecasts/",
                first_output_round=first_round,
            )

        return make

    return for_broker


def sensorcast(bundle: Path, meta: BundleMeta, args: argparse.Namespace) -> Factory:
    def for_broker(host: str, port: int) -> Callable[[str], Target]:
        def make(prefix: str) -> Target:
            target = sensorcast_target(
                host=host, port=port, prefix=prefix, bundle=bundle, timesteps=meta.timesteps,
                max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
            )  # fmt: skip
            target.name = "(c) sensorcast"
            return target

        return make

    return for_broker


def ratio(a: float, b: float) -> str:
    if not (a > 0 and b > 0):
        return "-"
    return f"{a / b:.2f}x" if a / b < 10 else f"{a / b:,.0f}x"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def summary(first: dict[str, Result], second: dict[str, Result]) -> list[str]:
    lines = []
    for label, res in (("nodelay false", first), ("nodelay true", second)):
        a, b, c = (res.get(k) for k in ("a", "b", "c"))
        if a and c:
            r = c.readings_per_s / a.readings_per_s
            lines.append(
                f"readings/s c/a ({label}) = {ratio(c.readings_per_s, a.readings_per_s)}"
                f" (target >= 0.8x: {verdict(r >= 0.8)})"
            )
        if b and c:
            r = c.readings_per_s / b.readings_per_s if b.readings_per_s > 0 else math.inf
            lines.append(
                f"readings/s c/b ({label}) = {ratio(c.readings_per_s, b.readings_per_s)}"
                f" (target >= 300x: {verdict(r >= 300)})"
            )
        if a and c:
            d50, d99 = c.p50_ms - a.p50_ms, c.p99_ms - a.p99_ms
            lines.append(
                f"latency added over the relay ({label}): p50 {d50:+.2f} ms, p99 {d99:+.2f} ms "
                f"(target <= 3 / <= 10 ms: {verdict(d50 <= 3 and d99 <= 10)})"
            )
    c = first.get("c")
    if c:
        ok = verdict(c.startup_s < 1.5)
        lines.append(f"sensorcast start-up {c.startup_s:.2f} s (target < 1.5 s: {ok})")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sensors", type=int, default=1000)
    p.add_argument("--rate", type=float, default=2000.0, help="latency phase readings/s")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--max-wait-ms", type=float, default=0.0)
    p.add_argument("--only", default="abc", help="systems to run, e.g. ac (default abc)")
    p.add_argument("--floor-count", type=int, default=200_000, help="messages for the C floor")
    p.add_argument("--flood", type=int, metavar="K", help="also flood (a) and (c): K per sensor")
    p.add_argument("--json", type=Path, help="also write every result as JSON")
    args = p.parse_args()
    meta = load_bundle(args.bundle).meta
    systems: dict[str, Factory] = {
        "a": script_target("relay.py", "(a) paho relay", 0),
        "b": script_target(
            "naive.py", "(b) keras predict", meta.timesteps - 1, "--bundle", str(args.bundle)
        ),
        "c": sensorcast(args.bundle, meta, args),
    }
    wd = workdir()
    passes: list[dict[str, Result]] = []
    floods: list[OpenLoopResult] = []
    for nodelay in (False, True):
        broker = start_broker(nodelay)
        results: dict[str, Result] = {}
        try:
            floor = Result("mosquitto C clients")
            if available():
                floor.readings_per_s = floor_rate(broker.port, wd, args.floor_count)
                floor.latency_rate = args.rate
                floor.p50_ms, floor.p99_ms, floor.max_ms = floor_latency(
                    broker.port, args.rate, args.duration
                )
            results["floor"] = floor
            for key in args.only:
                load = Load(args.sensors, args.rate, args.duration)
                results[key] = measure(
                    systems[key](broker.host, broker.port),
                    host=broker.host, port=broker.port, features=meta.features, load=load,
                    logdir=wd, progress=lambda m: print(f"compare: {m}", file=sys.stderr),
                )  # fmt: skip
            for key in "ac" if nodelay and args.flood else "":
                floods.append(run_open_loop(
                    systems[key](broker.host, broker.port), mode="flood", host=broker.host,
                    port=broker.port, features=meta.features, sensors=args.sensors,
                    per_sensor=args.flood, logdir=wd,
                ))  # fmt: skip
        finally:
            broker.close()
        passes.append(results)
        setting = "true" if nodelay else "false"
        print(f"\nmosquitto set_tcp_nodelay {setting}, {args.sensors} sensors, {meta.model_id}")
        print(format_table(list(results.values())))
        for res in results.values():
            for note in res.notes:
                print(f"note: {note}")
    if floods:
        print(f"\nopen loop, mosquitto set_tcp_nodelay true, {meta.model_id}")
        print(format_open_loop(floods))
    print()
    print("\n".join(summary(passes[0], passes[1])))
    if len(floods) == 2:
        a, c = floods
        r = ratio(c.readings_per_s, a.readings_per_s)
        ok = verdict(c.readings_per_s >= 0.8 * a.readings_per_s)
        share = c.delivered_share
        print(
            f"flood readings/s counted by outputs delivered, c/a = {r} (target >= 0.8x: {ok}); "
            f"c answered {100 * share:.2f}% (target >= 99%: {verdict(share >= 0.99)})"
        )
    if args.json:
        data: list[object] = [{k: dataclasses.asdict(v) for k, v in r.items()} for r in passes]
        data.append([dataclasses.asdict(f) for f in floods])
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    shutil.rmtree(wd, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
