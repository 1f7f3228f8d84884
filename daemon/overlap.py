"""Notice when a broker splits a sensor's readings across the members of a share group.

Members of `$share/<group>/...` exchange, every `period` seconds, which sensors they took
readings from and the time range of those readings (first and last `ts`), as 8-byte hashes
of the sensor ids. A sensor is split when its time ranges at two members overlap: a reading
at one member lies between two readings at the other. A sensor that moves from one member
to another (a member leaves, the group is resized) never looks like that: every reading at
its old member is older than every reading at its new one. One overlap may still come from a
message redelivered to another member after a crash, so a sensor counts as split only once
`confirm` reports in a row from the same member show an overlap. A round-robin broker
(mosquitto) splits every sensor with more than one reading a period; hash dispatch (EMQX
`hash_topic`) none.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sensorcast.config import MQTTConfig
from sensorcast.metrics import Metrics

log = logging.getLogger(__name__)

PERIOD = 30.0
"""Seconds between reports; a sensor needs a few readings per period to be judged."""
CONFIRM = 3
"""Consecutive reports of a member with an overlap before a sensor counts as split."""
FORGET = 3
"""Periods without a report after which a member counts as gone."""
LOG_INTERVAL = 300.0
"""Seconds between repeated log lines while sensors stay split."""
MAGIC = b"SCG1"
RECORD = np.dtype([("h", "<u8"), ("first", "<f8"), ("last", "<f8")])
CHUNK = 20_000
"""Sensors per report message (480 kB: under NATS's default 1 MB max_payload)."""
MAX_PENDING = 1_000
"""Peer report messages kept between two periods; more are dropped (a flood, not a group)."""
MAX_REPORT = len(MAGIC) + CHUNK * RECORD.itemsize
"""Bytes of the longest report a member sends; a longer payload is not a report."""
MAX_PENDING_BYTES = 64 << 20
"""Bytes of peer reports kept between two periods (24 bytes a sensor: 2.8 million sensors)."""

Publish = Callable[[str, bytes], object]


def report_topic(group: str, client_id: str) -> str:
    return f"sensorcast/group/{group}/seen/{client_id}"


def sensor_hash(sensor_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(sensor_id.encode(), digest_size=8).digest(), "little")


def encode(ranges: dict[str, tuple[float, float]]) -> list[bytes]:
    """Report payloads for {sensor id: (first ts, last ts)}, at most CHUNK sensors each."""
    records = np.empty(len(ranges), dtype=RECORD)
    for i, (sid, (first, last)) in enumerate(ranges.items()):
        records[i] = (sensor_hash(sid), first, last)
    chunks = range(0, len(records), CHUNK)
    return [MAGIC + records[i : i + CHUNK].tobytes() for i in chunks] or [MAGIC]  # alive, idle


def decode(payload: bytes) -> NDArray[Any] | None:
    """The records of a report, or None if it is not one (the payload is untrusted)."""
    body = payload[len(MAGIC) :]
    if not payload.startswith(MAGIC) or len(body) % RECORD.itemsize:
        return None
    records = np.frombuffer(body, dtype=RECORD)
    if not (np.isfinite(records["first"]).all() and np.isfinite(records["last"]).all()):
        return None
    return records


class SplitDetector:
    """This member's side of the exchange: `seen` on the network thread for every accepted
    reading, `receive` for peers' reports, `tick` on the main thread once a second or so."""

    def __init__(
        self,
        group: str,
        client_id: str,
        publish: Publish,
        *,
        period: float = PERIOD,
        confirm: int = CONFIRM,
    ) -> None:
        self.group = group
        self.client_id = client_id
        self.topic = report_topic(group, client_id)
        self.subscription = report_topic(group, "+")
        self.period = period
        self.confirm = confirm
        self._publish = publish
        self._lock = threading.Lock()
        self._current: dict[str, list[float]] = {}
        self._previous: dict[str, list[float]] = {}
        self._reports: list[tuple[str, bytes]] = []
        self._report_bytes = 0
        self._strikes: dict[str, dict[int, int]] = {}
        """Per member: sensors overlapping in its consecutive reports, and how many."""
        self._heard: dict[str, int] = {}
        self._period = 0
        self._next: float | None = None
        self._logged_at = -LOG_INTERVAL
        self.split: dict[int, str] = {}
        """Sensors judged split now: hash -> sensor id."""
        self.peers: set[str] = set()
        """Other members heard from in the last FORGET periods."""

    def seen(self, sensor_id: str, ts: float) -> None:
        """An accepted reading (its ts is newer than the sensor's previous one)."""
        with self._lock:
            span = self._current.get(sensor_id)
            if span is None:
                self._current[sensor_id] = [ts, ts]
            else:
                span[1] = ts

    def receive(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """A report from the group's topic (our own included, and ignored later). What is
        kept until the period closes is bounded in messages and bytes: the topic is open to
        any client the broker lets publish there."""
        if len(payload) > MAX_REPORT:
            return
        with self._lock:
            size = self._report_bytes + len(payload)
            if len(self._reports) < MAX_PENDING and size <= MAX_PENDING_BYTES:
                self._reports.append((topic, payload))
                self._report_bytes = size

    def tick(self, now: float | None = None) -> bool:
        """Close the period when it is due: publish our report, judge peers'. True if it did."""
        now = time.monotonic() if now is None else now
        if self._next is None:  # the first period starts now
            self._next = now + self.period
        if now < self._next:
            return False
        self._next = now + self.period
        with self._lock:
            reports, self._reports = self._reports, []
            self._report_bytes = 0
            done, self._current = self._current, {}
        older, self._previous = self._previous, done
        for payload in encode({sid: (s[0], s[1]) for sid, s in done.items()}):
            self._publish(self.topic, payload)
        self._judge(reports, _merge(older, done))
        return True

    def _judge(self, reports: list[tuple[str, bytes]], own: dict[str, tuple[float, float]]) -> None:
        """Count, per member, the sensors whose ranges overlap ours in its reports; a member
        that did not report this period (timing, a lost message) keeps its counts."""
        self._period += 1
        index = {sensor_hash(sid): (sid, first, last) for sid, (first, last) in own.items()}
        overlapping: dict[str, set[int]] = {}
        for topic, payload in reports:
            member = topic.rsplit("/", 1)[-1]
            records = decode(payload)
            if member == self.client_id or records is None:
                continue
            hits = overlapping.setdefault(member, set())
            for h, first, last in records.tolist():
                mine = index.get(h)
                if mine is not None and mine[1] < last and first < mine[2]:
                    hits.add(h)
        for member, hits in overlapping.items():
            before = self._strikes.get(member, {})
            self._strikes[member] = {h: before.get(h, 0) + 1 for h in hits}
            self._heard[member] = self._period
        for member in [m for m, p in self._heard.items() if self._period - p >= FORGET]:
            del self._heard[member]
            self._strikes.pop(member, None)
        self.peers = set(self._heard)
        self.split = {
            h: index[h][0]
            for counts in self._strikes.values()
            for h, n in counts.items()
            if n >= self.confirm and h in index
        }
        self._report(self.peers)

    def _report(self, peers: set[str]) -> None:
        now = time.monotonic()
        if not self.split:
            self._logged_at = -LOG_INTERVAL
            return
        if now - self._logged_at < LOG_INTERVAL:
            return
        self._logged_at = now
        names = sorted(self.split.values())
        log.warning(
            "readings of %d sensors (%s%s) also reach other members of share group %r (%s), "
            "interleaved in time: the broker does not keep each sensor on one member, so "
            "their windows miss readings and their forecasts are wrong. mosquitto dispatches "
            "$share round-robin; use EMQX with hash_topic dispatch, or NATS partitions "
            "(README, 'Many daemons')",
            len(names),
            ", ".join(names[:5]),
            ", ..." if len(names) > 5 else "",
            self.group,
            ", ".join(sorted(peers)) or "members not heard from this period",
        )


def _merge(
    older: dict[str, list[float]], newer: dict[str, list[float]]
) -> dict[str, tuple[float, float]]:
    """Each sensor's range over two consecutive periods."""
    merged = {sid: (span[0], span[1]) for sid, span in older.items()}
    for sid, (first, last) in newer.items():
        before = merged.get(sid)
        merged[sid] = (before[0] if before else first, last)
    return merged


class GroupWatch:
    """The split detector of a share-group member, with its own clean-session connection
    for the reports (the daemon's persistent session and its status stay untouched)."""

    def __init__(self, cfg: MQTTConfig, group: str, metrics: Metrics) -> None:
        from sensorcast.mqttio import MQTTLink

        self.metrics = metrics
        self.detector = SplitDetector(group, cfg.client_id, self._publish)
        self.link = MQTTLink(
            cfg,
            self.detector.subscription,
            self.detector.receive,
            Metrics(),  # its own: the daemon's broker_connected gauge stays the daemon's
            client_id=f"{cfg.client_id[:58]}-group",
            persistent=False,
        )
        self.link.limit_payload(MAX_REPORT)  # a longer one is not held whole, and dropped

    def _publish(self, topic: str, payload: bytes) -> object:
        return self.link.publish(topic, payload, retain=False)

    def seen(self, sensor_id: str, ts: float) -> None:
        self.detector.seen(sensor_id, ts)

    def start(self) -> None:
        self.link.start()

    def tick(self) -> None:
        if self.detector.tick():
            self.metrics.group_split_sensors.set(len(self.detector.split))
            self.metrics.group_members.set(len(self.detector.peers) + 1)

    def stop(self) -> None:
        self.link.stop(timeout=1.0)
