"""The network loop that drives the paho client, in place of paho's `loop_start` thread.

Three things paho's own loop cannot do, and a daemon facing backlogs needs:

- **Flow control.** Reading stops while `may_read()` is false (the inference
  queue is full), so a backlog stays at the broker (and in TCP) instead of in
  the daemon's memory or in dropped work. Writes, and so forecasts, go on.
- **A keepalive that survives a backlog.** paho pings when it has sent
  nothing for `keepalive` seconds and gives up when no PINGRESP came within
  `keepalive`. With a backlog, the PINGRESP waits at the broker behind every
  message queued before it, so a connection that is busy delivering would be
  dropped (and a broker may discard what it queued for it). Here any bytes
  that arrived after the PINGREQ count as the broker's answer, as do bytes
  waiting unread while reading is paused: the link is dead only when nothing
  at all came back within `keepalive` of a ping. paho still sends the pings.
- **Cheap reads.** paho reads a packet with two or three `recv` calls (type,
  length, body) and the paho loop selects before each packet; the socket is
  wrapped so those calls are served from one large `recv`, and up to
  `READ_BUDGET` packets are read per wake-up.

This touches a few of paho's private members (`_sock`, `_packet_read`,
`_loop_rc_handle`, `_ping_t`, `_last_bytes_received`), all stable across
paho-mqtt 2.x (the dependency is pinned below 3); the tests with a real broker
fail if they change.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from sensorcast.mqttclient import LeanClient

log = logging.getLogger(__name__)

READ_BUDGET = 256
"""Most packets read before the loop writes, checks flow control and keepalive again."""
RECV_SIZE = 1 << 16
MISC_EVERY = 0.1
"""Seconds between keepalive checks."""


class BufferedSocket:
    """A socket whose small `recv` calls are served from one large read."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._buf = b""
        self._at = 0

    def buffered(self) -> int:
        """Bytes read from the socket and not yet handed out (plus TLS's own)."""
        pending = getattr(self.sock, "pending", None)
        return len(self._buf) - self._at + (pending() if pending is not None else 0)

    def recv(self, n: int) -> bytes:
        if self._at >= len(self._buf):
            self._buf, self._at = self.sock.recv(max(n, RECV_SIZE)), 0
            if len(self._buf) <= n:
                data, self._buf = self._buf, b""
                return data
        at = self._at
        self._at = at + n
        return self._buf[at : at + n]

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def __getattr__(self, name: str) -> Any:  # send, close, setblocking, pending, ...
        return getattr(self.sock, name)


class NetworkLoop(threading.Thread):
    """Connects, reconnects and runs one paho client's I/O; see the module doc.

    Reconnect delays are the client's callbacks' business (`on_connect_fail` and
    `on_disconnect` are called as paho's own loop calls them).
    """

    def __init__(self, client: mqtt.Client, may_read: Callable[[], bool] = lambda: True) -> None:
        super().__init__(name="sensorcast-mqtt", daemon=True)
        self.client = client
        self.may_read = may_read
        self._paused_total = 0.0
        self._paused_at: float | None = None
        self._closing = False
        self._abandon = False
        self._idle = False
        """True while the loop may be asleep in select (a queued packet must wake it)."""
        self._writing = threading.Lock()
        """Held by whichever thread writes to the socket: the loop, or `write_now`."""
        self._local = threading.local()
        """`.held`: this thread calls `write_now` itself as it leaves `held` (no wake-up)."""
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # With this callback set, publish() on another thread queues its packet instead of
        # writing to the socket itself; the wake-up comes from LeanClient.on_packet_queued
        # (or, for a plain client, from this callback).
        client.on_socket_register_write = self._on_register_write
        if isinstance(client, LeanClient):
            client.on_packet_queued = self._wake_if_idle

    @property
    def paused_seconds(self) -> float:
        """Total time reading was held back by flow control, so far."""
        at = self._paused_at
        return self._paused_total + (0.0 if at is None else time.monotonic() - at)

    def wake(self) -> None:
        """Make the loop look again (a write was queued, or reading may resume)."""
        # BlockingIOError: a wake-up is already pending; OSError: the loop is gone
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def publish(self, send: Callable[[], Any]) -> Any:
        """Queue packets with `send()` on this thread and write them from it at once (or,
        inside `held`, when the calling thread leaves it)."""
        with self.held():
            return send()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Publishes of the calling thread within are written together as it leaves (a
        batch of forecasts: one `send` for all, see `LeanClient._packet_write`)."""
        if getattr(self._local, "held", False):
            yield
            return
        self._local.held = True
        try:
            yield
        finally:
            self._local.held = False
            self.write_now()

    def write_now(self) -> None:
        """Write what is queued from the calling thread (a forecast skips the hop to the
        loop's thread); if the loop is writing, or the write fails, the loop does it."""
        client = self.client
        if self._writing.acquire(blocking=False):
            try:
                if client.socket() is not None and client.want_write():
                    rc = client._packet_write()
                    if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                        self.wake()  # errors and reconnects are the loop's business
            finally:
                self._writing.release()
        if client.want_write():
            self._wake_if_idle()

    def _wake_if_idle(self) -> None:
        if self._idle and not getattr(self._local, "held", False):
            self._idle = False
            self.wake()

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if not isinstance(client, LeanClient):
            self.wake()

    def close(self, timeout: float = 2.0) -> None:
        """Disconnect (the DISCONNECT goes out first), stop reconnecting, end the loop."""
        self._closing = True
        self.client.disconnect()
        self.wake()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
        if self.is_alive():
            log.warning("the MQTT connection did not close within %.1f s; dropping it", timeout)
            self._abandon = True
            self.wake()
            self.join(1.0)

    def run(self) -> None:
        while not self._closing:
            sock = self._connect()
            if sock is None:
                continue
            try:
                self._serve(sock)
            except Exception:  # nothing may end the network thread
                log.exception("unexpected error in the MQTT network loop")
                time.sleep(0.1)
        self._wake_r.close()
        self._wake_w.close()

    def _connect(self) -> BufferedSocket | None:
        client = self.client
        try:
            client.reconnect()
        except Exception as exc:  # OSError for network and TLS failures; anything else alike
            log.debug("connect failed: %s", exc)
            on_fail = client.on_connect_fail
            if on_fail is not None and not self._closing:
                on_fail(client, client.user_data_get())
            return None
        with contextlib.suppress(OSError, AttributeError):  # not TCP (a proxy, a websocket)
            # paho leaves Nagle on; a forecast must not wait for the previous one's ACK
            client._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
        sock = BufferedSocket(client._sock)
        client._sock = sock
        return sock

    def _serve(self, sock: BufferedSocket) -> None:
        """Run I/O on the current connection until it closes."""
        client = self.client
        next_misc = 0.0
        while client.socket() is sock:
            reading = self.may_read()
            now = time.monotonic()
            paused_at = self._paused_at
            if reading and paused_at is not None:
                self._paused_total += now - paused_at
                self._paused_at = None
            elif not reading and paused_at is None:
                self._paused_at = now
            if self._abandon:
                client._sock_close()
                return
            ready = reading and sock.buffered() > 0
            timeout = 0.0 if ready else max(0.0, next_misc - now)
            rlist: list[Any] = [self._wake_r, sock] if reading else [self._wake_r]
            self._idle = True  # before want_write(): a packet queued after it wakes us
            wlist = [sock] if client.want_write() else []
            try:
                readable, _, _ = select.select(rlist, wlist, [], timeout)
            except (OSError, ValueError):  # the socket was closed under us
                client._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
                return
            finally:
                self._idle = False
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            if (ready or sock in readable) and self._read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            if client.want_write():
                with self._writing:
                    rc = client.loop_write()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return
            now = time.monotonic()
            if now >= next_misc:
                next_misc = now + MISC_EVERY
                self._liveness(sock, reading)
                if client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return

    def _read(self) -> MQTTErrorCode:
        """Read packets until the socket has no more, the budget is spent, or flow control."""
        client = self.client
        for _ in range(READ_BUDGET):
            rc = client._packet_read()
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return client._loop_rc_handle(rc) or MQTTErrorCode.MQTT_ERR_CONN_LOST
            if client.socket() is None:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if not self.may_read():
                break
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _liveness(self, sock: BufferedSocket, reading: bool) -> None:
        """Count traffic after a PINGREQ as the broker's answer (see the module doc)."""
        client = self.client
        ping = client._ping_t
        if not ping:
            return
        if client._last_bytes_received > ping:
            client._ping_t = 0.0
        elif not reading and (sock.buffered() > 0 or _readable(sock)):
            # paused by flow control: the broker's bytes are there, unread by our choice
            client._ping_t = 0.0
            client._last_bytes_received = time.monotonic()


def _readable(sock: BufferedSocket) -> bool:
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return False
