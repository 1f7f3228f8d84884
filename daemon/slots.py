"""Sensor ids to slot numbers, least recently seen first out: the index of every
per-sensor table (buffers, scores, adapted heads).

A plain dict from id to slot, and per slot its id and a use stamp in arrays. An
`OrderedDict` moved to its end on every reading did the same job, at 8.7 MB for
100,000 sensors where the dict takes 3.7 MB and the arrays 1.6 MB. The least recently
seen sensor is found from the stamps: the oldest 1/64 of them (at least 64) are sorted
once and handed out in turn, each skipped if its sensor was seen since (its stamp
moved) or left, so finding it costs O(1) amortised.

Each slot's id is the one string object the table keeps for that sensor, so the
tables that key on the id the table hands out (`Window.sensor_id`) share it, however
many copies of the id the readings brought.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

OLDEST_SHARE = 64
"""One in this many sensors (at least MIN_OLDEST) is sorted at a time as the next to go."""
MIN_OLDEST = 64


def same_id(sensor_id: str) -> str:
    """No index to share ids with: each id as it is."""
    return sensor_id


class SlotIndex:
    """Sensor ids to slots, with the order in which they were last seen."""

    def __init__(self) -> None:
        self._slots: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._stamp = array("q")
        """Per slot, when it was last used (0: free). A list and an `array`, not numpy arrays:
        an id is read and a stamp set on every reading, in a third and three quarters of
        numpy's time (9 and 28 ns against 28 and 37); both are copied into numpy arrays
        where the whole is looked at."""
        self._clock = 0
        self._next: list[int] = []
        """Slots that were the least recently seen when last sorted, the oldest last ..."""
        self._next_stamp: list[int] = []
        """... and their stamps then."""

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, sensor_id: object) -> bool:
        return sensor_id in self._slots

    def __getitem__(self, sensor_id: str) -> int:
        return self._slots[sensor_id]

    def __iter__(self) -> Iterator[str]:
        """The ids, least recently seen first."""
        return iter(self.in_order()[0])

    def get(self, sensor_id: str) -> int | None:
        return self._slots.get(sensor_id)

    def canonical(self, sensor_id: str) -> str:
        """The string the index keeps for this id, if it keeps the sensor; else `sensor_id`."""
        slot = self._slots.get(sensor_id)
        return sensor_id if slot is None else self.id_of(slot)

    def id_of(self, slot: int) -> str:
        """The id the slot is kept under (the table's own string object)."""
        sensor_id = self._ids[slot]
        assert sensor_id is not None
        return sensor_id

    def touch(self, slot: int) -> None:
        """The slot's sensor was seen now."""
        self._clock += 1
        self._stamp[slot] = self._clock

    def add(self, sensor_id: str, slot: int) -> None:
        """Keep `sensor_id` in `slot` (a free one), as the most recently seen."""
        if slot >= len(self._stamp):
            more = max(len(self._stamp), slot + 1 - len(self._stamp))
            self._ids.extend([None] * more)
            self._stamp.frombytes(bytes(8 * more))
        self._slots[sensor_id] = slot
        self._ids[slot] = sensor_id
        self.touch(slot)

    def pop(self, sensor_id: str) -> int | None:
        """Forget the sensor; its slot, or None if it was not kept."""
        slot = self._slots.pop(sensor_id, None)
        if slot is not None:
            self._ids[slot] = None
            self._stamp[slot] = 0
        return slot

    def clear(self) -> None:
        self._slots.clear()
        self._ids = [None] * len(self._ids)
        self._stamp = array("q", bytes(8 * len(self._stamp)))
        self._next, self._next_stamp = [], []

    def oldest(self) -> tuple[str, int]:
        """The least recently seen sensor and its slot (the index must not be empty)."""
        ahead, ahead_stamps = self._next, self._next_stamp
        while ahead:
            slot = ahead[-1]
            if self._stamp[slot] == ahead_stamps[-1]:
                return self.id_of(slot), slot
            ahead.pop()
            ahead_stamps.pop()
        if not self._slots:
            raise KeyError("no sensor is kept")
        stamps = np.array(self._stamp, dtype=np.int64)  # a copy: the array may grow later
        live = np.flatnonzero(stamps > 0)
        n = min(len(live), max(MIN_OLDEST, len(live) // OLDEST_SHARE))
        chosen = np.argpartition(stamps[live], n - 1)[:n] if n < len(live) else np.arange(n)
        chosen = chosen[np.argsort(stamps[live[chosen]])[::-1]]
        self._next, self._next_stamp = live[chosen].tolist(), stamps[live[chosen]].tolist()
        return self.oldest()

    def slots(self) -> NDArray[np.intp]:
        """The slots in use, in no particular order."""
        return np.fromiter(self._slots.values(), dtype=np.intp, count=len(self._slots))

    def in_order(self) -> tuple[list[str], NDArray[np.intp]]:
        """Every kept id and its slot, least recently seen first."""
        slots = self.slots()
        slots = slots[np.argsort(np.array(self._stamp, dtype=np.int64)[slots])]
        ids = self._ids
        return [ids[s] for s in slots.tolist()], slots
