"""The shipped default bundle: valid, the documented shape, and sensible on real data."""

from __future__ import annotations

import numpy as np
import pytest

from sensorcast.models import DATA_DIR, DEFAULT_BUNDLE, dataset
from sensorcast.models.bundle import Bundle, load_bundle
from sensorcast.models.runtime import Forecaster

REAL_SERIES = ("co2_maunaloa", "room_temperature", "room_humidity", "room_light", "room_co2")


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return load_bundle(DEFAULT_BUNDLE)


@pytest.fixture(scope="module")
def co2_windows() -> np.ndarray:
    """Every gap-free 20-week window of the Mauna Loa series, (n, 20, 1)."""
    (s,) = dataset.load_series(dataset.read_csv(DATA_DIR / "co2_maunaloa_weekly.csv"), ["co2"])
    runs = dataset.segment_runs(s.times, ~np.isnan(s.values[:, 0]), 1.5 * 7 * 86_400)
    windows = [s.values[r.start + i : r.start + i + 20] for r in runs for i in range(len(r) - 19)]
    return np.stack(windows)


def test_default_bundle_has_the_documented_shape(bundle: Bundle) -> None:
    meta = bundle.meta
    assert (meta.name, meta.timesteps, meta.horizon) == ("default", 20, 1)
    assert meta.features == ["value"] and meta.targets == ["value"]
    assert meta.normalisation.mode == "window"
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
    forecast = Forecaster(bundle).forecast(co2_windows)[:, 0, 0]
    assert np.isfinite(forecast).all()
    last = co2_windows[:, -1, 0]
    spread = np.ptp(co2_windows[:, :, 0], axis=1)
    assert (np.abs(forecast - last) <= spread).all()
    assert np.abs(forecast - last).mean() < 1.0  # ppm; the weekly step is about 0.4


def test_one_model_serves_any_magnitude(bundle: Bundle, co2_windows: np.ndarray) -> None:
    forecaster = Forecaster(bundle)
    windows = co2_windows[:64]
    base = forecaster.forecast(windows)
    scaled = forecaster.forecast(windows * 1e-3 - 5.0)
    assert np.allclose(scaled, base * 1e-3 - 5.0, rtol=0, atol=1e-5)
    flat = forecaster.forecast(np.full((3, 20, 1), 21.5))
    assert np.allclose(flat, 21.5, rtol=0, atol=1e-4)
