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
    """A window waiting for inference, with the time its reading arrived."""

    __slots__ = ("received", "window")

    def __init__(self, window: Window, received: float) -> None:
        self.window = window
        self.received = received


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
        self._items: deque[Pending] = deque()
        self._latest: dict[str, Pending] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._wake_at = _NOBODY_WAITS
        """Queue length at which `put` wakes the taker: 1 while it waits for work, `max_batch`
        while it waits to fill a batch, never while it is busy (no wake-up per window)."""

    def __len__(self) -> int:
        return len(self._items)

    def accepting(self) -> bool:
        """False while the queue is held (backpressure): read no more readings for now."""
        return not self._held

    def put(self, window: Window, received: float) -> None:
        with self._cond:
            sid = window.sensor_id
            if len(self._items) >= self.max_pending:
                if self.overload == "backpressure":
                    self._held = True
                    self._append(window, received)
                    return
                waiting = self._latest.get(sid)
                if waiting is not None:
                    waiting.window = window
                    waiting.received = received
                    self._superseded += 1
                    return
            self._append(window, received)

    def _append(self, window: Window, received: float) -> None:
        entry = Pending(window, received)
        self._items.append(entry)
        if self.overload == "coalesce":
            self._latest[window.sensor_id] = entry
        if len(self._items) >= self._wake_at:
            self._cond.notify()

    def take(self, max_batch: int, max_wait: float = 0.0) -> list[Pending]:
        """Block until windows are ready (or the queue is closed); return up to `max_batch`."""
        with self._cond:
            self._wake_at = 1
            while not self._items and not self._closed:
                self._cond.wait()
            if max_wait > 0 and len(self._items) < max_batch and not self._closed:
                self._wake_at = max_batch
                deadline = time.monotonic() + max_wait
                while len(self._items) < max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            self._wake_at = _NOBODY_WAITS
            n = min(max_batch, len(self._items))
            batch = [self._items.popleft() for _ in range(n)]
            for entry in batch:
                if self._latest.get(entry.window.sensor_id) is entry:
                    del self._latest[entry.window.sensor_id]
            if self._held and len(self._items) <= self.resume_at:
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

    def clear(self) -> int:
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._latest.clear()
            if self._held:
                self._held = False
                self.on_room()
            return n
