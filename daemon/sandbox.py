"""Private brokers (mosquitto, nats-server) and an in-process daemon, for the demo, the bench
and the tests.

`Mosquitto` runs the installed broker as a child process on a free 127.0.0.1
port, with a configuration of its own in a temporary folder: in its own
process group (a terminal's Ctrl-C reaches only its parent, which stops it
after the daemon has drained), terminated by the kernel if its parent dies,
and restartable on the same port (fault tests kill and restart it).
`NatsServer` runs nats-server the same way, with its MQTT listener, JetStream and the
subject mapping that partitions readings for a group of daemons (README, "Many daemons").
`ServiceThread` runs a daemon's main loop on a thread, as `sensorcast run`
runs it on the main one.
"""

from __future__ import annotations

import ctypes
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sensorcast.service import Service

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
NATS_PATHS = ("/usr/sbin/nats-server", "/usr/local/sbin/nats-server", "/usr/local/bin/nats-server")
PR_SET_PDEATHSIG = 1


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago, and that this process
    has not been given before: a client still reconnecting to an earlier broker's port never
    reaches a later one."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def find_mosquitto() -> str | None:
    """The mosquitto binary, also where Debian puts it outside a user's PATH."""
    found = shutil.which("mosquitto")
    return found or next((p for p in MOSQUITTO_PATHS if os.access(p, os.X_OK)), None)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent's thread dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


class BrokerProcess:
    """A broker child process with a temporary folder: stopped, killed, cleaned up."""

    proc: subprocess.Popen[bytes] | None
    dir: Path
    binary: str
    host: str
    log_path: Path

    def _spawn(self, conf: Path, port: int, timeout: float) -> bool:
        """Run the binary on `conf`, logging to `log_path`, and wait until `port` accepts a
        connection: False (the process killed) if it exited or the time ran out."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                process_group=0,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection((self.host, port), timeout=0.2).close()
                return True
            except OSError:
                time.sleep(0.02)
        self.kill()
        return False

    def _failed(self) -> RuntimeError:
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        name = os.path.basename(self.binary)
        return RuntimeError(f"{name} ({self.binary}) did not start: {lines[-1:] or 'no output'}")

    def stop(self, timeout: float = 10.0) -> None:
        """Clean stop (SIGTERM, then SIGKILL if it lingers): the broker saves its state."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        """Stop and remove the temporary folder."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Mosquitto(BrokerProcess):
    """mosquitto on 127.0.0.1, started, stopped, killed and restarted on one port."""

    kind = "mosquitto"
    protocol = "5"
    host = "127.0.0.1"

    def __init__(
        self,
        *,
        nodelay: bool = True,
        persistence: bool = False,
        max_queued: int = 100_000,
        extra: str = "",
        binary: str | None = None,
    ) -> None:
        found = binary or find_mosquitto()
        if found is None:
            raise FileNotFoundError("mosquitto is not installed (apt install mosquitto)")
        self.binary = found
        self.dir = Path(tempfile.mkdtemp(prefix="sensorcast-mosq-"))
        self.log_path = self.dir / "mosquitto.log"
        self.port = free_port()
        self._started = False
        self.proc: subprocess.Popen[bytes] | None = None
        # As root, mosquitto would switch to its own user, which clears the parent-death
        # signal and cannot write the persistence folder; run it as this user instead.
        self._lines = [
            "allow_anonymous true",
            f"user {getpass.getuser()}",
            f"set_tcp_nodelay {'true' if nodelay else 'false'}",
            f"max_queued_messages {max_queued}",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self.dir}/",
            extra,
        ]

    def start(self, timeout: float = 10.0, attempts: int = 3) -> Mosquitto:
        """Start (or restart on the same port); if another process takes the port before the
        first start, try another."""
        for attempt in range(1 if self._started else attempts):
            if attempt:
                self.port = free_port()
            if self._launch(self.port, timeout):
                self._started = True
                return self
        raise self._failed()

    def _launch(self, port: int, timeout: float) -> bool:
        conf = self.dir / "mosquitto.conf"
        conf.write_text(f"listener {port} {self.host}\n" + "\n".join(self._lines) + "\n")
        return self._spawn(conf, port, timeout)


NATS_ACK_WAIT = 2.0
"""Seconds before nats-server delivers an unacknowledged QoS 1 message again (mqtt.ack_wait),
as in deploy/nats-server.conf; its default, 30 s, lets newer readings overtake such ones."""
NATS_MAX_ACK_PENDING = 100
"""QoS 1 messages in flight to one subscriber (mqtt.max_ack_pending): few enough that a slow
daemon acknowledges each well within ack_wait, else nats-server sends it again, out of order."""


def find_nats() -> str | None:
    """The nats-server binary (Debian's package puts it in /usr/sbin)."""
    found = shutil.which("nats-server")
    return found or next((p for p in NATS_PATHS if os.access(p, os.X_OK)), None)


def partition_mapping(partitions: int) -> str:
    """nats-server's subject mapping that sends `sensors/<id>/reading` to `part/<k>/<id>`,
    k a deterministic hash of the sensor id modulo `partitions`."""
    return f'"sensors.*.reading": "part.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}"'


class NatsServer(BrokerProcess):
    """nats-server on 127.0.0.1 with its MQTT listener (MQTT 3.1.1, QoS 0/1), JetStream (which
    the MQTT listener needs: sessions and QoS 1 messages live there) and `partitions`
    partitions; killed and restarted on the same ports, re-partitioned by a live reload."""

    kind = "nats"
    protocol = "3.1.1"
    host = "127.0.0.1"

    def __init__(
        self,
        partitions: int = 2,
        *,
        ack_wait: float = NATS_ACK_WAIT,
        max_ack_pending: int = NATS_MAX_ACK_PENDING,
        binary: str | None = None,
    ):
        found = binary or find_nats()
        if found is None:
            raise FileNotFoundError("nats-server is not installed (apt install nats-server)")
        self.binary = found
        self.partitions = partitions
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self.dir = Path(tempfile.mkdtemp(prefix="sensorcast-nats-"))
        self.conf = self.dir / "nats-server.conf"
        self.log_path = self.dir / "nats-server.log"
        self.port = free_port()
        """The MQTT listener's port."""
        self.nats_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        return (
            f'server_name: "sensorcast-test"\n'
            f'listen: "{self.host}:{self.nats_port}"\n'
            f'jetstream {{ store_dir: "{self.dir}/jetstream" }}\n'
            f'mqtt {{ listen: "{self.host}:{self.port}", ack_wait: "{self.ack_wait:g}s", '
            f"max_ack_pending: {self.max_ack_pending} }}\n"
            f"mappings = {{ {partition_mapping(self.partitions)} }}\n"
        )

    def start(self, timeout: float = 15.0) -> NatsServer:
        """Start, or restart on the same ports with the same JetStream store."""
        self.conf.write_text(self.config())
        if self._spawn(self.conf, self.port, timeout):
            return self
        raise self._failed()

    def repartition(self, partitions: int) -> None:
        """Change the mapping to `partitions` partitions with a live reload (SIGHUP)."""
        self.partitions = partitions
        self.conf.write_text(self.config())
        if self.proc is None or self.proc.poll() is not None:
            return
        done = "Reloaded server configuration"
        before = self.log_path.read_text(errors="replace").count(done)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.log_path.read_text(errors="replace").count(done) == before:
            if time.monotonic() > deadline:
                raise RuntimeError("nats-server did not reload its configuration")
            time.sleep(0.05)


class ServiceThread(threading.Thread):
    """A `Service` running its main loop on a thread, as `sensorcast run` would."""

    def __init__(self, service: Service) -> None:
        super().__init__(name="sensorcast-service", daemon=True)
        self.service = service
        self.exit_code: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.exit_code = self.service.run()
        except BaseException as exc:  # reported to whoever started the thread
            self.error = exc

    def wait_subscribed(self, timeout: float = 15.0) -> bool:
        """Wait until the daemon has subscribed; False if it died or the time ran out."""
        deadline = time.monotonic() + timeout
        while not self.service.link.subscribed.wait(0.02):
            if not self.is_alive() or time.monotonic() > deadline:
                return False
        return True

    def stop(self, timeout: float = 30.0) -> int | None:
        """Drain: the daemon finishes queued windows, publishes `offline`, disconnects."""
        self.service.request_exit()
        self.join(timeout)
        return self.exit_code
