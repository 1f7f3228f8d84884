"""`LeanClient` writes the packets it has queued with one `send`, and loses, repeats or
reorders nothing when a send stops part-way; `MQTTLink.held` makes a batch of forecasts
one write, through a real mosquitto."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from sensorcast.config import load_settings
from sensorcast.metrics import Metrics
from sensorcast.mqttclient import RECV_CHUNK, LeanClient
from sensorcast.mqttio import MQTTLink
from sensorcast.sandbox import Mosquitto, free_port
from tests.mqtt_helpers import wait_for
from tests.tls_helpers import PKI


class CountingSocket:
    """A real socket whose `send` calls are counted."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.sends = 0

    def send(self, data: Any) -> int:
        self.sends += 1
        return int(self.sock.send(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def queued_client(sock: Any) -> LeanClient:
    """A client writing to `sock`, whose packets wait in its queue until written."""
    client = LeanClient(CallbackAPIVersion.VERSION2, client_id="join")
    client.on_socket_register_write = lambda *_: None  # queue only: the test writes
    client._sock = sock
    return client


def queue_publishes(client: LeanClient, n: int, qos: int = 0) -> tuple[bytes, list[Any]]:
    """Queue `n` PUBLISH packets; their bytes in order, and their message infos."""
    infos = []
    for i in range(n):
        info = mqtt.MQTTMessageInfo(i + 1)
        payload = b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 50))
        client._send_publish(i + 1, b"forecasts/s%d" % i, payload, qos=qos, info=info)
        infos.append(info)
    return b"".join(bytes(p["packet"]) for p in client._out_packet), infos


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_queued_packets_go_out_in_one_send() -> None:
    ours, peer = socket.socketpair()
    sock = CountingSocket(ours)
    client = queued_client(sock)
    expected, infos = queue_publishes(client, 100)
    assert client._packet_write() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert sock.sends == 1
    peer.setblocking(False)
    assert read_all(peer) == expected
    assert not client._out_packet
    assert all(info.is_published() for info in infos)  # QoS 0: done once written


def test_a_send_that_stops_part_way_loses_and_repeats_nothing() -> None:
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours.setblocking(False)
    peer.setblocking(False)
    sock = CountingSocket(ours)
    client = queued_client(sock)
    expected, infos = queue_publishes(client, 3000, qos=1)
    assert len(expected) > 100_000  # far more than the socket takes at once
    received = b""
    results = set()
    for _ in range(10_000):
        results.add(client._packet_write())
        received += read_all(peer)
        if not client._out_packet:
            break
    received += read_all(peer)
    assert received == expected
    assert MQTTErrorCode.MQTT_ERR_AGAIN in results  # the socket was full on the way
    assert sock.sends < len(infos) / 10
    assert not any(info.is_published() for info in infos)  # QoS 1: done at its PUBACK


def test_a_disconnect_is_written_after_what_was_queued_before_it() -> None:
    ours, peer = socket.socketpair()
    client = queued_client(CountingSocket(ours))
    expected, _ = queue_publishes(client, 20)
    client._send_disconnect()
    client._packet_write()
    peer.setblocking(False)
    assert read_all(peer) == expected + b"\xe0\x00"
    assert client._sock is None  # paho closed it, as after its own DISCONNECT


def publish_packet(
    topic: bytes, payload: bytes, mid: int, properties: bytes | None, qos: int = 1
) -> bytes:
    """An incoming PUBLISH at `qos` (1 or 2); `properties` (MQTT 5) with their length byte."""
    body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big")
    body += (properties or b"") + payload
    length, n = b"", len(body)
    while True:  # the remaining length, a variable byte integer
        n, digit = n >> 7, n & 0x7F
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            break
    return bytes([0x30 | qos << 1]) + length + body


@pytest.mark.parametrize("v5", [False, True])
def test_a_huge_reading_is_handed_on_cut_short_and_acknowledged(v5: bool) -> None:
    """A 20 MB payload is never held whole: what is kept stays near `max_payload`, the
    payload handed on is still longer than it (dropped as too large), and it is acked."""
    ours, peer = socket.socketpair()
    client = queued_client(ours)
    client.max_payload = 1000
    got: list[bytes] = []
    if v5:  # a user property: paho's own handler decodes it
        client._protocol = mqtt.MQTTv5
        client.on_message = lambda c, u, msg: got.append(msg.payload)
        user = b"\x26\x00\x01k\x00\x01v"
        properties = bytes([len(user)]) + user
    else:
        client.manual_ack_set(True)
        client.on_raw_message = lambda topic, payload, retained: got.append(payload) or True
        properties = None
    packet = publish_packet(b"sensors/big/reading", b"7" * 20_000_000, 9, properties)
    sender = threading.Thread(target=peer.sendall, args=(packet,))
    sender.start()
    held = 0
    while not got:
        rc = client._packet_read()
        assert rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN)
        held = max(held, len(client._in_packet["packet"]))
    sender.join()
    # at most a chunk read past the cut, and the packet's last 1,000 bytes or fewer (read
    # whole: paho asks for no more than what is left)
    assert 1000 < len(got[0]) <= 1001 + RECV_CHUNK + 1000
    assert held <= 1100 + RECV_CHUNK + 1000
    assert bytes(client._out_packet[0]["packet"]).startswith(b"\x40")  # the PUBACK
    assert int.from_bytes(bytes(client._out_packet[0]["packet"])[2:4], "big") == 9


def read_packets(client: LeanClient, peer: socket.socket, data: bytes) -> None:
    """`data`, whole packets from the broker, read and handled by `client`."""
    peer.sendall(data)
    while client._packet_read() == MQTTErrorCode.MQTT_ERR_SUCCESS:
        pass


def queued(client: LeanClient) -> list[bytes]:
    """The packets `client` has queued to send (and forgets them)."""
    out = [bytes(p["packet"]) for p in client._out_packet]
    client._out_packet.clear()
    return out


@pytest.mark.parametrize("v5", [False, True])
def test_a_qos2_reading_is_taken_at_its_publish_and_every_pubrel_is_completed(v5: bool) -> None:
    """A QoS 2 reading is acknowledged (PUBREC) only once taken in, so one the daemon did not
    take (stopping) is sent again next session; a PUBREL this process never saw the PUBLISH
    of (an earlier process PUBREC'd it) is completed: left unanswered, it stayed in the
    broker's in-flight window, and 20 of them stopped every later reading."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    client = queued_client(ours)
    client.manual_ack_set(True)
    if v5:
        client._protocol = mqtt.MQTTv5
    properties = b"\x00" if v5 else None
    accepting = False
    got: list[bytes] = []

    def on_raw(topic: bytes, payload: bytes, retained: bool) -> bool:
        if accepting:
            got.append(payload)
        return accepting

    client.on_raw_message = on_raw
    reading = publish_packet(b"sensors/q/reading", b"21.5", 5, properties, qos=2)
    read_packets(client, peer, reading)
    assert (got, queued(client)) == ([], [])  # not taken: no PUBREC, the broker keeps it
    accepting = True
    read_packets(client, peer, reading)  # sent again
    assert got == [b"21.5"]
    assert queued(client) == [b"\x50\x02\x00\x05"]  # PUBREC once it is in
    read_packets(client, peer, b"\x62\x02\x00\x05")  # PUBREL
    assert queued(client) == [b"\x70\x02\x00\x05"]  # PUBCOMP
    read_packets(client, peer, b"\x62\x02\x00\x09")  # PUBREL of an earlier process's
    assert queued(client) == [b"\x70\x02\x00\x09"]
    assert got == [b"21.5"]  # taken in once


def test_a_batch_of_forecasts_is_one_write_and_arrives_whole(broker: Mosquitto) -> None:
    got: list[mqtt.MQTTMessage] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="batch-sub")
    sub.on_message = lambda c, u, m: got.append(m)
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("forecasts/#", qos=1)
    sub.loop_start()
    cfg = load_settings(None, mqtt={"host": "127.0.0.1", "port": broker.port}).mqtt
    link = MQTTLink(cfg, "sensors/+/reading", lambda *_: None, Metrics())
    link.start()
    try:
        assert wait_for(link.publisher.is_connected)
        buffered = link.publisher._sock  # the network loop's socket (netloop.BufferedSocket)
        sock = CountingSocket(buffered.sock)
        buffered.send = sock.send  # its sends counted
        with link.held():
            for i in range(50):
                assert link.publish(f"forecasts/s{i}", b"%d" % i)
        # one write as the batch ends (two if the network loop woke on its timer meanwhile);
        # 50 with a write per forecast
        assert 1 <= sock.sends <= 2
        assert wait_for(lambda: len(got) == 50)
        assert [m.payload for m in got] == [b"%d" % i for i in range(50)]
        assert [m.topic for m in got] == [f"forecasts/s{i}" for i in range(50)]
    finally:
        link.stop(timeout=2.0)
        sub.loop_stop()
        sub.disconnect()


def test_joined_writes_over_tls_arrive_whole_and_in_order(pki: PKI) -> None:
    """Batches larger than a TLS record and than one joined write (64 KiB), over TLS: a
    send that stops part-way, or that TLS asks to repeat, is resumed from where it stopped."""
    port = free_port()
    broker = Mosquitto(extra=pki.mosquitto_listener(port)).start()
    got: list[bytes] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-sub")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", broker.port)  # the broker's plain listener
    sub.subscribe("forecasts/#", qos=1)
    sub.loop_start()
    tls = {"enabled": True, "ca_file": str(pki.ca_crt)}
    cfg = load_settings(None, mqtt={"host": "127.0.0.1", "port": port, "tls": tls}).mqtt
    link = MQTTLink(cfg, "sensors/+/reading", lambda *_: None, Metrics())
    link.start()
    sent = []
    try:
        assert wait_for(link.publisher.is_connected)
        for batch in range(20):
            with link.held():
                for i in range(256):
                    payload = b'{"n":%d,"pad":"%s"}' % (batch * 256 + i, b"x" * 300)
                    assert link.publish(f"forecasts/s{i}", payload)
                    sent.append(payload)
        assert wait_for(lambda: len(got) == len(sent), timeout=30)
        assert got == sent
    finally:
        link.stop(timeout=2.0)
        sub.loop_stop()
        sub.disconnect()
        broker.close()


class StingyBroker:
    """An MQTT 5 broker of a few lines: CONNACK with Receive Maximum `receive_max`, SUBACK,
    and PUBACK only when told to (`ack`); it records the PUBLISH packets of each client."""

    def __init__(self, port: int, receive_max: int) -> None:
        self.receive_max = receive_max
        self.published: dict[str, list[int]] = {}
        """Packet ids of the QoS 1 PUBLISH packets received, by client id."""
        self._conns: dict[str, socket.socket] = {}
        self._listener = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _packet(conn: socket.socket) -> tuple[int, bytes]:
        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                more = conn.recv(n - len(data))
                if not more:
                    raise OSError("closed")
                data += more
            return data

        header = read(1)[0]
        length = shift = 0
        while True:
            byte = read(1)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return header, read(length)

    def _serve(self, conn: socket.socket) -> None:
        client_id = ""
        try:
            while True:
                header, body = self._packet(conn)
                kind = header >> 4
                if kind == 1:  # CONNECT: protocol name (6), level, flags, keepalive, props
                    at = 10
                    props, at = body[at], at + 1
                    at += props
                    size = int.from_bytes(body[at : at + 2], "big")
                    client_id = body[at + 2 : at + 2 + size].decode()
                    self._conns[client_id] = conn
                    self.published.setdefault(client_id, [])
                    rm = self.receive_max.to_bytes(2, "big")
                    conn.sendall(bytes([0x20, 6, 0, 0, 3, 0x21]) + rm)
                elif kind == 8:  # SUBSCRIBE: SUBACK granting QoS 1
                    conn.sendall(bytes([0x90, 4]) + body[:2] + bytes([0, 1]))
                elif kind == 3 and header & 0x06:  # a QoS 1 PUBLISH
                    at = 2 + int.from_bytes(body[:2], "big")
                    self.published[client_id].append(int.from_bytes(body[at : at + 2], "big"))
                elif kind == 12:  # PINGREQ
                    conn.sendall(bytes([0xD0, 0]))
        except OSError:
            return

    def drop(self, client_id: str) -> None:
        """Close the client's connection (it reconnects); what it sends next is recorded
        apart, under `client_id` + "#2"."""
        conn = self._conns.pop(client_id)
        self.published[client_id + "#2"] = self.published[client_id]
        self.published[client_id] = []
        conn.shutdown(socket.SHUT_RDWR)
        conn.close()

    def ack(self, client_id: str, mid: int) -> None:
        self._conns[client_id].sendall(bytes([0x40, 2]) + mid.to_bytes(2, "big"))

    def close(self) -> None:
        self._listener.close()
        for conn in self._conns.values():
            conn.close()


def test_no_more_publishes_are_in_flight_than_the_brokers_receive_maximum() -> None:
    # a broker that enforces its Receive Maximum (HiveMQ's is 10) closes the connection of a
    # client that exceeds it; paho sent up to 20 whatever it said, and every waiting one at
    # once after a reconnect
    port = free_port()
    mqtt_cfg = {"host": "127.0.0.1", "port": port, "reconnect_min": 0.1, "reconnect_max": 0.2}
    cfg = load_settings(None, mqtt=mqtt_cfg).mqtt
    link = MQTTLink(cfg, "sensors/+/reading", lambda *_: None, Metrics(), client_id="rm")
    link.start()
    broker = None
    try:
        for i in range(30):  # made while the broker is away: they wait for the connection
            assert link.publish(f"forecasts/s{i}", b"%d" % i)
        broker = StingyBroker(port, receive_max=3)
        sent = lambda: broker.published.get("rm-out", [])  # noqa: E731
        wait_for(lambda: len(sent()) >= 3, timeout=10)
        for i in range(30, 40):  # and while it is connected
            assert link.publish(f"forecasts/s{i}", b"%d" % i)
        time.sleep(0.5)
        assert len(sent()) == 3, sent()
        for mid in sent()[:2]:
            broker.ack("rm-out", mid)
        wait_for(lambda: len(sent()) == 5, timeout=10)  # one more for each acknowledged
        time.sleep(0.3)
        assert len(sent()) == 5
        wait_for(link.subscribed.is_set, timeout=10)  # the status goes out again too
        broker.drop("rm-out")  # it reconnects: the status `online` and the waiting ones
        wait_for(lambda: len(sent()) >= 3, timeout=10)
        time.sleep(0.5)
        assert len(sent()) == 3, sent()
    finally:
        link.stop(timeout=0.5)
        if broker is not None:
            broker.close()


class ResendingBroker(StingyBroker):
    """Sends the reading client one QoS 2 reading at its SUBSCRIBE; takes the PUBREC as lost
    and closes the connection; on the next connection (session present) sends the reading
    again with DUP, then PUBREL. Records the reading client's packets."""

    def __init__(self, port: int) -> None:
        self.connects = 0
        self.seen: list[tuple[int, bytes]] = []
        """(packet type, body) of what the reading client sent after its CONNECT."""
        super().__init__(port, receive_max=20)

    def _serve(self, conn: socket.socket) -> None:
        reading = b"\x00\x11sensors/a/reading\x00\x07\x0021.5"  # topic, packet id 7, props, 21.5
        try:
            header, body = self._packet(conn)
            size = int.from_bytes(body[11 + body[10] : 13 + body[10]], "big")
            client_id = body[13 + body[10] : 13 + body[10] + size].decode()
            first = client_id.endswith("-out") or self.connects == 0
            if not client_id.endswith("-out"):
                self.connects += 1
            conn.sendall(bytes([0x20, 3, 0 if first else 1, 0, 0]))  # session present 2nd
            while True:
                header, body = self._packet(conn)
                kind = header >> 4
                if client_id.endswith("-out"):
                    continue
                self.seen.append((kind, body))
                if kind == 8:  # SUBSCRIBE
                    conn.sendall(bytes([0x90, 4]) + body[:2] + bytes([0, 2]))
                    if self.connects == 1:
                        conn.sendall(bytes([0x34, len(reading)]) + reading)
                    else:  # the PUBREC was lost: the same message, DUP, then its PUBREL
                        conn.sendall(bytes([0x3C, len(reading)]) + reading)
                elif kind == 5 and self.connects == 1:  # PUBREC: "lost" with the connection
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
                    return
                elif kind == 5:
                    conn.sendall(bytes([0x62, 2, 0, 7]))  # PUBREL
                elif kind == 12:
                    conn.sendall(bytes([0xD0, 0]))
        except OSError:
            return


def test_a_qos_2_reading_sent_again_after_its_pubrec_was_lost_is_taken_in_once() -> None:
    port = free_port()
    broker = ResendingBroker(port)
    mqtt_cfg = {"host": "127.0.0.1", "port": port, "reconnect_min": 0.1, "reconnect_max": 0.2}
    cfg = load_settings(None, mqtt={**mqtt_cfg, "qos": 2}).mqtt
    taken: list[tuple[str, bytes]] = []
    link = MQTTLink(cfg, "sensors/+/reading", lambda t, p, r: taken.append((t, p)), Metrics())
    link.start()
    try:
        wait_for(lambda: [kind for kind, _ in broker.seen].count(7) == 1, timeout=10)  # PUBCOMP
        assert broker.connects == 2
        assert taken == [("sensors/a/reading", b"21.5")]  # not twice
    finally:
        link.stop(timeout=0.5)
        broker.close()


def test_a_side_connection_publishes_within_what_the_broker_takes() -> None:
    # record's and a share group's reports' connection publishes on its one connection: at
    # QoS 1 to a broker of QoS 0 only, the broker closed it at each publish
    broker = Mosquitto(extra="max_qos 0").start()
    got: list[bytes] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="side-sub")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("reports/#", qos=0)
    sub.loop_start()
    cfg = load_settings(None, mqtt={"host": "127.0.0.1", "port": broker.port}).mqtt
    metrics = Metrics()
    link = MQTTLink(cfg, "sensors/+/reading", lambda *_: None, metrics, persistent=False)
    link.start()
    try:
        assert wait_for(link.subscribed.is_set)
        for i in range(5):
            assert link.publish(f"reports/r{i}", b"%d" % i)
        assert wait_for(lambda: len(got) == 5)
        time.sleep(0.3)
        assert link.client.is_connected()
        assert metrics.value("sensorcast_broker_connects_total") == 1  # never dropped
    finally:
        link.stop(timeout=0.5)
        sub.loop_stop()
        sub.disconnect()
        broker.close()
