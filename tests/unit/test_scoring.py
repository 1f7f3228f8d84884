"""SensorScores: online intervals, the persistence guard and anomalies, per sensor."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sensorcast.buffer import SensorTable, Window
from sensorcast.models.bundle import BundleMeta, default_calibration
from sensorcast.scoring import GUARD_MIN_SCORED, GUARD_WHOLE, PERS_STEPS, SensorScores
from sensorcast.slots import SlotIndex

from .slotted import INDEX, slot_of, slotted
from .test_forecasts import make_meta

T = 4
DATA = Path(__file__).resolve().parents[1] / "data"


def meta(horizon: int = 3, timesteps: int = T) -> BundleMeta:
    return make_meta(horizon=horizon).model_copy(update={"timesteps": timesteps})


Model = Callable[[np.ndarray], np.ndarray]


def replay(
    scores: SensorScores,
    series: np.ndarray,
    model: Model,
    sid: str = "s",
    batch: int = 1,
    timesteps: int = T,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[bool], list[float]]:
    """Serve every full window of `series` through `scores`, `batch` windows per call.

    Returns per window: forecast, lower, upper, source persistence, and the anomaly
    timestamps found."""
    h, t = scores.horizon, timesteps
    windows = [
        slotted(sid, series[i - t + 1 : i + 1, None].astype(float), float(i), 1.0, seq=1000 + i)
        for i in range(t - 1, len(series))
    ]
    out: tuple[list, list, list, list, list] = ([], [], [], [], [])
    for start in range(0, len(windows), batch):
        chunk = windows[start : start + batch]
        fc = np.stack([model(w.values[:, 0]) for w in chunk]).reshape(len(chunk), h, 1)
        scale = np.ones((len(chunk), 1, 1))
        got = scores.score(chunk, fc, scale)
        out[0].extend(got.forecast)
        out[1].extend(got.lower)
        out[2].extend(got.upper)
        out[3].extend(got.persistence.tolist())
        out[4].extend(a.window.ts for a in got.anomalies)
    return out


def scores_for(m: BundleMeta, **kw: object) -> SensorScores:
    args: dict[str, object] = {"level": 0.9, "anomaly_level": 0.99, "max_sensors": 100}
    args.update(kw)
    return SensorScores(m, **args)  # type: ignore[arg-type]


def test_first_forecast_is_the_last_value_with_the_bundle_calibration_interval() -> None:
    """A new sensor is served the last value until the model has won on it; without the
    guard, the model's forecast. Either way the interval is the bundle's calibration."""
    m = meta()
    w = slotted("a", np.full((T, 1), 3.0), 1.0, 1.0, seq=7)
    fc = np.full((1, 3, 1), 10.0)
    q = np.asarray(default_calibration(3, 1).quantile(0.9))
    got = scores_for(m).score([w], fc, np.full((1, 1, 1), 2.0))
    assert got.persistence[0] and got.forecast[0] == pytest.approx(3.0)
    assert got.lower[0] == pytest.approx(3.0 - 2.0 * q)
    assert got.upper[0] == pytest.approx(3.0 + 2.0 * q)
    got = scores_for(m, guard=False).score([w], fc, np.full((1, 1, 1), 2.0))
    assert not got.persistence[0] and got.forecast[0] == pytest.approx(10.0)
    assert got.lower[0] == pytest.approx(10.0 - 2.0 * q)


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_coverage_converges_to_level_per_step(level: float) -> None:
    rng = np.random.default_rng(1)
    n = 6000
    noise_scale = 3.0  # far from the default calibration's one normalised unit
    series = 50 + rng.normal(0, noise_scale, n)
    s = scores_for(meta(), level=level)
    fc, lo, hi, _, _ = replay(s, series, lambda w: np.full(3, 50.0))
    for step in range(3):
        inside = [
            lo[i][step, 0] <= series[i + T + step] <= hi[i][step, 0]
            for i in range(1000, len(fc) - 3)
        ]
        assert abs(np.mean(inside) - level) < 0.03


def test_published_intervals_cover_their_level_where_misses_come_in_runs() -> None:
    """Noise four times as large for 20 readings in every 40: the misses come in runs, and a
    tracker that counted misses against the quantile it had since moved to (grown during
    the run) covered 0.899 at step 2 down to 0.894 at step 6: the later the step, the more
    the quantile had moved. Counted against the published interval, each step covers its
    level within 0.0001."""
    rng = np.random.default_rng(5)
    n, h = 20000, 6
    calm = (np.arange(n) // 20) % 2 == 0
    series = 50 + rng.normal(0, 1, n) * np.where(calm, 1.0, 8.0)
    s = scores_for(meta(horizon=h), guard=False)
    _, lo, hi, _, _ = replay(s, series, lambda w: np.full(h, 50.0))
    for step in range(h):
        inside = [
            lo[i][step, 0] <= series[i + T + step] <= hi[i][step, 0]
            for i in range(2000, len(lo) - h)
        ]
        assert abs(np.mean(inside) - 0.9) < 0.001, (step, np.mean(inside))


def test_guard_serves_persistence_where_the_model_loses_and_returns_when_it_wins() -> None:
    rng = np.random.default_rng(2)
    walk = np.cumsum(rng.normal(0, 1, 800))
    s = scores_for(meta(horizon=1))

    def bad_then_good(w: np.ndarray) -> np.ndarray:
        # far off for the first half; the next value exactly afterwards (an oracle)
        return np.array([w[-1] + 5.0])

    fc, _, _, pers, _ = replay(s, walk[:400], bad_then_good)
    assert pers[-1] and s.on_persistence == 1
    assert fc[-1][0, 0] == walk[399]  # the last value is served
    assert all(pers) and s.switches["model"] == 0  # a model that never won is never served

    truth = {float(v): walk[i + 1] for i, v in enumerate(walk[:-1])}
    oracle = lambda w: np.array([truth.get(float(w[-1]), w[-1])])  # noqa: E731
    seq0 = 1000 + 400
    windows = [
        slotted("s", walk[i - T + 1 : i + 1, None], float(i), 1.0, seq=seq0 + i - 400)
        for i in range(400, 799)
    ]
    served = []
    for w in windows:
        got = s.score([w], oracle(w.values[:, 0]).reshape(1, 1, 1), np.ones((1, 1, 1)))
        served.append(bool(got.persistence[0]))
    assert served[-1] is False and s.switches["model"] >= 1


def test_model_that_beats_persistence_is_served_once_it_has_won_and_never_switched() -> None:
    t = np.arange(2000)
    series = 10 * np.sin(2 * np.pi * t / 24)
    s = scores_for(meta(horizon=1))
    truth = {tuple(np.round(series[i - T + 1 : i + 1], 9)): series[i + 1] for i in range(3, 1999)}
    model = lambda w: np.array([truth.get(tuple(np.round(w, 9)), w[-1])])  # noqa: E731
    _, _, _, pers, _ = replay(s, series, model)
    served = pers.index(False)
    assert all(pers[:GUARD_MIN_SCORED]) and served <= GUARD_MIN_SCORED + 1
    assert not any(pers[served:]) and s.switches == {"persistence": 0, "model": 1}


@pytest.mark.parametrize("adapted", [False, True])
def test_an_adapted_forecast_that_wins_by_less_than_a_tenth_is_served(adapted: bool) -> None:
    """A forecast whose error is always 0.93 of the last value's: a fixed model is held to
    the last value (it must win by 10%), an adapted one is served (by 5%; mixed with the
    last value, see the next test)."""
    rng = np.random.default_rng(4)
    walk = np.cumsum(rng.normal(0, 1, 1200))
    ahead = {float(v): walk[i + 1] for i, v in enumerate(walk[:-1])}
    s = scores_for(meta(horizon=1))
    for i in range(T - 1, len(walk) - 1):
        w = slotted("s", walk[i - T + 1 : i + 1, None], float(i), 1.0, seq=1000 + i)
        fc = w.values[-1] + 0.07 * (ahead[float(w.values[-1, 0])] - w.values[-1])
        got = s.score([w], fc.reshape(1, 1, 1), np.ones((1, 1, 1)), adapted=np.array([adapted]))
    assert bool(got.persistence[0]) is not adapted


@pytest.mark.parametrize(("early", "ratio"), [(0.5, 0.5), (0.8, 0.97), (0.8, 0.985)])
def test_a_forecast_that_wins_by_less_than_guard_whole_is_mixed_with_the_last_value(
    early: float, ratio: float
) -> None:
    """A forecast whose error is `early` of the last value's for 600 readings, then `ratio`
    of it: served whole where it wins clearly (0.5), else, once its margin has shrunk below
    GUARD_WHOLE's, mixed with the last value by it (0.97: 60% of the way from the last value
    to the model, 0.985: 30%), its interval centred on what is served and as wide as the
    same mix of the two intervals."""
    rng = np.random.default_rng(4)
    walk = np.cumsum(rng.normal(0, 1, 1200))
    s = scores_for(meta(horizon=1))
    for i in range(T - 1, len(walk) - 1):
        w = slotted("s", walk[i - T + 1 : i + 1, None], float(i), 1.0, seq=1000 + i)
        now = early if i < 600 else ratio
        fc = (w.values[-1] + (1 - now) * (walk[i + 1] - w.values[-1])).reshape(1, 1, 1)
        got = s.score([w], fc, np.ones((1, 1, 1)), adapted=np.array([True]))
    assert not got.persistence[0]
    at = slot_of("s")
    err_model, err_pers = (s._arrays[k][at, 0].astype(float) for k in ("err_model", "err_pers"))
    assert (err_model / err_pers).max() == pytest.approx(ratio, abs=0.002)  # short and long
    share = min(1.0, (1.0 - (err_model / err_pers).max()) / (1.0 - GUARD_WHOLE))
    assert 0.0 < share <= 1.0
    last = walk[len(walk) - 2]
    assert got.forecast[0, 0, 0] == pytest.approx(last + share * (fc[0, 0, 0] - last), abs=1e-4)
    q_model, q_pers = (float(s._arrays[name][at, 0, 0]) for name in ("q_model", "q_pers"))
    half = (got.upper - got.lower)[0, 0, 0] / 2
    assert half == pytest.approx(share * q_model + (1 - share) * q_pers, rel=1e-4)
    assert (got.upper + got.lower)[0, 0, 0] / 2 == pytest.approx(got.forecast[0, 0, 0])


def test_an_adapted_forecast_s_interval_follows_its_errors_down_faster() -> None:
    """A forecast whose errors halve (as a head learns its sensor): over the next 200
    readings an adapted forecast's interval has come down further, so it covers nearer the
    level; the interval of a fixed model's forecast moves at the usual pace."""
    rng = np.random.default_rng(5)
    walk = np.cumsum(rng.normal(0, 1, 1100))
    error = rng.normal(0, 1, 1100) * np.where(np.arange(1100) < 900, 1.0, 0.5)
    covered = {}
    for adapted in (False, True):
        s = scores_for(meta(horizon=1), guard=False)
        inside = []
        for i in range(T - 1, len(walk) - 1):
            w = slotted("s", walk[i - T + 1 : i + 1, None], float(i), 1.0, seq=1000 + i)
            fc = np.full((1, 1, 1), walk[i + 1] + error[i + 1])
            got = s.score([w], fc, np.ones((1, 1, 1)), adapted=np.array([adapted]))
            if i >= 900:
                inside.append(bool(got.lower[0, 0, 0] <= walk[i + 1] <= got.upper[0, 0, 0]))
        covered[adapted] = float(np.mean(inside))
    assert covered[True] < covered[False] - 0.02, covered


def test_spikes_are_anomalies_and_clean_readings_rarely() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    series = 20 + rng.normal(0, 1, n)
    spikes = np.arange(500, n, 97)
    series[spikes] += 8.0 * np.sqrt(2)  # 8x the first-difference std
    s = scores_for(meta(horizon=1, timesteps=20))
    *_, found = replay(s, series, lambda w: np.array([20.0]), timesteps=20)
    found_set = {int(ts) for ts in found}
    caught = np.mean([int(i) in found_set for i in spikes])
    clean = [i for i in range(500, n) if i not in set(spikes.tolist())]
    false = np.mean([i in found_set for i in clean])
    assert caught >= 0.9
    assert false <= 0.02


def test_windows_of_one_sensor_in_one_batch_score_as_if_one_at_a_time() -> None:
    rng = np.random.default_rng(4)
    series = np.cumsum(rng.normal(0, 1, 300))
    model: Model = lambda w: np.full(3, w.mean())  # noqa: E731
    one = replay(scores_for(meta()), series, model, batch=1)
    many = replay(scores_for(meta()), series, model, batch=7)
    for a, b in zip(one[1], many[1], strict=True):
        assert a == pytest.approx(b)
    assert one[3] == many[3]


def test_a_slot_its_table_gives_to_another_sensor_starts_again() -> None:
    """The scores keep each sensor in its table's slot: when the table gives the slot of a
    sensor it evicted to a new one, the new sensor starts from the bundle's calibration, on
    the last value, and its snapshot holds the new sensor only."""
    table = SensorTable(T, 1, max_sensors=1)
    s = scores_for(meta(), max_sensors=1)
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.normal(0, 1, 200))
    got = None
    for i, v in enumerate(walk):  # "a" learns: the model (the exact next value) wins
        w = table.push("a", float(i), (float(v),))
        if isinstance(w, Window):
            fc = np.full((1, 3, 1), walk[min(i + 1, len(walk) - 1)])
            got = s.score([w], fc, np.ones((1, 1, 1)))
    assert got is not None and not got.persistence[0]
    for i in range(T):
        w = table.push("b", float(i), (5.0,))  # evicts "a": "b" takes its slot
    assert isinstance(w, Window) and w.slot == 0
    fresh = s.score([w], np.full((1, 3, 1), 9.0), np.ones((1, 1, 1)))
    assert fresh.persistence[0]  # a new sensor starts on the last value
    first = scores_for(meta()).score(
        [slotted("z", w.values, 1.0, 1.0, seq=1)], np.full((1, 3, 1), 9.0), np.ones((1, 1, 1))
    )
    assert np.array_equal(fresh.lower, first.lower)  # the bundle's calibration
    assert s.to_arrays(table.slots.in_order())["sensor_ids"].tolist() == ["b"]
    assert s.on_persistence == 1


def test_snapshot_round_trip_keeps_each_sensors_state() -> None:
    rng = np.random.default_rng(5)
    series = 50 + rng.normal(0, 4, 500)
    s = scores_for(meta())
    replay(s, series, lambda w: np.full(3, 50.0))
    arrays = s.to_arrays(INDEX.in_order())
    restored = scores_for(meta())
    assert restored.load_arrays(arrays, INDEX) == 1
    w = slotted("s", series[-T:, None], 1e6, 1.0, seq=5_000_000)
    a = s.score([w], np.full((1, 3, 1), 50.0), np.ones((1, 1, 1)))
    b = restored.score([w], np.full((1, 3, 1), 50.0), np.ones((1, 1, 1)))
    assert a.upper == pytest.approx(b.upper)


def test_a_restored_sensor_s_pending_steps_take_its_saved_quantiles_as_published() -> None:
    """Snapshots keep their layout (no published quantiles in them); after a restore each
    step still to be realised is scored against the interval quantile of its step."""
    rng = np.random.default_rng(6)
    s = scores_for(meta())
    replay(s, 50 + rng.normal(0, 4, 300), lambda w: np.full(3, 50.0))
    arrays = s.to_arrays(INDEX.in_order())
    assert not any(name.startswith("pend_q_") for name in arrays)
    restored = scores_for(meta())
    restored.load_arrays(arrays, INDEX)
    slot = INDEX["s"]
    for name in ("q_model", "q_pers"):
        q = restored._arrays[name][slot, :, 0]
        published = restored._arrays["pend_" + name][slot, :, 0]
        by_step = np.repeat(q, [1, 2, 3]).astype(np.float16)  # cells of steps 1, 2, 3
        assert np.array_equal(published, by_step)


def test_a_corrupt_snapshot_is_refused() -> None:
    s = scores_for(meta())
    replay(s, np.arange(20.0), lambda w: np.full(3, w[-1]))
    arrays = s.to_arrays(INDEX.in_order())
    arrays["q_model"] = arrays["q_model"] * np.nan
    with pytest.raises(ValueError, match="not finite"):
        scores_for(meta()).load_arrays(arrays, INDEX)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("n_scored", -5),
        ("err_model", -1.0),
        ("err_pers", -1.0),
        ("pend_scale", -1.0),
        ("pend_rscale", np.nan),
        ("acc_scale", np.inf),
        ("pend_anchor", np.inf),
        ("pend_last", np.nan),
        ("pend_f", np.inf),
    ],
)
def test_a_snapshot_with_what_no_scoring_makes_is_refused_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, bad: float
) -> None:
    """n_scored = -5 restored, and every forecast of the sensor was dropped as not finite
    (its warm-up rate took the root of a negative count); other arrays the same."""
    from sensorcast.state import SCORES_FILE, load_scores, save_scores

    m = meta()
    s = scores_for(m)
    replay(s, 50 + np.random.default_rng(7).normal(0, 4, 100), lambda w: np.full(3, 50.0))
    save_scores(tmp_path, s, m, INDEX.in_order())
    with np.load(tmp_path / SCORES_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[name].flat[0] = bad
    np.savez(tmp_path / SCORES_FILE, **arrays)  # type: ignore[arg-type]
    assert load_scores(tmp_path, scores_for(m), m, INDEX) == 0
    (line,) = [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()]
    assert name in line


def test_a_jump_both_miss_does_not_hide_a_model_that_then_loses() -> None:
    """A ramp the model follows exactly; a step of 50 (a pump starting) that both it and
    persistence miss; then, while the step is in its window, a model 1 off where the last
    value is 0.1-0.3 off. Each window's scale is its RMS step, as `last` has it, so the
    windows holding the step have a scale ~90 times the others'. In those units the model's
    loss hardly registers; the guard compares errors in sensor units and switches."""
    t, h = 32, 3
    ramp = 0.1 * np.arange(400.0)
    ramp[200:] += 50.0
    s = scores_for(meta(horizon=h, timesteps=t))
    pers = []
    for i in range(t - 1, len(ramp)):
        w = ramp[i - t + 1 : i + 1]
        stepped_in = np.ptp(w) > 40  # the step is in the window
        f = w[-1] - (1.0 if stepped_in else -0.1 * np.arange(1, h + 1)) + np.zeros(h)
        scale = np.sqrt(np.mean(np.diff(w) ** 2)).reshape(1, 1, 1)
        window = slotted("s", w[:, None], float(i), 1.0, seq=1000 + i)
        pers.append(bool(s.score([window], f.reshape(1, h, 1), scale).persistence[0]))
    stepped = pers[200 - t + 1 + 5 : 200]  # windows holding the step, after a few readings
    assert not any(pers[2 * GUARD_MIN_SCORED : 200 - t + 1])  # the model won, and is served
    assert sum(stepped) >= 0.6 * len(stepped)


def test_unscorable_targets_get_the_bundle_interval_and_no_guard() -> None:
    data = make_meta(horizon=1).model_dump()
    data.update(features=["temperature"], targets=["co2"])
    data["normalisation"] = {
        "mode": "global", "mean": [20.0], "std": [2.0], "target_mean": [400.0], "target_std": [9.0]
    }  # fmt: skip
    s = scores_for(BundleMeta.model_validate(data))
    assert not s.scored
    w = slotted("a", np.zeros((T, 1)), 1.0, 1.0, seq=3)
    got = s.score([w], np.full((1, 1, 1), 400.0), np.full((1, 1, 1), 10.0))
    assert got.upper[0, 0, 0] == pytest.approx(400.0 + 10.0 * 1.645)
    assert not got.persistence[0]


def test_each_sensor_of_a_mixed_fleet_gets_its_own_coverage() -> None:
    """The shipped model on the demo's twelve kinds of sensor, faults included, through LiteRT:
    every sensor's one-step coverage ends near the level, whatever its units and noise."""
    from sensorcast.buffer import SensorTable
    from sensorcast.demo.fleet import make_fleet
    from sensorcast.models import DEFAULT_BUNDLE
    from sensorcast.models.bundle import load_bundle
    from sensorcast.models.runtime import Forecaster

    bundle = load_bundle(DEFAULT_BUNDLE)
    m = bundle.meta
    forecaster = Forecaster(bundle)
    fleet = make_fleet(24)
    table = SensorTable(m.timesteps, 1)
    scores = scores_for(m, max_sensors=100)
    h = m.horizon
    pending: dict[tuple[str, int], tuple[float, float]] = {}
    inside: dict[str, list[bool]] = {x.sensor_id: [] for x in fleet}
    for k in range(1500):
        ts = 1.7e9 + k
        windows = []
        for x in fleet:
            v = x.sample(ts, 1.0)
            band = pending.pop((x.sensor_id, k), None)
            if band is not None and k > 300:
                inside[x.sensor_id].append(band[0] <= v <= band[1])
            w = table.push(x.sensor_id, ts, (v,))
            if isinstance(w, Window):
                windows.append(w)
        if windows:
            fc, sc = forecaster.forecast_scaled(np.stack([w.values for w in windows]))
            got = scores.score(windows, fc, sc)
            for i, w in enumerate(windows):  # the last step: the hardest to calibrate
                pending[(w.sensor_id, k + h)] = (got.lower[i, -1, 0], got.upper[i, -1, 0])
    coverage = np.array([np.mean(v) for v in inside.values()])
    assert np.mean(np.abs(coverage - 0.9) <= 0.05) >= 0.9, coverage


def test_guard_is_per_step() -> None:
    """A model exact one and two steps ahead and 5 off three steps ahead: the third step is
    served the last value, the first two the model's forecast (`source` stays `model`)."""
    rng = np.random.default_rng(6)
    walk = np.cumsum(rng.normal(0, 1, 600))
    truth = {float(v): walk[i + 1 : i + 4] for i, v in enumerate(walk[:-3])}
    s = scores_for(meta(horizon=3))

    def good_then_bad(w: np.ndarray) -> np.ndarray:
        ahead = truth.get(float(w[-1]), np.full(3, w[-1]))
        return np.array([ahead[0], ahead[1], ahead[2] + 5.0])

    fc, _, _, pers, _ = replay(s, walk[:590], good_then_bad)
    last = walk[589]
    assert fc[-1][0, 0] == pytest.approx(walk[590]) and fc[-1][1, 0] == pytest.approx(walk[591])
    assert fc[-1][2, 0] == pytest.approx(last)  # the last value, at that step only
    assert not pers[-1] and s.on_persistence == 0
    # the first two steps switched to the model once, the third never: no flapping
    assert s.switches == {"persistence": 0, "model": 2}


def test_a_model_that_has_just_lost_must_win_again_for_a_while() -> None:
    """Good for 300 readings, then 5 off for 100, then good again: served the last value soon
    after it starts to lose, and the model again only after winning for a while (not at its
    first good forecast, as its record from before it lost would have it)."""
    rng = np.random.default_rng(8)
    walk = np.cumsum(rng.normal(0, 1, 700))
    truth = {float(v): walk[i + 1] for i, v in enumerate(walk[:-1])}
    s = scores_for(meta(horizon=1))

    def model(w: np.ndarray) -> np.ndarray:
        i = int(np.flatnonzero(walk == w[-1])[0])
        return np.array([truth[float(w[-1])] + (5.0 if 300 <= i < 400 else 0.0)])

    _, _, _, pers, _ = replay(s, walk[:-1], model)
    at = lambda i: pers[i - T + 1]  # noqa: E731  (the window ending at reading i)
    assert not at(299) and all(at(i) for i in range(310, 400))
    assert at(402) and not at(690)


def test_anomaly_in_the_window_does_not_make_the_next_readings_anomalies() -> None:
    """A model that averages its last four readings reacts to a spike for as long as they
    hold it; the readings after it are checked against the last value instead (without
    that, 4% of them were flagged here)."""
    rng = np.random.default_rng(9)
    t, n = 20, 4000
    series = 20 + rng.normal(0, 1, n)
    spikes = np.arange(400, n, 151)
    series[spikes] += 30.0
    s = scores_for(meta(horizon=1, timesteps=t))
    *_, found = replay(s, series, lambda w: np.array([w[-4:].mean()]), timesteps=t)
    found_set = {int(ts) for ts in found}
    assert np.mean([int(i) in found_set for i in spikes]) >= 0.9
    following = [i + k for i in spikes for k in range(2, t + 1)]
    assert np.mean([i in found_set for i in following]) <= 0.01


@pytest.mark.parametrize("horizon", [1, 3])
def test_a_level_shift_is_one_anomaly_and_a_spike_still_is_one(horizon: int) -> None:
    """A light switched on: the reading after the jump stays at the new level, far from
    what was forecast before the jump; it is the same event, reported once. A spike, after
    which the readings come back, is reported once too, as are two shifts in a row."""
    rng = np.random.default_rng(11)
    t, n = 20, 1600
    series = 20 + rng.normal(0, 1, n)
    shifts = np.arange(300, n, 200)
    for i in shifts:
        series[i:] += 25.0  # each shift holds: the level climbs by 25 each time
    spikes = shifts[:-1] + 100
    series[spikes] += 30.0
    s = scores_for(meta(horizon=horizon, timesteps=t))
    *_, found = replay(s, series, lambda w: np.full(horizon, w[-4:].mean()), timesteps=t)
    found_set = {int(ts) for ts in found}
    assert all(int(i) in found_set for i in shifts)
    assert all(int(i) in found_set for i in spikes)
    extra = found_set - {int(i) for i in shifts} - {int(i) for i in spikes}
    assert not extra & {int(i) + 1 for i in shifts}, "the reading after a shift was reported"


@pytest.mark.parametrize("horizon", [2, 3])
def test_a_ramp_is_one_anomaly(horizon: int) -> None:
    """A sensor that climbs fast for a few readings, then holds (an irradiance sensor at
    sunrise, a pump ramping up): each reading of the climb is beyond what was forecast
    before it began, on the side the climb goes. It is one event, reported at its first
    reading; each reading of the climb was reported (a third of an irradiance sensor's
    clean readings flagged were those)."""
    rng = np.random.default_rng(12)
    t, n = 20, 1600
    series = 20 + rng.normal(0, 1, n)
    starts = np.arange(300, n - 10, 200)
    for i in starts:
        series[i : i + 5] += 15.0 * np.arange(1, 6)
        series[i + 5 :] += 75.0
    s = scores_for(meta(horizon=horizon, timesteps=t))
    *_, found = replay(s, series, lambda w: np.full(horizon, w[-4:].mean()), timesteps=t)
    found_set = {int(ts) for ts in found}
    assert all(int(i) in found_set for i in starts)
    assert not found_set & {int(i) + k for i in starts for k in range(1, 8)}


def test_the_first_move_off_a_flat_stretch_is_no_outlier_by_millions() -> None:
    """A sensor flat for hours every night (an inverter, a light, a pump at rest): the median
    step of a window half flat or wholly flat is zero, and with it the anomaly scale, so the
    first reading of every morning was an anomaly with a score in the millions. The sensor's
    typical move floors the scale: a morning is judged by how this sensor moves, and spikes
    of eight times its typical step at noon are caught as before."""
    rng = np.random.default_rng(3)
    t, day, night = 16, 96, 40
    days = 12
    sun = np.sin(np.linspace(0, np.pi, day - night + 2)[1:-1])
    series = np.concatenate([
        np.concatenate([np.zeros(night), 100 * sun + rng.normal(0, 2, sun.size)]).clip(0)
        for _ in range(days)
    ])  # fmt: skip
    steps = np.abs(np.diff(series[series > 0]))
    spikes = [day * d + night + 28 for d in range(4, days)]  # at noon
    series[spikes] += 8 * steps.std()
    s = scores_for(meta(horizon=3, timesteps=t))
    found: dict[int, float] = {}
    for i in range(t - 1, len(series)):
        w = slotted("pv", series[i - t + 1 : i + 1, None].astype(float), float(i), 1.0, seq=i)
        scale = max(float(np.std(np.diff(w.values[:, 0]))), 1e-6)  # as a flat window's is
        forecast = np.full((1, 3, 1), w.values[-1, 0])
        got = s.score([w], forecast, np.full((1, 1, 1), scale))
        found.update({int(a.window.ts): a.score for a in got.anomalies})
    mornings = [day * d + night for d in range(4, days)]  # the first reading off zero
    assert max(found.get(m, 0.0) for m in mornings) < 10  # 1e6 and more
    assert set(spikes) <= set(found)


def test_readings_while_a_window_refills_after_a_gap_are_checked() -> None:
    """A gap resets the window: for `timesteps - 1` readings no forecast is made. Those
    readings are still checked (against the reading before each), a spike among them is an
    anomaly, and the clean ones are not."""
    from sensorcast.buffer import SensorTable

    rng = np.random.default_rng(10)
    t = 16
    table = SensorTable(t, 1)
    s = scores_for(meta(horizon=2, timesteps=t))
    series = 50 + np.cumsum(rng.normal(0, 1, 400))
    ts = np.arange(400.0)
    ts[300:] += 100.0  # a gap of 100 cadences before reading 300
    series[305] += 40.0
    found, probes = [], 0
    for i in range(400):
        w = table.push("s", float(ts[i]), (float(series[i]),))
        if w is None:
            w = table.refilling("s")
            probes += w is not None
            found += [int(a.window.ts) for a in s.check_refills([w] if w else [])]
        elif isinstance(w, Window):
            fc = np.full((1, 2, 1), w.values[-1, 0])
            found += [int(a.window.ts) for a in s.score([w], fc, np.ones((1, 1, 1))).anomalies]
    assert probes == t - 1  # the readings after the gap until the window is full again
    assert int(ts[305]) in found
    assert sum(int(ts[300]) < f < int(ts[300 + t]) for f in found) == 1  # only the spike
    assert table.refilling("s") is None  # full again
    other = SensorTable(t, 1)
    for i in range(3):
        other.push("new", float(i), (1.0,))
    assert other.refilling("new") is None  # a new sensor's first readings are not a refill
    unknown = slotted("unknown", np.ones((t, 1)), 1.0, 1.0, 5, refill=3)
    assert s.check_refills([unknown]) == []
    assert s.to_arrays(([unknown.sensor_id], np.array([unknown.slot])))["sensor_ids"].size == 0


def test_scores_saved_before_the_guard_was_per_step_are_restored(tmp_path: Path) -> None:
    """A scores.npz written by sensorcast 0978568 (tests/data/README.md): nothing it held is
    lost. Intervals, pending forecasts and counts come back as they were; each step of a
    sensor starts from the sensor's guard state (its errors then were sums over the steps:
    each step gets their mean, so the same model/persistence ratio; and its choice). The
    sensor the guard served the last value is served it at every step from the first
    forecast after the restart, without a switch, and the one it served the model keeps it;
    started afresh, both would be served the last value for their first GUARD_MIN_SCORED
    readings, the good model too."""
    from sensorcast.state import SCORES_FILE, load_scores

    shutil.copy(DATA / "scores_0978568.npz", tmp_path / SCORES_FILE)
    m = meta(horizon=3)
    s = scores_for(m)
    table = SlotIndex()  # the sensors' table, restored first
    for sid in ("good", "bad", "new"):
        table.add(sid, slot_of(sid))
    assert load_scores(tmp_path, s, m, table) == 3
    with np.load(DATA / "scores_0978568.npz") as npz:
        old = {k: npz[k] for k in npz.files}
    got = s.to_arrays(table.in_order())
    assert got["sensor_ids"].tolist() == ["good", "bad", "new"]
    for name in ("pend_seq", "pend_scale", "pend_rscale", "q_model",
                 "q_pers", "qa_model", "qa_pers", "n_scored", "flagged_seq"):  # fmt: skip
        assert np.array_equal(got[name], old[name]), name
    # each window's last reading: the newest one whole (the anchor), the others as offsets
    last = got["pend_anchor"][:, None, :] + got["pend_last"]
    assert np.allclose(last, old["pend_last"], rtol=0, atol=1e-5)
    newest_place = old["pend_seq"].argmax(axis=1)
    assert np.array_equal(got["pend_anchor"], old["pend_last"][np.arange(3), newest_place])
    # of each pending forecast, the steps still to be realised (those read from now on): the
    # realised ones are not kept; each as its offset from its window's last reading
    newest = old["pend_seq"].max(axis=1)[:, None, None]
    ahead = old["pend_seq"][:, :, None] + np.arange(1, 4) > newest  # (sensor, forecast, step)
    assert ahead.any() and not ahead.all()
    whole = got["pend_f"] + last[:, :, None, :]
    assert np.allclose(whole[ahead], old["pend_f"][ahead], rtol=0, atol=1e-5)
    assert not got["pend_f"][~ahead].any()
    assert got["use_pers"].tolist() == [[False] * 3, [True] * 3, [False] * 3]
    assert s.on_persistence == 1
    assert old["err_model"][1] > 3 * old["err_pers"][1]  # bad: the model lost, by far
    for name in ("err_model", "err_pers"):
        assert got[name].shape == (3, 3, 2)
        assert np.allclose(got[name], old[name][:, None, None] / 3)
    read_back = ahead & (np.arange(3) < PERS_STEPS)  # the source of the first two steps
    pers = np.repeat(old["pend_pers"][:, :, None], 3, axis=2)
    assert np.array_equal(got["pend_pers"], pers & read_back)

    walk = 20 + np.cumsum(np.random.default_rng(12).normal(0, 1, 306))  # 304 as it was, and 2
    afresh = scores_for(m)
    for i in range(300, 303):  # the readings after those the snapshot holds
        values = walk[i - T + 1 : i + 1, None]
        windows = [slotted(sid, values, float(i), 1.0, seq=1000 + i) for sid in ("good", "bad")]
        fc = np.stack([walk[i + 1 : i + 4] + 0.1, np.full(3, walk[i] + 5.0)])[:, :, None]
        one = np.ones((2, 1, 1))
        served = s.score(windows, fc, one)
        assert np.allclose(served.forecast[0], fc[0])  # good: the model, at every step
        assert np.allclose(served.forecast[1], walk[i]) and served.persistence[1]  # bad
        assert np.allclose(afresh.score(windows, fc, one).forecast[:, :, 0], walk[i])
    assert s.take_switches() == {"persistence": 0, "model": 0}


@pytest.mark.parametrize("level", [12_345_678.0, 1e9])
def test_a_sensors_level_does_not_change_its_scores(level: float) -> None:
    """Pending forecasts and last readings are kept as offsets (float32) from a float64
    anchor: a sensor far from zero (an energy meter, float32's unit at 12,345,678 is 1, at
    1e9 64) is scored, guarded and flagged as the same sensor near zero."""
    rng = np.random.default_rng(5)
    i = np.arange(600)
    series = 10.0 * np.sin(2 * np.pi * i / 40) + rng.normal(0, 1.0, len(i))
    series[450] += 40.0  # one spike

    def model(w: np.ndarray) -> np.ndarray:  # a fair model: the sine's next steps, roughly
        return w[-1] + 0.9 * (w[-1] - w[-2]) * np.arange(1, 4)

    near, far = scores_for(meta()), scores_for(meta())
    got_near = replay(near, series, model)
    got_far = replay(far, series + level, model)
    assert got_near[3] == got_far[3]  # the guard's choices
    assert got_near[4] == got_far[4] and got_near[4]  # the anomalies, the spike among them
    for a, b in zip(got_near[0], got_far[0], strict=True):
        assert np.allclose(b - level, a, rtol=0, atol=1e-6 * max(level, 1.0))
    widths = np.subtract(got_near[2], got_near[1])  # the intervals
    assert np.allclose(np.subtract(got_far[2], got_far[1]), widths, rtol=1e-4)
    arrays_near, arrays_far = near.to_arrays(INDEX.in_order()), far.to_arrays(INDEX.in_order())
    for name in ("q_model", "q_pers", "err_model", "err_pers", "use_pers", "n_scored"):
        assert np.allclose(arrays_far[name], arrays_near[name], rtol=1e-4), name


@pytest.mark.parametrize("adapt", [True, False])
@pytest.mark.parametrize("kind", ["uniform", "alternating"])
def test_readings_at_float32_s_limit_are_forecast_without_overflow(adapt: bool, kind: str) -> None:
    """Readings anywhere in float32's range are taken in (SPEC section 4), so a sensor may jump
    from -3e38 to 3e38: every full window is still forecast, with a finite interval, and no
    float32 array overflows on the way (each overflow raises here)."""
    from sensorcast.buffer import SensorTable
    from sensorcast.config import AdaptConfig
    from sensorcast.inference import ServedBundle
    from sensorcast.models import DEFAULT_BUNDLE
    from sensorcast.models.bundle import load_bundle

    bundle = load_bundle(DEFAULT_BUNDLE)
    m = bundle.meta
    served = ServedBundle.load(bundle, adapt=AdaptConfig(enabled=adapt))
    table = SensorTable(m.timesteps, 1)
    rng = np.random.default_rng(7)
    n = m.timesteps + 3 * m.horizon + 40
    if kind == "uniform":
        values = rng.uniform(-3e38, 3e38, n)
    else:
        values = np.where(np.arange(n) % 2 == 0, -3e38, 3e38)
    forecasts = 0
    with np.errstate(all="raise"):
        for i, v in enumerate(values.tolist()):
            w = table.push("big", 1.7e9 + 5.0 * i, (v,))
            if not isinstance(w, Window):
                continue
            raw = np.stack([w.values])
            run = served.forecaster.run(raw)
            y, adapted = run.y, None
            if served.heads is not None:
                got = served.heads.correct([w], run.x, y, run.center, run.scale, raw)
                y, adapted = got.y, got.adapted
            forecast = served.forecaster.inverse(y, run)
            scored = served.scores.score([w], forecast, run.scale, raw, None, adapted)
            payloads = list(
                served.encoder.encode_each(
                    [w], scored.forecast, scored.lower, scored.upper, scored.persistence
                )
            )
            assert payloads[0] is not None, i
            forecasts += 1
    assert forecasts == n - m.timesteps + 1


def test_sensors_their_table_lets_go_are_forgotten() -> None:
    """A sensor the table evicts (at its cap, or idle) is forgotten by the scores too: the
    count of sensors on the last value counts tracked sensors only (it counted 6 of 3
    tracked after a reload lowered input.max_sensors from 32 to 3)."""
    table = SensorTable(T, 1, max_sensors=32)
    s = scores_for(meta(), max_sensors=32)
    for i in range(T):
        for k in range(8):
            w = table.push(f"s{k}", float(i), (1.0,))
            if isinstance(w, Window):
                s.score([w], np.ones((1, 3, 1)), np.ones((1, 1, 1)))
    assert len(s) == 8 and s.on_persistence == 8  # new sensors start on the last value
    assert table.limit(3) == 5
    s.forget(table.take_freed())
    assert len(s) == 3 and s.on_persistence == 3
    assert s.to_arrays(table.slots.in_order())["sensor_ids"].tolist() == ["s5", "s6", "s7"]


def test_a_spike_the_check_lets_through_is_reported_when_the_sensor_comes_straight_back() -> None:
    """A reading inside the anomaly interval (a spike where the sensor moves a lot) but whose
    sensor came straight back to where it was is reported one reading late, with its own
    timestamp and value, against the reading before it and REVERSAL of the interval; a step
    that stays (a level shift) and the reading after a spike are not."""
    from sensorcast.scoring import REVERSAL, _robust_scale

    t = 8
    m = meta(horizon=3, timesteps=t)
    rng = np.random.default_rng(11)
    walk = 20 + np.cumsum(rng.normal(0, 1, 500))

    def run(tail: list[float]) -> tuple[SensorScores, list, float]:
        table, s = SensorTable(t, 1), scores_for(m)
        events = []
        for i, v in enumerate([*walk, *tail]):
            w = table.push("s", 1000.0 + 60 * i, (float(v),))
            if isinstance(w, Window):
                fc = np.full((1, 3, 1), w.values[-1, 0])  # the last value: persistence
                scale = np.ones((1, 1, 1))
                events += [(i, a) for a in s.score([w], fc, scale).anomalies]
                if i == len(walk) - 1:
                    rsc = _robust_scale(w.values[None], scale[:, 0, :])[0, 0]
                    half = float(s._arrays["qa_pers"][w.slot][0] * s._tail[0] * rsc)
        return s, events, half

    last = float(walk[-1])
    _, before, half = run([])
    assert not [i for i, _ in before if i >= len(walk) - t]  # nothing flagged lately
    spike = last + 0.8 * half  # inside the interval: the check lets it through
    _, events, _ = run([spike, last, last + 0.1])
    late = [(i, a) for i, a in events if i >= len(walk)]
    assert len(late) == 1
    i, a = late[0]
    assert i == len(walk) + 1  # found when the sensor came back ...
    assert a.window.ts == 1000.0 + 60 * len(walk)  # ... reported with the spike's own time
    assert a.value[0] == pytest.approx(spike) and a.expected[0] == pytest.approx(last)
    # (the interval's calibration has taken in the spike since: a few percent wider)
    assert a.upper[0] - a.expected[0] == pytest.approx(REVERSAL * half, rel=0.1)
    assert a.score > 1.0 and a.value[0] > a.upper[0]
    _, stays, _ = run([spike, spike, spike + 0.1])  # a level shift: not a spike
    assert not [e for e in stays if e[0] >= len(walk)]
