"""Run a `sensorcast` subcommand as a real process and follow its output line by line.

Until a command is wired into `sensorcast.cli`, its module's `configure_parser`
and `run` are driven the way the CLI drives them (same exit codes); once it is
wired, the real `python -m sensorcast COMMAND` runs instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from pathlib import Path

from ..mqtt_helpers import wait_for

REPO = Path(__file__).resolve().parents[2]

RUNNER = """
import argparse, importlib, sys
from sensorcast.errors import ConfigError, UserError
name = sys.argv[1]
parser = argparse.ArgumentParser(prog="sensorcast " + name)
module = importlib.import_module("sensorcast." + name)
module.configure_parser(parser)
try:
    sys.exit(module.run(parser.parse_args(sys.argv[2:])))
except ConfigError as exc:
    print(f"sensorcast: config error: {exc}", file=sys.stderr)
    sys.exit(78)
except UserError as exc:
    print(f"sensorcast: error: {exc}", file=sys.stderr)
    sys.exit(1)
except KeyboardInterrupt:
    sys.exit(130)
"""


def wired(name: str) -> bool:
    """Whether `sensorcast NAME` exists in the CLI."""
    from sensorcast.cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return name in action.choices
    return False


class Command:
    """`sensorcast NAME ARGS...` as a child process; stdout and stderr are collected."""

    def __init__(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        head = ["-m", "sensorcast", name] if wired(name) else ["-c", RUNNER, name]
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, *head, *args],
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
