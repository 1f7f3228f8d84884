"""The daemon's LiteRT output equals the Keras model's on the same windows."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import keras

from sensorcast.models import dataset
from sensorcast.models.bundle import Bundle, load_bundle
from sensorcast.models.export import target_scale
from sensorcast.models.preprocess import Scaler
from sensorcast.models.runtime import Forecaster

from .conftest import SHAPES, BundleCache, Trained

pytestmark = pytest.mark.train

BATCHES = (1, 3, 17, 64, 300)
TOLERANCE = 1e-5


def real_windows(trained: Trained, bundle: Bundle, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n raw windows of the bundle's shape and their true targets, from its training data."""
    meta = bundle.meta
    spec = dataset.WindowSpec(meta.features, meta.targets, meta.timesteps, meta.horizon)
    table = dataset.read_csv(trained.data)
    prep = dataset.prepare(dataset.load_series(table, spec.columns), spec)
    x = np.concatenate([prep.test.x, prep.val.x, prep.train.x])
    y = np.concatenate([prep.test.y, prep.val.y, prep.train.y])
    assert len(x) >= n
    return x[:n], y[:n]


def keras_forecast(bundle: Bundle, windows: np.ndarray) -> np.ndarray:
    """The reference: model.keras itself, with the bundle's normalisation around it."""
    model = keras.saving.load_model(bundle.keras_path, safe_mode=True, compile=False)
    scaler = Scaler(bundle.meta.normalisation, bundle.meta.features, bundle.meta.targets)
    x, ctx = scaler.transform(windows)
    return scaler.inverse(np.asarray(model(x, training=False)), ctx)


@pytest.mark.parametrize("name", list(SHAPES))
def test_litert_forecaster_matches_keras(bundles: BundleCache, name: str) -> None:
    trained = bundles.get(name)
    bundle = load_bundle(trained.path)
    windows, targets = real_windows(trained, bundle, max(BATCHES))
    expected = keras_forecast(bundle, windows)
    scale = target_scale(targets)
    forecaster = Forecaster(bundle)
    for n in BATCHES:
        got = forecaster.forecast(windows[:n])
        assert got.shape == (n, bundle.meta.horizon, len(bundle.meta.targets))
        worst = np.max(np.abs(got - expected[:n]) / scale)
        assert worst <= TOLERANCE, f"batch {n}: LiteRT differs from Keras by {worst:.2e}"
    single = np.concatenate([forecaster.forecast(windows[i : i + 1]) for i in range(5)])
    assert np.max(np.abs(single - expected[:5]) / scale) <= TOLERANCE
