"""Operations: systemd's notify protocol and watchdog, and the Prometheus endpoint."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from sensorcast.models import DEFAULT_BUNDLE

from ..conftest import daemon_settings
from ..mqtt_helpers import free_port, wait_for
from .conftest import write_config


class NotifySocket:
    """The manager's end of $NOTIFY_SOCKET: a real unix datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.messages

    def reset(self) -> None:
        """Forget everything received so far, including datagrams not yet read."""
        self.drain()
        self.messages.clear()

    def saw(self, line: str) -> bool:
        return any(line in m.splitlines() for m in self.drain())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path):
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


def test_notify_ready_watchdog_reloading_stopping(tmp_path, broker, notify_socket, daemon_proc):
    config = write_config(tmp_path / "c.toml", broker.port, DEFAULT_BUNDLE, "sc-notify")
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"}
    daemon = daemon_proc(config, env=env)
    wait_for(lambda: notify_socket.saw("READY=1"), timeout=20)
    wait_for(lambda: notify_socket.saw("WATCHDOG=1"), timeout=5)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: notify_socket.saw("RELOADING=1"))
    reloading = next(m for m in notify_socket.messages if "RELOADING=1" in m)
    assert "MONOTONIC_USEC=" in reloading
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert notify_socket.saw("STOPPING=1")


def test_watchdog_is_withheld_while_inference_hangs(
    monkeypatch, broker, client_factory, notify_socket, run_daemon
):
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_socket.path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # ping every 0.2 s
    daemon = run_daemon(daemon_settings(broker.port))
    service = daemon.service
    service.stuck_after = 1.0
    wait_for(lambda: notify_socket.saw("WATCHDOG=1"))
    runner = service.worker._served.forecaster.backend
    fast = runner.predict
    release = time.monotonic() + 6

    def hung(x):
        while time.monotonic() < release:
            time.sleep(0.05)
        return fast(x)

    runner.predict = hung
    pub = client_factory()
    for i in range(service.meta.timesteps):
        pub.publish("sensors/h/reading", {"value": float(i), "ts": 1e9 + i})
    wait_for(lambda: service.worker.busy_since is not None)
    time.sleep(1.5)  # past stuck_after
    notify_socket.reset()
    time.sleep(2)
    assert not notify_socket.saw("WATCHDOG=1")  # systemd would restart a hung daemon
    wait_for(lambda: service.worker.busy_since is None, timeout=10)
    notify_socket.reset()
    wait_for(lambda: notify_socket.saw("WATCHDOG=1"), timeout=5)  # healthy again


def test_prometheus_endpoint(broker, client_factory, run_daemon):
    port = free_port()
    daemon = run_daemon(daemon_settings(broker.port, metrics={"port": port}))
    service = daemon.service
    sub = client_factory("forecasts/#")
    pub = client_factory()
    for i in range(service.meta.timesteps + 1):
        pub.publish("sensors/m/reading", {"value": 5.0 + i % 3, "ts": 1e9 + 60 * i})
    pub.publish("sensors/m/reading", b"oops")
    wait_for(lambda: len(sub.received()) == 2)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["sensorcast_readings_total"] == service.meta.timesteps + 1
    assert values["sensorcast_forecasts_total"] == 2
    assert values['sensorcast_dropped_total{reason="not_json"}'] == 1
    assert values["sensorcast_broker_connected"] == 1
    assert values["sensorcast_batch_size_count"] >= 1
    assert f'id="{service.meta.model_id}"' in text


def test_online_accuracy_scores_each_forecast_when_its_reading_arrives(
    broker, client_factory, run_daemon
):
    # online accuracy scores the model's forecast, which the guard publishes once it has won
    daemon = run_daemon(daemon_settings(broker.port, output={"guard": False}))
    service = daemon.service
    model = service.meta.model_id
    sub = client_factory("forecasts/#")
    pub = client_factory()
    t = service.meta.timesteps
    values = [50.0 + (i % 4) for i in range(t + 1)]
    for i in range(t):
        pub.publish("sensors/acc/reading", {"value": values[i], "ts": 1e9 + 60 * i})
    forecast = wait_for(lambda: sub.json("forecasts/acc"))[0]["forecast"][0]
    pub.publish("sensorcast-noise/x", b"1")  # unrelated traffic changes nothing
    pub.publish("sensors/acc/reading", {"value": values[t], "ts": 1e9 + 60 * t})
    labels = {"model": model, "target": "value"}
    wait_for(lambda: service.metrics.value("sensorcast_online_scored_total", model=model) == 1)
    mae = service.metrics.value("sensorcast_online_mae", **labels)
    assert mae == pytest.approx(abs(values[t] - forecast), rel=1e-5)
    persistence = service.metrics.value("sensorcast_online_persistence_mae", **labels)
    assert persistence == pytest.approx(abs(values[t] - values[t - 1]))
