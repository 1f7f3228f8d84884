"""Faults a gateway really sees, with a real mosquitto that the tests kill and restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.mqttio import status_topic

from ..conftest import daemon_settings
from ..mqtt_helpers import Client, Mosquitto, wait_for
from .conftest import write_config

T0 = 1_700_000_000.0
TIMESTEPS = load_bundle(DEFAULT_BUNDLE).meta.timesteps


def reading(i: int) -> dict[str, float]:
    return {"value": 20.0 + (i % 7) / 2, "ts": T0 + 60 * i}


def forecast_ts(client: Client, sensor: str) -> list[float]:
    return [m["ts"] for m in client.json(f"forecasts/{sensor}")]


def test_broker_killed_and_restarted_mid_stream(run_daemon):
    broker = Mosquitto(persistence=True).start()
    try:
        daemon = run_daemon(daemon_settings(broker.port))
        sub = Client(broker.port, "forecasts/#", client_id="watcher")
        pub = Client(broker.port)
        for i in range(TIMESTEPS + 2):
            pub.publish("sensors/k/reading", reading(i))
        wait_for(lambda: len(forecast_ts(sub, "k")) == 3)
        sub.close()
        pub.close()

        broker.kill()
        wait_for(lambda: not daemon.service.link.connected.is_set())
        broker.start()
        wait_for(daemon.service.link.subscribed.is_set, timeout=20)  # resubscribed on its own

        sub = Client(broker.port, "forecasts/#", client_id="watcher2")
        pub = Client(broker.port)
        for i in range(TIMESTEPS + 2, TIMESTEPS + 6):
            pub.publish("sensors/k/reading", reading(i))
        pub.publish("sensors/k/reading", reading(TIMESTEPS + 5))  # a redelivered duplicate
        wait_for(lambda: len(forecast_ts(sub, "k")) >= 4)
        time.sleep(0.3)
        after = forecast_ts(sub, "k")
        # buffers survived the broker outage: every new reading forecasts at once, once
        assert after == [T0 + 60 * i for i in range(TIMESTEPS + 2, TIMESTEPS + 6)]
        assert daemon.service.metrics.value("sensorcast_dropped_total", reason="stale") == 1
        sub.close()
        pub.close()
    finally:
        broker.close()


def test_stopping_while_the_broker_is_down_closes_the_connections(run_daemon):
    """A drain with the broker gone: `offline` cannot be sent, and the daemon still exits
    cleanly and stops reconnecting (it used to raise from paho and leave both connections
    retrying, in a process that then never exited)."""
    broker = Mosquitto().start()
    try:
        daemon = run_daemon(daemon_settings(broker.port))
        loops = list(daemon.service.link._loops)
        broker.kill()
        wait_for(lambda: not daemon.service.link.connected.is_set())
        assert daemon.stop() == 0, daemon.error
        assert not any(loop.is_alive() for loop in loops)
    finally:
        broker.close()


def test_sigkill_restart_restores_buffers_and_gets_the_backlog(
    tmp_path: Path, broker, client_factory, daemon_proc
):
    state = tmp_path / "state"
    extra = f'[state]\ndir = "{state}"\ninterval = 0.2\n'
    config = write_config(tmp_path / "c.toml", broker.port, DEFAULT_BUNDLE, "sc-kill", extra)
    status = status_topic("sc-kill")
    sub = client_factory("forecasts/#", status)
    pub = client_factory()
    daemon = daemon_proc(config)
    wait_for(lambda: sub.received(status), timeout=20)
    for i in range(TIMESTEPS):
        pub.publish("sensors/w/reading", reading(i))
    wait_for(lambda: forecast_ts(sub, "w"))
    time.sleep(1.0)  # at least one periodic snapshot after the last reading
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.wait()
    wait_for(lambda: [m for m in sub.received(status) if m[1] == b"offline"])  # the last will

    backlog = range(TIMESTEPS, TIMESTEPS + 3)
    for i in backlog:  # published while the daemon is down, QoS 1, persistent session
        pub.publish("sensors/w/reading", reading(i))

    restarted = daemon_proc(config)
    wait_for(lambda: restarted.logged("restored 1 sensors"), timeout=20)
    wait_for(lambda: len(forecast_ts(sub, "w")) == 4, timeout=20)
    assert forecast_ts(sub, "w") == [T0 + 60 * i for i in range(TIMESTEPS - 1, TIMESTEPS + 3)]
    restarted.signal(signal.SIGTERM)
    assert restarted.wait() == 0


def test_corrupt_snapshot_is_ignored_not_fatal(tmp_path: Path, broker, client_factory, daemon_proc):
    state = tmp_path / "state"
    state.mkdir()
    (state / "buffers.npz").write_bytes(b"PK\x03\x04 this is not a snapshot")
    extra = f'[state]\ndir = "{state}"\n'
    config = write_config(tmp_path / "c.toml", broker.port, DEFAULT_BUNDLE, "sc-corrupt", extra)
    status = status_topic("sc-corrupt")
    sub = client_factory(status)
    daemon = daemon_proc(config)
    wait_for(lambda: sub.received(status), timeout=20)
    wait_for(lambda: daemon.logged("unusable"))
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert (state / "buffers.npz").stat().st_size > 100  # replaced by a good snapshot


def test_a_snapshot_a_kill_left_half_written_is_removed_at_start(
    tmp_path: Path, broker, run_daemon
):
    """A snapshot is written to a temporary file of its own, then renamed: a process killed
    while writing one left that file behind, one more at every such crash."""
    state = tmp_path / "state"
    state.mkdir()
    unfinished = state / ".state-k3x9q1z.npz"
    unfinished.write_bytes(b"PK\x03\x04" + bytes(4096))  # cut off mid-write
    (state / "notes.txt").write_text("the operator's")
    daemon = run_daemon(daemon_settings(broker.port, state={"dir": str(state)}))
    assert not unfinished.exists()
    assert (state / "notes.txt").exists()
    assert daemon.stop() == 0, daemon.error
    assert (state / "buffers.npz").is_file()
    assert not list(state.glob(".state-*"))


def test_second_instance_with_the_same_client_id(tmp_path: Path, broker, daemon_proc):
    """Documented: the broker lets one connection hold a client id, so two instances take
    turns; each logs an error naming mqtt.client_id and backs off exponentially instead of
    fighting at full speed, and neither dies."""
    config = write_config(tmp_path / "c.toml", broker.port, DEFAULT_BUNDLE, "sc-twin")
    config.write_text(config.read_text().replace("reconnect_max = 0.5", "reconnect_max = 4"))
    first = daemon_proc(config)
    wait_for(lambda: first.logged("connected to"), timeout=20)
    second = daemon_proc(config)
    wait_for(lambda: first.logged("mqtt.client_id 'sc-twin'"), timeout=10)
    time.sleep(8)

    def connects() -> int:
        return sum(line.count("connected to") for line in first.lines + second.lines)

    before = connects()
    time.sleep(8)
    # without backoff the pair reconnects dozens of times per second; with it, a few times
    assert connects() - before <= 8
    assert first.proc.poll() is None and second.proc.poll() is None
