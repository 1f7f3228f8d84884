"""paho's client with lean handlers for the two packets a busy daemon handles most, and
writes that send what is queued together.

Profiled on a flood, paho spends more on each incoming PUBLISH and each PUBACK
of our own QoS 1 forecasts than the daemon spends on the reading itself: it
builds a `Properties`, a `ReasonCode`, an `MQTTMessage` (with a condition
variable) and a debug log line per packet, even when, as almost always, the
packet carries no MQTT 5 properties. `LeanClient` takes those packets apart
with a few slices when they carry no properties, and hands anything else
(properties present, an error reason code) to paho's own handlers, so
behaviour is paho's in every case the fast path does not cover. QoS 2 readings
are taken in at their PUBLISH, before the PUBREC, as QoS 1 ones before their
PUBACK, and every PUBREL is completed (see `_handle_publish_qos2`).

An incoming PUBLISH larger than `max_payload` is not held whole: paho would read
all of it (up to the 256 MB MQTT allows) into memory, three times over at its
peak, before the parser drops it as too large. Beyond its variable header and
`max_payload + 1` bytes of payload, its bytes are read and discarded as they
arrive, so the reading is still dropped and counted as `too_large`, and
acknowledged, at a bounded cost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import DISCONNECT, PUBLISH
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

log = logging.getLogger(__name__)

OnRaw = Callable[[bytes, bytes, bool], bool]
"""(topic, payload, retained) of an incoming PUBLISH; returns whether to ack it (QoS 1)."""
OnRefused = Callable[[str, int], None]
"""(topic, reason code) of a QoS 1 publish of ours the broker refused."""
REFUSED = 0x80
"""MQTT 5 reason codes from this one up are failures (0x87: not authorized)."""
_PUBACK = 0x40
WRITE_JOIN = 1 << 16
"""Most bytes of queued packets joined into one `send`."""
_paho_recv = mqtt.Client._sock_recv
RECV_CHUNK = 1 << 16
"""Most bytes of an oversized PUBLISH read at once (see `max_payload`)."""


class LeanClient(mqtt.Client):
    """`mqtt.Client` whose PUBLISH (QoS 0 and 1) and PUBACK handling skip paho's objects.

    Set `on_raw_message` to receive readings; `on_message` then sees only the
    messages the fast path leaves to paho (they are acked by the same rule).
    """

    on_raw_message: OnRaw | None = None
    on_packet_queued: Callable[[], None] | None = None
    """Called after every packet is queued for sending (the network loop's wake-up).
    paho's own signal for this, `on_socket_register_write`, fires only when its
    `_registered_write` flag is clear, and a publish racing the loop's write can leave
    the flag set, so later packets would wait for the loop's next timeout."""
    on_refused: OnRefused | None = None
    """Called on the network thread for a PUBACK whose MQTT 5 reason code is a failure: the
    broker did not take the message (an ACL that does not let this client publish there),
    which paho reports only to `on_publish`, as if it had been published."""
    max_payload: float = math.inf
    """Payload bytes of an incoming PUBLISH kept beyond its variable header; the rest is read
    and discarded, so the payload handed on is longer than this but bounded (inf: all)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._qos2_taken: set[int] = set()
        """Packet ids of QoS 2 readings taken in and PUBREC'd whose PUBREL has not come: a
        PUBLISH with one of them is the same message sent again (MQTT's "method B": the
        broker resends a PUBLISH whose PUBREC it did not get, after a reconnect), acknowledged
        again and not taken in twice. Forgotten at a CONNACK without a session (the ids
        start over) and, like paho's own, when the process ends."""

    def _sock_recv(self, bufsize: int) -> bytes:
        """paho's read, bounded for the body of an oversized PUBLISH. paho asks for what is
        left of a packet's body, so only such a packet asks for more than `max_payload`: a
        reading's reads pay one comparison."""
        if bufsize > self.max_payload:
            bufsize = self._bounded_read(bufsize)
        return _paho_recv(self, bufsize)

    def _bounded_read(self, bufsize: int) -> int:
        """Cut what was read of an oversized PUBLISH beyond `max_payload + 1` payload bytes;
        the size of the next read."""
        packet = self._in_packet
        if packet["command"] & 0xF0 == PUBLISH:
            body = packet["packet"]
            start = self._payload_start(body, (packet["command"] & 0x06) >> 1)
            keep = None if start is None else start + int(self.max_payload) + 1
            if keep is not None and len(body) > keep:
                del body[keep:]
        return min(bufsize, RECV_CHUNK)

    def _payload_start(self, body: bytearray, qos: int) -> int | None:
        """Where a PUBLISH's payload starts in the bytes read of it so far; None while its
        variable header (topic, packet id, MQTT 5 properties) is not all there."""
        if len(body) < 2:
            return None
        at = 2 + ((body[0] << 8) | body[1]) + (2 if qos else 0)
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            length = shift = 0
            while True:  # the properties' length: a variable byte integer
                if at >= len(body) or shift > 21:
                    return None
                byte = body[at]
                at += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            at += length
        return at if at <= len(body) else None

    def _packet_queue(
        self, command: int, packet: Any, mid: int, qos: int, info: Any = None
    ) -> MQTTErrorCode:
        rc = super()._packet_queue(command, packet, mid, qos, info)
        queued = self.on_packet_queued
        if queued is not None:
            queued()
        return rc

    def _packet_write(self) -> MQTTErrorCode:
        """paho's `_packet_write`, with the packets at the head of the queue (up to a
        DISCONNECT, which paho's own path handles) sent together; each is then accounted
        for as paho would: done, or put back from where the send stopped."""
        if self.on_publish is not None:
            return super()._packet_write()
        out = self._out_packet
        while True:
            taken: list[Any] = []
            size = 0
            while out and size < WRITE_JOIN:  # only one thread writes (NetworkLoop._writing)
                packet = out.popleft()
                if packet["command"] & 0xF0 == DISCONNECT:
                    out.appendleft(packet)
                    break
                taken.append(packet)
                size += packet["to_process"]
            if len(taken) < 2:
                out.extendleft(reversed(taken))
                return super()._packet_write()
            data = b"".join(memoryview(p["packet"])[p["pos"] :] for p in taken)
            try:
                written = self._sock_send(data)
            except (AttributeError, ValueError):
                out.extendleft(reversed(taken))
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                out.extendleft(reversed(taken))
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                out.extendleft(reversed(taken))
                self._easy_log(mqtt.MQTT_LOG_ERR, "failed to send on socket: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            for i, packet in enumerate(taken):
                done = min(written, packet["to_process"])
                written -= done
                packet["to_process"] -= done
                packet["pos"] += done
                if packet["to_process"]:  # the send stopped in this packet
                    out.extendleft(reversed(taken[i:]))
                    break
                if packet["command"] & 0xF0 == PUBLISH and packet["qos"] == 0:
                    packet["info"]._set_as_published()
            with self._msgtime_mutex:
                self._last_msg_out = mqtt.time_func()
            if not out:
                return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> MQTTErrorCode:
        on_raw = self.on_raw_message
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        packet = self._in_packet["packet"]
        if on_raw is not None and qos == 2 and len(packet) >= 3:
            return self._handle_publish_qos2(on_raw, packet, bool(header & 0x01))
        if on_raw is None or qos > 1 or len(packet) < 3:
            return super()._handle_publish()
        at = 2 + ((packet[0] << 8) | packet[1])
        topic = bytes(packet[2:at])
        mid = 0
        if qos:
            mid = (packet[at] << 8) | packet[at + 1]
            at += 2
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            if at >= len(packet) or packet[at] != 0:  # properties present: paho decodes them
                return super()._handle_publish()
            at += 1
        elif not topic:
            return super()._handle_publish()  # paho reports the malformed packet
        try:
            ack = on_raw(topic, bytes(packet[at:]), bool(header & 0x01))
        except Exception:  # as paho's suppress_exceptions: never end the network loop
            log.exception("error handling a message")
            ack = True
        if qos and ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish_qos2(
        self, on_raw: OnRaw, packet: bytearray, retained: bool
    ) -> MQTTErrorCode:
        """A QoS 2 reading is taken in at its PUBLISH, and PUBREC goes out only once it was
        (as PUBACK for QoS 1): a reading not taken in (the daemon stopping) is sent again by
        the broker on the next connection. paho hands it on at PUBREL, after its PUBREC: one
        PUBREC'd by a process that stopped before the PUBREL was lost, since the broker
        then sends only the PUBREL."""
        at = self._payload_start(packet, 2)
        topic_end = 2 + ((packet[0] << 8) | packet[1])
        if at is None or topic_end == 2:  # malformed, or an MQTT 5 topic alias: paho's
            return super()._handle_publish()
        mid = (packet[topic_end] << 8) | packet[topic_end + 1]
        taken = self._qos2_taken
        if mid in taken:  # sent again (DUP) as its PUBREC was lost with a connection
            return self._send_pubrec(mid)
        try:
            ack = on_raw(bytes(packet[2:topic_end]), bytes(packet[at:]), retained)
        except Exception:  # as paho's suppress_exceptions: never end the network loop
            log.exception("error handling a message")
            ack = True
        if ack:
            taken.add(mid)
            return self._send_pubrec(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_connack(self) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        if packet and not packet[0] & 0x01:  # no session present: its packet ids are gone
            self._qos2_taken.clear()
        return super()._handle_connack()

    def _handle_pubrel(self) -> MQTTErrorCode:
        """PUBCOMP for a PUBREL of a reading taken in at its PUBLISH, or of one PUBREC'd by
        an earlier process or connection. paho with manual acknowledgement leaves a PUBREL
        it does not know unanswered, and the broker keeps such a message in flight for
        good: with its in-flight window (20) full of them, it sent this session nothing
        more, and the daemon, restarted during a flood of QoS 2 readings, never read again."""
        packet = self._in_packet["packet"]
        if len(packet) >= 2:
            mid = (packet[0] << 8) | packet[1]
            self._qos2_taken.discard(mid)
            with self._in_message_mutex:
                known = mid in self._in_messages
            if not known:
                return self._send_pubcomp(mid)
        return super()._handle_pubrel()

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        header = self._in_packet["command"] & 0xF0
        # a bare PUBACK: mid, and on MQTT 5 maybe reason "success" with no properties
        lean = header == _PUBACK and (
            len(packet) == 2 or (len(packet) in (3, 4) and packet[2] == 0 and packet[-1] == 0)
        )
        if not lean and header == _PUBACK and len(packet) >= 3 and packet[2] >= REFUSED:
            self._refused(packet)  # three bytes or more: MQTT 5 (3.1.1 has no reason)
        if not lean or self.on_publish is not None:
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        with self._out_message_mutex:
            msg = self._out_messages.pop(mid, None)
            if msg is None:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            msg.info._set_as_published()
            if msg.qos > 0:
                self._inflight_messages -= 1
                if self._max_inflight_messages > 0:
                    return self._update_inflight()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _refused(self, packet: bytearray) -> None:
        """Report a refused publish to `on_refused`, with the topic it was sent to."""
        on_refused = self.on_refused
        if on_refused is None:
            return
        mid = (packet[0] << 8) | packet[1]
        with self._out_message_mutex:
            msg = self._out_messages.get(mid)
        if msg is None:
            return
        try:
            on_refused(msg.topic, packet[2])
        except Exception:  # as paho's suppress_exceptions: never end the network loop
            log.exception("error handling a refused publish")
