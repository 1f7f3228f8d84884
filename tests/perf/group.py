"""Aggregate throughput of a group of 1, 2, 3... daemons on nats-server, in one run.

    python tests/perf/group.py [--instances 1,2,3] [--sensors 600] [--readings 30000]

For each group size N: a fresh nats-server with N partitions; each instance's persistent
session is created, then the whole load is published while no instance runs (JetStream
queues it), then the N `sensorcast run` processes start together and drain it. The rate is
the readings taken into buffers per second across the group (each instance's
`sensorcast_readings_total`, polled), between 10% and 90% of the load: the publisher never
competes with the daemons for the CPU, and start-up is not counted. `--floor` adds the same
drain by N plain paho clients that only acknowledge (the broker and client library's own
limit). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.sandbox import NATS_MAX_ACK_PENDING, NatsServer, free_port

T0 = 1_700_000_000.0


def client(port: int, client_id: str, clean: bool = True) -> mqtt.Client:
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=clean,
    )
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def make_sessions(nats: NatsServer, n: int) -> None:
    """Each instance's persistent session, so the broker queues its partition's readings."""
    for k in range(n):
        c = client(nats.port, f"sc-bench-{k}", clean=False)
        c.subscribe(f"part/{k}/+", 1)[1]
        time.sleep(0.2)
        c.disconnect()
        c.loop_stop()


def publish(nats: NatsServer, sensors: int, readings: int) -> float:
    """Publish the load at QoS 1; return the publisher's rate."""
    c = client(nats.port, "sc-bench-pub")
    start = time.perf_counter()
    last = None
    for i in range(readings):
        s, r = i % sensors, i // sensors
        payload = json.dumps({"value": 20 + (r % 17) / 4 + s / 100, "ts": T0 + 60 * r})
        last = c.publish(f"sensors/s{s:05d}/reading", payload, qos=1)
    assert last is not None
    last.wait_for_publish(120)
    while c._out_messages:  # every PUBACK back: JetStream has stored them all
        time.sleep(0.01)
    rate = readings / (time.perf_counter() - start)
    c.disconnect()
    c.loop_stop()
    return rate


def config(tmp: Path, nats: NatsServer, k: int, metrics_port: int) -> Path:
    path = tmp / f"instance-{k}.toml"
    path.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {nats.port}\nclient_id = "sc-bench-{k}"\n'
        f'protocol = "3.1.1"\n[model]\npath = "{DEFAULT_BUNDLE}"\n'
        f'[input]\ntopic = "part/{k}/{{sensor_id}}"\n[metrics]\nport = {metrics_port}\n'
        f'[log]\nlevel = "WARNING"\n'
    )
    return path


def counters(port: int) -> tuple[float, float]:
    """(readings taken, readings dropped as stale) of one instance."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return 0.0, 0.0
    taken = stale = 0.0
    for line in text.decode().splitlines():
        if line.startswith("sensorcast_readings_total"):
            taken = float(line.split()[-1])
        elif line.startswith('sensorcast_dropped_total{reason="stale"}'):
            stale = float(line.split()[-1])
    return taken, stale


def drain_rate(samples: list[tuple[float, float]], total: int) -> float:
    """Readings per second between 10% and 90% of the load."""
    t10 = next(t for t, n in samples if n >= 0.1 * total)
    t90 = next(t for t, n in samples if n >= 0.9 * total)
    return 0.8 * total / (t90 - t10)


def run_group(
    n: int, sensors: int, readings: int, tmp: Path, pending: int = NATS_MAX_ACK_PENDING
) -> dict[str, float]:
    nats = NatsServer(n, max_ack_pending=pending).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        make_sessions(nats, n)
        pub_rate = publish(nats, sensors, readings)
        ports = [free_port() for _ in range(n)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORCAST_")}
        for k in range(n):
            cmd = [sys.executable, "-m", "sensorcast", "run", "--config"]
            cmd.append(str(config(tmp, nats, k, ports[k])))
            procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL))
        samples: list[tuple[float, float]] = []
        stale = 0.0
        while not samples or time.monotonic() - samples[-1][0] < 30:  # 30 s without progress
            now = [counters(p) for p in ports]
            total, stale = sum(c[0] for c in now), sum(c[1] for c in now)
            if not samples or total > samples[-1][1]:
                samples.append((time.monotonic(), total))
            if total >= readings:
                break
            time.sleep(0.05)
        taken = samples[-1][1]
        if taken < readings:
            raise RuntimeError(
                f"{n} instances took {taken:.0f} of {readings} readings ({stale:.0f} stale)"
            )
        rate = drain_rate(samples, readings)
        return {"instances": n, "rate": rate, "publish": pub_rate, "stale": stale}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        nats.close()


def run_floor(n: int, sensors: int, readings: int) -> float:
    """The same drain by n paho clients that only acknowledge."""
    nats = NatsServer(n).start()
    try:
        make_sessions(nats, n)
        publish(nats, sensors, readings)
        counts = [0] * n
        clients = []
        for k in range(n):

            def on_message(c: object, u: object, m: object, k: int = k) -> None:
                counts[k] += 1

            c = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"sc-bench-{k}",
                protocol=mqtt.MQTTv311,
                clean_session=False,
            )
            c.on_message = on_message
            clients.append(c)
        for c in clients:
            c.connect("127.0.0.1", nats.port)
            c.loop_start()
        samples: list[tuple[float, float]] = []
        deadline = time.monotonic() + 300
        while sum(counts) < readings and time.monotonic() < deadline:
            samples.append((time.monotonic(), float(sum(counts))))
            time.sleep(0.02)
        samples.append((time.monotonic(), float(sum(counts))))
        for c in clients:
            c.disconnect()
            c.loop_stop()
        return drain_rate(samples, readings)
    finally:
        nats.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--instances", default="1,2,3")
    p.add_argument("--sensors", type=int, default=600)
    p.add_argument("--readings", type=int, default=30_000)
    p.add_argument("--floor", action="store_true", help="also the plain-client drain")
    p.add_argument("--max-ack-pending", type=int, default=NATS_MAX_ACK_PENDING)
    args = p.parse_args()
    sizes = [int(x) for x in args.instances.split(",")]
    cores = os.cpu_count()
    print(f"cores: {cores}; load average before: {os.getloadavg()[0]:.2f}")
    print(
        f"load: {args.readings} readings of {args.sensors} sensors, queued, then drained; "
        f"max_ack_pending {args.max_ack_pending}"
    )
    base = None
    with tempfile.TemporaryDirectory(prefix="sensorcast-group-bench-") as tmp:
        for n in sizes:
            r = run_group(n, args.sensors, args.readings, Path(tmp), args.max_ack_pending)
            base = base or r["rate"]
            print(
                f"{n} instance{'s' if n > 1 else ' '}: {r['rate']:8.0f} readings/s "
                f"({r['rate'] / base:.2f}x of {sizes[0]}), publisher {r['publish']:.0f}/s, "
                f"stale {r['stale']:.0f}"
            )
            if args.floor:
                print(
                    f"  floor, {n} plain client(s): "
                    f"{run_floor(n, args.sensors, args.readings):8.0f}/s"
                )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
