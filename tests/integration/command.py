"""Run a `sensorcast` subcommand as a real process and follow its output line by line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from ..mqtt_helpers import wait_for

REPO = Path(__file__).resolve().parents[2]


class Command:
    """`sensorcast NAME ARGS...` as a child process; stdout and stderr are collected."""

    def __init__(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sensorcast", name, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, **(env or {})},
        )
        self._readers = [
            threading.Thread(target=self._follow, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _follow(stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line)

    def wait_line(self, text: str, timeout: float = 30, stream: str = "stdout") -> str:
        """The first line of `stream` containing `text`, waiting for it."""
        lines = self.stdout if stream == "stdout" else self.stderr

        def found() -> str | None:
            if self.proc.poll() is not None and not any(text in ln for ln in lines):
                raise AssertionError(f"exited {self.proc.returncode}: {''.join(self.stderr)}")
            return next((ln for ln in lines if text in ln), None)

        line: str = wait_for(found, timeout=timeout)
        return line

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        """The exit code, once the process has ended and all its output is read."""
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
