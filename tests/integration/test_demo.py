"""`sensorcast demo` as a newcomer runs it: forecasts appear, and stopping leaves nothing behind."""

from __future__ import annotations

import re
import signal
import socket

import psutil
import pytest

from ..mqtt_helpers import Client, wait_for
from .command import Command

FINAL = re.compile(r"demo stopped after \d+ s: (\d+) readings, (\d+) forecasts")
SENSOR_LINE = re.compile(r"\] (\S+) .*\((\d+) readings, (\d+) forecasts[,)]")


def port_of(demo: Command) -> int:
    match = re.search(r" -p (\d+) ", demo.wait_line("watch the forecasts:"))
    assert match, demo.stdout
    return int(match.group(1))


def final_counts(demo: Command) -> tuple[int, int]:
    match = FINAL.search("".join(demo.stdout))
    assert match, "".join(demo.stdout) + "".join(demo.stderr)
    return int(match.group(1)), int(match.group(2))


def last_report(demo: Command) -> dict[str, int]:
    """Forecasts per sensor in the last periodic report."""
    forecasts: dict[str, int] = {}
    for line in demo.stdout:
        match = SENSOR_LINE.search(line)
        if match:
            forecasts[match.group(1)] = int(match.group(3))
    return forecasts


def gone(processes: list[psutil.Process]) -> bool:
    return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_demo_runs_for_its_duration_then_stops_everything():
    demo = Command("demo", "--duration", "25", "--no-live", "--sensors", "4")
    try:
        port = port_of(demo)
        children = wait_for(lambda: psutil.Process(demo.proc.pid).children(recursive=True))
        assert [c.name() for c in children] == ["mosquitto"]
        assert demo.wait(timeout=90) == 0, "".join(demo.stderr)
    finally:
        demo.close()
    readings, forecasts = final_counts(demo)
    assert forecasts >= 4 * 15  # the window is full from the start: about one per reading
    assert readings >= forecasts
    per_sensor = last_report(demo)
    assert set(per_sensor) == {"office-temp", "office-humidity", "office-co2", "boiler-flow"}
    assert all(n > 0 for n in per_sensor.values())
    assert gone(children)
    assert refuses_connections(port)
    assert not any("Traceback" in line for line in demo.stderr)


def test_demo_on_the_embedded_broker_stops_on_ctrl_c():
    demo = Command(
        "demo", "--broker", "embedded", "--no-live", "--sensors", "4", "--interval", "0.5"
    )
    try:
        assert "embedded amqtt broker" in demo.wait_line("sensorcast demo:")
        port = port_of(demo)
        demo.wait_line("total:", timeout=20)
        assert psutil.Process(demo.proc.pid).children(recursive=True) == []
        demo.signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0, "".join(demo.stderr)
    finally:
        demo.close()
    assert final_counts(demo)[1] > 0
    assert refuses_connections(port)


def test_forecasts_are_on_the_demo_broker_and_sigterm_stops_it():
    demo = Command("demo", "--no-live", "--sensors", "3")
    sub = None
    try:
        port = port_of(demo)
        children = psutil.Process(demo.proc.pid).children(recursive=True)
        sub = Client(port, "forecasts/#")
        wanted = {"office-temp", "office-humidity", "office-co2"}
        wait_for(lambda: {m["sensor_id"] for m in sub.json("forecasts/")} == wanted, timeout=20)
        assert all(m["model"].startswith("default@") for m in sub.json("forecasts/"))
        sub.close()
        sub = None
        demo.signal(signal.SIGTERM)
        assert demo.wait(timeout=30) == 0, "".join(demo.stderr)
    finally:
        if sub is not None:
            sub.close()
        demo.close()
    assert gone(children)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nonexistent/bundle"], "is not a directory"),
        (["--sensors", "0"], "--sensors must be between 1 and 1000"),
        (["--duration", "nan"], "--duration must be 0 (until Ctrl-C) or more"),
    ],
)
def test_demo_mistakes_are_one_line(args, message):
    demo = Command("demo", "--no-live", *args)
    assert demo.wait(timeout=30) == 1
    assert len(demo.stderr) == 1 and message in demo.stderr[0]
