"""A private MQTT broker on a free 127.0.0.1 port, for `sensorcast demo`.

`MosquittoBroker` runs the installed mosquitto as a child process in its own
process group (so the terminal's Ctrl-C reaches only the demo, which stops it
after the daemon has drained) that the kernel terminates if the demo dies;
its temporary config is removed as soon as it listens.
`EmbeddedBroker` runs amqtt, a pure-Python broker that speaks MQTT 3.1.1 only,
on an asyncio loop in a thread of this process.
"""

from __future__ import annotations

import asyncio
import ctypes
import getpass
import logging
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
from typing import Any, Protocol

from sensorcast.errors import UserError

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
PR_SET_PDEATHSIG = 1


class PrivateBroker(Protocol):
    """A running broker: where it listens, which MQTT versions it speaks, how to stop it."""

    kind: str
    port: int
    protocol: str

    def stop(self) -> None: ...


def find_mosquitto() -> str | None:
    """The mosquitto binary, also where Debian puts it outside a user's PATH."""
    found = shutil.which("mosquitto")
    return found or next((p for p in MOSQUITTO_PATHS if os.access(p, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the demo's main thread dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


class MosquittoBroker:
    """mosquitto as a child process with a temporary configuration."""

    kind = "mosquitto"
    protocol = "5"

    def __init__(self, binary: str, attempts: int = 3) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sensorcast-demo-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        try:
            for _ in range(attempts):  # another process may take the port first
                if self._start(binary):
                    # mosquitto has read its config and holds its log open: nothing is
                    # left behind even if the demo is killed
                    shutil.rmtree(self.dir, ignore_errors=True)
                    return
            log = (self.dir / "mosquitto.log").read_text(errors="replace").strip()
            last = log.splitlines()[-1] if log else "no output"
            raise UserError(f"mosquitto ({binary}) did not start: {last}")
        except BaseException:
            self.stop()
            raise

    def _start(self, binary: str) -> bool:
        self.port = _free_port()
        conf = self.dir / "mosquitto.conf"
        # As root, mosquitto would switch to its own user, which clears the parent-death
        # signal; run it as the demo's user instead.
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
            "set_tcp_nodelay true\npersistence false\nmax_queued_messages 10000\n"
        )
        with (self.dir / "mosquitto.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                process_group=0,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        return False

    def stop(self) -> None:
        """Terminate mosquitto (kill it if it lingers) and remove the temporary files."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class EmbeddedBroker:
    """amqtt on its own asyncio loop in a thread; MQTT 3.1.1 only."""

    kind = "embedded amqtt"
    protocol = "3.1.1"

    def __init__(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError:
            raise UserError("the embedded broker needs amqtt: pip install amqtt") from None
        logging.getLogger("amqtt").setLevel(logging.ERROR)
        self._loop = asyncio.new_event_loop()
        self._broker: Any = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {
                "allow_anonymous": True
            }},
        }  # fmt: skip
        self._thread = threading.Thread(
            target=self._serve, args=(Broker, config), name="sensorcast-demo-broker", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(15) or self._error is not None:
            self.stop()
            raise UserError(f"the embedded broker did not start: {self._error or 'timeout'}")
        broker: Any = self._broker
        server = broker._servers["default"].instance  # amqtt has no public accessor for it
        self.port = int(server.sockets[0].getsockname()[1])

    def _serve(self, broker_cls: Any, config: dict[str, Any]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._broker = broker_cls(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        self._loop.run_forever()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def stop(self) -> None:
        """Shut the broker down on its loop, then end the loop and its thread."""
        if not self._thread.is_alive():
            return
        if self._broker is not None and self._error is None:
            done = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                done.result(timeout=10)
            except Exception as exc:  # a failed shutdown must not keep the demo alive
                logging.getLogger(__name__).warning("embedded broker shutdown: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def start_broker(choice: str) -> PrivateBroker:
    """Start the broker asked for: `mosquitto`, `embedded`, or `auto` (mosquitto if installed)."""
    binary = find_mosquitto()
    if choice == "mosquitto" and binary is None:
        raise UserError(
            "mosquitto is not installed (apt install mosquitto); or use --broker embedded"
        )
    if choice != "embedded" and binary is not None:
        return MosquittoBroker(binary)
    return EmbeddedBroker()
