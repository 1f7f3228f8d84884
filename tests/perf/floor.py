"""The broker's own floor, measured with mosquitto's C clients (mosquitto_pub -l, mosquitto_sub).

Rate: `count` lines from a file through `mosquitto_pub -l` to a `mosquitto_sub
-C count`, timed from the publisher's start to the subscriber's exit. Latency:
lines carrying their wall-clock send time are fed to `mosquitto_pub -l` at a
steady rate through a pipe; `mosquitto_sub -F '%U %p'` stamps each arrival.
One topic (the C publisher cannot vary it per line), QoS 0, both clients
with `--nodelay`.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import numpy as np

from sensorcast.bench.load import paced_batches

PAYLOAD = '{"value":21.500,"ts":1700000000.0}'


def available() -> bool:
    return shutil.which("mosquitto_pub") is not None and shutil.which("mosquitto_sub") is not None


def _sub(port: int, topic: str, *extra: str, stdout: int | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "--nodelay", *extra],
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        text=True,
    )
    time.sleep(0.5)  # mosquitto_sub has no ready signal; it subscribes within milliseconds
    return proc


def _pub(port: int, topic: str, stdin: int | IO[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "--nodelay", "-l"],
        stdin=stdin,
        text=True,
    )


def floor_rate(port: int, workdir: Path, count: int = 200_000, timeout: float = 60) -> float:
    """Messages/s through the broker with C clients on both ends."""
    lines = workdir / "floor-lines.txt"
    lines.write_text((PAYLOAD + "\n") * count)
    topic = f"floor/{time.monotonic_ns()}/rate"
    sub = _sub(port, topic, "-C", str(count), "-W", str(int(timeout)))
    with lines.open() as f:
        started = time.perf_counter()
        pub = _pub(port, topic, f)
        try:
            sub.wait(timeout + 5)
        finally:
            elapsed = time.perf_counter() - started
            pub.wait(10)
    if sub.returncode != 0:
        return float("nan")
    return count / elapsed


def floor_latency(port: int, rate: float, duration: float) -> tuple[float, float, float]:
    """(p50, p99, max) in ms of publish-to-delivery at `rate` messages/s."""
    topic = f"floor/{time.monotonic_ns()}/latency"
    sub = _sub(port, topic, "-F", "%U %p", stdout=subprocess.PIPE)
    arrivals: list[str] = []

    def read() -> None:
        assert sub.stdout is not None
        arrivals.extend(sub.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    pub = _pub(port, topic, subprocess.PIPE)
    assert pub.stdin is not None
    for _, due in paced_batches(rate, duration, time.perf_counter()):
        stamp = f"{time.time():.6f}\n"
        pub.stdin.write(stamp * due)
        pub.stdin.flush()
    pub.stdin.close()
    pub.wait(10)
    time.sleep(0.5)
    sub.terminate()
    reader.join(5)
    lat = []
    for line in arrivals:
        received, _, sent = line.partition(" ")
        try:
            lat.append(float(received) - float(sent))
        except ValueError:
            continue
    settle = len(lat) // 10  # skip the first tenth (connection warm-up)
    values = np.asarray(lat[settle:]) * 1000
    if values.size == 0:
        return (float("nan"),) * 3
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99), float(values.max())
