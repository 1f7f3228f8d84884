"""The benchmark's load: a fleet of simulated sensors, a generator, and a timing subscriber.

Reading number `k` belongs to sensor `k % n` and is that sensor's round `k // n`,
stamped `T0 + cadence * round` (60 s unless `--cadence`), so every output (a
forecast, or the relay's echo) names the exact reading it answers: no clock is
shared with the system under test, and the send time of each reading is known
to the generator.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sensorcast.bench.wire import PUBLISH, SUBACK, WireClient, split_publish, varint

T0 = 1_700_000_000.0
CADENCE = 60.0
MIN_WINDOW = 4
"""Fewest readings kept in flight when saturating (a slow system gets no deeper backlog)."""
STALL = 2.0
"""Seconds without any output after which the outputs in flight are written off."""


class Fleet:
    """N sensors on one topic prefix; readings are numbered globally, round-robin."""

    def __init__(self, n: int, prefix: str, features: list[str], cadence: float = CADENCE) -> None:
        self.n = n
        self.cadence = cadence
        self.ids = [f"s{i:06d}" for i in range(n)]
        self.index = {sid: i for i, sid in enumerate(self.ids)}
        self.features = [f.encode() for f in features]
        topics = [f"{prefix}/sensors/{sid}/reading".encode() for sid in self.ids]
        self._heads = [len(t).to_bytes(2, "big") + t for t in topics]
        self._phase = [2 * math.pi * i / max(n, 1) for i in range(n)]

    def value(self, sensor: int, round_: int) -> float:
        """A daily cycle of 24 readings, a different phase per sensor."""
        return 20.0 + 5.0 * math.sin(2 * math.pi * round_ / 24 + self._phase[sensor])

    def packets(self, k: int, count: int) -> bytes:
        """Readings k .. k+count-1 as one buffer of PUBLISH packets."""
        out = []
        n, feats = self.n, self.features
        for j in range(k, k + count):
            sensor, round_ = j % n, j // n
            v = b"%.3f" % self.value(sensor, round_)
            fields = b",".join(b'"%s":%s' % (f, v) for f in feats)
            payload = b'{%s,"ts":%.1f}' % (fields, T0 + self.cadence * round_)
            head = self._heads[sensor]
            out.append(b"\x30" + varint(len(head) + len(payload)) + head + payload)
        return b"".join(out)

    def reading_of(self, sensor_id: str, ts: float) -> int:
        """The number of the reading an output with (sensor_id, ts) answers; -1 if none."""
        i = self.index.get(sensor_id)
        if i is None:
            return -1
        return round((ts - T0) / self.cadence) * self.n + i


class Collector:
    """Subscribes to the outputs (and status topics) and timestamps every arrival.

    It keeps each output's raw PUBLISH body with the time its chunk arrived and
    decodes them only after a phase, so its own cost per message stays small.
    """

    def __init__(self, client: WireClient, output_prefix: str) -> None:
        self.client = client
        self.output_prefix = output_prefix
        self.outputs: list[tuple[float, bytes]] = []
        self.count = 0
        self.wake_at = 0
        """`progress` is notified once `count` reaches this (the generator sets it)."""
        self.progress = threading.Condition()
        self._online: dict[str, threading.Event] = {}
        self._online_at: dict[str, float] = {}
        self.onlines: dict[str, int] = {}
        """Fresh `online` messages per watched status topic: one per connection made."""
        self._subacked = threading.Event()

    def start(self) -> None:
        self.client.subscribe_now(self.output_prefix + "#")
        threading.Thread(target=self._run, name="bench-collector", daemon=True).start()

    def watch_status(self, topic: str, timeout: float = 10.0) -> threading.Event:
        """Start watching `topic` for a fresh (not retained) `online`; wait for the SUBACK."""
        event = self._online.setdefault(topic, threading.Event())
        event.clear()  # a restarted system must say `online` again
        self._online_at.pop(topic, None)
        self._subacked.clear()
        self.client.send(self.client.subscribe_packet(topic))
        if not self._subacked.wait(timeout):
            raise TimeoutError(f"no SUBACK for {topic}")
        return event

    def online_at(self, topic: str) -> float:
        return self._online_at[topic]

    def _run(self) -> None:
        sock, reader = self.client.sock, self.client.reader
        prefix = self.output_prefix.encode()
        start, stop = 2, 2 + len(prefix)
        append = self.outputs.append
        while True:
            try:
                data = sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            t = time.perf_counter()
            for header, body in reader.feed(data):
                kind = header >> 4
                if kind == PUBLISH and body[start:stop] == prefix:
                    append((t, body))
                    self.count += 1
                elif kind == PUBLISH:
                    self._status(header, body, t)
                elif kind == SUBACK:
                    self._subacked.set()
            if self.count >= self.wake_at:
                with self.progress:
                    self.progress.notify_all()

    def _status(self, header: int, body: bytes, t: float) -> None:
        topic, payload, retained = split_publish(header, body)
        if not retained and payload == b"online" and topic in self._online:
            self.onlines[topic] = self.onlines.get(topic, 0) + 1
            self._online_at.setdefault(topic, t)
            self._online[topic].set()

    def wait(self, count: int, timeout: float) -> None:
        """Block until `count` outputs have arrived, or `timeout` seconds."""
        with self.progress:
            self.wake_at = count
            if self.count < count:
                self.progress.wait(timeout)


def paced_batches(rate: float, duration: float, start: float) -> Iterator[tuple[float, int]]:
    """(now, how many to send now) so that `rate` items/s go out for `duration` s from `start`.

    Sleeps until the next item is due; sends what fell due at once when behind.
    """
    total = max(1, int(rate * duration))
    done = 0
    while done < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1) - done
        if due <= 0:
            time.sleep(max(0.0, start + done / rate - now))
            continue
        yield now, due
        done += due


@dataclass
class Sent:
    """What one generator phase sent: reading numbers [first, last) and their send times."""

    first: int
    last: int
    started: float
    ended: float
    times: dict[int, float] = field(default_factory=dict)
    lost: int = 0


class Generator:
    """Publishes the fleet's readings: warm-up bursts, closed-loop saturation, or a paced rate."""

    def __init__(
        self,
        client: WireClient,
        fleet: Fleet,
        collector: Collector,
        first_output_round: int,
        k: int,
    ) -> None:
        """`first_output_round`: a sensor's first reading that gets an answer (0 for a relay)."""
        self.client = client
        self.fleet = fleet
        self.collector = collector
        self.first_answering = first_output_round * fleet.n
        self.k = k
        self.expected = 0  # outputs the readings sent so far should produce
        self.lost = 0  # outputs given up on (a stall: coalesced or dropped by the system)

    def _send(self, count: int) -> None:
        fleet, k = self.fleet, self.k
        self.client.send(fleet.packets(k, count))
        self.expected += max(0, k + count - max(k, self.first_answering))
        self.k = k + count

    def in_flight(self) -> int:
        return self.expected - self.collector.count - self.lost

    def warm_up(
        self, rounds: int, taken: Callable[[], int] | None = None, ahead: int = 100_000
    ) -> None:
        """Send `rounds` full rounds as fast as the system takes them.

        `taken` (the system's count of readings taken, if it has one) keeps at most
        `ahead` readings queued at the broker, which drops beyond its queue limit.
        """
        start, end = self.k, self.k + rounds * self.fleet.n
        while self.k < end:
            if taken is not None:
                deadline = time.monotonic() + 60
                while self.k - start - taken() > ahead and time.monotonic() < deadline:
                    time.sleep(0.05)
            self._send(min(1000, ahead, end - self.k))

    def saturate(self, duration: float, queue_s: float = 0.1, max_window: int = 20_000) -> Sent:
        """Keep about `queue_s` seconds of work in flight for `duration` seconds.

        The window follows the delivered rate, so a fast system gets a deep
        pipeline (batching) and a slow one is never buried under a backlog.
        Outputs that do not arrive within a stall (`STALL` s without progress)
        are written off, so coalescing or drops cannot deadlock the loop.
        """
        col = self.collector
        start = time.perf_counter()
        sent = Sent(self.k, self.k, start, start)
        history: deque[tuple[float, int]] = deque([(start, col.count)])
        window, last_progress, last_count = MIN_WINDOW, start, col.count
        while (now := time.perf_counter()) < start + duration:
            count = col.count
            if count != last_count:
                last_progress, last_count = now, count
            if now - history[-1][0] >= 0.05:
                history.append((now, count))
                while len(history) > 2 and now - history[1][0] >= 0.5:
                    history.popleft()
                t0, c0 = history[0]
                rate = (count - c0) / max(now - t0, 1e-3)
                window = int(min(max_window, max(MIN_WINDOW, rate * queue_s)))
            chunk = max(1, min(500, window // 4))
            room = window - self.in_flight()
            if room >= chunk:
                self._send(room)
                continue
            if now - last_progress > STALL:
                written_off = self.in_flight()
                self.lost += written_off
                sent.lost += written_off
                last_progress = now
                continue
            col.wait(count + chunk - room, 0.02)
        sent.last, sent.ended = self.k, time.perf_counter()
        return sent

    def paced(self, rate: float, duration: float) -> Sent:
        """Send at `rate` readings/s for `duration` s, recording each reading's send time."""
        start = time.perf_counter()
        sent = Sent(self.k, self.k, start, start)
        for now, due in paced_batches(rate, duration, start):
            k = self.k
            self._send(due)
            for j in range(k, k + due):
                sent.times[j] = now
        sent.last, sent.ended = self.k, time.perf_counter()
        return sent

    def drain(self, quiet: float = 1.0, limit: float = 15.0) -> int:
        """Wait until every expected output arrived, or none came for `quiet` s; return missing."""
        col = self.collector
        deadline = time.monotonic() + limit
        last, since = col.count, time.monotonic()
        while self.in_flight() > 0 and time.monotonic() < deadline:
            col.wait(self.expected - self.lost, 0.05)
            if col.count != last:
                last, since = col.count, time.monotonic()
            elif time.monotonic() - since > quiet:
                break
        missing = max(0, self.in_flight())
        self.lost += missing
        return missing


def decode_outputs(
    outputs: list[tuple[float, bytes]], fleet: Fleet, prefix: str
) -> list[tuple[float, int]]:
    """(arrival time, reading number) of each output, from its topic and JSON `ts`."""
    cut = len(prefix)
    decoded = []
    for t, body in outputs:
        topic, payload, _ = split_publish(0x30, body)
        try:
            ts = json.loads(payload)["ts"]
        except (ValueError, KeyError, TypeError):
            continue
        decoded.append((t, fleet.reading_of(topic[cut:], float(ts))))
    return decoded
