"""ReadyQueue: the hand-off from the network thread to the inference worker."""

from __future__ import annotations

import random
import threading
import time

import numpy as np

from sensorcast.buffer import Window
from sensorcast.handoff import Pending, ReadyQueue


def win(sid: str, value: float = 0.0, ts: float = 0.0) -> Window:
    return Window(sid, np.full((3, 1), value), ts, None)


def ids(batch: list[Pending]) -> list[str]:
    return [p.window.sensor_id for p in batch]


class Taker(threading.Thread):
    """Runs one blocking `take` on a thread and records what it returned, and when."""

    def __init__(self, queue: ReadyQueue, max_batch: int, max_wait: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.queue, self.max_batch, self.max_wait = queue, max_batch, max_wait
        self.result: list[Pending] | None = None
        self.returned_at: float | None = None

    def run(self) -> None:
        self.result = self.queue.take(self.max_batch, self.max_wait)
        self.returned_at = time.monotonic()


def test_fifo_order_and_received_time() -> None:
    q = ReadyQueue(100)
    for i, sid in enumerate("abcde"):
        q.put(win(sid), received=100.0 + i)
    batch = q.take(10)
    assert ids(batch) == list("abcde")
    assert [p.received for p in batch] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert len(q) == 0


def test_take_returns_at_most_max_batch() -> None:
    q = ReadyQueue(100)
    for sid in "abcde":
        q.put(win(sid), 0.0)
    assert ids(q.take(2)) == ["a", "b"]
    assert len(q) == 3
    assert ids(q.take(2)) == ["c", "d"]
    assert ids(q.take(2)) == ["e"]


def test_below_max_pending_every_window_of_a_sensor_is_kept() -> None:
    q = ReadyQueue(10)
    for v in range(3):
        q.put(win("a", v), 0.0)
    batch = q.take(10)
    assert [p.window.values[0, 0] for p in batch] == [0.0, 1.0, 2.0]
    assert q.take_superseded() == 0


def test_take_blocks_until_put() -> None:
    q = ReadyQueue(10)
    taker = Taker(q, 4)
    taker.start()
    time.sleep(0.05)
    assert taker.is_alive()  # nothing queued yet: still waiting
    q.put(win("a"), 1.0)
    taker.join(timeout=2)
    assert not taker.is_alive()
    assert taker.result is not None and ids(taker.result) == ["a"]


def test_close_wakes_a_blocked_take() -> None:
    q = ReadyQueue(10)
    taker = Taker(q, 4)
    taker.start()
    time.sleep(0.05)
    assert taker.is_alive()
    q.close()
    taker.join(timeout=2)
    assert not taker.is_alive()
    assert taker.result == []


def test_after_close_take_drains_what_is_left_then_returns_empty() -> None:
    q = ReadyQueue(10)
    for sid in "abc":
        q.put(win(sid), 0.0)
    q.close()
    assert ids(q.take(2, max_wait=5.0)) == ["a", "b"]  # no waiting once closed
    assert ids(q.take(2)) == ["c"]
    assert q.take(2) == []
    assert q.take(2, max_wait=5.0) == []


def test_coalescing_beyond_max_pending_replaces_waiting_window_in_place() -> None:
    q = ReadyQueue(3, "coalesce")
    q.put(win("a", 1.0, ts=1.0), 10.0)
    q.put(win("b", 1.0, ts=1.0), 11.0)
    q.put(win("c", 1.0, ts=1.0), 12.0)
    q.put(win("a", 2.0, ts=2.0), 13.0)  # full: a's waiting window is replaced
    q.put(win("a", 3.0, ts=3.0), 14.0)
    assert len(q) == 3
    assert q.take_superseded() == 2
    batch = q.take(10)
    assert ids(batch) == ["a", "b", "c"]  # a keeps its place in line
    a = batch[0]
    assert a.window.ts == 3.0 and a.window.values[0, 0] == 3.0  # newest values win
    assert a.received == 14.0


def test_new_sensor_beyond_max_pending_is_still_queued() -> None:
    q = ReadyQueue(2, "coalesce")
    q.put(win("a"), 0.0)
    q.put(win("b"), 0.0)
    q.put(win("c"), 0.0)
    assert len(q) == 3
    assert q.take_superseded() == 0
    assert ids(q.take(10)) == ["a", "b", "c"]


def test_window_taken_by_worker_is_not_replaced_afterwards() -> None:
    q = ReadyQueue(1, "coalesce")
    q.put(win("a", 1.0), 0.0)
    taken = q.take(1)
    q.put(win("a", 2.0), 0.0)
    q.put(win("a", 3.0), 0.0)  # full again: replaces the new waiting one, not the taken one
    assert taken[0].window.values[0, 0] == 1.0
    batch = q.take(10)
    assert [p.window.values[0, 0] for p in batch] == [3.0]


def test_memory_stays_bounded_and_newest_reading_of_each_sensor_survives() -> None:
    rng = random.Random(3)
    max_pending, sensors = 20, [f"s{i}" for i in range(60)]
    q = ReadyQueue(max_pending, "coalesce")
    latest: dict[str, float] = {}
    puts = 0
    for step in range(20_000):
        sid = rng.choice(sensors)
        q.put(win(sid, float(step), ts=float(step)), float(step))
        latest[sid] = float(step)
        puts += 1
        assert len(q) <= max_pending + len(sensors)
        if step % 997 == 0:
            taken = q.take(rng.randrange(1, 8))
            puts -= len(taken)
            for p in taken:
                if latest.get(p.window.sensor_id) == p.window.ts:
                    del latest[p.window.sensor_id]
    assert q.take_superseded() == puts - len(q)
    queued = q.take(10_000)
    newest: dict[str, float] = {}
    for p in queued:
        newest[p.window.sensor_id] = max(newest.get(p.window.sensor_id, -1.0), p.window.ts)
    assert newest == latest  # every sensor's newest window is waiting, nothing newer lost


def test_max_wait_returns_as_soon_as_the_batch_is_full() -> None:
    q = ReadyQueue(100)
    q.put(win("a"), 0.0)
    taker = Taker(q, max_batch=4, max_wait=5.0)
    start = time.monotonic()
    taker.start()
    for sid in "bcd":
        time.sleep(0.01)
        q.put(win(sid), 0.0)
    taker.join(timeout=3)
    assert not taker.is_alive()
    assert taker.result is not None and ids(taker.result) == ["a", "b", "c", "d"]
    assert taker.returned_at is not None and taker.returned_at - start < 2.0


def test_max_wait_gives_up_after_the_wait() -> None:
    q = ReadyQueue(100)
    q.put(win("a"), 0.0)
    start = time.monotonic()
    batch = q.take(4, max_wait=0.1)
    took = time.monotonic() - start
    assert ids(batch) == ["a"]
    assert 0.09 <= took < 1.0


def test_max_wait_does_not_wait_when_batch_already_full() -> None:
    q = ReadyQueue(100)
    for sid in "abcd":
        q.put(win(sid), 0.0)
    start = time.monotonic()
    assert ids(q.take(2, max_wait=5.0)) == ["a", "b"]
    assert time.monotonic() - start < 0.5


def test_close_ends_a_max_wait_early() -> None:
    q = ReadyQueue(100)
    q.put(win("a"), 0.0)
    taker = Taker(q, max_batch=4, max_wait=5.0)
    taker.start()
    time.sleep(0.05)
    q.close()
    taker.join(timeout=2)
    assert not taker.is_alive()
    assert taker.result is not None and ids(taker.result) == ["a"]


def test_clear_drops_everything_and_reports_count() -> None:
    q = ReadyQueue(2, "coalesce")
    for sid in "abc":
        q.put(win(sid), 0.0)
    assert q.clear() == 3
    assert len(q) == 0
    q.put(win("b"), 0.0)
    q.put(win("c"), 0.0)
    q.put(win("a", 7.0), 0.0)  # full, but a's old entry went with the clear: must queue
    batch = q.take(10)
    assert ids(batch) == ["b", "c", "a"]
    assert batch[2].window.values[0, 0] == 7.0


def test_backpressure_keeps_every_window_and_holds_the_queue_until_half_empty() -> None:
    q = ReadyQueue(4)  # the default policy
    woken: list[int] = []
    q.on_room = lambda: woken.append(len(q))
    for v in range(4):
        q.put(win("a", float(v), ts=float(v)), 0.0)
        assert q.accepting()
    q.put(win("a", 4.0, ts=4.0), 0.0)  # beyond max_pending: queued all the same, then held
    assert len(q) == 5 and not q.accepting()
    assert q.take_superseded() == 0
    q.take(2)  # 3 left: still above half
    assert not q.accepting() and woken == []
    q.take(1)  # 2 left: half of max_pending, reading may resume
    assert q.accepting() and woken == [2]
    rest = q.take(10)
    assert [p.window.values[0, 0] for p in rest] == [3.0, 4.0]  # nothing was replaced


def test_close_and_clear_release_a_held_queue() -> None:
    for release in ("close", "clear"):
        q = ReadyQueue(1)
        woken: list[bool] = []
        q.on_room = lambda woken=woken: woken.append(True)  # type: ignore[misc]
        q.put(win("a"), 0.0)
        q.put(win("b"), 0.0)
        assert not q.accepting()
        getattr(q, release)()
        assert q.accepting()
