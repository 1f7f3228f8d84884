"""A quiet route's latency while another route is flooded (issue 14), in one run.

One daemon (in this process), two routes: `busy-*` (a copy of the shipped bundle, so its own
interpreter) and the default route for `quiet`. A quiet sensor reads every 20 ms
throughout; in the middle, `--busy` sensors publish `--flood` readings each at once. Printed:
the quiet sensor's reading-to-forecast latency before and during the flood, and how long the
flood took to work off; twice: with a lane per route (as the daemon runs), then with every
window in one queue (as before routes: the daemon's queue with the lanes taken off).

    python tests/perf/routes_fairness.py [--busy 1000] [--flood 60]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sensorcast.config import load_settings
from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.sandbox import Mosquitto, ServiceThread
from sensorcast.service import Service

T0 = 1_700_000_000.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--busy", type=int, default=1000)
    p.add_argument("--flood", type=int, default=60)
    args = p.parse_args()
    for lanes in (True, False):
        print("lane per route:" if lanes else "one queue:")
        run(args, lanes)


def run(args: argparse.Namespace, lanes: bool) -> None:
    timesteps = load_bundle(DEFAULT_BUNDLE).meta.timesteps
    work = Path(tempfile.mkdtemp())
    busy_bundle = work / "busy"
    shutil.copytree(DEFAULT_BUNDLE, busy_bundle)
    broker = Mosquitto(nodelay=True, max_queued=1_000_000).start()
    settings = load_settings(
        None,
        mqtt={"host": "127.0.0.1", "port": broker.port, "client_id": "fair"},
        routes=[{"sensors": "busy-*", "model": str(busy_bundle)}],
        log={"level": "WARNING"},
    )
    service = Service(settings)
    if not lanes:
        queue = service.queue
        put = queue.put
        queue.put = lambda window, received, lane=None: put(window, received)  # type: ignore[method-assign]
    daemon = ServiceThread(service)
    daemon.start()
    assert daemon.wait_subscribed()

    sent: dict[float, float] = {}
    latency: list[tuple[float, float]] = []  # (sent at, seconds)
    busy_done: list[float] = []
    lock = threading.Lock()

    def on_message(client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if msg.topic == "forecasts/quiet":
            ts = json.loads(msg.payload)["ts"]
            with lock:
                if ts in sent:
                    latency.append((sent[ts], now - sent[ts]))
        else:
            busy_done.append(now)

    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("forecasts/#", 0)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    flood_pub = mqtt.Client(CallbackAPIVersion.VERSION2)
    flood_pub.connect("127.0.0.1", broker.port)
    flood_pub.loop_start()
    time.sleep(0.5)

    stop = threading.Event()

    def quiet() -> None:
        i = 0
        while not stop.is_set():
            ts = T0 + 60 * i
            with lock:
                sent[ts] = time.monotonic()
            pub.publish("sensors/quiet/reading", json.dumps({"value": 20 + i % 7, "ts": ts}))
            i += 1
            time.sleep(0.02)

    threading.Thread(target=quiet, daemon=True).start()
    time.sleep(3 + timesteps * 0.02)
    flood_start = time.monotonic()
    for i in range(args.flood):
        payload = json.dumps({"value": 20 + i % 5, "ts": T0 + 60 * i})
        for s in range(args.busy):
            flood_pub.publish(f"sensors/busy-{s}/reading", payload, qos=0)
    published = time.monotonic()
    windows = args.busy * (args.flood - timesteps + 1)
    deadline = time.monotonic() + 300
    while len(busy_done) < windows and time.monotonic() < deadline:
        time.sleep(0.05)
    flood_end = busy_done[-1] if busy_done else float("nan")
    time.sleep(1)
    stop.set()
    time.sleep(0.2)
    daemon.stop()
    for c in (sub, pub, flood_pub):
        c.loop_stop()
        c.disconnect()
    broker.close()
    shutil.rmtree(work, ignore_errors=True)

    def ms(values: list[float]) -> str:
        if not values:
            return "-"
        values = sorted(values)
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
        p50 = statistics.median(values)
        return f"p50 {1000 * p50:.1f} ms, p99 {1000 * p99:.1f} ms, n {len(values)}"

    before = [lat for at, lat in latency if at < flood_start]
    during = [lat for at, lat in latency if flood_start <= at <= flood_end]
    print(
        f"  flood: {args.busy} busy sensors x {args.flood} readings, {windows} windows, "
        f"{len(busy_done)} forecast; published in {published - flood_start:.2f} s, "
        f"worked off in {flood_end - flood_start:.2f} s"
    )
    print(f"  quiet route latency before the flood: {ms(before)}")
    print(f"  quiet route latency during the flood: {ms(during)}")


if __name__ == "__main__":
    main()
