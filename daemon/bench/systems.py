"""The systems under test the benchmark runs, each as its own process.

Each system under test is its own process, so its resident memory and start-up
time are its own. Start-up ends when its status topic says `online`: every
system publishes that right after subscribing, on the same connection, so the
broker has registered the subscription by then.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sensorcast.bench.load import Collector
from sensorcast.sandbox import free_port

START_TIMEOUT = 120.0
"""Seconds a system under test may take to subscribe (TensorFlow imports are slow)."""


@dataclass
class Target:
    """How to start one system under test and where its outputs appear."""

    name: str
    argv: list[str]
    status_topic: str
    output_prefix: str
    first_output_round: int
    env: dict[str, str] = field(default_factory=dict)
    metrics_port: int | None = None


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without any SENSORCAST_ settings (the bench sets its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORCAST_")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return {**env, **extra}


class RunningTarget:
    """A started target: start-up time, peak and current RSS, metrics, and a clean stop."""

    def __init__(self, target: Target, collector: Collector, logdir: Path) -> None:
        self.target = target
        online = collector.watch_status(target.status_topic)
        self.log_path = logdir / f"{target.name}-{os.getpid()}-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                target.argv, env=clean_env(target.env), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not online.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                lines = self.log_path.read_text(errors="replace").strip().splitlines()
                last = lines[-1] if lines else "no output"
                raise RuntimeError(
                    f"{target.name} did not come online (exit code {self.proc.returncode}): "
                    f"{last} (log: {self.log_path})"
                )
        self.startup = collector.online_at(target.status_topic) - started

    def memory(self) -> tuple[float, float]:
        """(peak, current) resident memory in MB, from /proc (VmHWM, VmRSS)."""
        fields: dict[str, float] = {}
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    fields[key] = int(value.split()[0]) / 1024
        except OSError:
            pass
        return fields.get("VmHWM", float("nan")), fields.get("VmRSS", float("nan"))

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return float("nan")
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, limit: float = 60.0, busy: float = 0.05) -> None:
        """Wait until the process uses under `busy` of a core over 0.2 s (it caught up)."""
        deadline = time.monotonic() + limit
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.cpu_seconds()
            if now - before < busy * 0.2:
                return
            before = now

    def metrics(self) -> dict[str, float]:
        """The daemon's Prometheus samples (name{labels} -> value), if it serves them."""
        port = self.target.metrics_port
        if port is None:
            return {}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def readings_taken(self) -> int:
        """The daemon's count of readings taken into its buffers (0 if unknown)."""
        return int(self.metrics().get("sensorcast_readings_total", 0))

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="sensorcast-bench-"))


def sensorcast_target(
    *,
    host: str,
    port: int,
    prefix: str,
    bundle: Path,
    timesteps: int,
    backend: str = "litert",
    max_batch: int = 256,
    max_wait_ms: float = 0.0,
    state_dir: Path | None = None,
    max_sensors: int = 100_000,
) -> Target:
    """`python -m sensorcast run`, configured through its environment for one bench run."""
    client_id = f"{prefix.replace('/', '-')}-sensorcast"
    metrics_port = free_port()
    env = {
        "SENSORCAST_MQTT__HOST": host,
        "SENSORCAST_MQTT__PORT": str(port),
        "SENSORCAST_MQTT__CLIENT_ID": client_id,
        "SENSORCAST_MQTT__SESSION_EXPIRY": "0",
        "SENSORCAST_INPUT__TOPIC": f"{prefix}/sensors/{{sensor_id}}/reading",
        "SENSORCAST_OUTPUT__TOPIC": f"{prefix}/forecasts/{{sensor_id}}",
        "SENSORCAST_MODEL__PATH": str(bundle),
        "SENSORCAST_MODEL__BACKEND": backend,
        "SENSORCAST_INFERENCE__MAX_BATCH": str(max_batch),
        "SENSORCAST_INFERENCE__MAX_WAIT_MS": str(max_wait_ms),
        "SENSORCAST_METRICS__PORT": str(metrics_port),
        "SENSORCAST_INPUT__MAX_SENSORS": str(max_sensors),
        "SENSORCAST_LOG__LEVEL": "WARNING",
    }
    if state_dir is not None:
        env["SENSORCAST_STATE__DIR"] = str(state_dir)
        env["SENSORCAST_STATE__INTERVAL"] = "86400"
    return Target(
        name=f"sensorcast-{backend}",
        argv=[sys.executable, "-m", "sensorcast", "run"],
        status_topic=f"sensorcast/{client_id}/status",
        output_prefix=f"{prefix}/forecasts/",
        first_output_round=timesteps - 1,
        env=env,
        metrics_port=metrics_port,
    )
