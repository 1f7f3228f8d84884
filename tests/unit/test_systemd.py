"""Notifier: sd_notify over a real unix datagram socket, as systemd would receive it."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensorcast.systemd import Notifier, clock_monotonic_usec


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd's notify socket."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()


def receive(sock: socket.socket) -> list[str]:
    return sock.recv(65536).decode().split("\n")


def fields(lines: list[str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in lines)


def test_ready_with_status(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert Notifier(path).ready("serving default@3f2a9c1b") is True
    assert fields(receive(sock)) == {"READY": "1", "STATUS": "serving default@3f2a9c1b"}


def test_stopping(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert Notifier(path).stopping() is True
    assert receive(sock) == ["STOPPING=1"]


def test_watchdog(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert Notifier(path).watchdog() is True
    assert receive(sock) == ["WATCHDOG=1"]


def test_status(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert Notifier(path).status("42 sensors") is True
    assert receive(sock) == ["STATUS=42 sensors"]


def test_reloading_carries_monotonic_usec(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier(path).reloading() is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    got = fields(receive(sock))
    assert set(got) == {"RELOADING", "MONOTONIC_USEC"}
    assert got["RELOADING"] == "1"
    assert got["MONOTONIC_USEC"].isdigit()
    assert before <= int(got["MONOTONIC_USEC"]) <= after


def test_clock_monotonic_usec_is_microseconds() -> None:
    a = clock_monotonic_usec()
    time.sleep(0.01)
    b = clock_monotonic_usec()
    assert 9_000 <= b - a < 1_000_000


def test_address_from_notify_socket_env(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    assert n.address == path
    assert n.ready() is True
    assert receive(sock)[0] == "READY=1"


def test_abstract_socket_address(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"sensorcast-test-{os.getpid()}-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        n = Notifier()
        assert n.address == "\0" + name
        assert n.stopping() is True
        assert receive(sock) == ["STOPPING=1"]


def test_several_notifications_arrive_in_order(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier(path)
    n.ready()
    n.watchdog()
    n.stopping()
    assert [receive(sock)[0] for _ in range(3)] == ["READY=1", "WATCHDOG=1", "STOPPING=1"]


def test_without_notify_socket_everything_returns_false() -> None:
    n = Notifier()
    assert n.address is None
    assert n.ready("x") is False
    assert n.stopping() is False
    assert n.watchdog() is False
    assert n.reloading() is False
    assert n.status("x") is False


def test_empty_notify_socket_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert Notifier().address is None
    assert Notifier("").ready() is False


def test_unreachable_socket_returns_false_without_raising(tmp_path: Path) -> None:
    assert Notifier(str(tmp_path / "nobody-listens")).ready() is False
    assert Notifier("@sensorcast-no-such-abstract-" + uuid.uuid4().hex).watchdog() is False


def test_explicit_address_beats_env(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "elsewhere"))
    assert Notifier(path).watchdog() is True
    assert receive(sock) == ["WATCHDOG=1"]


# --- watchdog interval --------------------------------------------------------------


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    assert Notifier().watchdog_interval == 10.0


def test_watchdog_interval_with_matching_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier().watchdog_interval == 1.5


def test_watchdog_pid_mismatch_disables_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier().watchdog_interval is None


@pytest.mark.parametrize("value", ["", "abc", "-5", "1.5e6"])
def test_watchdog_off_without_usable_watchdog_usec(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", value)
    assert Notifier().watchdog_interval is None


def test_no_watchdog_env_means_no_watchdog() -> None:
    assert Notifier().watchdog_interval is None
