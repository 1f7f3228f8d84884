"""Just enough MQTT 3.1.1 on a raw socket for the benchmark's load generator and subscriber.

The bench must not be what it measures: a paho client in Python costs about as
much per message as the daemon under test, so the load side speaks the wire
protocol directly (QoS 0 only, no keepalive): packets are pre-encoded and sent
in large writes, and incoming frames are split with a few slices each.
"""

from __future__ import annotations

import contextlib
import socket

CONNECT, CONNACK, PUBLISH, SUBSCRIBE, SUBACK, DISCONNECT = 1, 2, 3, 8, 9, 14
_VARINTS: list[bytes] = []


def varint(n: int) -> bytes:
    """MQTT's remaining-length encoding (7 bits per byte, high bit: more follow)."""
    if n < len(_VARINTS):
        return _VARINTS[n]
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


_VARINTS.extend(varint(i) for i in range(16384))


def mqtt_string(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def publish_packet(topic: bytes, payload: bytes, *, retain: bool = False) -> bytes:
    """A QoS 0 PUBLISH; `topic` is the raw topic (not yet length-prefixed)."""
    body = mqtt_string(topic) + payload
    return bytes([0x31 if retain else 0x30]) + varint(len(body)) + body


class FrameReader:
    """Splits a byte stream into MQTT packets: yields (header byte, body)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Every complete packet so far; a partial one waits for more data."""
        frames: list[tuple[int, bytes]] = []
        buf = self._buf
        buf += data
        i, n = 0, len(buf)
        while i + 2 <= n:
            header = buf[i]
            length, mult, j = 0, 1, i + 1
            while j < n:
                digit = buf[j]
                length += (digit & 0x7F) * mult
                mult <<= 7
                j += 1
                if not digit & 0x80:
                    break
            else:
                break  # remaining length not complete yet
            if j + length > n:
                break
            frames.append((header, bytes(buf[j : j + length])))
            i = j + length
        del buf[:i]
        return frames


def split_publish(header: int, body: bytes) -> tuple[str, bytes, bool]:
    """(topic, payload, retained) of a PUBLISH body."""
    tl = (body[0] << 8) | body[1]
    start = 2 + tl + (2 if header & 0x06 else 0)  # QoS > 0 carries a packet id
    return body[2 : 2 + tl].decode("utf-8", "replace"), body[start:], bool(header & 0x01)


class WireClient:
    """One MQTT 3.1.1 connection with a clean session and no keepalive."""

    def __init__(self, host: str, port: int, client_id: str, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader()
        self._pending: list[tuple[int, bytes]] = []
        body = mqtt_string(b"MQTT") + bytes([4, 0x02, 0, 0]) + mqtt_string(client_id.encode())
        self.sock.sendall(bytes([CONNECT << 4]) + varint(len(body)) + body)
        header, ack = self._read_one()
        if header >> 4 != CONNACK or len(ack) < 2 or ack[1] != 0:
            raise ConnectionError(f"broker {host}:{port} refused the bench client {client_id}")
        self.sock.settimeout(None)
        self._mid = 0

    def _read_one(self) -> tuple[int, bytes]:
        while not self._pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("broker closed the connection")
            self._pending = self.reader.feed(data)
        return self._pending.pop(0)

    def subscribe_packet(self, *filters: str) -> bytes:
        """A SUBSCRIBE (QoS 0) for `filters`; the SUBACK comes back on the reading side."""
        self._mid = self._mid % 65535 + 1
        body = self._mid.to_bytes(2, "big")
        body += b"".join(mqtt_string(f.encode()) + b"\x00" for f in filters)
        return bytes([SUBSCRIBE << 4 | 0x02]) + varint(len(body)) + body

    def subscribe_now(self, *filters: str) -> None:
        """Subscribe and wait for the SUBACK (only before a reader thread owns the socket)."""
        self.sock.sendall(self.subscribe_packet(*filters))
        while self._read_one()[0] >> 4 != SUBACK:
            pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(bytes([DISCONNECT << 4, 0]))
        self.sock.close()
