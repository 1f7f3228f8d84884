"""SplitDetector: members of a share group notice sensors whose readings the broker splits."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sensorcast.overlap import (
    CHUNK,
    CONFIRM,
    FORGET,
    MAGIC,
    MAX_PENDING_BYTES,
    MAX_REPORT,
    RECORD,
    SplitDetector,
    decode,
    encode,
    sensor_hash,
)

T0 = 1_700_000_000.0


class Bus:
    """Delivers every report to every member, as the broker does on the group's topic."""

    def __init__(self, *names: str, period: float = 1.0) -> None:
        self.members = {
            name: SplitDetector("g", name, self.publish, period=period) for name in names
        }
        self.now = 0.0
        for member in self.members.values():
            assert not member.tick(self.now)  # the first period starts

    mute: str | None = None
    """A member whose reports are lost (a late tick, a dropped message)."""

    def publish(self, topic: str, payload: bytes) -> None:
        if self.mute is not None and topic.endswith(f"/{self.mute}"):
            return
        for member in self.members.values():
            member.receive(topic, payload)

    def period(self, readings: dict[str, list[tuple[str, float]]]) -> None:
        """One period: each member takes its readings, then every member closes the period."""
        for name, seen in readings.items():
            for sensor, ts in seen:
                self.members[name].seen(sensor, ts)
        self.now += 1.0
        for member in self.members.values():
            assert member.tick(self.now)


def round_robin(sensor: str, start: int, n: int = 4) -> dict[str, list[tuple[str, float]]]:
    """Readings start..start+n of one sensor dealt alternately to members a and b."""
    out: dict[str, list[tuple[str, float]]] = {"a": [], "b": []}
    for i in range(start, start + n):
        out["ab"[i % 2]].append((sensor, T0 + i))
    return out


def test_round_robin_dispatch_is_reported_after_confirm_periods() -> None:
    bus = Bus("a", "b")
    for p in range(CONFIRM + 1):  # a peer's report is judged at the end of the next period
        assert not bus.members["a"].split
        bus.period(round_robin("boiler-3", 4 * p))
    assert set(bus.members["a"].split.values()) == {"boiler-3"}
    assert set(bus.members["b"].split.values()) == {"boiler-3"}
    assert bus.members["a"].peers == {"b"}


def test_a_sensor_that_moves_to_another_member_is_not_split() -> None:
    bus = Bus("a", "b")
    for p in range(2 * CONFIRM):  # a member leaves; the sensor continues on the other one
        owner = "a" if p < 2 else "b"
        other = "b" if owner == "a" else "a"
        bus.period({owner: [("s", T0 + 4 * p + i) for i in range(4)], other: []})
    assert not bus.members["a"].split and not bus.members["b"].split


def test_a_move_within_one_period_is_not_split() -> None:
    bus = Bus("a", "b")
    bus.period({"a": [("s", T0 + i) for i in range(4)], "b": []})
    bus.period({"a": [("s", T0 + 4), ("s", T0 + 5)], "b": [("s", T0 + 6), ("s", T0 + 7)]})
    for p in range(2, 2 + 2 * CONFIRM):
        bus.period({"a": [], "b": [("s", T0 + 4 * p + i) for i in range(4)]})
    assert not bus.members["a"].split and not bus.members["b"].split


def test_one_redelivered_reading_does_not_make_a_split() -> None:
    bus = Bus("a", "b")
    bus.period({"a": [("s", T0 + i) for i in range(4)], "b": []})
    # a crashed before acknowledging T0+3: the broker hands it to b, which goes on from there
    bus.period({"a": [], "b": [("s", T0 + 2.5), ("s", T0 + 4), ("s", T0 + 5)]})
    for p in range(2, 2 + 2 * CONFIRM):
        bus.period({"a": [], "b": [("s", T0 + 4 * p + i) for i in range(4)]})
    assert not bus.members["a"].split


def test_sensors_on_different_members_are_not_split() -> None:
    bus = Bus("a", "b", "c")
    for p in range(2 * CONFIRM):
        bus.period(
            {m: [(f"{m}-{j}", T0 + 4 * p + i) for j in range(3) for i in range(4)] for m in "abc"}
        )
    assert not any(m.split for m in bus.members.values())
    assert bus.members["a"].peers == {"b", "c"}


def test_a_split_that_stops_is_cleared() -> None:
    bus = Bus("a", "b")
    for p in range(CONFIRM + 1):
        bus.period(round_robin("s", 4 * p))
    assert bus.members["a"].split
    bus.period({"a": [("s", T0 + 100 + i) for i in range(4)], "b": []})
    bus.period({"a": [("s", T0 + 200 + i) for i in range(4)], "b": []})
    assert not bus.members["a"].split


def test_duplicated_readings_count_as_split() -> None:
    """Two members on one partition by mistake: each gets every reading."""
    bus = Bus("a", "b")
    for p in range(CONFIRM + 1):
        same = [("s", T0 + 4 * p + i) for i in range(4)]
        bus.period({"a": same, "b": same})
    assert bus.members["a"].split


def test_the_log_line_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus("a", "b")
    with caplog.at_level(logging.WARNING, logger="sensorcast.overlap"):
        for p in range(4 * CONFIRM):
            bus.period(round_robin("boiler-3", 4 * p))
    lines = [r.getMessage() for r in caplog.records if r.name == "sensorcast.overlap"]
    assert len(lines) == 2  # one per member, not one per period
    assert "boiler-3" in lines[0] and "share group 'g'" in lines[0] and "hash_topic" in lines[0]


def test_tick_waits_for_the_period() -> None:
    sent: list[bytes] = []
    d = SplitDetector("g", "a", lambda t, p: sent.append(p), period=10.0)
    assert not d.tick(100.0)
    d.seen("s", T0)
    assert not d.tick(109.9)
    assert d.tick(110.0)
    assert len(sent) == 1 and decode(sent[0]) is not None


def test_reports_round_trip_in_chunks() -> None:
    ranges = {f"s{i}": (T0 + i, T0 + i + 0.5) for i in range(CHUNK + 5)}
    payloads = encode(ranges)
    assert len(payloads) == 2
    records = np.concatenate([r for r in map(decode, payloads) if r is not None])
    assert records["h"][0] == sensor_hash("s0")
    assert records["first"][-1] == T0 + CHUNK + 4 and records["last"][-1] == T0 + CHUNK + 4.5


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"hello",
        MAGIC + b"\0" * 5,
        MAGIC + np.array([(1, np.nan, 0.0)], dtype="<u8,<f8,<f8").tobytes(),
    ],
)
def test_garbage_reports_are_ignored(payload: bytes) -> None:
    assert decode(payload) is None
    d = SplitDetector("g", "a", lambda t, p: None, period=1.0)
    d.seen("s", T0)
    d.receive("sensorcast/group/g/seen/b", payload)
    d.tick(0.0)
    d.tick(1.0)
    assert not d.split and not d.peers


def test_a_missed_report_neither_counts_nor_resets() -> None:
    bus = Bus("a", "b")
    for p in range(CONFIRM + 2):
        bus.mute = "b" if p == 2 else None  # b's report of one period never reaches a
        bus.period(round_robin("s", 4 * p))
    assert set(bus.members["a"].split.values()) == {"s"}


def test_a_member_that_leaves_is_forgotten() -> None:
    bus = Bus("a", "b")
    for p in range(CONFIRM + 1):
        bus.period(round_robin("s", 4 * p))
    assert bus.members["a"].split and bus.members["a"].peers == {"b"}
    bus.mute = "b"  # b is gone: a takes every reading from now on
    for p in range(CONFIRM + 1, CONFIRM + 2 + FORGET):  # its last report is judged late
        bus.period({"a": [("s", T0 + 4 * p + i) for i in range(4)], "b": []})
    assert not bus.members["a"].split and not bus.members["a"].peers


def test_an_idle_member_still_reports() -> None:
    assert encode({}) == [MAGIC]
    records = decode(MAGIC)
    assert records is not None and len(records) == 0


def test_what_is_kept_of_reports_is_bounded_in_bytes() -> None:
    """The report topic is open to any client the broker lets publish there: a payload
    longer than any report is not one, and what waits for the period is bounded."""
    bus = Bus("a", "b")
    a = bus.members["a"]
    topic = "sensorcast/group/g/seen/b"
    for p in range(CONFIRM + 1):  # too long: otherwise a report that overlaps every period
        a.seen("s", T0 + 4 * p)
        a.seen("s", T0 + 4 * p + 3)
        records = np.zeros(CHUNK + 1, dtype=RECORD)
        records[0] = (sensor_hash("s"), T0 + 4 * p + 1, T0 + 4 * p + 2)
        a.receive(topic, MAGIC + records.tobytes())
        bus.now += 1.0
        assert a.tick(bus.now)
    assert not a.split and not a.peers
    full = MAGIC + np.zeros(CHUNK, dtype=RECORD).tobytes()
    assert len(full) == MAX_REPORT
    for _ in range(MAX_PENDING_BYTES // MAX_REPORT + 50):
        a.receive(topic, full)
    assert sum(len(payload) for _, payload in a._reports) <= MAX_PENDING_BYTES
