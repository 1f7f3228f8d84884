"""Metrics that average honestly: scale-free accuracy, process and build metrics, reloads."""

from __future__ import annotations

import math
import socket

import numpy as np

from sensorcast import metrics as metrics_module
from sensorcast.accuracy import OnlineAccuracy, window_scale
from sensorcast.drops import Drop
from sensorcast.metrics import FORECAST_DROPS, MAX_SCRAPES, Metrics
from sensorcast.sandbox import free_port


def score(acc: OnlineAccuracy, window: list[float], forecast: float, actual: float) -> None:
    """A first step realised: the model's error and persistence's, in the window's scale."""
    w = np.asarray(window, dtype=np.float64)[:, None]
    err = np.array([[abs(actual - forecast)]])
    perr = np.array([[abs(actual - window[-1])]])
    acc.fold(err, perr, window_scale(w[None]))


def test_scaled_accuracy_lets_every_sensor_count_alike_whatever_its_unit():
    metrics = Metrics()
    acc = OnlineAccuracy(metrics, ["value"], ["value"], "m@1")
    labels = {"model": "m@1", "target": "value"}
    for _ in range(200):
        # a temperature in degrees: the model errs by half of persistence's error
        score(acc, [20.0, 20.1, 20.0, 20.1], forecast=20.05, actual=20.0)
        # lux in thousands: the model errs twice as much as persistence
        score(acc, [15000.0, 15100.0, 15000.0, 15100.0], forecast=14800.0, actual=15000.0)
    mae = metrics.value("sensorcast_online_mae", **labels)
    pmae = metrics.value("sensorcast_online_persistence_mae", **labels)
    assert mae / pmae > 1.9  # in units, the lux sensor decides alone
    relative = metrics.value("sensorcast_online_relative_error", **labels)
    # scaled, each sensor weighs the same: (0.5 + 2) / (1 + 1) per unit of its own change
    assert abs(relative - 1.25) < 0.05
    mase = metrics.value("sensorcast_online_mase", **labels)
    pmase = metrics.value("sensorcast_online_persistence_mase", **labels)
    assert math.isclose(relative, mase / pmase)


def test_a_flat_window_is_not_scaled_and_series_start_as_nan():
    metrics = Metrics()
    acc = OnlineAccuracy(metrics, ["value"], ["value"], "m@1")
    labels = {"model": "m@1", "target": "value"}
    assert math.isnan(metrics.value("sensorcast_online_relative_error", **labels))
    score(acc, [0.0, 0.0, 0.0], forecast=0.0, actual=1.0)
    assert metrics.value("sensorcast_online_mae", **labels) == 1.0
    assert math.isnan(metrics.value("sensorcast_online_mase", **labels))


def test_a_reload_removes_the_old_model_series():
    metrics = Metrics()
    acc = OnlineAccuracy(metrics, ["value"], ["value"], "old@1")
    score(acc, [1.0, 2.0, 3.0], forecast=4.0, actual=4.5)
    acc.configure(["value"], ["value"], "new@2")
    text = exposition(metrics)
    assert 'model="old@1"' not in text
    assert 'sensorcast_online_relative_error{model="new@2",target="value"} NaN' in text


def exposition(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


def test_process_build_and_every_reason_label_from_the_start():
    text = exposition(Metrics())
    assert "process_resident_memory_bytes" in text and "process_cpu_seconds_total" in text
    assert "python_info{" in text
    assert 'sensorcast_build_info{litert="' in text and 'version="' in text
    for reason in Drop:
        assert f'sensorcast_dropped_total{{reason="{reason.value}"}} 0.0' in text
    for reason in FORECAST_DROPS:
        assert f'sensorcast_forecasts_dropped_total{{reason="{reason}"}} 0.0' in text


def test_the_gap_fill_counter_says_how_gaps_are_filled():
    """input.gap_fill = "interpolate" fills a gap linearly (test_buffer); the counter's HELP
    said it repeated the last reading."""
    help_line = next(
        line
        for line in exposition(Metrics()).splitlines()
        if line.startswith("# HELP sensorcast_gap_fills_total")
    )
    assert "linearly" in help_line and "repeating" not in help_line


def _scrape(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        return b"".join(iter(lambda: s.recv(65536), b""))


def _closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_idle_connections_to_the_endpoint_are_bounded_and_closed(monkeypatch):
    # a client that opens connections and sends nothing held a thread and a descriptor for
    # each for good: at the limit of open files, snapshots and reconnects failed
    monkeypatch.setattr(metrics_module, "SCRAPE_TIMEOUT", 0.5)
    port = free_port()
    metrics = Metrics()
    metrics.serve("127.0.0.1", port)
    idle: list[socket.socket] = []
    try:
        for _ in range(MAX_SCRAPES + 4):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            idle.append(s)
        # the ones beyond the bound are closed at once, the others once silent too long
        assert all(_closed_by_server(s) for s in idle)
        assert b"sensorcast_readings_total" in _scrape(port)  # scrapes are served still
    finally:
        for s in idle:
            s.close()
        metrics.close()
