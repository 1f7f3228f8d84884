"""The shared normalisation: what training fits on is exactly what serving feeds the model."""

from __future__ import annotations

import numpy as np
import pytest

from sensorcast.models.bundle import Normalisation
from sensorcast.models.preprocess import Scaler

RNG = np.random.default_rng(7)


def windows(n: int = 5, t: int = 6, f: int = 2, scale: float = 100.0) -> np.ndarray:
    return RNG.normal(20.0, 1.0, (n, t, f)) * scale


def test_window_mode_round_trips_targets_and_ignores_magnitude() -> None:
    scaler = Scaler(Normalisation(mode="window"), ["a", "b"], ["b"])
    w = windows()
    y = RNG.normal(2000.0, 50.0, (5, 3, 1))
    x, ctx = scaler.transform(w)
    assert x.dtype == np.float32
    assert np.allclose(x.mean(axis=1), 0, atol=1e-5) and np.allclose(x.std(axis=1), 1, atol=1e-5)
    assert np.allclose(scaler.inverse(scaler.transform_targets(y, ctx), ctx), y)
    x_small, _ = Scaler(Normalisation(mode="window"), ["a", "b"], ["b"]).transform(w * 1e-4 + 7)
    assert np.allclose(x, x_small, atol=1e-4)  # scale-free: one model for any magnitude


def test_global_mode_uses_the_stored_statistics() -> None:
    norm = Normalisation(
        mode="global", mean=[10.0, 20.0], std=[2.0, 4.0], target_mean=[5.0], target_std=[0.5]
    )
    scaler = Scaler(norm, ["a", "b"], ["c"])
    w = windows()
    x, ctx = scaler.transform(w)
    assert np.allclose(x, (w - [10.0, 20.0]) / [2.0, 4.0], atol=1e-3)
    y = RNG.normal(5.0, 1.0, (5, 2, 1))
    assert np.allclose(scaler.transform_targets(y, ctx), (y - 5.0) / 0.5, atol=1e-5)
    assert np.allclose(scaler.inverse(scaler.transform_targets(y, ctx), ctx), y, atol=1e-5)


@pytest.mark.parametrize("level", [0.0, 1e-3, 21.5, 1e4])
def test_flat_window_gives_finite_input_and_forecasts_its_level(level: float) -> None:
    scaler = Scaler(Normalisation(mode="window"), ["value"], ["value"])
    x, ctx = scaler.transform(np.full((2, 20, 1), level))
    assert np.isfinite(x).all() and np.abs(x).max() < 1e-6
    assert np.allclose(scaler.inverse(np.zeros((2, 1, 1), np.float32), ctx), level)


@pytest.mark.parametrize("mode", ["window", "last"])
def test_relative_modes_need_targets_among_features(mode: str) -> None:
    with pytest.raises(ValueError, match="every target to be a feature"):
        Scaler(Normalisation(mode=mode), ["a"], ["b"])


def last_scaler(scale: list[float] | None = None) -> Scaler:
    return Scaler(Normalisation(mode="last", scale=scale), ["a", "b"], ["b"])


def test_last_mode_zero_output_is_persistence_and_targets_round_trip() -> None:
    scaler = last_scaler()
    w = windows()
    x, ctx = scaler.transform(w)
    assert np.allclose(x[:, -1, :], 0.0)  # the last reading is the origin
    forecast = scaler.inverse(np.zeros((5, 4, 1), np.float32), ctx)
    assert np.allclose(forecast, w[:, -1:, 1:2].repeat(4, axis=1))
    y = RNG.normal(2000.0, 50.0, (5, 4, 1))
    assert np.allclose(scaler.inverse(scaler.transform_targets(y, ctx), ctx), y)


def test_last_mode_scales_by_the_windows_rms_step_and_ignores_magnitude() -> None:
    scaler = last_scaler()
    w = windows()
    x, ctx = scaler.transform(w)
    steps = np.diff(w[:, :, 1], axis=1)
    assert np.allclose(ctx.scale[:, 0, 0], np.sqrt((steps**2).mean(axis=1)))
    x_small, _ = last_scaler().transform(w * 1e-4 + 7)
    assert np.allclose(x, x_small, atol=1e-4)


def test_last_mode_on_a_ramp_keeps_a_real_scale() -> None:
    """The RMS of steps, unlike their standard deviation, is not zero on a steady ramp."""
    ramp = np.linspace(0.0, 19.0, 20).reshape(1, 20, 1)
    scaler = Scaler(Normalisation(mode="last"), ["v"], ["v"])
    x, ctx = scaler.transform(ramp)
    assert ctx.scale[0, 0, 0] == pytest.approx(1.0)
    assert x[0, 0, 0] == pytest.approx(-19.0)


def test_last_mode_with_a_stored_scale_uses_it() -> None:
    scaler = last_scaler([2.0, 0.5])
    w = windows()
    x, ctx = scaler.transform(w)
    assert np.allclose(x, (w - w[:, -1:, :]) / [2.0, 0.5], atol=1e-3)
    assert np.allclose(ctx.scale, 0.5) and ctx.scale.shape == (5, 1, 1)


@pytest.mark.parametrize("level", [0.0, 1e-3, 21.5, 1e4])
@pytest.mark.parametrize("timesteps", [1, 20])
def test_last_mode_flat_or_single_reading_window_is_finite(level: float, timesteps: int) -> None:
    scaler = Scaler(Normalisation(mode="last"), ["value"], ["value"])
    x, ctx = scaler.transform(np.full((2, timesteps, 1), level))
    assert np.isfinite(x).all() and np.abs(x).max() == 0.0 and (ctx.scale > 0).all()
    assert np.allclose(scaler.inverse(np.ones((2, 3, 1), np.float32), ctx), level, atol=1e-5)


def test_trimmed_step_scale_is_not_set_by_one_jump() -> None:
    """A jump of 10 noise steps doubles the plain RMS step of a 32-reading window for as
    long as the jump is in it; the trimmed scale stays within a fifth of the noise's. A far
    larger jump (30 steps) moves it by half as much as the plain RMS (the floor)."""
    rng = np.random.default_rng(11)
    calm = np.cumsum(rng.normal(0.0, 1.0, (200, 32, 1)), axis=1)
    plain = Scaler(Normalisation(mode="last"), ["v"], ["v"])
    robust = Scaler(Normalisation(mode="last", step_scale="trimmed"), ["v"], ["v"])
    for jump, most in ((10.0, 1.2), (30.0, 0.55)):
        jumped = calm.copy()
        jumped[:, 16:] += jump
        ratio_plain = plain.transform(jumped)[1].scale / plain.transform(calm)[1].scale
        ratio_robust = robust.transform(jumped)[1].scale / robust.transform(calm)[1].scale
        assert np.median(ratio_plain) > 1.8
        if jump == 10.0:
            assert np.median(ratio_robust) < most
        else:
            assert np.median(ratio_robust / ratio_plain) < most


def test_trimmed_step_scale_is_finite_and_scale_free_on_a_flat_window_with_one_jump() -> None:
    scaler = Scaler(Normalisation(mode="last", step_scale="trimmed"), ["v"], ["v"])
    w = np.full((1, 32, 1), 5.0)
    w[:, 20:] = 9.0  # the only non-zero step: the trimmed RMS is zero, the floor holds
    x, _ = scaler.transform(w)
    assert np.isfinite(x).all() and 5 < np.abs(x).max() < 20
    x_big, _ = scaler.transform(w * 1e3 + 7)
    assert np.allclose(x, x_big, atol=1e-4)


def test_bundles_without_a_step_scale_keep_the_rms_step() -> None:
    """Bundles written before `step_scale` existed serve exactly as before."""
    w = np.cumsum(RNG.normal(0.0, 1.0, (4, 32, 1)), axis=1)
    w[:, 10:] += 25.0
    _, ctx = Scaler(Normalisation(mode="last"), ["v"], ["v"]).transform(w)
    _, rms = Scaler(Normalisation(mode="last", step_scale="rms"), ["v"], ["v"]).transform(w)
    expected = np.sqrt(np.mean(np.diff(w, axis=1) ** 2, axis=1, keepdims=True))
    assert np.allclose(ctx.scale, expected) and np.allclose(rms.scale, expected)


@pytest.mark.parametrize(
    "fields",
    [{"mode": "window", "step_scale": "trimmed"},
     {"mode": "last", "scale": [1.0], "step_scale": "trimmed"}],
)  # fmt: skip
def test_step_scale_is_only_for_last_with_each_windows_own_scale(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="step_scale"):
        Normalisation.model_validate(fields)


@pytest.mark.parametrize("size", [1e-9, 1e-7, 1e-3, 1.0, 1e4])
def test_last_mode_sees_the_same_shape_at_any_size(size: float) -> None:
    """Only relative floors: a window of readings around 1e-7 (a dose rate in Sv/h) is
    normalised as the same window around 1 is; an absolute floor of 1e-6 flattened it."""
    scaler = Scaler(Normalisation(mode="last"), ["v"], ["v"])
    w = 1.0 + 0.1 * np.sin(np.arange(32) / 5.0)[None, :, None] + RNG.normal(0, 0.01, (3, 32, 1))
    x, _ = scaler.transform(w)
    x_sized, _ = scaler.transform(w * size)
    assert np.abs(x).max() > 1.0
    assert np.allclose(x_sized, x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("level", [0.0, 12_345_678.0, 1e9])
def test_last_mode_sees_the_same_shape_at_any_level(level: float) -> None:
    """An energy meter at 12,345,678 Wh counting about 3 Wh a reading is normalised as the
    same counter from zero: a floor of 1e-6 of the level (12 Wh) squashed its windows."""
    scaler = Scaler(Normalisation(mode="last"), ["v"], ["v"])
    w = np.cumsum(RNG.uniform(1.0, 5.0, (3, 32, 1)), axis=1)
    x, _ = scaler.transform(w)
    x_level, _ = scaler.transform(w + level)
    assert np.allclose(x_level, x, rtol=1e-4, atol=1e-4)
