"""Split-conformal calibration: quantiles of normalised errors that hold on new windows."""

from __future__ import annotations

import numpy as np
import pytest

from sensorcast.models import calibrate
from sensorcast.models.bundle import DEFAULT_LEVELS

RNG = np.random.default_rng(11)


def test_calibrated_intervals_cover_their_level_on_fresh_windows() -> None:
    # heavy-tailed errors that grow with the step, as a random walk's do
    steps = np.sqrt(np.arange(1, 7))[None, :, None]
    held_back = np.abs(RNG.standard_t(3, (5000, 6, 2))) * steps
    cal = calibrate.conformal(held_back)
    assert cal.levels == list(DEFAULT_LEVELS) and cal.n == 5000 and cal.shape == (6, 2)
    fresh = np.abs(RNG.standard_t(3, (20_000, 6, 2))) * steps
    cover = calibrate.coverage(cal, fresh)
    assert cover.shape == (len(calibrate.REPORT_LEVELS), 6, 2)
    for level, per_step in zip(calibrate.REPORT_LEVELS, cover, strict=True):
        assert np.abs(per_step - level).max() < 0.03, (level, per_step)
    q90 = np.asarray(cal.quantile(0.9))[:, 0]
    assert (np.diff(q90) > 0).all()  # wider further ahead


def test_few_windows_give_conservative_quantiles() -> None:
    errors = np.arange(1.0, 11.0).reshape(10, 1, 1)
    cal = calibrate.conformal(errors, levels=(0.5, 0.9))
    # ceil(11 * 0.5) = 6th smallest; ceil(11 * 0.9) = 10th: the largest seen
    assert cal.abs_error == [[[6.0]], [[10.0]]]
    assert calibrate.coverage(cal, errors, levels=(0.5, 0.9))[:, 0, 0].tolist() == [0.6, 1.0]


def test_normalised_errors_divide_by_each_windows_scale() -> None:
    pred = np.array([[[10.0], [12.0]], [[100.0], [100.0]]])
    truth = np.array([[[11.0], [10.0]], [[130.0], [70.0]]])
    scale = np.array([[[2.0]], [[10.0]]])
    assert calibrate.normalised_errors(pred, truth, scale)[..., 0].tolist() == [
        [0.5, 1.0], [3.0, 3.0],
    ]  # fmt: skip


def test_no_windows_is_an_error() -> None:
    with pytest.raises(ValueError, match="no held-back windows"):
        calibrate.conformal(np.empty((0, 2, 1)))
