"""Fixtures for tests that run `sensorcast run` as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def message(line: str) -> str:
    """A log line without the timestamp the text format starts with: `LEVEL name: text`."""
    return TIMESTAMP.sub("", line)


class Daemon:
    """A `sensorcast run` subprocess whose stderr is collected line by line."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sensorcast", "run", "--config", str(config)],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        """The exit code, once every line the process wrote has been collected. A process
        still running after `timeout` is aborted, and the failure shows its log and where
        each of its threads was (faulthandler's dump on SIGABRT)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(10)
            finally:
                self._reader.join(5)
            raise AssertionError(
                f"sensorcast run did not exit within {timeout} s:\n{''.join(self.lines)}"
            ) from None
        self._reader.join(timeout)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write_config(
    path: Path, port: int, model: Path, client_id: str = "sc-life", extra: str = ""
) -> Path:
    """A TOML config for a test daemon; `extra` is appended verbatim (more sections)."""
    path.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nclient_id = "{client_id}"\n'
        f'reconnect_min = 0.1\nreconnect_max = 0.5\n[model]\npath = "{model}"\n{extra}'
    )
    return path


@pytest.fixture
def daemon_proc() -> Iterator[Callable[..., Daemon]]:
    procs: list[Daemon] = []

    def start(config: Path, **kw: dict[str, str]) -> Daemon:
        d = Daemon(config, **kw)
        procs.append(d)
        return d

    yield start
    for d in procs:
        d.close()
