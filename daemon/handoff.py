"""The bounded hand-off between the network thread and the inference worker.

Windows queue in arrival order. Beyond `max_pending` the queue coalesces: a new
window of a sensor that already waits replaces the waiting one in place (the
old one is counted as superseded), so memory stays bounded by `max_pending`
plus one window per tracked sensor and the newest reading always wins.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from sensorcast.buffer import Window

_NOBODY_WAITS = 1 << 62


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

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
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

    def put(self, window: Window, received: float) -> None:
        with self._cond:
            sid = window.sensor_id
            if len(self._items) >= self.max_pending:
                waiting = self._latest.get(sid)
                if waiting is not None:
                    waiting.window = window
                    waiting.received = received
                    self._superseded += 1
                    return
            entry = Pending(window, received)
            self._items.append(entry)
            self._latest[sid] = entry
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
            return batch

    def close(self) -> None:
        """Wake the worker; `take` returns what is left, then empty lists."""
        with self._cond:
            self._closed = True
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
            return n
