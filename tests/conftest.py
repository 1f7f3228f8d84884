"""Shared fixtures: a real mosquitto per test, and an in-process daemon."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sensorcast.config import Settings, load_settings
from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.sandbox import ServiceThread
from sensorcast.service import Service

from .mqtt_helpers import Client, Mosquitto
from .tls_helpers import PKI, make_pki

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A private CA, broker and client certificates (made once per test run)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    b = Mosquitto().start()
    yield b
    b.close()


@pytest.fixture
def client_factory(broker: Mosquitto) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(*topics: str, port: int | None = None, **kw: Any) -> Client:
        c = Client(port or broker.port, *topics, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def daemon_settings(port: int, **sections: Any) -> Settings:
    """Settings for a test daemon on `port`; `sections` override per config section."""
    base: dict[str, Any] = {
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "client_id": "sc-test",
            "reconnect_min": 0.1,
            "reconnect_max": 0.5,
        },
        "model": {"path": str(DEFAULT_BUNDLE)},
        "log": {"drop_interval": 0},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return load_settings(None, **base)


@pytest.fixture
def run_daemon() -> Iterator[Callable[..., ServiceThread]]:
    running: list[ServiceThread] = []

    def start(settings: Settings, wait_subscribed: bool = True) -> ServiceThread:
        r = ServiceThread(Service(settings))
        r.start()
        running.append(r)
        if wait_subscribed and not r.wait_subscribed():
            raise TimeoutError(f"the daemon did not subscribe: {r.error}")
        return r

    yield start
    for r in running:
        if r.is_alive():
            r.stop()


@pytest.fixture(autouse=True)
def _no_user_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own SENSORCAST_* settings must not leak into the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("SENSORCAST_"):
            monkeypatch.delenv(name)
