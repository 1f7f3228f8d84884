"""Replay real series through `sensorcast run` over MQTT and score what a subscriber gets.

    python tests/perf/replay.py models/data/sf_temp_hourly.csv --column temperature_f
    python tests/perf/replay.py DATA.csv --column value --bundle DIR --spikes 8

Each series is published in time order (QoS 1, with `ts`) to a private
mosquitto, through a real `sensorcast run`; every forecast and anomaly event is
collected from the broker. On the test tail (the last `--tail` of the series,
30% by default, the share `sensorcast train` holds out) it prints, per
forecast step: the MAE of the forecasts, of persistence (the last value) and of
the seasonal naive forecast at the same lead (the reading a day, else a week, else
a year before by the clock), their ratio, and how often the reading fell inside
the published interval. With `--spikes K`, single-reading
spikes of K times the series' first-difference standard deviation are
injected into the tail at random places; it then reports the share of spikes
flagged and of clean readings flagged.

Nothing here is collected by pytest; it is run by hand and prints its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.models.csvdata import load_series, read_csv, resolve_columns
from sensorcast.sandbox import Mosquitto

CHUNK = 500
"""Readings published before waiting for the daemon to catch up (a closed loop)."""


class Collector:
    """Every forecast and anomaly message, by the reading time it answers."""

    def __init__(self, port: int) -> None:
        self.forecasts: dict[float, dict[str, Any]] = {}
        self.anomalies: dict[float, dict[str, Any]] = {}
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="replay-sub")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("replay/forecasts/#", 1), ("replay/anomalies/#", 1)])
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("subscription not acknowledged")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        with self.lock:
            target = self.forecasts if msg.topic.startswith("replay/forecasts/") else self.anomalies
            target[float(doc["ts"])] = doc

    def count(self) -> int:
        with self.lock:
            return len(self.forecasts)


def replay(
    times: np.ndarray, values: np.ndarray, bundle: Path, level: float, env: dict[str, str]
) -> Collector:
    """Run the daemon on a private broker and publish the series; return what came back."""
    meta = load_bundle(bundle).meta
    broker = Mosquitto(max_queued=1_000_000).start()
    daemon = None
    try:
        daemon_env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORCAST_")}
        daemon_env.update(
            SENSORCAST_MQTT__HOST="127.0.0.1",
            SENSORCAST_MQTT__PORT=str(broker.port),
            SENSORCAST_MQTT__CLIENT_ID="replay-daemon",
            SENSORCAST_INPUT__TOPIC="replay/sensors/{sensor_id}/reading",
            SENSORCAST_OUTPUT__TOPIC="replay/forecasts/{sensor_id}",
            SENSORCAST_ANOMALY__TOPIC="replay/anomalies/{sensor_id}",
            SENSORCAST_OUTPUT__LEVEL=str(level),
            SENSORCAST_MODEL__PATH=str(bundle),
            SENSORCAST_LOG__LEVEL=os.environ.get("REPLAY_LOG", "WARNING"),
            **env,
        )
        out = Collector(broker.port)
        status = threading.Event()
        out.client.message_callback_add(
            "sensorcast/replay-daemon/status",
            lambda c, u, m: m.payload == b"online" and status.set(),
        )
        out.client.subscribe("sensorcast/replay-daemon/status", 1)
        daemon = subprocess.Popen([sys.executable, "-m", "sensorcast", "run"], env=daemon_env)
        if not status.wait(60):
            raise RuntimeError("the daemon did not come online")
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="replay-pub")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        sent = 0
        for start in range(0, len(values), CHUNK):
            chunk = zip(times[start : start + CHUNK], values[start : start + CHUNK], strict=True)
            for t, v in chunk:
                payload = json.dumps({"value": float(v), "ts": float(t)})
                pub.publish("replay/sensors/s/reading", payload, qos=1)
            sent = min(start + CHUNK, len(values))
            expect = max(0, sent - meta.timesteps + 1)  # fewer where a gap restarts a window
            seen, still = out.count(), time.monotonic()
            while out.count() < expect and time.monotonic() - still < 2.0:
                time.sleep(0.01)
                if out.count() != seen:
                    seen, still = out.count(), time.monotonic()
        time.sleep(0.5)
        pub.loop_stop()
        pub.disconnect()
        return out
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(30)
        broker.close()


def season_of(times: np.ndarray) -> int:
    """Readings per day if the cadence divides a day (hourly: 24), else per week, else 1."""
    cadence = float(np.median(np.diff(times)))
    for period in (86_400.0, 7 * 86_400.0, 365.25 * 86_400.0 / 52):
        n = period / cadence
        if n >= 2 and abs(n - round(n)) < 0.05 * n:
            return round(n)
    return 1


def season_back(times: np.ndarray, season: int) -> np.ndarray:
    """Per reading, the index of the reading one season earlier by the clock (the same time
    yesterday, or last week), or -1 where there is none: where readings are missing (a
    sensor silent at night, a gap), the reading `season` places back is at another time."""
    back = np.full(len(times), -1)
    if season <= 1 or len(times) < 2:
        return back
    cadence = float(np.median(np.diff(times)))
    want = times - season * cadence
    j = np.clip(np.searchsorted(times, want), 0, len(times) - 1)
    near = np.abs(times[j] - want) <= 0.25 * cadence
    back[near] = j[near]
    return back


def score(
    times: np.ndarray, values: np.ndarray, out: Collector, tail: float, horizon: int
) -> list[dict[str, float]]:
    """Per step: MAE of the forecasts, persistence and seasonal naive, and interval coverage."""
    n = len(values)
    start = int(n * (1 - tail))
    season = season_of(times)
    back = season_back(times, season)
    index = {float(t): i for i, t in enumerate(times)}
    rows = []
    for step in range(horizon):
        err, pers, seas, inside = [], [], [], []
        for ts, doc in out.forecasts.items():
            i = index.get(ts)
            if i is None or i < start or i + step + 1 >= n:
                continue
            truth = values[i + step + 1]
            err.append(abs(doc["forecast"][step] - truth))
            pers.append(abs(values[i] - truth))
            if back[i + step + 1] >= 0:
                seas.append(abs(values[back[i + step + 1]] - truth))
            inside.append(doc["lower"][step] <= truth <= doc["upper"][step])
        rows.append(
            {
                "step": step + 1,
                "n": len(err),
                "mae": float(np.mean(err)),
                "persistence": float(np.mean(pers)),
                "seasonal": float(np.mean(seas)) if seas else float("nan"),
                "coverage": float(np.mean(inside)),
            }
        )
    return rows


def series_arguments(doc: str) -> argparse.ArgumentParser:
    """A parser with the arguments of the scripts that score one CSV column's test tail."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("csv", type=Path)
    p.add_argument("--column", help="the value column (the first numeric one by default)")
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    p.add_argument("--tail", type=float, default=0.3, help="share scored at the end (0.3)")
    return p


def read_column(
    csv: Path, column: str | None
) -> tuple[str, np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]]:
    """The column's name, and its times and values where it has one."""
    table = read_csv(csv)
    columns, _ = resolve_columns(table, [column] if column else None, None)
    series = load_series(table, columns[:1])[0]
    keep = ~np.isnan(series.values[:, 0])
    return columns[0], series.times[keep], series.values[keep, 0].copy()


def main() -> int:
    p = series_arguments(__doc__)
    p.add_argument("--level", type=float, default=0.9)
    p.add_argument("--spikes", type=float, default=0.0, help="inject spikes of K x diff std")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="daemon env")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    column, times, values = read_column(args.csv, args.column)
    if times[0] < 0:  # before 1970: the daemon takes epoch seconds from 0 on; keep the spacing,
        times = times - times[-1] + time.time() - 86_400  # ending yesterday (not in the future)
        early = int((times < 0).sum())
        if early:  # a series longer than the years since 1970
            print(f"{early} readings still fall before 1970: the daemon drops them (bad_ts)")
    spikes: list[int] = []
    if args.spikes:
        rng = np.random.default_rng(0)
        start = int(len(values) * (1 - args.tail))
        size = args.spikes * float(np.std(np.diff(values[:start])))
        spikes = sorted(rng.choice(np.arange(start, len(values)), len(values) // 100, False))
        values[spikes] += size * rng.choice([-1, 1], len(spikes))
    env = dict(item.split("=", 1) for item in args.set)
    meta = load_bundle(args.bundle).meta
    started = time.perf_counter()
    out = replay(times, values, args.bundle, args.level, env)
    elapsed = time.perf_counter() - started
    rows = score(times, values, out, args.tail, meta.horizon)
    print(f"{args.csv.name} [{column}], {len(values)} readings, {meta.model_id}, "
          f"{len(out.forecasts)} forecasts in {elapsed:.1f} s, tail {args.tail:.0%}")  # fmt: skip
    print("step    n      MAE  persistence  ratio   seasonal  ratio  coverage")
    for r in rows:
        print(f"{r['step']:>4} {r['n']:>5} {r['mae']:>8.4g} {r['persistence']:>12.4g} "
              f"{r['mae'] / r['persistence']:>6.3f} {r['seasonal']:>10.4g} "
              f"{r['mae'] / r['seasonal']:>6.3f} {r['coverage']:>9.3f}")  # fmt: skip
    result: dict[str, Any] = {"series": args.csv.name, "model": meta.model_id, "steps": rows}
    if spikes:
        flagged = {int(np.searchsorted(times, ts)) for ts in out.anomalies}
        start = int(len(values) * (1 - args.tail)) + meta.timesteps
        spike_set = set(spikes)
        clean = [i for i in range(start, len(values)) if i not in spike_set]
        caught = np.mean([i in flagged for i in spikes if i >= start])
        false = np.mean([i in flagged for i in clean])
        result.update(spikes_flagged=float(caught), clean_flagged=float(false))
        print(f"spikes of {args.spikes:g}x diff std: {caught:.1%} flagged; "
              f"clean readings flagged: {false:.2%}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
