"""A group of daemons behind a real nats-server that partitions readings by sensor id.

nats-server's MQTT listener with JetStream and the mapping
`sensors.*.reading -> part.{{partition(N,1)}}.{{wildcard(1)}}`; instance k subscribes to
`part/k/+` with its own client id, persistent session and state directory, as
deploy/sensorcast@.service runs it. Every window must be forecast exactly once across the
group, through kills, restarts and a change of the number of partitions.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.sandbox import (
    NATS_ACK_WAIT,
    NATS_MAX_ACK_PENDING,
    NatsServer,
    find_nats,
    free_port,
    partition_mapping,
)

from ..mqtt_helpers import Client, wait_for
from .conftest import Daemon

pytestmark = pytest.mark.skipif(
    find_nats() is None, reason="nats-server is not installed (./dev test installs it)"
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
T0 = 1_700_000_000.0
TIMESTEPS = load_bundle(DEFAULT_BUNDLE).meta.timesteps
SENSORS = [f"g{i}" for i in range(12)]


def value(sensor: str, i: int) -> dict[str, float]:
    return {"value": 20.0 + (i % 7) / 2 + len(sensor) / 10, "ts": T0 + 60 * i}


class Group:
    """Instances of one group on one nats-server, each a real `sensorcast run` process."""

    def __init__(self, nats: NatsServer, tmp: Path) -> None:
        self.nats = nats
        self.tmp = tmp
        self.extra = ""
        """More TOML for every instance."""
        self.env: dict[str, str] = {}
        """More environment for every instance, as group.env would give it."""
        self.procs: dict[int, Daemon] = {}
        self.metrics_ports: dict[int, int] = {}
        self.watch = Client(nats.port, "forecasts/#", "sensorcast/+/status", client_id="watch")
        self.routes = Client(nats.port, "part/+/+", client_id="routes")
        self.pub = Client(nats.port, client_id="pub")

    def config(self, k: int) -> Path:
        """Instance k's configuration, as the unit's environment would set it."""
        port = self.metrics_ports.setdefault(k, free_port())
        path = self.tmp / f"instance-{k}.toml"
        path.write_text(
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.nats.port}\nclient_id = "sc-group-{k}"\n'
            f'protocol = "3.1.1"\nreconnect_min = 0.1\nreconnect_max = 0.5\n'
            f'[model]\npath = "{DEFAULT_BUNDLE}"\n'
            f'[input]\ntopic = "part/{k}/{{sensor_id}}"\n'
            f'[state]\ndir = "{self.tmp / f"state-{k}"}"\ninterval = 0.2\n'
            f"[metrics]\nport = {port}\n{self.extra}"
        )
        return path

    def start(self, k: int) -> Daemon:
        before = len(self.online(k))
        d = self.procs[k] = Daemon(self.config(k), env=self.env)
        try:
            wait_for(lambda: len(self.online(k)) > before, timeout=20)
        except TimeoutError:
            raise AssertionError(f"instance {k} did not come online: {''.join(d.lines)}") from None
        return d

    def online(self, k: int) -> list[bytes]:
        status = f"sensorcast/sc-group-{k}/status"
        return [p for t, p, _ in self.watch.received(status) if p == b"online"]

    def readings(self, k: int) -> float:
        url = f"http://127.0.0.1:{self.metrics_ports[k]}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        line = next(ln for ln in text.splitlines() if ln.startswith("sensorcast_readings_total"))
        return float(line.split()[-1])

    def publish(self, indices: range, sensors: list[str] = SENSORS) -> None:
        for i in indices:
            for s in sensors:
                self.pub.publish(f"sensors/{s}/reading", value(s, i))

    def forecasts(self) -> Counter[tuple[str, float]]:
        return Counter((m["sensor_id"], m["ts"]) for m in self.watch.json("forecasts/"))

    def partition_of(self) -> dict[str, set[str]]:
        """Which partitions each sensor's readings were routed to, as the broker did it."""
        seen: dict[str, set[str]] = {}
        for topic, _, _ in self.routes.received("part/"):
            _, k, sensor = topic.split("/")
            seen.setdefault(sensor, set()).add(k)
        return seen

    def close(self) -> None:
        for d in self.procs.values():
            d.close()
        for c in (self.watch, self.routes, self.pub):
            c.close()


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Callable[[int], Group]]:
    made: list[tuple[NatsServer, Group]] = []

    def make(partitions: int) -> Group:
        nats = NatsServer(partitions).start()
        g = Group(nats, tmp_path)
        made.append((nats, g))
        return g

    yield make
    for nats, g in made:
        g.close()
        nats.close()


def expected(sensors: list[str], indices: range) -> Counter[tuple[str, float]]:
    """One forecast per reading that completes or advances a full window."""
    return Counter((s, T0 + 60 * i) for s in sensors for i in indices if i >= TIMESTEPS - 1)


def settle(g: Group, want: Counter[tuple[str, float]], timeout: float = 15) -> None:
    """Wait for `want`, then a little longer: a duplicate would arrive late."""
    try:
        wait_for(lambda: set(g.forecasts()) >= set(want), timeout=timeout)
    except TimeoutError:
        missing = sorted(set(want) - set(g.forecasts()))
        logs = {k: "".join(d.lines[-15:]) for k, d in g.procs.items()}
        found = f"{len(missing)} forecasts missing, first {missing[:10]}; {logs}"
        raise AssertionError(found) from None
    time.sleep(0.5)


def test_two_instances_on_two_partitions_forecast_every_window_once(group):
    g = group(2)
    g.start(0)
    g.start(1)
    n = TIMESTEPS + 4
    g.publish(range(n))
    want = expected(SENSORS, range(n))
    settle(g, want)
    assert g.forecasts() == want
    routed = g.partition_of()
    assert all(len(parts) == 1 for parts in routed.values())  # a sensor stays on one
    assert {next(iter(p)) for p in routed.values()} == {"0", "1"}
    per_instance = [g.readings(0), g.readings(1)]
    assert sum(per_instance) == n * len(SENSORS)
    assert min(per_instance) > 0


def test_killed_instance_gets_its_partition_backlog_after_restart(group):
    g = group(2)
    g.start(0)
    victim = g.start(1)
    g.publish(range(TIMESTEPS))
    settle(g, expected(SENSORS, range(TIMESTEPS)))
    time.sleep(0.6)  # a periodic snapshot after the last reading
    victim.signal(signal.SIGKILL)
    victim.wait()
    wait_for(lambda: any(p == b"offline" for t, p, _ in g.watch.received("sensorcast/sc-group-1")))

    backlog = range(TIMESTEPS, TIMESTEPS + 4)
    g.publish(backlog)  # partition 1's readings queue in its persistent session (JetStream)
    routed = g.partition_of()
    survivors = [s for s in SENSORS if routed[s] == {"0"}]
    waiting = [s for s in SENSORS if routed[s] == {"1"}]
    settle(g, expected(survivors, range(TIMESTEPS + 4)))  # the other instance went on
    assert not set(expected(waiting, backlog)) & set(g.forecasts())

    time.sleep(g.nats.ack_wait)  # as the unit's ExecStartPre: unacked readings come back first
    restarted = g.start(1)
    wait_for(lambda: restarted.logged("restored"), timeout=10)
    want = expected(SENSORS, range(TIMESTEPS + 4))
    settle(g, want)
    assert g.forecasts() == want


def test_rolling_restart_under_load_loses_nothing(group):
    g = group(2)
    g.start(0)
    g.start(1)
    stop = threading.Event()
    sent: list[int] = []

    def load() -> None:
        i = 0
        while not stop.is_set() or i < TIMESTEPS + 2:
            g.publish(range(i, i + 1))
            sent.append(i)
            i += 1
            time.sleep(0.02)

    publisher = threading.Thread(target=load, daemon=True)
    publisher.start()
    wait_for(lambda: len(sent) >= TIMESTEPS + 2, timeout=15)
    for k in (0, 1):
        d = g.procs[k]
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
        time.sleep(g.nats.ack_wait)
        g.start(k)
        time.sleep(0.5)
    stop.set()
    publisher.join(20)
    want = expected(SENSORS, range(len(sent)))
    settle(g, want, timeout=20)
    assert g.forecasts() == want


def test_going_from_two_to_three_partitions(group):
    """A sensor that moves starts a fresh window at its new instance: it forecasts again
    after TIMESTEPS readings there. No reading is lost or taken twice, no window forecast
    twice, and sensors that stay keep forecasting without a pause."""
    g = group(2)
    g.start(0)
    g.start(1)
    g.publish(range(TIMESTEPS))
    settle(g, expected(SENSORS, range(TIMESTEPS)))
    before = g.partition_of()

    g.start(2)  # the new instance first, so its session exists when readings arrive
    g.nats.repartition(3)
    g.routes.messages.clear()
    end = 2 * TIMESTEPS + 2
    g.publish(range(TIMESTEPS, end))
    wait_for(lambda: len(g.routes.received()) == (end - TIMESTEPS) * len(SENSORS))
    after = g.partition_of()
    assert all(len(parts) == 1 for parts in after.values())
    moved = [s for s in SENSORS if after[s] != before[s]]
    stayed = [s for s in SENSORS if after[s] == before[s]]
    assert moved and stayed and {"2"} in after.values()

    want = expected(stayed, range(end)) + expected(moved, range(TIMESTEPS))
    want += Counter((s, T0 + 60 * i) for s in moved for i in range(2 * TIMESTEPS - 1, end))
    settle(g, want)
    assert g.forecasts() == want


def test_the_shipped_nats_configuration_is_the_tested_one():
    conf = DEPLOY / "nats-server.conf"
    binary = find_nats()
    assert binary is not None
    check = subprocess.run([binary, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    text = conf.read_text()
    assert partition_mapping(2) in text
    assert f'ack_wait: "{NATS_ACK_WAIT:g}s"' in text
    assert f"max_ack_pending: {NATS_MAX_ACK_PENDING}\n" in text
    unit = (DEPLOY / "sensorcast@.service").read_text()
    assert f"ExecStartPre=/bin/sleep {NATS_ACK_WAIT:g}\n" in unit


def test_each_instance_announces_its_own_sensors_under_its_own_status(group):
    g = group(2)
    g.extra = "[homeassistant]\ndiscovery = true\n"
    g.start(0)
    g.start(1)
    g.publish(range(TIMESTEPS))
    settle(g, expected(SENSORS, range(TIMESTEPS)))
    ha = Client(g.nats.port, "homeassistant/#", "sensorcast/+/status", client_id="ha")
    try:
        wait_for(lambda: len(ha.received("homeassistant/")) >= len(SENSORS))
        time.sleep(0.5)
        configs = [json.loads(p) for _, p, retained in ha.received("homeassistant/") if p]
        forecasts = [c for c in configs if c["state_topic"].startswith("forecasts/")]
        # one entity per sensor, announced by the instance that serves it
        assert sorted(c["state_topic"] for c in forecasts) == sorted(
            f"forecasts/{s}" for s in SENSORS
        )
        assert len({c["unique_id"] for c in forecasts}) == len(SENSORS)
        routed = g.partition_of()
        for c in forecasts:
            sensor = c["state_topic"].split("/")[1]
            (k,) = routed[sensor]
            assert c["availability_topic"] == f"sensorcast/sc-group-{k}/status"
        # each instance's status is its own: stopping one leaves the other online
        g.procs[1].signal(signal.SIGTERM)
        assert g.procs[1].wait() == 0
        late = Client(g.nats.port, "sensorcast/+/status", client_id="late")
        wait_for(lambda: len(late.received()) == 2)  # both retained
        assert sorted((t, p) for t, p, _ in late.received()) == [
            ("sensorcast/sc-group-0/status", b"online"),
            ("sensorcast/sc-group-1/status", b"offline"),
        ]
        late.close()
    finally:
        ha.close()


def test_a_sensor_that_moves_keeps_its_home_assistant_entity(group):
    """Its old instance evicts it (input.sensor_ttl) but must not remove its entity, which
    the new instance now serves: a member of a group leaves evictions alone."""
    g = group(2)
    g.extra = "[homeassistant]\ndiscovery = true\n"
    g.env = {"SENSORCAST_INPUT__GROUP": "true", "SENSORCAST_INPUT__SENSOR_TTL": "1"}
    g.start(0)
    g.start(1)
    g.publish(range(TIMESTEPS))
    settle(g, expected(SENSORS, range(TIMESTEPS)))
    before = g.partition_of()
    g.start(2)
    g.nats.repartition(3)
    g.routes.messages.clear()
    g.publish(range(TIMESTEPS, 2 * TIMESTEPS))
    after = g.partition_of()
    moved = [s for s in SENSORS if after[s] != before[s]]
    settle(g, Counter((s, T0 + 60 * (2 * TIMESTEPS - 1)) for s in moved))
    time.sleep(2.5)  # past sensor_ttl: the old instances evict the sensors that moved
    ha = Client(g.nats.port, "homeassistant/#", client_id="ha-late")
    try:
        wait_for(lambda: len(ha.received("homeassistant/")) >= len(SENSORS))
        time.sleep(0.5)
        configs = [json.loads(p) for _, p, _ in ha.received("homeassistant/") if p]
        owner = {
            c["state_topic"].split("/")[1]: c["availability_topic"]
            for c in configs
            if c.get("state_topic", "").startswith("forecasts/")
        }
        for s in SENSORS:  # every sensor still has its entity, available with its owner
            (k,) = after[s]
            assert owner.get(s) == f"sensorcast/sc-group-{k}/status", s
    finally:
        ha.close()
