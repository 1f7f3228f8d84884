"""SensorTable: windows, time rules, eviction and snapshot arrays (SPEC sections 3-4)."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from sensorcast.buffer import CADENCE_ALPHA, SensorTable, Window, grow_rows
from sensorcast.drops import Drop


def feed(table: SensorTable, sid: str, readings: list[tuple[float, float]]) -> list[object]:
    """Push (ts, value) pairs for one single-feature sensor; return what each push gave."""
    return [table.push(sid, ts, (v,)) for ts, v in readings]


def col(window: object) -> list[float]:
    assert isinstance(window, Window)
    return window.values[:, 0].tolist()


# --- windows ------------------------------------------------------------------


def test_first_window_after_exactly_timesteps_readings_then_one_per_reading() -> None:
    t = SensorTable(5, 1)
    out = feed(t, "s", [(float(i), float(i)) for i in range(8)])
    assert out[:4] == [None] * 4
    assert all(isinstance(w, Window) for w in out[4:])
    assert col(out[4]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert col(out[7]) == [3.0, 4.0, 5.0, 6.0, 7.0]


def test_window_carries_sensor_id_and_ts_of_last_reading() -> None:
    t = SensorTable(2, 1)
    t.push("boiler-3", 1700000000.0, (1.0,))
    w = t.push("boiler-3", 1700000060.5, (2.0,))
    assert isinstance(w, Window)
    assert w.sensor_id == "boiler-3"
    assert w.ts == 1700000060.5
    assert w.values.shape == (2, 1)
    assert w.values.dtype == np.float64


def test_timesteps_one_gives_a_window_per_reading() -> None:
    t = SensorTable(1, 1)
    assert col(t.push("s", 1.0, (7.0,))) == [7.0]
    assert col(t.push("s", 2.0, (8.0,))) == [8.0]


def test_windows_match_naive_reference_across_many_wraparounds() -> None:
    """Interleaved sensors, 7-step windows, hundreds of wrap-arounds of each ring."""
    rng = random.Random(7)
    timesteps = 7
    t = SensorTable(timesteps, 1, initial_capacity=4)
    sensors = [f"s{i}" for i in range(12)]
    history: dict[str, list[float]] = {s: [] for s in sensors}
    clock = {s: rng.uniform(0, 100) for s in sensors}
    windows = 0
    for _ in range(12_000):
        s = rng.choice(sensors)
        clock[s] += 1.0
        value = rng.uniform(-1e3, 1e3)
        history[s].append(value)
        out = t.push(s, clock[s], (value,))
        if len(history[s]) < timesteps:
            assert out is None
        else:
            # kept in float32 as differences from a recent reading: within float32's
            # precision of the window's range (2,000 here)
            assert np.allclose(col(out), history[s][-timesteps:], rtol=0, atol=2.5e-4)
            windows += 1
    assert windows > 11_000


def test_multi_feature_windows_keep_features_apart() -> None:
    t = SensorTable(3, 2)
    out = [t.push("s", float(i), (float(i), 100.0 + i)) for i in range(5)]
    w = out[-1]
    assert isinstance(w, Window)
    assert w.values.shape == (3, 2)
    assert w.values.tolist() == [[2.0, 102.0], [3.0, 103.0], [4.0, 104.0]]


def test_returned_window_is_not_overwritten_by_later_readings() -> None:
    t = SensorTable(3, 1)
    out = feed(t, "s", [(float(i), float(i)) for i in range(3)])
    first = out[-1]
    feed(t, "s", [(float(i), -1.0) for i in range(3, 10)])
    assert col(first) == [0.0, 1.0, 2.0]


def test_sensors_do_not_share_data() -> None:
    t = SensorTable(2, 1)
    t.push("a", 1.0, (1.0,))
    t.push("b", 1.0, (100.0,))
    assert col(t.push("a", 2.0, (2.0,))) == [1.0, 2.0]
    assert col(t.push("b", 2.0, (200.0,))) == [100.0, 200.0]


# --- time rules -----------------------------------------------------------------


def test_stale_and_duplicate_ts_are_dropped_and_change_nothing() -> None:
    t = SensorTable(3, 1)
    feed(t, "s", [(10.0, 1.0), (11.0, 2.0), (12.0, 3.0)])
    cadence = t.cadence("s")
    assert t.push("s", 12.0, (99.0,)) is Drop.STALE  # duplicate
    assert t.push("s", 5.0, (99.0,)) is Drop.STALE  # older
    assert t.push("s", 11.999, (99.0,)) is Drop.STALE
    assert t.cadence("s") == cadence
    # the next good reading sees a window without any of the stale values
    assert col(t.push("s", 13.0, (4.0,))) == [2.0, 3.0, 4.0]


def test_stale_check_is_per_sensor() -> None:
    t = SensorTable(2, 1)
    t.push("a", 100.0, (1.0,))
    assert t.push("b", 50.0, (1.0,)) is None


def test_cadence_is_learned_as_moving_average() -> None:
    t = SensorTable(10, 1)
    assert t.cadence("s") is None
    t.push("s", 0.0, (0.0,))
    assert t.cadence("s") is None
    t.push("s", 10.0, (0.0,))
    assert t.cadence("s") == 10.0
    t.push("s", 30.0, (0.0,))
    assert t.cadence("s") == pytest.approx((1 - CADENCE_ALPHA) * 10.0 + CADENCE_ALPHA * 20.0)
    assert t.cadence("unknown") is None


def test_window_reports_learned_cadence() -> None:
    t = SensorTable(3, 1)
    out = feed(t, "s", [(0.0, 1.0), (60.0, 1.0), (120.0, 1.0)])
    w = out[-1]
    assert isinstance(w, Window)
    assert w.cadence == 60.0


def test_the_first_full_window_of_each_fill_is_marked_once() -> None:
    """The daemon logs a sensor's first forecast from it: once per window fill, again after
    a gap reset, after an eviction, and in the table the sensor moves to; not per reading."""

    def firsts(out: list[object]) -> list[bool]:
        return [w.first for w in out if isinstance(w, Window)]

    t = SensorTable(3, 1, max_gap=3.0, max_sensors=2)
    assert firsts(feed(t, "s", [(float(i), 1.0) for i in range(6)])) == [True, False, False, False]
    assert firsts(feed(t, "s", [(20.0 + i, 1.0) for i in range(4)])) == [True, False]  # a gap
    t.evict("s")
    assert firsts(feed(t, "s", [(30.0 + i, 1.0) for i in range(3)])) == [True]
    other = SensorTable(3, 1)
    assert t.move_to("s", other)
    assert firsts(feed(other, "s", [(33.0, 1.0), (34.0, 1.0)])) == [True, False]


def test_long_gap_resets_the_window() -> None:
    t = SensorTable(4, 1, max_gap=3.0)
    out = feed(t, "s", [(float(i), float(i)) for i in range(5)])
    assert isinstance(out[-1], Window)
    # 6 s after the last reading with a 1 s cadence: longer than 3 cadences
    after = feed(t, "s", [(10.0, 10.0), (11.0, 11.0), (12.0, 12.0), (13.0, 13.0)])
    assert after[:3] == [None, None, None]
    assert col(after[3]) == [10.0, 11.0, 12.0, 13.0]
    assert t.gap_resets == 1


def test_a_clock_that_went_back_starts_the_window_of_readings_timed_on_arrival_again() -> None:
    """Readings without a ts are timed by the system clock: when it goes back (an NTP
    correction), they were dropped as stale until it had made up the step (an hour back, an
    hour of drops). A reading with a time of its own that goes back is stale, as it was."""
    t = SensorTable(3, 1, max_gap=3.0)
    resets: list[float] = []
    t.on_gap_reset = lambda sid, gap, cadence, spread: resets.append(gap)
    feed(t, "s", [(1000.0 + i, float(i)) for i in range(4)])
    assert t.push("s", 500.0, (9.0,)) is Drop.STALE  # its own ts
    assert t.push("s", 1002.5, (9.0,), timed_here=True) is Drop.STALE  # within CLOCK_BACK
    assert t.push("s", 400.0, (1.0,), timed_here=True) is None  # the clock went back 603 s
    assert resets == [-603.0] and t.gap_resets == 1 and t.cadence("s") is None
    assert t.push("s", 401.0, (2.0,), timed_here=True) is None
    window = t.push("s", 402.0, (3.0,), timed_here=True)
    assert isinstance(window, Window) and col(window) == [1.0, 2.0, 3.0]
    assert window.ts == 402.0 and t.cadence("s") == 1.0


def test_gap_reset_forgets_cadence_and_learns_it_afresh() -> None:
    t = SensorTable(4, 1, max_gap=3.0)
    feed(t, "s", [(float(i), 0.0) for i in range(5)])
    t.push("s", 100.0, (0.0,))
    assert t.cadence("s") is None  # the gap itself is not taken as the cadence
    t.push("s", 105.0, (0.0,))
    assert t.cadence("s") == 5.0


def test_gap_of_exactly_max_gap_cadences_does_not_reset() -> None:
    t = SensorTable(3, 1, max_gap=3.0)
    feed(t, "s", [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)])
    assert col(t.push("s", 5.0, (5.0,))) == [1.0, 2.0, 5.0]
    assert t.gap_resets == 0


def test_fixed_cadence_applies_gap_rule_from_the_second_reading() -> None:
    t = SensorTable(2, 1, cadence=1.0, max_gap=3.0)
    t.push("s", 0.0, (0.0,))
    assert t.push("s", 10.0, (1.0,)) is None
    assert t.gap_resets == 1
    assert col(t.push("s", 11.0, (2.0,))) == [1.0, 2.0]


def test_interpolate_fills_a_gap_linearly() -> None:
    t = SensorTable(8, 1, max_gap=3.0, gap_fill="interpolate", max_fill_steps=10)
    feed(t, "s", [(float(i), float(i)) for i in range(11)])  # 0..10, cadence 1 s
    w = t.push("s", 15.0, (20.0,))  # 4 readings missing between 10 and 20
    assert col(w) == pytest.approx([8.0, 9.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0])
    w = t.push("s", 16.0, (21.0,))
    assert col(w) == pytest.approx([9.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 21.0])
    assert t.gap_fills == 1
    assert t.gap_resets == 0


def test_interpolate_fills_every_feature() -> None:
    t = SensorTable(6, 2, max_gap=2.0, gap_fill="interpolate")
    for i in range(3):
        t.push("s", float(i), (0.0, 100.0))
    w = t.push("s", 5.0, (3.0, 70.0))  # 2 missing
    assert isinstance(w, Window)
    np.testing.assert_allclose(
        w.values,
        [[0.0, 100.0], [0.0, 100.0], [0.0, 100.0], [1.0, 90.0], [2.0, 80.0], [3.0, 70.0]],
    )


def test_interpolate_can_complete_a_first_window() -> None:
    t = SensorTable(5, 1, max_gap=2.0, gap_fill="interpolate")
    feed(t, "s", [(0.0, 0.0), (1.0, 1.0)])
    assert col(t.push("s", 4.0, (4.0,))) == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])


def test_interpolate_fills_exactly_max_fill_steps() -> None:
    t = SensorTable(3, 1, max_gap=3.0, gap_fill="interpolate", max_fill_steps=3)
    feed(t, "s", [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)])
    assert col(t.push("s", 6.0, (6.0,))) == pytest.approx([4.0, 5.0, 6.0])  # 3 missing
    assert (t.gap_fills, t.gap_resets) == (1, 0)


def test_interpolate_still_resets_beyond_max_fill_steps() -> None:
    t = SensorTable(4, 1, max_gap=3.0, gap_fill="interpolate", max_fill_steps=3)
    feed(t, "s", [(float(i), float(i)) for i in range(6)])
    assert t.push("s", 15.0, (15.0,)) is None  # 9 missing > 3
    assert t.gap_resets == 1
    assert t.gap_fills == 0
    out = feed(t, "s", [(16.0, 16.0), (17.0, 17.0), (18.0, 18.0)])
    assert out[:2] == [None, None]
    assert col(out[2]) == [15.0, 16.0, 17.0, 18.0]


def test_sensor_recovers_from_a_cadence_learned_on_a_burst() -> None:
    t = SensorTable(4, 1)
    # two readings half a second apart (e.g. a redelivered reading plus a live one),
    # then the sensor's real one-minute cadence
    t.push("s", 0.0, (1.0,))
    t.push("s", 0.5, (1.0,))
    out = feed(t, "s", [(60.0 * i, float(i)) for i in range(1, 40)])
    assert any(isinstance(w, Window) for w in out)
    assert t.cadence("s") == 60.0


def forecast_share(table: SensorTable, times: np.ndarray) -> float:
    """The share of `times` whose reading brought a window to forecast from."""
    full = 0
    for ts in times.tolist():
        w = table.push("s", ts, (20.0,))
        full += isinstance(w, Window) and not w.refill
    return full / len(times)


@pytest.mark.parametrize(
    "intervals",
    [
        lambda rng, n: rng.exponential(60.0, n),  # reporting as a Poisson process
        lambda rng, n: np.exp(rng.normal(np.log(120.0), 1.0, n)),  # on change, heavy tailed
        lambda rng, n: np.where(rng.random(n) < 0.3, rng.uniform(5, 30, n), 300.0),  # bursts
    ],
)
def test_a_sensor_reporting_irregularly_is_forecast_and_its_outages_still_reset(
    intervals: object,
) -> None:
    """A gap is `max_gap` times the sensor's long intervals, not its mean one: a sensor that
    reports on change (Zigbee, Home Assistant states) got a window reset every twentieth
    reading or so, and 3 to 6% of its readings were forecast. Outages of hours still reset."""
    rng = np.random.default_rng(0)
    n = 4000
    gaps = intervals(rng, n)  # type: ignore[operator]
    t = SensorTable(32, 1, max_gap=3.0)
    assert forecast_share(t, 1.7e9 + np.cumsum(gaps)) > 0.9
    assert t.gap_resets <= 15
    outages = SensorTable(32, 1, max_gap=3.0)
    at = rng.choice(np.arange(200, n), 5, replace=False)
    gaps[at] += 86_400.0  # a day each
    forecast_share(outages, 1.7e9 + np.cumsum(gaps))
    assert 5 <= outages.gap_resets <= 20


def test_timestamps_rounded_by_float_keep_a_regular_sensor_regular() -> None:
    """Readings every 0.2 s stamped 1e9 + 0.2 i differ from 0.2 s by float rounding: the
    spread stays near 1 while the window fills, and 4 s later is still a gap."""
    t = SensorTable(32, 1, max_gap=3.0)
    for i in range(32):
        t.push("s", 1e9 + 0.2 * i, (20.0,))
    assert t.to_arrays()["spread"][0] < 1.1
    assert t.push("s", 1e9 + 0.2 * 31 + 4.0, (20.0,)) is None
    assert t.gap_resets == 1


def test_a_regular_sensor_keeps_the_gap_of_max_gap_cadences() -> None:
    """Jitter of 20% leaves the spread near 1: a gap of 4 cadences still resets."""
    rng = np.random.default_rng(1)
    t = SensorTable(32, 1, max_gap=3.0)
    times = 1.7e9 + np.cumsum(60.0 * rng.uniform(0.8, 1.2, 2000))
    assert forecast_share(t, times) > 0.98
    assert t.gap_resets == 0
    assert t.push("s", float(times[-1]) + 240.0, (20.0,)) is None
    assert t.gap_resets == 1


# --- eviction ---------------------------------------------------------------------


def test_lru_evicts_least_recently_seen_not_least_recently_created() -> None:
    t = SensorTable(2, 1, max_sensors=3)
    for sid in ("a", "b", "c"):
        t.push(sid, 1.0, (1.0,))
    t.push("a", 2.0, (2.0,))  # a is now seen after b and c
    t.push("d", 1.0, (1.0,))
    assert set(t.slots) == {"a", "c", "d"}
    assert len(t) == 3
    assert t.evicted == 1
    # a kept its data: its next reading completes a window with the old value
    assert col(t.push("a", 3.0, (3.0,))) == [2.0, 3.0]
    # b starts over: no window from one reading, and no old timestamp to be stale against
    assert t.push("b", 0.5, (5.0,)) is None
    assert "b" in t.slots and "c" not in t.slots


def test_evicted_slot_is_reused_without_old_data() -> None:
    t = SensorTable(3, 1, max_sensors=1)
    feed(t, "a", [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)])
    out = feed(t, "b", [(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)])
    assert out[:2] == [None, None]
    assert col(out[2]) == [10.0, 20.0, 30.0]
    assert t.cadence("a") is None


def test_eviction_keeps_memory_bounded() -> None:
    t = SensorTable(2, 1, max_sensors=50, initial_capacity=8)
    for i in range(1000):
        t.push(f"s{i}", 1.0, (1.0,))
    assert len(t) == 50
    assert t.evicted == 950
    assert t.to_arrays()["data"].shape[0] == 50
    assert t._data.shape[0] <= 50


def test_evict_removes_one_sensor() -> None:
    t = SensorTable(2, 1)
    t.push("a", 1.0, (1.0,))
    t.evict("a")
    t.evict("never-seen")
    assert len(t) == 0
    assert t.push("a", 0.5, (1.0,)) is None  # not stale: forgotten


def test_evict_idle_removes_sensors_not_heard_from_since() -> None:
    t = SensorTable(2, 1)
    for sid, seen in (("a", 100.0), ("b", 200.0), ("c", 300.0)):
        t.push(sid, 1.0, (1.0,), seen=seen)
    assert t.evict_idle(250.0) == 2
    assert list(t.slots) == ["c"]
    assert t.evict_idle(250.0) == 0
    assert t.evict_idle(1e12) == 1
    assert len(t) == 0


def test_evict_idle_goes_by_arrival_not_by_reading_timestamp() -> None:
    t = SensorTable(2, 1)
    t.push("a", 1000.0, (1.0,), seen=10.0)  # device clock ahead, heard long ago
    t.push("b", 500.0, (1.0,), seen=20.0)  # replaying old data, heard just now
    assert t.evict_idle(15.0) == 1
    assert list(t.slots) == ["b"]


def test_stale_readings_are_not_a_sign_of_life() -> None:
    """A sensor that only sends readings older than its last one (say, behind a reading
    stamped in the future) is evicted in time instead of being kept alive by them."""
    t = SensorTable(2, 1)
    t.push("a", 100.0, (1.0,), seen=1.0)
    t.push("b", 100.0, (1.0,), seen=2.0)
    assert t.push("a", 50.0, (1.0,), seen=3.0) is Drop.STALE
    assert list(t.slots) == ["a", "b"]  # not moved up the least-recently-seen order either
    assert t.evict_idle(2.5) == 2
    t.push("a", 100.0, (1.0,), seen=4.0)  # evicted, it starts afresh: 100 is not stale now
    assert t.last_ts("a") == 100.0


def test_limit_evicts_the_least_recently_seen_beyond_a_lower_cap() -> None:
    t = SensorTable(2, 1, max_sensors=5)
    for i, sid in enumerate("abcde"):
        t.push(sid, float(i), (1.0,))
    t.push("a", 10.0, (1.0,))
    assert t.limit(2) == 3
    assert list(t.slots) == ["e", "a"]
    assert t.evicted == 3
    # said, as every eviction is (a log line, the sensor's Home Assistant entities removed)
    assert t.take_evicted() == [(sid, "max_sensors") for sid in "bcd"]
    t.push("f", 11.0, (1.0,))
    assert list(t.slots) == ["a", "f"]


def test_evict_idle_defaults_to_reading_ts_as_arrival() -> None:
    t = SensorTable(2, 1)
    t.push("a", 100.0, (1.0,))
    t.push("b", 200.0, (1.0,))
    assert t.evict_idle(150.0) == 1
    assert list(t.slots) == ["b"]


def test_evicted_idle_sensor_starts_over() -> None:
    t = SensorTable(2, 1)
    feed(t, "a", [(1.0, 1.0), (2.0, 2.0)])
    t.evict_idle(1e12)
    assert t.push("a", 0.5, (5.0,)) is None  # no stale check, no old window


# --- capacity ---------------------------------------------------------------------


def test_growth_beyond_initial_capacity_keeps_data() -> None:
    t = SensorTable(4, 2, initial_capacity=2)
    sensors = [f"s{i}" for i in range(37)]
    for step in range(6):
        for k, s in enumerate(sensors):
            out = t.push(s, float(step), (float(step), float(k)))
            if step >= 3:
                assert isinstance(out, Window)
                assert out.values[:, 0].tolist() == [float(x) for x in range(step - 3, step + 1)]
                assert out.values[:, 1].tolist() == [float(k)] * 4
    assert len(t) == 37


def test_grow_rows_keeps_the_rows_and_hands_out_the_new_ones_zeroed() -> None:
    shapes = {"a": ((3,), np.float32), "b": ((), np.int64)}
    arrays: dict[str, np.ndarray] = {}
    assert grow_rows(arrays, shapes, 4) == [3, 2, 1, 0]  # popped from the end: lowest first
    arrays["a"][:] = 7.0
    arrays["b"][:] = [1, 2, 3, 4]
    assert grow_rows(arrays, shapes, 8) == [7, 6, 5, 4]
    assert arrays["a"].shape == (8, 3) and arrays["a"].dtype == np.float32
    assert (arrays["a"][:4] == 7.0).all() and (arrays["a"][4:] == 0).all()
    assert arrays["b"].tolist() == [1, 2, 3, 4, 0, 0, 0, 0]


def test_reset_all_forgets_everything() -> None:
    t = SensorTable(2, 1)
    feed(t, "a", [(1.0, 1.0), (2.0, 2.0)])
    t.reset_all()
    assert len(t) == 0
    assert t.push("a", 1.0, (1.0,)) is None


# --- snapshot arrays --------------------------------------------------------------


def _filled(max_sensors: int = 100) -> SensorTable:
    t = SensorTable(4, 2, max_sensors=max_sensors)
    for i in range(7):
        for k, s in enumerate(("a", "b", "c")):
            if i < 2 + k:  # different fill levels
                t.push(s, 10.0 * i, (float(i), float(k)))
    t.push("a", 100.0, (9.0, 9.0))  # a is now most recently seen
    return t


def test_to_arrays_load_arrays_round_trip_continues_identically() -> None:
    src = _filled()
    dst = SensorTable(4, 2)
    assert dst.load_arrays(src.to_arrays()) == 3
    assert list(dst.slots) == list(src.slots) == ["b", "c", "a"]
    for s in ("a", "b", "c"):
        assert dst.cadence(s) == src.cadence(s)
        assert dst.push(s, 5.0, (0.0, 0.0)) is Drop.STALE  # last timestamps survive
    for step in range(1, 6):
        for s in ("a", "b", "c"):
            ts = 100.0 + 10.0 * step
            w1 = src.push(s, ts, (float(step), 1.0))
            w2 = dst.push(s, ts, (float(step), 1.0))
            if w1 is None:
                assert w2 is None
            else:
                assert isinstance(w1, Window) and isinstance(w2, Window)
                np.testing.assert_array_equal(w1.values, w2.values)
                assert w1.cadence == w2.cadence


def test_load_arrays_restores_lru_order() -> None:
    src = _filled()
    dst = SensorTable(4, 2, max_sensors=3)
    dst.load_arrays(src.to_arrays())
    dst.push("new", 1.0, (0.0, 0.0))
    assert "b" not in dst.slots  # b was the least recently seen in the source
    assert {"a", "c", "new"} == set(dst.slots)


def test_restored_sensors_are_not_idle_right_after_a_restart() -> None:
    src = _filled()  # arrival times are the reading timestamps: 1970
    dst = SensorTable(4, 2)
    dst.load_arrays(src.to_arrays())
    assert dst.evict_idle(time.time() - 60.0) == 0
    assert len(dst) == 3


def test_load_arrays_into_smaller_table_keeps_most_recent() -> None:
    dst = SensorTable(4, 2, max_sensors=2)
    assert dst.load_arrays(_filled().to_arrays()) == 2
    assert list(dst.slots) == ["c", "a"]


def test_load_arrays_leaves_out_sensors_ahead_of_max_ts() -> None:
    src = SensorTable(4, 2)
    for i in range(4):
        src.push("ok", 100.0 + i, (1.0, 2.0))
        src.push("ahead", 100.0 + i, (1.0, 2.0))
    src.push("ahead", 253402300799.0, (1.0, 2.0))  # stamped 9999-12-31
    dst = SensorTable(4, 2)
    assert dst.load_arrays(src.to_arrays(), max_ts=1000.0) == 1
    assert list(dst.slots) == ["ok"]
    assert isinstance(dst.push("ok", 104.0, (1.0, 2.0)), Window)


def test_empty_table_round_trip() -> None:
    dst = SensorTable(4, 2)
    dst.push("x", 1.0, (1.0, 1.0))
    assert dst.load_arrays(SensorTable(4, 2).to_arrays()) == 0
    assert len(dst) == 0


def _corrupt(key: str, value: object) -> dict[str, np.ndarray]:
    arrays = _filled().to_arrays()
    arrays[key] = np.asarray(value)
    return arrays


@pytest.mark.parametrize(
    "arrays",
    [
        pytest.param(_corrupt("data", np.zeros((3, 10, 2))), id="timesteps"),
        pytest.param(_corrupt("data", np.zeros((3, 8, 3))), id="features"),
        pytest.param(_corrupt("data", np.zeros((3, 8, 2), dtype=np.float32)), id="data-dtype"),
        pytest.param(_corrupt("data", np.zeros((2, 8, 2))), id="data-rows"),
        pytest.param(_corrupt("pos", np.array([0, 1, 4], dtype=np.int32)), id="pos-high"),
        pytest.param(_corrupt("pos", np.array([0, -1, 0], dtype=np.int32)), id="pos-negative"),
        pytest.param(_corrupt("pos", np.array([0, 1, 2], dtype=np.int64)), id="pos-dtype"),
        pytest.param(_corrupt("count", np.array([0, 5, 1], dtype=np.int32)), id="count-high"),
        pytest.param(_corrupt("count", np.array([0, -1, 1], dtype=np.int32)), id="count-neg"),
        pytest.param(_corrupt("last_ts", np.zeros(4)), id="last-ts-len"),
        pytest.param(_corrupt("cadence", np.zeros(3, dtype=np.float32)), id="cadence-dtype"),
        pytest.param(_corrupt("sensor_ids", np.array(["a", "a", "b"])), id="duplicate-ids"),
    ],
)
def test_load_arrays_rejects_bad_arrays_and_keeps_state(arrays: dict[str, np.ndarray]) -> None:
    dst = SensorTable(4, 2)
    feed_values = [(float(i), (float(i), 0.0)) for i in range(4)]
    for ts, v in feed_values:
        dst.push("keep", ts, v)
    with pytest.raises(ValueError):
        dst.load_arrays(arrays)
    assert list(dst.slots) == ["keep"]
    w = dst.push("keep", 4.0, (4.0, 0.0))
    assert isinstance(w, Window)
    assert w.values[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_a_window_ends_with_the_reading_exactly_as_it_came() -> None:
    """The ring keeps float32 offsets from a float64 base, which round a reading of 0.0 after
    0.4 to -2.98e-09; the window's newest reading, the last value persistence serves, is the
    reading itself."""
    table = SensorTable(4, 1)
    values = [0.0, 0.1, 0.2, 0.3, 0.4] * 9
    for i, v in enumerate(values):
        w = table.push("s", 1.7e9 + i, (v,))
        if isinstance(w, Window):
            assert w.values[-1, 0] == v
            assert np.allclose(w.values[:, 0], values[i - 3 : i + 1], rtol=0, atol=1e-7)
