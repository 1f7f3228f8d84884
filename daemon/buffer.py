"""Per-sensor ring buffers of the last `timesteps` readings, in one preallocated array.

Each sensor owns a slot of a (capacity, timesteps, features) float32 array, a
ring: a reading is written at `pos`, so the last `timesteps` readings are
`[pos:]` then `[:pos]`, put in time order (as float64) when a full window is
handed out. O(1) per reading; each reading is stored once, in float32, as its
difference from a per-sensor float64 base that moves to the newest reading
once per turn of the ring: float32 then carries about 7 significant digits of
the window's own range, not of the reading's magnitude (an energy meter at
12,345,678.9 Wh or a latitude of 52.123456 keeps the steps the model looks at). Slots are recycled
least recently seen first once `max_sensors` is reached. The table also
applies the time rules: stale readings are refused, a gap longer than `max_gap`
cadences resets the window or is filled linearly.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from sensorcast.drops import Drop
from sensorcast.slots import SlotIndex

CADENCE_ALPHA = 0.2
"""Weight of the newest interval in the per-sensor cadence estimate."""
SPREAD_LEVEL = 0.99
"""A gap is longer than `max_gap` times the sensor's long intervals: the SPREAD_LEVEL quantile
of its intervals over its cadence (at least 1), tracked per sensor. A sensor reporting every
minute has a spread of 1, and a gap is as before 3 minutes; one reporting on change, with
intervals as irregular as a Poisson process's, a spread near 4.6. Before, such a sensor's
window started over every twentieth reading or so, and 32 readings in a row were rare: 6% of
its readings were forecast, 99% now (`tests/unit/test_buffer.py`)."""
SPREAD_RATE = 0.05
"""Step of the spread's multiplicative quantile tracker: each interval over its cadence above
the spread multiplies it by SPREAD_UP, each other one by SPREAD_DOWN (at least 1)."""
SPREAD_UP = math.exp(SPREAD_RATE * SPREAD_LEVEL)
SPREAD_WARM_UP = math.exp(0.6 * SPREAD_LEVEL)
"""... and while its window fills (a new sensor, or one whose window a gap reset), by up to
this, but never beyond the interval's own ratio: a spread learned slowly let a new sensor
reporting on change take its first long intervals for gaps, and its window started over
before it filled; a sensor reporting regularly, whose intervals differ from its cadence by
float rounding, stays at 1."""
SPREAD_DOWN = math.exp(-SPREAD_RATE * (1.0 - SPREAD_LEVEL))
SPREAD_MAX = 20.0
"""Intervals beyond this many cadences are gaps, whatever the sensor's spread."""
SEQ_EPOCH = 1 << 32
"""Each new sensor's reading numbers start at a fresh multiple of this, so numbers of a sensor
that left and came back, or of a recycled slot, never match those of the one before."""
CLOCK_BACK = 1.0
"""Seconds a reading timed on arrival may fall behind its sensor's last one and be dropped as
stale (two readings in one tick of a coarse clock); further back, the clock went back."""
SEQ_GAP_JUMP = 1 << 20
"""How far a gap reset advances the numbering: more than any horizon, so a forecast made
before the gap is never scored against a reading after it."""
MAX_EVICTED_IDS = 65536
"""Evicted sensor ids kept for the owner to collect (`take_evicted`); beyond, only counted."""

GapReset = Callable[[str, float, float, float], None]
"""Called with (sensor id, gap in seconds, cadence in seconds, spread) when a gap resets a
window."""
LOAD_CHUNK = 1024
"""Sensors' windows copied at a time when a snapshot is loaded (bounds the extra memory)."""
CHUNK_BYTES = 1 << 20
"""Bytes of a file's array read at a time (`chunk_rows`)."""
STORED = np.float32
"""How readings are kept in the ring buffers (as differences from the sensor's base)."""
STORED_MAX = float(np.finfo(STORED).max)
HUGE = STORED_MAX / 2
"""Readings beyond this size may differ from the base by more than float32 holds."""
RESTORED_MAX = STORED_MAX * (1 + 2**-16)
"""The largest value a restored window may hold: a reading is at most float32's largest
(readings.py), give or take the rounding of keeping it as a float32 difference from its base."""


_slot_numbers: list[int] = []
_slot_numbers_lock = threading.Lock()


def free_slots(start: int, stop: int) -> list[int]:
    """Slot numbers `stop - 1` down to `start`, a free list (popped from its end: lowest first).

    Every per-sensor table (buffers, scores, adapted heads) maps each sensor
    id to a slot number, a Python int; these are the same int objects for all of them, made
    once, where each table's own numbers took 3.2 MB at 100,000 sensors."""
    with _slot_numbers_lock:
        if len(_slot_numbers) < stop:
            _slot_numbers.extend(range(len(_slot_numbers), stop))
        return _slot_numbers[start:stop][::-1]


def grow_rows(
    arrays: dict[str, NDArray[Any]],
    shapes: Mapping[str, tuple[tuple[int, ...], type[np.generic]]],
    capacity: int,
) -> list[int]:
    """Give each of a table's per-sensor arrays `capacity` rows; return the new rows as a
    free list (each is reset as it is taken, so no view of them may outlive a call).

    The new rows are zero pages that the system maps only once written: growing from 65,536
    to 131,072 rows for the 65,537th sensor costs memory for the rows in use, not for all of
    them (`ndarray.resize` zero-fills, and so writes, every new row). One array at a time is
    copied, so at most one old array is held beside its new one."""
    n = len(next(iter(arrays.values()))) if arrays else 0
    for name, (shape, dtype) in shapes.items():
        arrays[name] = grown(arrays.get(name), (capacity, *shape), dtype)
    return free_slots(n, capacity)


def grown(old: NDArray[Any] | None, shape: tuple[int, ...], dtype: Any) -> NDArray[Any]:
    """A zeroed array of `shape` (its pages mapped once written) that starts with `old`'s
    rows (as many as fit)."""
    new = np.zeros(shape, dtype=dtype)
    if old is not None:
        n = min(len(old), shape[0])
        new[:n] = old[:n]
    return new


def chunk_rows(row_bytes: int) -> int:
    """Rows of `row_bytes` each read at a time: about CHUNK_BYTES, at least one."""
    return max(1, CHUNK_BYTES // max(row_bytes, 1))


def row_chunks(whole: Any, start: int, stop: int) -> Iterator[tuple[int, NDArray[Any]]]:
    """Rows `start` to `stop` of `whole`, an array or a reader of a file's rows read forward
    (state.RowReader), about CHUNK_BYTES at a time, each with its offset from `start`."""
    step = chunk_rows(math.prod(whole.shape[1:]) * np.dtype(whole.dtype).itemsize)
    for lo in range(start, stop, step):
        yield lo - start, np.asarray(whole[lo : min(stop, lo + step)])


@dataclass(frozen=True, slots=True)
class Window:
    """A full window ready for inference: readings in time order, oldest first."""

    sensor_id: str
    values: NDArray[np.float64]
    ts: float
    cadence: float | None
    seq: int = 0
    """The number of the window's last reading: consecutive readings of a sensor have
    consecutive numbers, so the reading `k` after this one realises the forecast's step `k`."""
    refill: int = 0
    """0 for a full window. Otherwise the window is refilling after a gap reset: `refill`
    readings have come since the gap, and the older rows are from before it. Such a window
    is never forecast from (the gap reset it); only its newest reading is checked for an
    anomaly (see `SensorTable.refilling`)."""
    first: bool = False
    """The first full window since the sensor's window started: its slot was taken, a gap
    reset it, or it moved here from another table (the daemon logs it once)."""
    slot: int = -1
    """The sensor's slot in the table that made the window (-1: not made by a table). The
    scores of the table's bundle are kept in the same slots (scoring.py), so one index
    serves both."""
    prev_ts: float = math.nan
    """The timestamp of the reading before the newest, when it is the window's second
    newest (no gap was filled or reset between them); else NaN. An anomaly found one
    reading late is reported with it (scoring.py, REVERSAL)."""
    spread: float = 1.0
    """The sensor's spread (SPREAD_LEVEL) when the window was made: a silence longer than
    `max_gap` x `cadence` x `spread` resets the window (Home Assistant's `expire_after`)."""


class SensorTable:
    """Ring buffers, timestamps and learned cadences for every tracked sensor."""

    _data: NDArray[np.float32]
    _base: NDArray[np.float64]
    _pos: NDArray[np.int32]
    _count: NDArray[np.int32]
    _last_ts: NDArray[np.float64]
    _cadence: NDArray[np.float64]
    _spread: array[float]
    """Per slot, the spread of its intervals (SPREAD_LEVEL): an `array`, read on every reading
    in half numpy's time."""
    _seen: NDArray[np.float64]
    _seq: NDArray[np.int64]
    _full: NDArray[np.bool_]

    def __init__(
        self,
        timesteps: int,
        features: int,
        *,
        max_sensors: int = 100_000,
        max_gap: float = 3.0,
        gap_fill: Literal["reset", "interpolate"] = "reset",
        max_fill_steps: int = 10,
        cadence: float | None = None,
        initial_capacity: int = 1024,
    ) -> None:
        self.timesteps = timesteps
        self.features = features
        self.max_sensors = max_sensors
        self.max_gap = max_gap
        self.gap_fill = gap_fill
        self.max_fill_steps = max_fill_steps
        self.fixed_cadence = cadence
        self.slots = SlotIndex()
        self.evicted = 0
        self.gap_resets = 0
        self.gap_fills = 0
        self.unfit = 0
        """Sensors the last `load_arrays` left out: their window held a value no reading has."""
        self.over_cap = 0
        """Sensors the last `load_arrays` left out beyond `max_sensors` (the least recent)."""
        self.on_gap_reset: GapReset | None = None
        self._evicted_ids: list[tuple[str, str]] = []
        self._freed: list[tuple[int, str]] = []
        self._free: list[int] = []
        self._epoch = 0
        self._allocate(min(initial_capacity, max_sensors))

    def _allocate(self, capacity: int) -> None:
        old: NDArray[np.float32] | None = getattr(self, "_data", None)
        n = 0 if old is None else old.shape[0]
        shape = (capacity, self.timesteps, self.features)
        # New rows are left as unwritten zero pages (a slot is reset as it is taken); no
        # view of the table outlives a call (windows are copies).

        def keep(name: str, dtype: Any, *row: int) -> NDArray[Any]:
            return grown(getattr(self, name) if n else None, (capacity, *row), dtype)

        self._data = grown(old, shape, STORED)
        self._pos, self._count = keep("_pos", np.int32), keep("_count", np.int32)
        self._last_ts, self._cadence = keep("_last_ts", np.float64), keep("_cadence", np.float64)
        self._seen, self._seq = keep("_seen", np.float64), keep("_seq", np.int64)
        self._base = keep("_base", np.float64, self.features)
        self._full = keep("_full", np.bool_)
        spread = array("f", [1.0]) * capacity
        if n:
            spread[:n] = self._spread[:n]
        self._spread = spread
        self._free.extend(free_slots(n, capacity))

    def __len__(self) -> int:
        return len(self.slots)

    def _slot(self, sensor_id: str) -> int:
        slot = self.slots.get(sensor_id)
        if slot is not None:
            self.slots.touch(slot)
            return slot
        return self._new_slot(sensor_id)

    def _new_slot(self, sensor_id: str) -> int:
        if len(self.slots) >= self.max_sensors:
            oldest, _ = self.slots.oldest()
            self.evict(oldest)
            self.evicted += 1
            self._note_evicted(oldest, "max_sensors")
        if not self._free:
            self._allocate(min(self._data.shape[0] * 2, self.max_sensors))
        slot = self._free.pop()
        self._data[slot] = 0
        self._base[slot] = 0
        self._pos[slot] = 0
        self._count[slot] = 0
        self._last_ts[slot] = -np.inf
        self._cadence[slot] = np.nan
        self._spread[slot] = 1.0
        self._seq[slot] = self._new_epoch()
        self._full[slot] = False
        self.slots.add(sensor_id, slot)
        return slot

    def _new_epoch(self) -> int:
        self._epoch += SEQ_EPOCH
        return self._epoch

    def last_ts(self, sensor_id: str) -> float | None:
        """The timestamp of the sensor's newest reading, if it is tracked."""
        slot = self.slots.get(sensor_id)
        return None if slot is None else float(self._last_ts[slot])

    def limit(self, max_sensors: int) -> int:
        """Change the cap on tracked sensors; evict the least recently seen beyond it."""
        self.max_sensors = max_sensors
        n = 0
        while len(self.slots) > max_sensors:
            oldest, _ = self.slots.oldest()
            self.evict(oldest)
            self._note_evicted(oldest, "max_sensors")  # said, and its entities taken away
            n += 1
        self.evicted += n
        return n

    def evict(self, sensor_id: str) -> None:
        slot = self.slots.pop(sensor_id)
        if slot is not None:
            self._release(slot, sensor_id)

    def _release(self, slot: int, sensor_id: str) -> None:
        self._free.append(slot)
        if len(self._freed) < MAX_EVICTED_IDS:
            self._freed.append((slot, sensor_id))

    def take_freed(self) -> list[tuple[int, str]]:
        """(slot, sensor id) of the slots freed since the last call (at most MAX_EVICTED_IDS):
        the state other tables keep in them for that sensor is forgotten
        (`SensorScores.forget`)."""
        taken, self._freed = self._freed, []
        return taken

    def move_to(self, sensor_id: str, other: SensorTable) -> bool:
        """Hand a sensor's whole state (window, times, cadence, numbering) to `other`, a
        table of the same shape (another route's, after a reload); False if not tracked."""
        slot = self.slots.pop(sensor_id)
        if slot is None:
            return False
        self._release(slot, sensor_id)
        other.evict(sensor_id)
        new = other._new_slot(sensor_id)
        names = ("_data", "_base", "_pos", "_count", "_last_ts", "_cadence", "_spread", "_seen")
        for name in (*names, "_seq"):
            getattr(other, name)[new] = getattr(self, name)[slot]
        other._epoch = max(other._epoch, int(self._seq[slot]) // SEQ_EPOCH * SEQ_EPOCH)
        return True

    def evict_idle(self, older_than: float) -> int:
        """Evict sensors last heard from (arrival time, not reading ts) before `older_than`."""
        n = 0
        while self.slots:
            sid, slot = self.slots.oldest()
            if self._seen[slot] >= older_than:
                break
            self.evict(sid)
            self._note_evicted(sid, "sensor_ttl")
            n += 1
        return n

    def _note_evicted(self, sensor_id: str, why: str) -> None:
        if len(self._evicted_ids) < MAX_EVICTED_IDS:
            self._evicted_ids.append((sensor_id, why))

    def take_evicted(self) -> list[tuple[str, str]]:
        """(sensor id, why) of sensors evicted since the last call (at most MAX_EVICTED_IDS)."""
        taken, self._evicted_ids = self._evicted_ids, []
        return taken

    def cadence(self, sensor_id: str) -> float | None:
        slot = self.slots.get(sensor_id)
        if slot is None:
            return None
        c = float(self._cadence[slot])
        return None if np.isnan(c) else c

    def push(
        self,
        sensor_id: str,
        ts: float,
        values: tuple[float, ...],
        seen: float | None = None,
        *,
        timed_here: bool = False,
    ) -> Window | Drop | None:
        """Add a reading; return the full window it completes, a `Drop`, or None.

        `seen` is when the reading arrived (defaults to `ts`); idle eviction and the
        least-recently-seen order use it. A stale reading is not a sign of life: it changes
        neither, so a sensor that only repeats old or past timestamps is evicted in time.
        `timed_here`: the reading had no time of its own, `ts` is the system clock's when it
        arrived; one more than CLOCK_BACK before the sensor's last reading means that clock
        went back (a correction by NTP, a restart with a clock behind the snapshot's): the
        window starts again from it, a gap reset, where every reading of the sensor would
        otherwise be dropped as stale until the clock had made up the step.
        """
        slot = self.slots.get(sensor_id)
        if slot is None:
            slot = self._new_slot(sensor_id)
            last = -math.inf
        else:
            last = float(self._last_ts[slot])  # Python floats: numpy scalar math costs ~10x more
            if ts <= last:
                if not (timed_here and ts < last - CLOCK_BACK):
                    return Drop.STALE
                self._start_again(slot, sensor_id, ts - last)
                last = -math.inf  # no interval across the step
            self.slots.touch(slot)
        sensor_id = self.slots.id_of(slot)  # the table's own string: every table keys on it
        self._seen[slot] = ts if seen is None else seen
        prev_ts = math.nan
        if last > -math.inf and not self._observe_interval(slot, ts - last, values, sensor_id):
            prev_ts = last
        self._write(slot, values)
        self._last_ts[slot] = ts
        if self._count[slot] < self.timesteps:
            return None
        cad = float(self._cadence[slot])
        window = self._ordered(slot)
        window[-1] = values  # as it came: the last value is served as it is (persistence)
        first = not self._full[slot]
        if first:
            self._full[slot] = True
        return Window(
            sensor_id,
            window,
            ts,
            None if math.isnan(cad) else cad,
            int(self._seq[slot]),
            first=first,
            slot=slot,
            prev_ts=prev_ts,
            spread=float(self._spread[slot]),
        )

    def _ordered(self, slot: int) -> NDArray[np.float64]:
        """The slot's ring in time order, oldest first, as float64."""
        p = int(self._pos[slot])
        row = self._data[slot]
        window = np.concatenate((row[p:], row[:p]), dtype=np.float64)
        window += self._base[slot]
        return window

    def refilling(self, sensor_id: str) -> Window | None:
        """After a gap reset, while the window refills (no forecast is made), the last
        `timesteps` readings with `refill` set to the readings since the gap; else None.

        A window restarts at a gap, so for `timesteps - 1` readings nothing would check
        them; an anomaly among them would pass unseen (a daily price series restarts after
        every long weekend, half its readings). The reading numbers tell a refill from a
        new sensor's first readings: a gap reset adds SEQ_GAP_JUMP to them."""
        slot = self.slots.get(sensor_id)
        if slot is None:
            return None
        count = int(self._count[slot])
        if count >= self.timesteps or int(self._seq[slot]) % SEQ_EPOCH < SEQ_GAP_JUMP:
            return None
        cad = float(self._cadence[slot])
        return Window(
            self.slots.id_of(slot),
            self._ordered(slot),
            float(self._last_ts[slot]),
            None if math.isnan(cad) else cad,
            int(self._seq[slot]),
            refill=count,
            slot=slot,
        )

    def _observe_interval(
        self, slot: int, delta: float, values: tuple[float, ...], sensor_id: str
    ) -> bool:
        """Learn the sensor's cadence from the interval `delta` before a reading; fill or
        reset its window at a gap (True when it did)."""
        cad = self.fixed_cadence or float(self._cadence[slot])
        spread = self._spread[slot]
        if not math.isnan(cad) and delta > self.max_gap * cad * spread:
            missing = round(delta / cad) - 1
            if self.gap_fill == "interpolate" and missing <= self.max_fill_steps:
                self._fill(slot, missing, values)
                self.gap_fills += 1
            else:
                self._start_again(slot, sensor_id, delta)
            return True
        if math.isnan(cad):
            self._cadence[slot] = delta
            return False
        if delta > cad * spread:
            up = SPREAD_UP
            if not self._full[slot]:
                up = min(max(delta / (cad * spread), SPREAD_UP), SPREAD_WARM_UP)
            self._spread[slot] = min(spread * up, SPREAD_MAX)
        elif spread > 1.0:  # a sensor reporting regularly stays at 1: nothing to write
            self._spread[slot] = max(spread * SPREAD_DOWN, 1.0)
        if self.fixed_cadence is None:
            self._cadence[slot] = (1 - CADENCE_ALPHA) * cad + CADENCE_ALPHA * delta
        return False

    def _start_again(self, slot: int, sensor_id: str, delta: float) -> None:
        """A gap reset: start the window over, cadence included (if the "gap" was the
        sensor's new normal, say its cadence was first learned from a burst, it is learned
        afresh). `delta`: the time since the last reading (negative: the clock went back)."""
        cad = self.fixed_cadence or float(self._cadence[slot])
        self._count[slot] = 0
        self._full[slot] = False
        self._cadence[slot] = np.nan
        self._seq[slot] += SEQ_GAP_JUMP
        self.gap_resets += 1
        if self.on_gap_reset is not None:
            self.on_gap_reset(sensor_id, delta, cad, float(self._spread[slot]))

    def _fill(self, slot: int, missing: int, values: tuple[float, ...]) -> None:
        prev = self._data[slot, (self._pos[slot] - 1) % self.timesteps] + self._base[slot]
        target = np.asarray(values, dtype=np.float64)
        for i in range(1, missing + 1):
            frac = i / (missing + 1)
            self._write(slot, tuple(prev + (target - prev) * frac))

    def _write(self, slot: int, values: tuple[float, ...]) -> None:
        p = int(self._pos[slot])
        if p == 0:  # once per turn of the ring: the base moves to this reading
            self._rebase(slot, values)
        diff = np.subtract(values, self._base[slot])
        if max(values) > HUGE or min(values) < -HUGE:  # a difference could leave float32
            np.clip(diff, -STORED_MAX, STORED_MAX, out=diff)
        self._data[slot, p] = diff
        self._pos[slot] = (p + 1) % self.timesteps
        self._seq[slot] += 1
        count = int(self._count[slot])
        if count < self.timesteps:
            self._count[slot] = count + 1

    def _rebase(self, slot: int, values: tuple[float, ...]) -> None:
        base = np.asarray(values, dtype=np.float64)
        # a base beyond HUGE is 0: a reading (at most float32's largest) then differs from it
        # by no more than float32 holds, which a reading of the other sign would not
        base[np.abs(base) > HUGE] = 0.0
        shifted = self._data[slot] + (self._base[slot] - base)  # in float64
        np.clip(shifted, -STORED_MAX, STORED_MAX, out=shifted)  # a jump across float32's range
        self._data[slot] = shifted
        self._base[slot] = base

    def reset_all(self, capacity: int = 0) -> None:
        """Forget every window (after a model change of timesteps or features).

        `capacity`: sensors to make room for at once (e.g. a snapshot about to be loaded).
        """
        self.slots.clear()
        self._free = []
        del self._data
        self._allocate(min(max(capacity, 1024), self.max_sensors))

    def to_arrays(self) -> dict[str, NDArray[np.generic]]:
        """Every tracked sensor's state, least recently seen first (for snapshots).

        `data` is each ring as stored, (n, timesteps, features) float32 differences from
        `base` (n, features) float64; `pos` is the ring's write position."""
        ids, idx = self.slots.in_order()
        return {
            "sensor_ids": np.array(ids, dtype=np.str_),
            "data": self._data[idx],
            "base": self._base[idx],
            "pos": self._pos[idx],
            "count": self._count[idx],
            "last_ts": self._last_ts[idx],
            "cadence": self._cadence[idx],
            "spread": np.frombuffer(self._spread, dtype=np.float32)[idx],
            "seq": self._seq[idx],
        }

    def load_arrays(self, arrays: Mapping[str, Any], max_ts: float = math.inf) -> int:
        """Replace all state with `to_arrays` output; raise ValueError if it does not fit.

        Sensors whose last reading is later than `max_ts` are left out: restored, they
        would refuse every reading until the clock caught up with them. So are sensors whose
        window holds a value no reading may have (not finite, beyond float32's range: damage
        confined to their rows), counted in `unfit`: restored, their forecasts were dropped
        as not finite, then published with absurd intervals. `data` may also be a reader
        with `shape`, `dtype` and forward row slices (state.py streams it).
        Earlier versions kept each ring twice in float64, (n, 2 * timesteps, features) with
        the same `pos` and no `base`; such data is taken too (its first half is the ring,
        stored from then on as differences from its newest reading).

        A cadence of 0 is taken as unknown (NaN, as a new sensor's: learned from its next
        interval); a negative or infinite one refuses the whole snapshot, as positions out of
        range do: no interval makes it, so the file is damaged.
        """
        ids = [str(s) for s in arrays["sensor_ids"].tolist()]
        n = len(ids)
        t, f = self.timesteps, self.features
        data = arrays["data"]
        doubled = data.shape == (n, 2 * t, f) and data.dtype == np.float64
        expect = {
            "data": ((n, 2 * t, f), np.float64) if doubled else ((n, t, f), STORED),
            "pos": ((n,), np.int32),
            "count": ((n,), np.int32),
            "last_ts": ((n,), np.float64),
            "cadence": ((n,), np.float64),
        }
        for key, (shape, dtype) in expect.items():
            a = arrays[key]
            if a.shape != shape or a.dtype != dtype:
                raise ValueError(f"{key} has shape {a.shape} {a.dtype}, expected {shape} {dtype}")
        pos, count = arrays["pos"], arrays["count"]
        if n and (
            pos.min() < 0
            or pos.max() >= self.timesteps
            or count.min() < 0
            or count.max() > self.timesteps
        ):
            raise ValueError("positions out of range")
        if len(set(ids)) != n:
            raise ValueError("duplicate sensor ids")
        cadence = np.asarray(arrays["cadence"])
        if ((cadence < 0) | np.isinf(cadence)).any():
            raise ValueError("cadence out of range")
        last_ts = np.asarray(arrays["last_ts"], dtype=np.float64)
        keep = np.flatnonzero(~(last_ts > max_ts))
        self.over_cap = max(0, len(keep) - self.max_sensors)
        keep = keep[self.over_cap :]  # most recently seen last: the tail
        base: Any = arrays.get("base")
        if not doubled and (base is None or base.shape != (n, f) or base.dtype != np.float64):
            raise ValueError(f"base missing or not ({n}, {f}) float64")
        restored_at = time.time()  # idle time starts again at a restart
        self.reset_all(capacity=len(keep))  # one allocation, not a doubling per power of two
        idx = np.array([self._slot(ids[i]) for i in keep], dtype=np.intp)  # fresh, in order
        unfit = np.zeros(len(keep), dtype=np.bool_)
        for at in range(0, n, LOAD_CHUNK):  # a chunk of rows at a time, never all of them
            lo, hi = np.searchsorted(keep, [at, min(n, at + LOAD_CHUNK)])
            if hi > lo:
                rows = data[at : min(n, at + LOAD_CHUNK)][keep[lo:hi] - at, :t]
                with np.errstate(over="ignore", invalid="ignore"):  # judged just below
                    if doubled:
                        newest = rows[np.arange(len(rows)), (pos[keep[lo:hi]] - 1) % t]
                        rows = rows - newest[:, None, :]
                        self._base[idx[lo:hi]] = newest
                    else:
                        self._base[idx[lo:hi]] = base[keep[lo:hi]]
                    self._data[idx[lo:hi]] = rows
                unfit[lo:hi] = ~self._holds_readings(idx[lo:hi])
        self._pos[idx] = pos[keep]
        self._count[idx] = count[keep]
        self._last_ts[idx] = last_ts[keep]
        self._cadence[idx] = np.where(cadence[keep] > 0, cadence[keep], np.nan)  # 0: unknown
        spread = arrays.get("spread")  # absent in snapshots of earlier versions: 1 then
        if spread is not None and spread.shape == (n,) and spread.dtype == np.float32:
            spreads = np.frombuffer(self._spread, dtype=np.float32)  # a view: written through
            spreads[idx] = np.clip(np.nan_to_num(spread[keep], nan=1.0), 1.0, SPREAD_MAX)
            del spreads  # the array cannot grow while viewed
        seq = arrays.get("seq")  # absent in snapshots of earlier versions: fresh numbers then
        if seq is not None and seq.shape == (n,) and seq.dtype == np.int64:
            self._seq[idx] = seq[keep]
            self._epoch = max(self._epoch, int(seq.max(initial=0)) // SEQ_EPOCH * SEQ_EPOCH)
        self._seen[idx] = restored_at
        for i in keep[unfit]:
            self.evict(ids[i])
        self.unfit = int(unfit.sum())
        return len(self.slots)

    def _holds_readings(self, slots: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Per slot, whether its window holds only values a reading may have (finite, within
        float32's range: readings.py), up to the rounding of keeping them in float32."""
        with np.errstate(over="ignore", invalid="ignore"):
            values = self._data[slots] + self._base[slots][:, None, :]
            return np.asarray((np.abs(values) <= RESTORED_MAX).all(axis=(1, 2)))
