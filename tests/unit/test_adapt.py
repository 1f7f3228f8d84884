"""SensorHeads: per-sensor corrections of the shipped model, learned online (real LiteRT)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sensorcast.adapt import AR_STATE, MAX_PERIOD, SEASON_STATE, SensorHeads, layout_for
from sensorcast.buffer import Window
from sensorcast.config import AdaptConfig
from sensorcast.inference import ServedBundle
from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.models.realdata import by_name
from sensorcast.models.runtime import Forecaster
from sensorcast.state import load_heads, save_heads

from .slotted import slotted

BUNDLE = load_bundle(DEFAULT_BUNDLE)
META = BUNDLE.meta
T, H = META.timesteps, META.horizon


@pytest.fixture(scope="module")
def forecaster() -> Forecaster:
    return Forecaster(BUNDLE)


def heads(max_sensors: int = 100, **kw: float) -> SensorHeads:
    layout = layout_for(META)
    assert layout is not None
    return SensorHeads(META, layout, max_sensors=max_sensors, **kw)


def windows_of(
    values: np.ndarray, sid: str = "s", seq0: int = 0, cadence: float = 3600.0
) -> list[Window]:
    return [
        slotted(sid, values[i - T + 1 : i + 1, None], float(i), cadence, seq0 + i)
        for i in range(T - 1, len(values))
    ]


def serve(h: SensorHeads | None, f: Forecaster, windows: list[Window]) -> np.ndarray:
    raw = np.stack([w.values for w in windows])
    run = f.run(raw)
    y = run.y if h is None else h.correct(windows, run.x, run.y, run.center, run.scale, raw).y
    return f.inverse(y, run)[:, :, 0]


def mae_by_step(values: np.ndarray, forecast: np.ndarray, first: int) -> np.ndarray:
    """MAE per step of forecasts made at window index >= first (window i ends at T-1+i)."""
    rows = []
    for k in range(H):
        idx = np.arange(first, len(forecast) - k - 1)
        rows.append(np.mean(np.abs(forecast[idx, k] - values[idx + T + k])))
    return np.array(rows)


def temperatures(n: int) -> np.ndarray:
    _, v = by_name("sf_temp").load()
    return v[~np.isnan(v)][:n].astype(float)


def demand(n: int) -> np.ndarray:
    """Half-hourly electricity demand: a day is 48 readings, longer than the window."""
    _, v = by_name("electricity_demand").load()
    return v[~np.isnan(v)][:n].astype(float)


HALF_HOUR = 1800.0


def test_a_new_sensor_is_forecast_exactly_as_without_adaptation(forecaster: Forecaster) -> None:
    values = temperatures(T + H)  # H + 1 windows: the last is the first to learn
    ws = windows_of(values)
    got, plain = serve(heads(), forecaster, ws), serve(None, forecaster, ws)
    assert np.array_equal(got[:H], plain[:H])
    assert not np.array_equal(got[H], plain[H])


def test_the_heads_learn_a_sensor_s_daily_rhythm(forecaster: Forecaster) -> None:
    values = temperatures(3000)
    ws = windows_of(values)
    h = heads()
    adapted = np.concatenate([serve(h, forecaster, ws[i : i + 64]) for i in range(0, len(ws), 64)])
    plain = serve(None, forecaster, ws)
    late = mae_by_step(values, adapted, 2000) / mae_by_step(values, plain, 2000)
    assert (late < 0.7).all(), late
    assert h.resets == 0


def persistence_mae(values: np.ndarray, first: int) -> np.ndarray:
    return mae_by_step(values, np.repeat(values[T - 1 :, None], H, axis=1), first)


def test_where_the_model_loses_a_head_serves_the_sensor_s_own_steps(
    forecaster: Forecaster,
) -> None:
    """The room's temperature (16-minute readings): the model, corrected or not, loses to
    the last value; the sensor's own regression on its last steps wins, and serves."""
    _, v = by_name("room_temperature").load()
    values = v[~np.isnan(v)].astype(float)
    ws = windows_of(values, cadence=960.0)
    h = heads()
    adapted = np.concatenate([serve(h, forecaster, ws[i : i + 64]) for i in range(0, len(ws), 64)])
    pers = persistence_mae(values, 300)
    assert (mae_by_step(values, serve(None, forecaster, ws), 300) > pers).all()
    assert (mae_by_step(values, adapted, 300) < 0.95 * pers).all()
    err = h._arrays["choice_err"][h.slots["s"]]  # (step, [corrected model, own regression])
    assert (err[:, 1] < err[:, 0]).all()


def test_a_head_learns_a_sensor_whose_steps_carry_on(forecaster: Forecaster) -> None:
    rng = np.random.default_rng(0)
    steps = np.zeros(1500)
    for i in range(1, len(steps)):  # each step 0.7 of the last, and noise
        steps[i] = 0.7 * steps[i - 1] + rng.normal(0, 0.05)
    values = 20 + np.cumsum(steps)
    ws = windows_of(values)
    h = heads()
    adapted = np.concatenate([serve(h, forecaster, ws[i : i + 64]) for i in range(0, len(ws), 64)])
    got = mae_by_step(values, adapted, 1000)
    assert (got < mae_by_step(values, serve(None, forecaster, ws), 1000)).all()
    assert got[0] < 0.8 * persistence_mae(values, 1000)[0]


def test_windows_of_one_sensor_in_one_batch_learn_in_order(forecaster: Forecaster) -> None:
    values = temperatures(600)
    ws = windows_of(values)
    one, many = heads(), heads()
    together = serve(one, forecaster, ws)
    apart = np.concatenate([serve(many, forecaster, [w]) for w in ws])
    np.testing.assert_allclose(together, apart, rtol=1e-5, atol=1e-5)


def test_a_diverged_head_is_reset_and_counted(forecaster: Forecaster) -> None:
    values = temperatures(400)
    ws = windows_of(values)
    h = heads()
    serve(h, forecaster, ws[:-1])
    h._arrays["weights"][h.slots["s"]] = 1e6  # as if it had blown up
    got = serve(h, forecaster, ws[-1:])
    assert h.take_resets() == 1
    np.testing.assert_array_equal(got, serve(None, forecaster, ws[-1:]))
    assert not h._arrays["weights"][h.slots["s"]].any()


def test_the_covariance_stays_bounded_without_excitation(forecaster: Forecaster) -> None:
    """Plain RLS with forgetting grows P without bound on a flat sensor; the ridge put
    back as it is forgotten keeps it under I / ridge."""
    values = np.full(3000, 21.5)
    values[::97] += 0.1  # a few steps, so the window has a scale
    h = heads(ridge=3.0)
    serve(h, forecaster, windows_of(values))
    cov = h._unpack(h._arrays["cov"][[h.slots["s"]]])[0]
    assert np.isfinite(cov).all()
    assert np.linalg.eigvalsh(cov).max() <= 1 / 3.0 + 1e-4


def test_heads_are_bounded_and_recycle_the_least_recently_seen(forecaster: Forecaster) -> None:
    values = temperatures(T + 2)
    h = heads(max_sensors=3, idle_s=0.0)
    for sid in ("a", "b", "c", "a", "d"):
        serve(h, forecaster, windows_of(values, sid))
    assert list(h.slots) == ["c", "a", "d"]
    assert len(h._arrays["updates"]) <= 3


def test_beyond_the_cap_sensors_seen_lately_keep_their_heads(forecaster: Forecaster) -> None:
    """At scale the first sensors keep learning; the others are served the plain model."""
    values = temperatures(300)
    h = heads(max_sensors=2, idle_s=3600.0)
    for sid in ("a", "b"):
        serve(h, forecaster, windows_of(values, sid))
    late = windows_of(values, "c")
    assert np.array_equal(serve(h, forecaster, late), serve(None, forecaster, late))
    assert list(h.slots) == ["a", "b"]
    h.idle_s = 0.0  # a and b gone quiet
    serve(h, forecaster, late[:1])
    assert list(h.slots) == ["b", "c"]


def test_heads_of_sensors_their_table_lets_go_are_free_again(forecaster: Forecaster) -> None:
    """Kept until another sensor needed the room, they were counted as adapted sensors no
    longer tracked (4 adapted of 2 tracked after a reload lowered input.max_sensors)."""
    values = temperatures(T + 2)
    h = heads(max_sensors=4)
    for sid in "abcd":
        serve(h, forecaster, windows_of(values, sid))
    h.forget([(0, "a"), (7, "c"), (3, "x")])  # (the table's slot, the sensor id)
    assert len(h) == 2 and list(h.slots) == ["b", "d"]
    late = windows_of(values, "e")  # the cap's room is there: a new sensor gets a head
    serve(h, forecaster, late)
    assert list(h.slots) == ["b", "d", "e"]


def restored_alike(tmp_path: Path, f: Forecaster, ws: list[Window], cut: int) -> list[Window]:
    """Serve `ws[:cut]`, save the heads, restore them into new heads: both forecast the rest
    alike. Returns the rest."""
    h = heads()
    serve(h, f, ws[:cut])
    save_heads(tmp_path, h)
    again = heads()
    assert load_heads(tmp_path, again) == 1
    rest = ws[cut:]
    np.testing.assert_array_equal(serve(h, f, rest), serve(again, f, rest))
    return rest


def test_snapshots_keep_the_heads(tmp_path: Path, forecaster: Forecaster) -> None:
    restored_alike(tmp_path, forecaster, windows_of(temperatures(700)), 600)


def test_snapshots_of_another_layout_or_corrupt_are_skipped(
    tmp_path: Path, forecaster: Forecaster, caplog: pytest.LogCaptureFixture
) -> None:
    h = heads()
    serve(h, forecaster, windows_of(temperatures(100)))
    save_heads(tmp_path, h)
    other = layout_for(META.model_copy(update={"horizon": 3}))
    assert other is not None
    assert load_heads(tmp_path, SensorHeads(META, other, max_sensors=10)) == 0
    (tmp_path / "heads.npz").write_bytes(b"not a zip")
    with caplog.at_level(logging.WARNING):
        assert load_heads(tmp_path, heads()) == 0
    assert "unusable" in caplog.text


def test_a_bundle_whose_targets_are_not_features_does_not_adapt() -> None:
    other = META.model_copy(update={"targets": ["co2"], "features": ["value"]})
    assert layout_for(other) is None


def test_a_reload_keeps_heads_of_the_same_layout_and_resets_others(
    forecaster: Forecaster, caplog: pytest.LogCaptureFixture
) -> None:
    old = ServedBundle.load(BUNDLE, adapt=AdaptConfig())
    assert old.heads is not None
    serve(old.heads, forecaster, windows_of(temperatures(100)))
    same = ServedBundle.load(BUNDLE, adapt=AdaptConfig(max_sensors=7)).keeping_scores(old)
    assert same.heads is old.heads and same.heads.max_sensors == 7
    off = ServedBundle.load(BUNDLE, adapt=AdaptConfig(enabled=False)).keeping_scores(old)
    assert off.heads is None
    fresh = ServedBundle.load(BUNDLE, adapt=AdaptConfig())
    assert fresh.heads is not None
    object.__setattr__(fresh.heads, "layout", layout_for(META.model_copy(update={"horizon": 3})))
    with caplog.at_level(logging.INFO):
        kept = fresh.keeping_scores(old)
    assert kept.heads is fresh.heads and not len(fresh.heads)
    assert "adapted heads of 1 sensors are reset" in caplog.text


def test_a_sensor_s_period_is_its_day_week_or_year_beyond_the_window() -> None:
    layout = layout_for(META)
    assert layout is not None and layout.seasonal == H + 1
    cadences = np.array([1800.0, 900.0, 300.0, 3600.0, 86_400.0, 7 * 86_400.0, 60.0, np.nan])
    # half-hourly and quarter-hourly days, a day of 5-minute readings; an hourly day and a
    # daily week are in the window; a weekly year; a day of minutes is beyond the ring
    assert layout.period(cadences).tolist() == [48, 96, 288, 0, 0, 52, 0, 0]
    assert MAX_PERIOD == 288


def test_the_heads_learn_a_day_longer_than_the_window(forecaster: Forecaster) -> None:
    """Half-hourly demand: the readings one day back are in the regressor once the head's
    ring holds a day; the lags alone (the same heads told the sensor is hourly) learn less."""
    values = demand(4032)
    plain = serve(None, forecaster, windows_of(values, cadence=HALF_HOUR))
    late = {}
    for cadence in (HALF_HOUR, 3600.0):
        ws = windows_of(values, cadence=cadence)
        h = heads()
        got = np.concatenate([serve(h, forecaster, ws[i : i + 64]) for i in range(0, len(ws), 64)])
        late[cadence] = mae_by_step(values, got, 2800) / mae_by_step(values, plain, 2800)
        assert h.resets == 0
    assert h._arrays["period"][h.slots["s"]] == 0  # hourly: the day is in the window
    assert h.with_period() == 0
    assert (late[HALF_HOUR] < 0.85 * late[3600.0]).all(), late


def test_the_ring_starts_again_after_a_gap_and_a_new_cadence_starts_the_head(
    forecaster: Forecaster,
) -> None:
    values = demand(300)
    h = heads()
    serve(h, forecaster, windows_of(values[:150], cadence=HALF_HOUR))
    slot = h.slots["s"]
    a = h._arrays
    assert a["period"][slot] == 48 and a["ring_count"][slot] == 150  # every reading
    assert h.with_period() == 1
    # a gap reset moves the reading numbers on: the ring holds only the new window's readings
    serve(h, forecaster, windows_of(values[150:200], seq0=1 << 20, cadence=HALF_HOUR))
    assert a["ring_count"][slot] == 50
    assert a["updates"][slot] > 0
    # the sensor now reports every 5 minutes: its period is another, its head starts again
    serve(h, forecaster, windows_of(values[200:240], seq0=2 << 20, cadence=300.0)[:1])
    assert a["period"][slot] == 288 and a["updates"][slot] == 0


def test_a_wandering_cadence_keeps_a_head_whose_period_stays(forecaster: Forecaster) -> None:
    """A sensor that reports on change: its cadence moves, its period (none, or about the
    same) does not, and its head keeps learning."""
    values = temperatures(400)
    h = heads()
    ws = windows_of(values)
    for i, w in enumerate(ws):  # an hour, then two, then 90 minutes: the day in the window
        cadence = (3600.0, 7200.0, 5400.0)[(i // 50) % 3]
        serve(h, forecaster, [slotted(w.sensor_id, w.values, w.ts, cadence, w.seq)])
    a, slot = h._arrays, h.slots["s"]
    assert a["period"][slot] == 0 and a["updates"][slot] == len(ws) - H
    d = heads()
    for i, w in enumerate(windows_of(demand(400))):  # 30 then 40 minutes: a day of 48, of 36
        cadence = (1800.0, 2400.0)[(i // 50) % 2]
        serve(d, forecaster, [slotted(w.sensor_id, w.values, w.ts, cadence, w.seq)])
    a, slot = d._arrays, d.slots["s"]
    assert a["period"][slot] in (36, 48) and a["updates"][slot] == len(ws) - H


def test_one_batch_or_one_window_at_a_time_is_the_same_with_a_period(
    forecaster: Forecaster,
) -> None:
    ws = windows_of(demand(400), cadence=HALF_HOUR)
    one, many = heads(), heads()
    together = np.concatenate([serve(one, forecaster, ws[i : i + 50]) for i in range(0, 369, 50)])
    apart = np.concatenate([serve(many, forecaster, [w]) for w in ws])
    np.testing.assert_allclose(together, apart, rtol=1e-5, atol=1e-5)


def test_snapshots_keep_the_rings_and_earlier_ones_still_load(
    tmp_path: Path, forecaster: Forecaster
) -> None:
    rest = restored_alike(tmp_path, forecaster, windows_of(demand(400), cadence=HALF_HOUR), 300)
    # a snapshot written before heads had periods: its heads load, and start again at their
    # next window once it shows the sensor has a period (their regressor meant the lags)
    with np.load(tmp_path / "heads.npz") as npz:
        old = {k: npz[k] for k in npz.files if k not in SEASON_STATE}
    np.savez(tmp_path / "heads.npz", **old)
    earlier = heads()
    assert load_heads(tmp_path, earlier) == 1
    assert earlier._arrays["updates"][earlier.slots["s"]] > 0
    serve(earlier, forecaster, rest[:1])
    assert earlier._arrays["period"][earlier.slots["s"]] == 48
    assert earlier._arrays["updates"][earlier.slots["s"]] == 0


def test_snapshots_before_the_own_regression_still_load(
    tmp_path: Path, forecaster: Forecaster
) -> None:
    rest = restored_alike(tmp_path, forecaster, windows_of(temperatures(400)), 300)
    with np.load(tmp_path / "heads.npz") as npz:
        old = {k: npz[k] for k in npz.files if k not in AR_STATE}
    np.savez(tmp_path / "heads.npz", **old)
    earlier = heads()
    assert load_heads(tmp_path, earlier) == 1
    a, slot = earlier._arrays, earlier.slots["s"]
    assert a["updates"][slot] > 0 and a["weights"][slot].any()  # the correction is kept
    np.testing.assert_array_equal(a["ar_cov"][slot], earlier._ar_pack.initial)
    assert not a["choice_err"][slot].any() and not a["ar_weights"][slot].any()
    assert np.isfinite(serve(earlier, forecaster, rest)).all()


def test_a_bundle_of_two_targets_keeps_a_ring_of_each() -> None:
    """Shapes only (no model): two targets, each with its readings one period back."""
    meta = META.model_copy(update={"features": ["a", "b"], "targets": ["a", "b"]})
    layout = layout_for(meta)
    assert layout is not None and layout.seasonal == H + 1 and layout.lags == 25
    h = SensorHeads(meta, layout, max_sensors=4)
    rng = np.random.default_rng(1)
    series = 20 + np.cumsum(rng.normal(0, 0.1, (300, 2)), axis=0)
    for i in range(T - 1, 300):
        raw = series[None, i - T + 1 : i + 1]
        center, scale = raw[:, -1:, :], np.full((1, 1, 2), 0.1)
        x = (raw - center) / scale
        y = np.zeros((1, H, 2))
        w = slotted("s", raw[0], float(i), HALF_HOUR, i)
        out = h.correct([w], x, y, center, scale, raw).y
        assert out.shape == (1, H, 2) and np.isfinite(out).all()
    a, slot = h._arrays, h.slots["s"]
    assert a["period"][slot] == 48 and a["ring_count"][slot] == MAX_PERIOD
    # the ring holds each target's readings: the newest is the series' last
    newest = a["ring"][slot, 299 % MAX_PERIOD] + a["ring_base"][slot]
    np.testing.assert_allclose(newest, series[299], rtol=1e-6)
    day_back = a["ring"][slot, (299 - 48) % MAX_PERIOD] + a["ring_base"][slot]
    np.testing.assert_allclose(day_back, series[299 - 48], rtol=1e-6)
    # an older window than the ring holds (a restore of older buffers): the ring starts again
    raw = series[None, 200 - T + 1 : 201]
    h.correct([slotted("s", raw[0], 200.0, HALF_HOUR, 200)], (raw - raw[:, -1:]) / 0.1,
              np.zeros((1, H, 2)), raw[:, -1:], np.full((1, 1, 2), 0.1), raw)  # fmt: skip
    assert a["ring_count"][slot] == T and a["ring_newest"][slot] == 200


def assert_refused_in_one_line(
    tmp_path: Path,
    forecaster: Forecaster,
    caplog: pytest.LogCaptureFixture,
    name: str,
    damage: Callable[[dict[str, np.ndarray]], None],
) -> None:
    """Snapshot heads that have learned, `damage` the saved arrays: the restore takes none
    and says so in one line naming the array."""
    h = heads()
    serve(h, forecaster, windows_of(demand(100), cadence=HALF_HOUR))
    save_heads(tmp_path, h)
    with np.load(tmp_path / "heads.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    damage(arrays)
    np.savez(tmp_path / "heads.npz", **arrays)
    with caplog.at_level(logging.WARNING):
        assert load_heads(tmp_path, heads()) == 0
    (line,) = [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()]
    assert name in line and "\n" not in line


@pytest.mark.parametrize(
    ("name", "bad"), [("period", 10_000), ("ring_count", -1), ("ring", np.nan)]
)
def test_a_snapshot_with_a_bad_ring_is_refused_in_one_line(
    tmp_path: Path, forecaster: Forecaster, caplog: pytest.LogCaptureFixture, name: str, bad: float
) -> None:
    def fill(arrays: dict[str, np.ndarray]) -> None:
        arrays[name] = np.full_like(arrays[name], bad)

    assert_refused_in_one_line(tmp_path, forecaster, caplog, name, fill)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("updates", -1),
        ("pend_scale", -1.0),
        ("ar_step", -1.0),
        ("pend_step", -1.0),
        ("choice_err", -1.0),
        ("period_cadence", -5.0),
    ],
)
def test_a_snapshot_with_a_negative_count_scale_or_error_is_refused_in_one_line(
    tmp_path: Path, forecaster: Forecaster, caplog: pytest.LogCaptureFixture, name: str, bad: float
) -> None:
    def first(arrays: dict[str, np.ndarray]) -> None:
        arrays[name].flat[0] = bad

    assert_refused_in_one_line(tmp_path, forecaster, caplog, name, first)


def test_only_heads_with_a_period_write_a_ring_and_growing_keeps_theirs(
    tmp_path: Path, forecaster: Forecaster
) -> None:
    """The rings are most of a head that has a period and none of one that has not: the
    pages of a ring nobody writes are never mapped. Growing the heads (256, then 512) and a
    restore keep the rings in use and leave the others unwritten."""
    day = windows_of(demand(360), cadence=HALF_HOUR)
    alone = heads(max_sensors=1000)
    expected = np.concatenate([serve(alone, forecaster, day[i : i + 50]) for i in (0, 50, 100)])
    h = heads(max_sensors=1000)
    got = [serve(h, forecaster, day[:50])]
    hourly = temperatures(T + 3)
    for i in range(300):  # hourly sensors: their day is in the window, no ring
        serve(h, forecaster, windows_of(hourly, sid=f"hourly-{i}")[:1])
    got += [serve(h, forecaster, day[50:100])]
    save_heads(tmp_path, h)
    again = heads(max_sensors=1000)
    assert load_heads(tmp_path, again) == 301
    got += [serve(again, forecaster, day[100:150])]
    np.testing.assert_allclose(np.concatenate(got), expected, rtol=1e-5, atol=1e-5)
    for table in (h, again):
        a, rings = table._arrays, table._arrays["ring"]
        assert len(rings) >= 301 and table.with_period() == 1
        assert rings[table.slots["s"]].any()
        others = [table.slots[f"hourly-{i}"] for i in range(300)]
        assert not rings[others].any() and not a["period"][others].any()


def test_heads_are_restored_a_chunk_of_heads_at_a_time(tmp_path: Path) -> None:
    """The covariances are most of a head (3.1 kB of 6.3): checked and copied about a
    megabyte at a time, never read whole, and the newest heads kept when there are too many."""
    from tests.unit.test_state import restore_overhead

    n, keep = 6000, 5000
    h = heads(max_sensors=n)
    for i in range(n):
        h._slot(f"s{i}", 0.0)
    h._arrays["weights"][:n] = np.arange(n, dtype=np.float32)[:, None, None]
    save_heads(tmp_path, h)
    cov_bytes = h._arrays["cov"][:n].nbytes
    again = heads(max_sensors=keep)
    restored, extra = restore_overhead(lambda: load_heads(tmp_path, again))
    assert restored == keep
    # read whole, the covariances alone held their 18.7 MB beyond what the heads kept; now
    # about a megabyte of them at a time
    assert extra < 0.25 * cov_bytes, f"{extra / 1e6:.2f} MB extra, cov {cov_bytes / 1e6:.2f} MB"
    a, b = h.to_arrays(), again.to_arrays()
    for name in a:
        assert np.array_equal(a[name][n - keep :], b[name]), name


def test_a_sensor_s_level_does_not_change_what_its_head_learns(
    tmp_path: Path, forecaster: Forecaster
) -> None:
    """Each pending window's last reading is kept in float64: a head learns the same from
    temperatures 1e9 above themselves (float32's unit there is 64, more than they move);
    a snapshot of the previous version, which held them in float32, still loads."""
    values = temperatures(800)
    near, far = heads(), heads()
    got = serve(near, forecaster, windows_of(values))
    got_far = serve(far, forecaster, windows_of(values + 1e6))
    assert np.allclose(got_far - 1e6, got, rtol=0, atol=1e-4)
    assert np.allclose(far._arrays["weights"], near._arrays["weights"], rtol=0, atol=1e-4)
    save_heads(tmp_path, near)
    with np.load(tmp_path / "heads.npz") as npz:
        old = {k: npz[k] for k in npz.files}
    old["pend_center"] = old["pend_center"].astype(np.float32)
    np.savez(tmp_path / "heads.npz", **old)
    earlier = heads()
    assert load_heads(tmp_path, earlier) == 1
    assert np.array_equal(earlier._arrays["weights"], near._arrays["weights"])
