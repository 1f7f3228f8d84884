"""The shipped default bundle: valid, the documented shape, and sensible on real data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sensorcast.buffer import SensorTable, Window
from sensorcast.models import DATA_DIR, DEFAULT_BUNDLE, dataset, scorecard
from sensorcast.models.bundle import SCHEMA_VERSION, Bundle, load_bundle
from sensorcast.models.default_model import HORIZON, REAL_SERIES, TIMESTEPS
from sensorcast.models.runtime import Forecaster
from sensorcast.scoring import SensorScores


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return load_bundle(DEFAULT_BUNDLE)


@pytest.fixture(scope="module")
def co2_windows() -> np.ndarray:
    """Every gap-free window of the Mauna Loa series, (n, TIMESTEPS, 1)."""
    (s,) = dataset.load_series(dataset.read_csv(DATA_DIR / "co2_maunaloa_weekly.csv"), ["co2"])
    runs = dataset.segment_runs(s.times, ~np.isnan(s.values[:, 0]), 1.5 * 7 * 86_400)
    t = TIMESTEPS
    windows = [s.values[r.start + i : r.start + i + t] for r in runs for i in range(len(r) - t + 1)]
    return np.stack(windows)


def test_default_bundle_has_the_documented_shape(bundle: Bundle) -> None:
    meta = bundle.meta
    assert (meta.name, meta.timesteps, meta.horizon) == ("default", TIMESTEPS, HORIZON)
    assert meta.features == ["value"] and meta.targets == ["value"]
    assert meta.normalisation.mode == "last" and meta.normalisation.scale is None  # scale-free
    assert meta.normalisation.step_scale == "trimmed"  # a jump does not set the scale
    assert meta.schema_version == SCHEMA_VERSION and meta.calibration is not None
    assert meta.calibration.n > 1000 and meta.calibration.shape == (HORIZON, 1)
    assert (meta.architecture.kind, meta.architecture.layers, meta.architecture.units) == (
        "many_to_one", 1, 50,
    )  # fmt: skip
    assert {p.name for p in DEFAULT_BUNDLE.iterdir()} == {
        "bundle.json",
        "model.keras",
        "model.tflite",
    }
    for series in REAL_SERIES:
        scores = meta.metrics["sensors"][series]["value"]
        assert scores["model"]["mae"] > 0 and scores["persistence"]["mae"] > 0


def test_forecasts_on_real_co2_stay_near_the_window(
    bundle: Bundle, co2_windows: np.ndarray
) -> None:
    forecast = Forecaster(bundle).forecast(co2_windows)[:, :, 0]
    assert np.isfinite(forecast).all()
    last = co2_windows[:, -1:, 0]
    spread = np.ptp(co2_windows[:, :, 0], axis=1, keepdims=True)
    assert (np.abs(forecast - last) <= spread).all()
    assert np.abs(forecast[:, 0] - last[:, 0]).mean() < 1.0  # ppm; the weekly step is about 0.4


def test_one_model_serves_any_magnitude(bundle: Bundle, co2_windows: np.ndarray) -> None:
    forecaster = Forecaster(bundle)
    windows = co2_windows[:64]
    base = forecaster.forecast(windows)
    scaled = forecaster.forecast(windows * 1e-3 - 5.0)
    assert np.allclose(scaled, base * 1e-3 - 5.0, rtol=0, atol=1e-5)
    flat = forecaster.forecast(np.full((3, TIMESTEPS, 1), 21.5))
    assert np.allclose(flat, 21.5, rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def scores(bundle: Bundle) -> list[scorecard.Score]:
    return scorecard.scorecard(bundle)


BEATS_PERSISTENCE = ("co2_maunaloa", "sf_temp", "water_flow", "electricity_demand",
                     "seattle_temp")  # fmt: skip
"""Series whose test tail the default model forecasts better than persistence at every step;
the README lists where it does not (the room tails, Brent, El Nino's first steps)."""


def test_default_model_beats_persistence_where_the_readme_says(
    scores: list[scorecard.Score],
) -> None:
    """Through LiteRT, at every step of the test tails (held-out series included)."""
    by_name = {s.name: s for s in scores}
    assert len(scores) == 12
    for name in BEATS_PERSISTENCE:
        ratio = by_name[name].ratio
        assert (ratio < 1.0).all(), f"{name}: model / persistence {np.round(ratio, 3)}"
    for s in scores:  # where it loses, it loses by little and never blows up
        assert (s.ratio < 1.4).all(), f"{s.name}: model / persistence {np.round(s.ratio, 3)}"


def test_default_model_is_persistence_on_random_walks(scores: list[scorecard.Score]) -> None:
    """Where persistence is the best possible forecast, the model stays near it (1700
    windows of 20 walks it never saw) at every step: within 1.5% (the README gives the
    figures); the daemon's guard serves the last value there (the next test)."""
    walks = scores[-1]
    assert walks.name.startswith("random walks")
    assert (np.abs(walks.ratio - 1.0) < 0.015).all(), np.round(walks.ratio, 4)


def test_served_forecast_is_never_worse_than_persistence_on_random_walks(
    bundle: Bundle,
) -> None:
    """Through the per-sensor, per-step guard, as the daemon serves it: on each walk's
    readings after its first 300, not worse than the last value at any step (the last value
    as the table holds it: readings are stored in float32)."""
    m = bundle.meta
    forecaster = Forecaster(bundle)
    served, persistence = np.zeros(m.horizon), np.zeros(m.horizon)
    for name, times, values in scorecard.random_walks():
        table = SensorTable(m.timesteps, 1)
        readings = zip(times, values, strict=True)
        pushed = (table.push(name, float(t), (float(v),)) for t, v in readings)
        windows = [w for w in pushed if isinstance(w, Window)]
        raw = np.stack([w.values for w in windows])
        forecast, scale = forecaster.forecast_scaled(raw)
        guard = SensorScores(m, level=0.9, anomaly_level=0.99, max_sensors=10)
        out = guard.score(windows, forecast, scale, raw).forecast[..., 0]
        last = np.arange(len(windows)) + m.timesteps - 1  # each window's last reading
        for k in range(m.horizon):
            ok = (last >= 300) & (last + k + 1 < len(values))
            truth = values[last[ok] + k + 1]
            served[k] += np.abs(out[ok, k] - truth).mean()
            persistence[k] += np.abs(raw[ok, -1, 0] - truth).mean()
    ratio = served / persistence
    assert (ratio <= 1.0 + 1e-9).all(), np.round(ratio, 4)


def test_calibration_holds_on_the_test_windows_it_was_not_measured_on(bundle: Bundle) -> None:
    """Split conformal: measured on validation windows, checked on the test tails of the
    training mix, per step, within 0.03 of every level."""
    coverage = bundle.meta.metrics["coverage"]
    for level, per_step in zip(coverage["levels"], coverage["targets"]["value"], strict=True):
        assert np.abs(np.asarray(per_step) - level).max() <= 0.03, (level, per_step)


def test_calibrated_intervals_start_sensibly_on_every_shipped_series(
    scores: list[scorecard.Score],
) -> None:
    """The bundle's own 90% interval, before the daemon adapts it per sensor."""
    for s in scores:
        assert 0.6 <= s.coverage90.mean() <= 1.0, f"{s.name}: {np.round(s.coverage90, 3)}"


SERVE_WHILE_REWRITTEN = """
import shutil, sys
from pathlib import Path
import numpy as np
from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.models.runtime import Forecaster

root = Path(sys.argv[1]) / "bundle"
shutil.copytree(DEFAULT_BUNDLE, root)
forecaster = Forecaster(load_bundle(root))
windows = 20.0 + np.sin(np.arange(64.0) / 5.0).reshape(2, 32, 1)
before = forecaster.forecast(windows)
model = root / "model.tflite"
size = model.stat().st_size
with model.open("r+b") as f:  # as cp over an existing file: the same inode, truncated
    f.truncate(0)
after_truncation = forecaster.forecast(windows)
with model.open("r+b") as f:  # then other bytes of the same size
    f.write(bytes(size))
after_rewrite = forecaster.forecast(windows)
assert np.array_equal(before, after_truncation) and np.array_equal(before, after_rewrite)
print("served")
"""


def test_a_bundle_rewritten_in_place_under_a_forecaster_is_not_read_again(
    tmp_path: Path,
) -> None:
    """`cp -r bundles/v2 /opt/sensorcast/bundles/` over a bundle the daemon serves rewrites
    its model.tflite in place: the model was mapped from that file, and the daemon died of
    SIGBUS at its next batch. It serves the bytes it checked at load."""
    run = subprocess.run(
        [sys.executable, "-c", SERVE_WHILE_REWRITTEN, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith("served")
