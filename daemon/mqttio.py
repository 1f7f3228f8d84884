"""The MQTT edge: paho-mqtt clients for readings in, forecasts and status out.

Two connections: readings come in on one (`mqtt.client_id`, a persistent
session), forecasts and the status go out on the other (`<client_id>-out`, a
clean session that carries the last will). With one connection, a backlog of
readings queued at the broker delays the acknowledgements of our own QoS 1
forecasts (the broker queues them behind it), so forecasts would wait in
memory until the backlog is read; apart, they flow while it drains.

Each connection runs on a `NetworkLoop` (flow control, a keepalive that survives
a backlog); reconnects back off exponentially (`reconnect_min`..`reconnect_max`)
with a random jitter so a fleet of gateways does not reconnect in lockstep.
Subscriptions are made in `on_connect`, so every reconnect restores them. The
session is persistent (fixed client id, no clean start), and a QoS 1 reading is
acknowledged only after the daemon has taken it into its buffers, so readings
in flight at a crash or stop are delivered again on the next connection.
Connection problems are named once (a TLS certificate either side refuses,
credentials the broker refuses, an unreachable broker), then repeated at a
bounded rate.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sensorcast.config import MQTTConfig
from sensorcast.drops import Quota
from sensorcast.linkproblems import (
    PROTOCOL_HINT,
    SESSION_TAKEN_OVER,
    UNSUPPORTED_PROTOCOL,
    PahoLog,
    describe_failure,
    describe_refusal,
)
from sensorcast.metrics import Metrics
from sensorcast.mqttclient import LeanClient
from sensorcast.netloop import NetworkLoop
from sensorcast.recurring import RecurringProblem
from sensorcast.topics import status_topic

log = logging.getLogger(__name__)

OnReading = Callable[[str, bytes, bool], None]
"""Called on the network thread with (topic, payload, retained) for every incoming message;
`retained` is true for a retained message the broker replays on subscribing."""

STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"
DEFAULT_RECEIVE_MAXIMUM = 20
"""QoS 1 publishes in flight at once: mosquitto's Receive Maximum, or the broker's own if it
gives a lower one in its CONNACK (paho does not read it; see `_receive_maximum`)."""
PUBLISHER_SUFFIX = "-out"
"""Appended to `mqtt.client_id` for the connection that publishes."""
OUTSTANDING = 2000
"""Forecasts handed to paho and not yet sent (QoS 0) or acknowledged (QoS 1) at which
`publish` waits while connected, so a slow broker slows the worker (and, through the
inference queue, reading) instead of filling memory; `max_queue` caps it when disconnected."""
ROOM_WAIT = 10.0
"""Longest `publish` waits for room on a connection that is not moving; then it queues."""
ONLINE_WAIT = 2.0
"""Longest the readings connection waits, after subscribing, for `online` to be delivered."""
STABLE_AFTER = 10.0
"""Seconds a connection must last before the reconnect backoff starts again from the minimum."""
REFUSED_EVERY = 60.0
"""Seconds between log lines of publishes the broker refuses for one reason on one topic's
first level (forecasts, anomalies, status, discovery); each is counted."""
QUICK_DROPS_CLASH = 3
"""Drops within STABLE_AFTER in a row, each after a successful reconnect, that suggest a
client id clash where the broker does not say so (MQTT 3.1.1)."""


def settled(info: mqtt.MQTTMessageInfo) -> bool:
    """The broker has the message, or it will not be sent on this connection (paho raises
    for a publish made as the connection went away): nothing more to wait for."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return True


class MQTTLink:
    """Connection, subscription, bounded publishing and availability status."""

    def __init__(
        self,
        cfg: MQTTConfig,
        subscription: str,
        on_reading: OnReading,
        metrics: Metrics,
        *,
        max_queue: int = 50_000,
        retain_forecasts: bool = False,
        client_id: str | None = None,
        persistent: bool = True,
        qos: int = 1,
        may_read: Callable[[], bool] = lambda: True,
    ) -> None:
        """`persistent=False`: a clean session, no status topic and one connection, for side
        clients such as `sensorcast record` that must never take over the daemon's session.
        `qos`: of forecasts. `may_read`: false while readings must wait (flow control)."""
        self.cfg = cfg
        self.client_id = client_id or cfg.client_id
        self._persistent = persistent
        self.subscription = subscription
        self.status_topic = status_topic(self.client_id)
        self.metrics = metrics
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._on_reading = on_reading
        self.retain_forecasts = retain_forecasts
        """Publish forecasts retained (a reload may change it)."""
        self._stopping = threading.Event()
        self._accepting = True
        self._taking = threading.Lock()
        """Held while a reading is taken in, so that `stop_input` can wait for the last one."""
        self.on_connected: list[Callable[[], None]] = []
        """Called on the network thread after every successful (re)connect."""
        self._failures = 0
        self._connected_at: float | None = None
        self._refused = False
        self._quick_drops = 0
        self._problem = RecurringProblem()
        self._paho_log = PahoLog(logging.getLogger("sensorcast.paho"))
        self._refusals = Quota(REFUSED_EVERY)
        self._max_packet: int | None = None
        """The publishing connection's broker's Maximum Packet Size (MQTT 5 CONNACK), if any."""
        self.retain_available = True
        """False once the broker said it keeps no retained messages (see `_without_retain`)."""
        self.max_qos = 2
        """0 once the broker said it takes QoS 0 only (see `_qos_zero`)."""
        self._v5 = cfg.protocol == "5"
        self._qos = qos
        self.client = self._make_client(max_queue, self.client_id, self._persistent)
        self.publisher = self.client
        """The client forecasts and the status go out on (a second connection for the daemon)."""
        if persistent:
            out_id = self.client_id[: 64 - len(PUBLISHER_SUFFIX)] + PUBLISHER_SUFFIX
            self.publisher = self._make_client(max_queue, out_id, False)
            self._set_will()
        self._loops = [NetworkLoop(self.client, may_read)]
        if self.publisher is not self.client:
            self._loops.append(NetworkLoop(self.publisher))
        self._publisher_connects = 0
        self._publisher_up = False

    def _make_client(self, max_queue: int, client_id: str, persistent: bool) -> mqtt.Client:
        cfg = self.cfg
        protocol = MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311
        client = LeanClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            clean_session=None if self._v5 else not persistent,
        )
        # An exception in any callback is logged, never allowed to end the network thread.
        client.suppress_exceptions = True
        client.enable_logger(self._paho_log)  # type: ignore[arg-type]
        client.max_queued_messages_set(max_queue)
        client.max_inflight_messages_set(DEFAULT_RECEIVE_MAXIMUM)
        # paho's hints say int; it computes with whatever number it is given
        client.reconnect_delay_set(cfg.reconnect_min, cfg.reconnect_max)  # type: ignore[arg-type]
        client.manual_ack_set(True)
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password else None
            client.username_pw_set(cfg.username, password)
        if cfg.tls.enabled:
            client.tls_set(
                ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.on_connect = self._handle_connect
        client.on_connect_fail = self._handle_connect_fail
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_raw_message = self._handle_raw
        client.on_refused = self._handle_refused
        client.on_subscribe = self._handle_subscribe
        return client

    @property
    def endpoint(self) -> str:
        scheme = "mqtts" if self.cfg.tls.enabled else "mqtt"
        return f"{scheme}://{self.cfg.host}:{self.cfg.port}"

    def start(self) -> None:
        """Connect in the background; an unreachable broker is retried, never fatal."""
        for loop in self._loops:
            persistent = self._persistent and loop.client is self.client
            props = None
            if self._v5 and persistent:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = self.cfg.session_expiry
            # v3.1.1 takes its clean session from the constructor; v5 from clean_start here
            clean_start = (not persistent) if self._v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY
            loop.client.connect_async(
                self.cfg.host,
                self.cfg.port,
                keepalive=self.cfg.keepalive,
                clean_start=clean_start,
                properties=props,
            )
            loop.start()

    def limit_payload(self, max_bytes: int) -> None:
        """Readings are not held whole beyond `max_bytes` of payload (`input.max_payload_bytes`,
        which drops them): a huge one costs a bounded amount of memory."""
        if isinstance(self.client, LeanClient):
            self.client.max_payload = max_bytes

    def publish(self, topic: str, payload: bytes, retain: bool | None = None) -> bool:
        """Queue a forecast (at the configured QoS); False if the bounded queue is full, or
        the broker takes no packet that large (see `sendable`).

        Waits while the connection is up and `OUTSTANDING` messages are still on their way.
        """
        if not self.sendable(topic, payload):
            return False
        keep = self.retain_forecasts if retain is None else retain
        if keep and not self.retain_available:
            if not payload:  # clearing a retained message: the broker keeps none
                return True
            keep = False
        pub = self.publisher
        if len(pub._out_messages) + len(pub._out_packet) >= OUTSTANDING:
            self._wait_for_room()
        info = self._loops[-1].publish(
            lambda: pub.publish(topic, payload, qos=self._qos_now(self._qos), retain=keep)
        )
        return info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)

    def sendable(self, topic: str, payload: bytes | bytearray) -> bool:
        """Whether the broker takes a publish of `payload` on `topic`: False, said at a bounded
        rate, when the packet is larger than the Maximum Packet Size the broker gave in its
        CONNACK (mosquitto's `max_packet_size`). The broker closes the connection of a client
        that sends one, and the packet was sent again at every reconnect: the publishing
        connection dropped for good, and nothing more was published."""
        limit = self._max_packet
        if limit is None:
            return True
        size = publish_size(topic, payload, min(self._qos, self.max_qos))
        if size <= limit:
            return True
        self._too_large(topic, size, limit)
        return False

    def fits(self, topic: str, payload: bytes | bytearray) -> bool:
        """`sendable` without a word: whether the packet is within the broker's Maximum
        Packet Size (`publish`'s refusals are told apart by it)."""
        limit = self._max_packet
        return limit is None or publish_size(topic, payload, min(self._qos, self.max_qos)) <= limit

    def _too_large(self, topic: str, size: int, limit: int) -> None:
        more = self._refusals.take(("too_large", topic.split("/", 1)[0]))
        if more is None:
            return
        log.error(
            "a publish on %r is not sent: %d bytes, and broker %s takes packets of at most %d "
            "(its Maximum Packet Size, mosquitto's max_packet_size)%s",
            topic[:200],
            size,
            self.endpoint,
            limit,
            f" ({more} more since the last report)" if more else "",
        )

    def _broker_limits(self, props: Any) -> None:
        """What the broker's CONNACK (MQTT 5) says it takes, on the connection that publishes:
        its Maximum Packet Size, retained messages, QoS 1; then the waiting publishes fit."""
        self._max_packet = getattr(props, "MaximumPacketSize", None)
        if getattr(props, "RetainAvailable", 1) == 0 and self.retain_available:
            self._without_retain()
        if getattr(props, "MaximumQoS", 2) == 0 and self.max_qos > 0:
            self._qos_zero()
        self._fit_queue()

    def _fit_queue(self) -> None:
        """Make the publishes queued in paho fit what the broker takes (called at the CONNACK,
        before paho sends them again): those larger than its Maximum Packet Size are let go,
        the others lose their retain flag if it keeps no retained messages, and go out at
        QoS 0 now if it takes no more."""
        pub = self.publisher
        downgraded = []
        with pub._out_message_mutex:
            for mid, msg in list(pub._out_messages.items()):
                if not self.sendable(msg.topic, msg.payload):
                    del pub._out_messages[mid]
                    continue
                if msg.retain and not self.retain_available:
                    msg.retain = False
                if msg.qos > self.max_qos:
                    del pub._out_messages[mid]
                    downgraded.append(msg)
        for msg in downgraded:
            pub.publish(msg.topic, msg.payload, qos=self.max_qos, retain=msg.retain)

    @staticmethod
    def _receive_maximum(client: mqtt.Client, props: Any) -> None:
        """Keep at most the broker's Receive Maximum (MQTT 5 CONNACK) of QoS 1 publishes in
        flight, and no more than that at the CONNACK. paho took no account of the broker's
        value, and after a reconnect sent every message that waited at once (its reset
        leaves them all to be sent); a broker that enforces its limit (HiveMQ's is 10)
        closes the connection of a client that exceeds it ("Receive Maximum exceeded"), so
        a backlog of forecasts dropped the publishing connection at every reconnect. Called
        at the CONNACK, before paho sends what waits: the first `limit` go out, the others
        as acknowledgements come."""
        limit = min(getattr(props, "ReceiveMaximum", None) or 65535, DEFAULT_RECEIVE_MAXIMUM)
        sent = mqtt.mqtt_ms_wait_for_puback  # since the CONNACK (the status, say)
        with client._out_message_mutex:
            client._max_inflight_messages = limit  # paho's setter refuses a live connection
            waiting = [m for m in client._out_messages.values() if m.qos > 0]
            client._inflight_messages = in_flight = sum(m.state == sent for m in waiting)
            for msg in waiting:  # paho counts each one it sends at the CONNACK
                if msg.state != sent:
                    msg.state = mqtt.mqtt_ms_publish if in_flight < limit else mqtt.mqtt_ms_queued
                    in_flight += 1

    def _set_will(self) -> None:
        """The status topic's `offline` as the publishing connection's last will: retained
        and at QoS 1, unless the broker takes neither."""
        qos = min(1, self.max_qos)
        self.publisher.will_set(
            self.status_topic, STATUS_OFFLINE, qos=qos, retain=self.retain_available
        )

    def _status(self, status: bytes) -> mqtt.MQTTMessageInfo:
        """Publish `online` or `offline` on the status topic: retained, if the broker can."""
        retain, qos = self.retain_available, self._qos_now(1)
        return self.publisher.publish(self.status_topic, status, qos=qos, retain=retain)

    def _qos_now(self, qos: int) -> int:
        """`qos`, or 0 if the broker takes no more while the publishing connection is up;
        while it is down, paho queues only QoS 1 and sends them at the next CONNACK (QoS 0 it
        drops), and `_fit_queue` sends them at QoS 0 then."""
        return min(qos, self.max_qos) if self.publisher.is_connected() else qos

    def _without_retain(self) -> None:
        """The broker keeps no retained messages (MQTT 5: it refused the connect for the
        retained last will, or said so in its CONNACK; mosquitto's `retain_available false`),
        and closes the connection of a client that sends one: the publishing connection was
        refused for good, and nothing was published. The last will, the status and everything
        else go out without retain from now on."""
        self.retain_available = False
        if self.publisher is not self.client:
            self._set_will()
        log.log(
            logging.WARNING if self._persistent else logging.DEBUG,
            "broker %s keeps no retained messages: the status topic %s, Home Assistant's "
            "discovery configs and output.retain forecasts are published without retain (a "
            "subscriber sees them only as they are sent)",
            self.endpoint,
            self.status_topic,
        )

    def _qos_zero(self) -> None:
        """The broker takes QoS 0 only (MQTT 5: it refused the connect for the last will's
        QoS 1, or said so in its CONNACK; mosquitto's `max_qos 0`), and closes the connection
        of a client that publishes at QoS 1: the publishing connection was refused for good.
        The last will, the status and forecasts go out at QoS 0 from now on."""
        self.max_qos = 0
        if self.publisher is not self.client:
            self._set_will()
        log.log(
            logging.WARNING if self._persistent else logging.DEBUG,
            "broker %s takes QoS 0 only: the status, forecasts and anomaly events are "
            "published at QoS 0 (not acknowledged; those sent as a connection drops are lost)",
            self.endpoint,
        )

    def held(self) -> contextlib.AbstractContextManager[None]:
        """Forecasts published by this thread within are written together as it leaves."""
        return self._loops[-1].held()

    def _wait_for_room(self) -> None:
        pub = self.publisher
        self._loops[-1].write_now()  # what this thread holds back must go out first
        deadline = time.monotonic() + ROOM_WAIT
        while (
            len(pub._out_messages) + len(pub._out_packet) >= OUTSTANDING // 2
            and pub.is_connected()
            and not self._stopping.is_set()
            and time.monotonic() < deadline
        ):
            time.sleep(0.001)

    def wake(self) -> None:
        """Reading may resume (flow control): make the input loop look again."""
        self._loops[0].wake()

    @property
    def paused_seconds(self) -> float:
        """Time reading has been held back by flow control."""
        return self._loops[0].paused_seconds

    def alive(self) -> bool:
        """The network threads are running (they reconnect by themselves while they do)."""
        return all(loop.is_alive() for loop in self._loops)

    def flushed(self) -> bool:
        """Nothing is waiting to be sent or acknowledged."""
        return not self.publisher._out_messages and not self.publisher.want_write()

    def stop_input(self) -> None:
        """Stop taking readings; later ones stay unacknowledged for the next session.

        Returns once no reading is being taken in on the network thread, so that nothing
        reaches the buffers or the inference queue after the caller drains them."""
        with self._taking:
            self._accepting = False

    def stop(self, timeout: float = 5.0) -> None:
        """Publish `offline`, flush what is queued (bounded by `timeout`), disconnect."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        try:
            if self._persistent and self.publisher.is_connected():
                info = self._status(STATUS_OFFLINE)
                while time.monotonic() < deadline and self.publisher.is_connected():
                    if settled(info) and self.flushed():
                        break
                    time.sleep(0.01)
        finally:  # the connections close even if the broker went away meanwhile
            for loop in self._loops:
                loop.close()
            self.metrics.connected.set(0)

    def _backoff(self) -> None:
        """Wait a jittered, exponentially growing delay (paho resets its own on CONNACK)."""
        base = min(self.cfg.reconnect_max, self.cfg.reconnect_min * 2**self._failures)
        self._failures = min(self._failures + 1, 30)
        self._stopping.wait(random.uniform(base / 2, base))

    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            if reason.value == RETAIN_NOT_SUPPORTED and self.retain_available:
                return self._without_retain()  # the retained last will: the next connect has none
            if reason.value == QOS_NOT_SUPPORTED and self.max_qos > 0:
                return self._qos_zero()  # the last will's QoS 1: the next connect has QoS 0
            self._refused = True
            line = describe_refusal(reason, self.endpoint, self.cfg.username, self._v5)
            self._report(logging.ERROR, line)
            return
        if client is not self.client:
            self._broker_limits(props)
            self._publisher_connected()
            return self._receive_maximum(client, props)
        if self.publisher is client:  # one connection (record, a group's reports)
            self._broker_limits(props)
            self._receive_maximum(client, props)
        self._problem.clear()
        self._connected_at = time.monotonic()
        client.subscribe(self.subscription, qos=self.cfg.qos)
        self.metrics.connects.inc()
        self.connected.set()
        self.metrics.connected.set(1)
        for listener in self.on_connected:
            listener()
        log.info(
            "connected to %s as %s (session present: %s), subscribing to %s",
            self.endpoint,
            self.client_id,
            flags.session_present,
            self.subscription,
        )

    def _handle_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("broker refused the subscription to %s: %s", self.subscription, failed[0])
        else:
            if self._persistent:  # online once readings can arrive, and before we say so
                self._announce_online()
            self.subscribed.set()

    def _announce_online(self) -> None:
        """Publish `online` and wait (at most `ONLINE_WAIT`) until the broker has it: the
        publishing connection, on its own thread, may still be connecting."""
        deadline = time.monotonic() + ONLINE_WAIT
        while not self.publisher.is_connected() and time.monotonic() < deadline:
            time.sleep(0.005)
        info = self._status(STATUS_ONLINE)
        while time.monotonic() < deadline and not settled(info):
            time.sleep(0.005)

    def _publisher_connected(self) -> None:
        """The publishing connection is up; after a drop its last will said `offline`."""
        self._publisher_connects += 1
        self._publisher_up = True
        if self._publisher_connects > 1:
            log.info("publishing connection to %s restored", self.endpoint)
            if self.subscribed.is_set():
                self._status(STATUS_ONLINE)

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        exc = sys.exc_info()[1]  # paho calls this inside its `except OSError`
        self._quick_drops = 0  # the broker is not there: not a client id clash
        self._report(*describe_failure(exc if isinstance(exc, OSError) else None, *self._where))
        self._backoff()

    @property
    def _where(self) -> tuple[str, str]:
        return self.endpoint, self.cfg.host

    def _report(self, level: int, problem: str) -> None:
        """Log a connection problem when it is new or changed, at a bounded rate after."""
        line = self._problem.report(problem)
        log.log(level if line is not None else logging.DEBUG, "%s", line or problem)

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if client is not self.client:
            was_up, self._publisher_up = self._publisher_up, False
            if not self._stopping.is_set():
                if was_up:  # a refusal or failure to connect was reported where it happened
                    self._report(
                        logging.WARNING,
                        f"publishing connection to {self.endpoint} lost ({reason}); reconnecting",
                    )
                self._backoff()
            return
        self.connected.clear()
        self.subscribed.clear()
        self.metrics.connected.set(0)
        socket_error = self._paho_log.take_socket_error()
        if self._stopping.is_set():
            return
        lasted = None if self._connected_at is None else time.monotonic() - self._connected_at
        self._connected_at = None
        refused, self._refused = self._refused, False
        if lasted is not None and lasted >= STABLE_AFTER:
            self._failures = 0
            self._quick_drops = 0
        if refused:
            pass  # _handle_connect said why
        elif self._v5 and reason.value in UNSUPPORTED_PROTOCOL:
            log.error("broker %s does not speak MQTT 5: %s", self.endpoint, PROTOCOL_HINT)
        elif lasted is None:  # lost before the broker accepted it: a TLS alert, say
            self._report(*describe_failure(socket_error, *self._where, closed=reason, v5=self._v5))
        elif lasted < STABLE_AFTER and self._v5 and reason.value == SESSION_TAKEN_OVER:
            self._quick_drops += 1
            log.error(
                "connection to %s dropped %.1fs after connecting (%s): another client uses "
                "mqtt.client_id %r and the broker is handing the session back and forth: give "
                "each instance its own client_id. Backing off.",
                self.endpoint,
                lasted,
                reason,
                self.client_id,
            )
        elif lasted < STABLE_AFTER and self._taken_over(reason):
            log.error(
                "connection to %s dropped %.1fs after connecting (%s), %d times in a row while "
                "every reconnect succeeds: another client may use mqtt.client_id %r (the broker "
                "hands the session back and forth; give each instance its own client_id), or "
                "something between this host and the broker cuts connections (a proxy, a NAT, a "
                "flaky link). Backing off.",
                self.endpoint,
                lasted,
                reason,
                self._quick_drops,
                self.client_id,
            )
        else:
            log.warning(
                "disconnected from %s after %.1fs (%s); reconnecting", self.endpoint, lasted, reason
            )
        self._backoff()

    def _taken_over(self, reason: Any) -> bool:
        """Whether quick drops may be another connection taking this client id, where the
        broker does not say so (MQTT 3.1.1 cannot; mosquitto 2.0 does not on MQTT 5 either):
        the connection keeps dropping within seconds although every reconnect succeeds (a
        broker that went away would fail the reconnect). A link that cuts connections looks
        the same, so the line names both."""
        self._quick_drops += 1
        return self._quick_drops >= QUICK_DROPS_CLASH

    def _handle_refused(self, topic: str, code: int) -> None:
        """The broker acknowledged a publish of ours with a failure (MQTT 5): counted by its
        reason, and said at a bounded rate, where before it passed for published."""
        reason = refusal_reason(code)
        self.metrics.publishes_refused.labels(reason.lower().replace(" ", "_")).inc()
        more = self._refusals.take((code, topic.split("/", 1)[0]))
        if more is None:
            return
        hint = ""
        if code == NOT_AUTHORIZED:
            user = "no mqtt.username" if self.cfg.username is None else f"{self.cfg.username!r}"
            hint = f": the broker's access control does not let this client ({user}) publish there"
        extra = f" ({more} more since the last report)" if more else ""
        log.error(
            "broker %s refused a publish on %r (%s)%s; it is not delivered%s",
            self.endpoint,
            topic[:200],
            reason,
            hint,
            extra,
        )

    def _handle_raw(self, topic: bytes, payload: bytes, retained: bool) -> bool:
        """A reading, on the network thread; True: acknowledge it (if QoS 1)."""
        try:
            text = topic.decode()
        except UnicodeDecodeError:
            text = ""
        with self._taking:
            if not self._accepting:
                return False  # not acknowledged: the broker delivers it again next session
            self._on_reading(text, payload, retained)
        return True

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = ""
        with self._taking:
            if not self._accepting:
                return  # not acknowledged: the broker delivers it again next session
            try:
                self._on_reading(topic, bytes(msg.payload), bool(msg.retain))
            finally:
                if msg.qos > 0:
                    client.ack(msg.mid, msg.qos)


NOT_AUTHORIZED = 0x87
RETAIN_NOT_SUPPORTED = 0x9A
QOS_NOT_SUPPORTED = 0x9B


def refusal_reason(code: int) -> str:
    """The name of a PUBACK's MQTT 5 reason code (`Not authorized`), or its number."""
    try:
        return str(ReasonCode(PacketTypes.PUBACK, identifier=code))
    except ValueError:
        return f"reason 0x{code:02x}"


def publish_size(topic: str, payload: bytes | bytearray, qos: int) -> int:
    """Bytes of an MQTT 5 PUBLISH of `payload` on `topic`, without properties, as sent."""
    body = 2 + len(topic.encode()) + (2 if qos else 0) + 1 + len(payload)
    length_bytes = 1 if body < 128 else 2 if body < 16384 else 3 if body < 2097152 else 4
    return 1 + length_bytes + body
