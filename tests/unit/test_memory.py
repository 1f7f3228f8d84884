"""What 100,000 sensors cost: each reading stored once in float32 (as a difference from a
base), nothing per sensor for online accuracy, and restores that never hold a file's
arrays beside the restored state."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np

from sensorcast.accuracy import OnlineAccuracy
from sensorcast.buffer import SensorTable, Window
from sensorcast.metrics import Metrics
from sensorcast.scoring import SensorScores
from sensorcast.slots import SlotIndex
from sensorcast.state import SCORES_FILE, SNAPSHOT_FILE, load_scores, load_snapshot, save_scores

from .slotted import INDEX, slotted
from .test_scoring import meta as scoring_meta
from .test_state import make_meta, restore_overhead


def test_each_reading_is_stored_once_in_float32_and_windows_come_out_in_order() -> None:
    t = SensorTable(5, 2, max_sensors=100, initial_capacity=100)
    assert t._data.dtype == np.float32
    assert t._data.nbytes == 100 * 5 * 2 * 4  # one ring per sensor, no second copy
    values = [(0.1 * i, 1000.0 + i / 3) for i in range(13)]
    out = [t.push("s", float(i), v) for i, v in enumerate(values)]
    window = out[-1]
    assert isinstance(window, Window)
    assert window.values.dtype == np.float64  # the model's input as before
    # oldest first, across a wrap-around; float32 differences from a float64 base
    assert np.allclose(window.values, np.array(values[-5:]), rtol=0, atol=1e-5)


def test_large_readings_keep_their_small_steps() -> None:
    """float32 alone holds 12,345,678.9 to the nearest 1.0 and 52.123456 to 4e-6: the steps
    of an energy meter or a latitude would be lost. Stored as differences from a base that
    follows the sensor, they are kept, whatever the magnitude, across many ring turns."""
    t = SensorTable(8, 2, max_sensors=10, initial_capacity=10)
    values = [(12_345_678.9 + 0.1 * i, 52.123456 + 1e-6 * i) for i in range(1000)]
    windows = [t.push("meter", float(i), v) for i, v in enumerate(values)]
    for w in windows[-3:]:
        assert isinstance(w, Window)
        steps = np.diff(w.values, axis=0)
        assert np.allclose(steps[:, 0], 0.1, rtol=1e-4)
        assert np.allclose(steps[:, 1], 1e-6, rtol=1e-2)
    last = windows[-1]
    assert isinstance(last, Window)
    assert np.allclose(last.values[-1], values[-1], rtol=0, atol=1e-7)


def test_readings_at_both_ends_of_float32_stay_finite() -> None:
    t = SensorTable(4, 1, max_sensors=10, initial_capacity=10)
    out = [t.push("x", float(i), (3e38 if i % 2 else -3e38,)) for i in range(9)]
    window = out[-1]
    assert isinstance(window, Window)
    assert np.isfinite(window.values).all()


def _old_layout(table: SensorTable) -> dict[str, np.ndarray]:
    """The table's arrays as earlier versions wrote them: each ring twice, in float64."""
    arrays = table.to_arrays()
    ring = arrays["data"] + arrays.pop("base")[:, None, :]
    arrays["data"] = np.concatenate([ring, ring], axis=1)
    return arrays


def test_a_snapshot_of_the_earlier_doubled_float64_layout_restores_and_continues(
    tmp_path: Path,
) -> None:
    meta = make_meta(timesteps=4, features=["temperature", "humidity"])
    source = SensorTable(4, 2)
    for i in range(7):  # "a" wraps around its ring; "b" has a partial window
        source.push("a", 60.0 * i, (20.0 + i, 40.0 - i))
        if i < 2:
            source.push("b", 60.0 * i, (5.0 + i, 6.0))
    header = json.dumps({"format": 1, "timesteps": 4, "features": meta.features})
    np.savez(tmp_path / SNAPSHOT_FILE, header=np.array(header), **_old_layout(source))  # type: ignore[arg-type]
    restored = SensorTable(4, 2)
    assert load_snapshot(tmp_path, restored, meta) == 2
    for sid, ts in (("a", 420.0), ("b", 120.0), ("b", 180.0), ("b", 240.0)):
        want, got = source.push(sid, ts, (1.5, 2.5)), restored.push(sid, ts, (1.5, 2.5))
        if isinstance(want, Window):
            assert isinstance(got, Window)
            assert np.array_equal(got.values, want.values)
            assert (got.seq, got.cadence) == (want.seq, want.cadence)
        else:
            assert got is want is None


def test_online_accuracy_keeps_nothing_per_sensor() -> None:
    """The scores keep each sensor's pending forecast; online accuracy reads it from them."""
    n = 2000
    scores = _scores_of(n)  # every sensor has a forecast pending
    metrics = Metrics()
    acc = OnlineAccuracy(metrics, ["value"], ["value"], "m@1")
    windows = [slotted(f"s{i:06d}", np.full((4, 1), 1.0), 2.0, 1.0, seq=11 + i) for i in range(n)]
    tracemalloc.start()
    try:
        for start in range(0, n, 100):
            chunk = windows[start : start + 100]
            k = len(chunk)
            scores.score(chunk, np.full((k, 3, 1), 2.0), np.ones((k, 1, 1)), accuracy=acc)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert metrics.value("sensorcast_online_scored_total", model="m@1") == n
    assert kept < 20 * n, f"{kept} bytes kept for {n} sensors"  # a dict entry alone is 50


def _scores_of(n: int) -> SensorScores:
    m = scoring_meta(horizon=3)
    scores = SensorScores(m, level=0.9, anomaly_level=0.99, max_sensors=n)
    for start in range(0, n, 1000):
        windows = [
            slotted(f"s{i:06d}", np.full((4, 1), float(i % 7)), 1.0, 1.0, seq=10 + i)
            for i in range(start, min(n, start + 1000))
        ]
        k = len(windows)
        scores.score(windows, np.full((k, 3, 1), 2.0), np.ones((k, 1, 1)))
    return scores


def test_scores_are_restored_an_array_at_a_time(tmp_path: Path) -> None:
    n = 20_000
    source = _scores_of(n)
    m = scoring_meta(horizon=3)
    save_scores(tmp_path, source, m, INDEX.in_order())
    file_bytes = sum(a.nbytes for a in source.to_arrays(INDEX.in_order()).values())
    restored = SensorScores(m, level=0.9, anomaly_level=0.99, max_sensors=n)
    restored_n, extra = restore_overhead(lambda: load_scores(tmp_path, restored, m, INDEX))
    assert restored_n == n
    # beyond what it kept, the restore held at most about one array of the file (reading
    # the whole file first held all of them)
    assert extra < 0.5 * file_bytes, f"{extra / 1e6:.1f} MB extra for {file_bytes / 1e6:.1f} MB"
    a, b = source.to_arrays(INDEX.in_order()), restored.to_arrays(INDEX.in_order())
    assert list(a) == list(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_scores_saved_before_the_guard_was_per_step_are_restored_an_array_at_a_time(
    tmp_path: Path,
) -> None:
    """The layout of tests/data/scores_0978568.npz (one guard state per sensor), converted
    on load without reading the whole file first."""
    n, h = 20_000, 3
    source = _scores_of(n)
    m = scoring_meta(horizon=h)
    save_scores(tmp_path, source, m, INDEX.in_order())
    path = tmp_path / SCORES_FILE
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for name in ("err_model", "err_pers"):
        arrays[name] = arrays[name][:, :, 0].sum(axis=1)  # then: the sum over the steps
    arrays["use_pers"] = arrays["use_pers"].all(axis=1)
    arrays["pend_pers"] = arrays["pend_pers"].all(axis=2)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    del arrays
    restored = SensorScores(m, level=0.9, anomaly_level=0.99, max_sensors=n)
    restored_n, extra = restore_overhead(lambda: load_scores(tmp_path, restored, m, INDEX))
    assert restored_n == n
    # beyond what it kept, at most about one array at a time, converted (converting them
    # all at once held 2.9 MB here, reading the whole file first more)
    a, b = source.to_arrays(INDEX.in_order()), restored.to_arrays(INDEX.in_order())
    state_bytes = sum(x.nbytes for x in b.values())
    assert extra < 0.5 * state_bytes, f"{extra / 1e6:.1f} MB extra for {state_bytes / 1e6:.1f} MB"
    for name in ("pend_seq", "pend_f", "q_model", "qa_pers", "n_scored", "sensor_ids"):
        assert np.array_equal(a[name], b[name]), name
    assert np.allclose(b["err_model"], a["err_model"][:, :, :1].mean(axis=1)[:, None])


def test_a_daemon_without_routes_keeps_no_route_per_sensor() -> None:
    from sensorcast.config import load_settings
    from sensorcast.service import Service

    service = Service(load_settings(None, mqtt={"host": "127.0.0.1", "port": 1}))
    for i in range(50):
        payload = b'{"value": 21.5, "ts": 1700000000}'
        service._ingest(f"sensors/s{i}/reading", payload, 1_700_000_001.0)
    assert len(service.table) == 50
    assert service.router._cache == {}  # every sensor is the one route's, nothing to look up


def test_scores_keep_the_steps_still_to_be_realised_and_no_more() -> None:
    """Step j of a forecast is read j readings after it was made: those steps are kept exactly,
    whatever readings the sensor's windows skip, in h (h + 1) / 2 values a sensor instead of
    h * h (a snapshot still holds each forecast whole, the realised steps as 0)."""
    h = 6
    scores = SensorScores(scoring_meta(horizon=h), level=0.9, anomaly_level=0.99, max_sensors=4)
    assert scores._arrays["pend_f"].shape[1:] == (h * (h + 1) // 2, 1)
    rng = np.random.default_rng(3)
    made: dict[int, np.ndarray] = {-1: np.zeros(h, np.float32)}
    ring_seqs = np.full(h, -1)  # each forecast's number in its ring place, as kept before
    seq, scored = 100, 0
    for _ in range(300):
        seq += int(rng.choice([1, 1, 1, 2, 3, 7]))  # windows skipped now and then
        scored += any(ring_seqs[(seq - lag) % h] == seq - lag for lag in range(1, h + 1))
        forecast = rng.normal(20.0, 5.0, size=(1, h, 1))
        window = slotted("s", np.full((4, 1), 20.0), float(seq), 1.0, seq=seq)
        scores.score([window], forecast, np.ones((1, 1, 1)))
        made[seq] = forecast[0, :, 0].astype(np.float32)
        ring_seqs[seq % h] = seq
        saved = scores.to_arrays(INDEX.in_order())
        assert saved["n_scored"][0] == scored  # a reading scored whenever a forecast was due
        recent = np.where(ring_seqs > seq - h, ring_seqs, -1)  # older ones are never read
        assert np.array_equal(saved["pend_seq"][0], recent)
        for ring, at in enumerate(saved["pend_seq"][0].tolist()):
            ahead = at + np.arange(1, h + 1) > seq
            # kept as offsets from the window's last reading (the anchor plus its offset)
            last = saved["pend_anchor"][0, 0] + saved["pend_last"][0, ring, 0]
            kept = saved["pend_f"][0, ring, :, 0]
            assert np.allclose(kept[ahead] + last, made[at][ahead], rtol=0, atol=1e-5)
            assert not kept[~ahead].any()


def test_per_sensor_bytes_of_buffers_and_scores() -> None:
    """The default model's shape (32 readings, 6 steps, one target): what the preallocated
    arrays hold per sensor (scores took 470 bytes when they kept each pending forecast
    whole, with its reading number; 8 of them are the float64 anchor of its last readings, 84
    the interval quantiles published with each step still to be realised, in float16, 4 the
    typical move of the sensor that floors its anomaly scale)."""
    table = SensorTable(32, 1, max_sensors=1000, initial_capacity=1000)
    arrays = [getattr(table, name) for name in vars(table) if name.startswith("_")]
    per_table = sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)) / 1000
    assert per_table <= 32 * 4 + 8 * 5 + 4 * 3 + 1, per_table  # ring; 5 of 8 bytes; 3 of 4; full
    scores = SensorScores(scoring_meta(horizon=6), level=0.9, anomaly_level=0.99, max_sensors=1000)
    per_scores = sum(a.nbytes for a in scores._arrays.values()) / len(scores._arrays["n_scored"])
    assert per_scores <= 444, per_scores


def test_the_scores_keep_no_index_of_their_own() -> None:
    """The scores keep each sensor in its table's slot: beside their arrays, one reference
    per slot (a dict of their own from id to slot took 6.5 MB more at 100,000 sensors)."""
    n = 3000
    table = SensorTable(4, 1, max_sensors=n, initial_capacity=n)
    scores = SensorScores(scoring_meta(horizon=3), level=0.9, anomaly_level=0.99, max_sensors=n)
    for r in range(5):
        for i in range(n):
            w = table.push(f"s{i}", float(r), (1.0,))
        if isinstance(w, Window):
            scores.score([w], np.ones((1, 3, 1)), np.ones((1, 1, 1)))
    windows = [table.push(f"s{i}", 5.0, (1.0,)) for i in range(n)]
    tracemalloc.start()
    try:
        for w in windows:
            assert isinstance(w, Window)
            scores.score([w], np.ones((1, 3, 1)), np.ones((1, 1, 1)))
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 40 * n, f"{kept / n:.0f} bytes a sensor beside the arrays"
    assert len(scores) == n


def test_a_snapshot_of_the_scores_holds_little_beside_what_it_writes() -> None:
    """The forecasts are made whole for the file a chunk of sensors at a time, from the
    cells themselves (copying the cells first held 1 MB more here)."""
    scores = _scores_of(20_000)
    order = INDEX.in_order()  # the table's ids and slots, taken under the service's lock
    tracemalloc.start()
    try:
        arrays = scores.to_arrays(order)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept >= sum(a.nbytes for a in arrays.values())
    assert peak - kept < 0.1 * kept, f"{(peak - kept) / 1e6:.2f} MB beside {kept / 1e6:.1f} MB"


FREED_BETWEEN_LIVE_BLOCKS = """
import sys
from pathlib import Path

import numpy as np

from sensorcast.state import map_large_allocations

if sys.argv[1] == "mapped":
    map_large_allocations()


def rss() -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if "VmRSS" in x)
    return int(line.split()[1]) * 1024


big = np.ones(1 << 20)  # 8 MB freed: glibc's own rule now serves blocks up to 8 MB from the heap
del big
blocks = [np.ones(1 << 17) for _ in range(96)]  # 1 MB each
before = rss()
del blocks[::2]  # every other one: each freed block lies between two that live
print(before - rss())
"""


def test_large_blocks_freed_go_back_to_the_system() -> None:
    """`sensorcast run` maps every block of 128 kB or more on its own: a flood of 100,000
    sensors peaked 11 MB lower. Without it, 48 MB freed between live blocks stay resident."""

    def returned(mode: str) -> int:
        code = [sys.executable, "-c", FREED_BETWEEN_LIVE_BLOCKS, mode]
        return int(subprocess.run(code, capture_output=True, text=True, check=True).stdout)

    assert returned("default") < 8 << 20  # the case this guards against (glibc's own rule)
    assert returned("mapped") > 40 << 20


def test_pending_forecasts_are_restored_a_chunk_of_rows_at_a_time(tmp_path: Path) -> None:
    """Each sensor's pending forecasts whole, (n, h, h) floats, are the largest array of
    scores.npz: read a chunk of sensors at a time, never whole; and when the file holds more
    sensors than the daemon's table keeps, those it keeps are read past the others' rows."""
    n, h, keep = 12_000, 6, 9_000
    m = scoring_meta(horizon=h)
    source = SensorScores(m, level=0.9, anomaly_level=0.99, max_sensors=n)
    for start in range(0, n, 1000):
        windows = [
            slotted(f"s{i:06d}", np.full((8, 1), float(i % 7)), 1.0, 1.0, seq=10 + i)
            for i in range(start, start + 1000)
        ]
        forecast = np.broadcast_to(2.0 + np.arange(h)[None, :, None], (1000, h, 1))
        source.score(windows, forecast.copy(), np.ones((1000, 1, 1)))
    save_scores(tmp_path, source, m, INDEX.in_order())
    pend_bytes = source.to_arrays(INDEX.in_order())["pend_f"].nbytes
    restored = SensorScores(m, level=0.9, anomaly_level=0.99, max_sensors=keep)
    kept = SlotIndex()  # a table that kept the newest `keep` of them, in the same slots
    for i in range(n - keep, n):
        kept.add(f"s{i:06d}", INDEX[f"s{i:06d}"])
    restored_n, extra = restore_overhead(lambda: load_scores(tmp_path, restored, m, kept))
    assert restored_n == keep
    # read whole, the restore held 2.1 times the array beyond what it kept; now 1.25 (the
    # other arrays, read one at a time)
    assert extra < 1.5 * pend_bytes, f"{extra / 1e6:.2f} MB extra, pend_f {pend_bytes / 1e6:.2f} MB"
    a, b = source.to_arrays(INDEX.in_order()), restored.to_arrays(kept.in_order())
    for name in a:
        assert np.array_equal(a[name][n - keep :], b[name]), name
