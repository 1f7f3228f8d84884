"""Windows made by hand, each with its sensor's slot as a table gives it: the per-sensor
scores keep a sensor's state in its table's slot (`Window.slot`)."""

from __future__ import annotations

from typing import Any

from sensorcast.buffer import Window
from sensorcast.slots import SlotIndex

INDEX = SlotIndex()
"""The slot of every id the tests' windows name, as one table would keep them (and the
index the scores' snapshots are written and restored with)."""


def slot_of(sensor_id: str) -> int:
    slot = INDEX.get(sensor_id)
    if slot is None:
        slot = len(INDEX)
        INDEX.add(sensor_id, slot)
    return slot


def slotted(
    sensor_id: str, values: Any, ts: float, cadence: float | None, *a: Any, **kw: Any
) -> Window:
    """`Window(...)` in the slot of `sensor_id` (`INDEX`)."""
    return Window(sensor_id, values, ts, cadence, *a, slot=slot_of(sensor_id), **kw)
