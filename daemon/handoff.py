"""The bounded hand-off between the network thread and the inference worker.

Windows queue in arrival order. What happens beyond `max_pending` is the
overload policy:

- `backpressure` (the default): the queue is *held*: the network loop stops
  reading until the worker has brought it down to half, so the backlog waits
  at the broker and every window is forecast. A window already read is always
  queued, so the queue exceeds `max_pending` by at most one read budget.
- `coalesce`: a new window of a sensor that already waits replaces the waiting
  one in place (the old one is counted as superseded), so memory stays bounded
  by `max_pending` plus one window per tracked sensor and the newest reading
  always wins; stale work is dropped instead of waited for.

With several routes (SPEC 3a) every route's windows wait in a lane of their own and the
worker takes a batch from each lane in turn (round robin), so a flooded or slow model
delays another model's windows by at most one of its batches, not by its whole backlog.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from sensorcast.buffer import Window

_NOBODY_WAITS = 1 << 62
Overload = Literal["backpressure", "coalesce"]


class Pending:
    """A window waiting for inference, with the time its reading arrived and its lane (the
    route whose model serves it; None: the worker's default)."""

    __slots__ = ("lane", "received", "window")

    def __init__(self, window: Window, received: float, lane: object = None) -> None:
        self.window = window
        self.received = received
        self.lane = lane


class ReadyQueue:
    """Thread-safe queue of ready windows with per-sensor coalescing under overload.

    Any number of threads may `put`; one thread (the inference worker) may `take`.
    """

    def __init__(self, max_pending: int, overload: Overload = "backpressure") -> None:
        self.max_pending = max_pending
        self.overload = overload
        self.resume_at = max_pending // 2
        self.on_room: Callable[[], None] = lambda: None
        """Called (under the queue's lock) when a held queue may take windows again."""
        self._held = False
        self._superseded = 0
        self._lanes: dict[object, deque[Pending]] = {}
        """Waiting windows by lane; the dict's order is the round-robin order."""
        self._count = 0
        self._latest: dict[str, Pending] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._wake_at = _NOBODY_WAITS
        """Queue length at which `put` wakes the taker: 1 while it waits for work, `max_batch`
        while it waits to fill a batch, never while it is busy (no wake-up per window)."""

    def __len__(self) -> int:
        return self._count

    def accepting(self) -> bool:
        """False while the queue is held (backpressure): read no more readings for now."""
        return not self._held

    def put(self, window: Window, received: float, lane: object = None) -> None:
        with self._cond:
            sid = window.sensor_id
            if self._count >= self.max_pending:
                if self.overload == "backpressure":
                    self._held = True
                    self._append(window, received, lane)
                    return
                waiting = self._latest.get(sid)
                if waiting is not None and waiting.lane is lane:
                    waiting.window = window
                    waiting.received = received
                    self._superseded += 1
                    return
            self._append(window, received, lane)

    def _append(self, window: Window, received: float, lane: object) -> None:
        entry = Pending(window, received, lane)
        items = self._lanes.get(lane)
        if items is None:
            items = self._lanes[lane] = deque()
        items.append(entry)
        self._count += 1
        if self.overload == "coalesce":
            self._latest[window.sensor_id] = entry
        if self._count >= self._wake_at:
            self._cond.notify()

    def take(self, max_batch: int, max_wait: float = 0.0) -> list[Pending]:
        """Block until windows are ready (or the queue is closed); return up to `max_batch`."""
        with self._cond:
            self._wake_at = 1
            while not self._count and not self._closed:
                self._cond.wait()
            # linger for a fuller batch only when one lane waits: with several, the next
            # lane's windows are ready now and lingering would only delay them
            lingers = max_wait > 0 and len(self._lanes) < 2
            if lingers and self._count < max_batch and not self._closed:
                self._wake_at = max_batch
                deadline = time.monotonic() + max_wait
                while self._count < max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            self._wake_at = _NOBODY_WAITS
            if not self._count:
                return []
            lane, items = next(iter(self._lanes.items()))  # the lane whose turn it is
            del self._lanes[lane]
            n = min(max_batch, len(items))
            batch = [items.popleft() for _ in range(n)]
            if items:
                self._lanes[lane] = items  # to the back of the round
            self._count -= n
            for entry in batch:
                if self._latest.get(entry.window.sensor_id) is entry:
                    del self._latest[entry.window.sensor_id]
            if self._held and self._count <= self.resume_at:
                self._held = False
                self.on_room()
            return batch

    def close(self) -> None:
        """Wake the worker; `take` returns what is left, then empty lists."""
        with self._cond:
            self._closed = True
            self._held = False
            self._cond.notify_all()

    def take_superseded(self) -> int:
        """Windows replaced by a newer one of the same sensor since the last call."""
        with self._cond:
            n, self._superseded = self._superseded, 0
            return n

    def clear(self, lane: object = ...) -> int:
        """Drop waiting windows: all of them, or those of one lane."""
        with self._cond:
            if lane is ...:
                dropped = [e for items in self._lanes.values() for e in items]
                self._lanes.clear()
            else:
                dropped = list(self._lanes.pop(lane, ()))
            n = len(dropped)
            self._count -= n
            for entry in dropped:
                if self._latest.get(entry.window.sensor_id) is entry:
                    del self._latest[entry.window.sensor_id]
            if self._held:
                self._held = False
                self.on_room()
            return n
