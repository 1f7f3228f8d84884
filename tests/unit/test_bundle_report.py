"""Test-tail baselines and the metrics report that `train` and `inspect` print."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sensorcast.models import report

from .test_bundle import make_bundle


@pytest.mark.parametrize(
    ("cadence", "timesteps", "expected"),
    [
        (3600.0, 24, ("daily", 24)),
        (3600.0, 20, None),
        (900.0, 100, ("daily", 96)),
        (7 * 86_400.0, 60, ("yearly", 52)),
        (None, 50, None),
    ],
)
def test_season_is_used_only_when_it_fits_the_window(
    cadence: float | None, timesteps: int, expected: tuple[str, int] | None
) -> None:
    assert report.season_steps(cadence, timesteps) == expected


def test_baselines_persistence_seasonal_and_moving_average() -> None:
    history = np.arange(6.0).reshape(1, 6, 1)
    persistence, seasonal = report.baselines(history, horizon=4, season=3)
    assert persistence[0, :, 0].tolist() == [5, 5, 5, 5]
    assert seasonal[0, :, 0].tolist() == [3, 4, 5, 3]  # one season back, wrapping
    _, average = report.baselines(history, horizon=2, season=None)
    assert average[0, :, 0].tolist() == [2.5, 2.5]


def test_evaluate_scores_model_against_baselines() -> None:
    history = np.stack([np.arange(5.0), np.arange(5.0) * 2], axis=-1)[None].repeat(3, axis=0)
    truth = np.array([[[5.0, 10.0]]]).repeat(3, axis=0)
    metrics = report.evaluate(truth + 1.0, truth, history, ["a", "b"], None)
    a = metrics["targets"]["a"]
    assert a["model"] == {"mae": 1.0, "rmse": 1.0}
    assert a["persistence"]["mae"] == 1.0 and a["skill"] == 1.0
    assert metrics["targets"]["b"]["persistence"]["mae"] == 2.0
    assert metrics["baseline"] == {"name": "moving_average", "steps": 5}


def test_metrics_table_lists_targets_and_sensors() -> None:
    scores = {"model": {"mae": 0.5, "rmse": 0.7}, "persistence": {"mae": 1.0, "rmse": 1.2},
              "baseline": {"mae": 2.0, "rmse": 2.5}, "skill": 0.5}  # fmt: skip
    text = report.format_metrics(
        {"n_test": 42, "baseline": {"name": "seasonal_naive", "season": "daily", "steps": 24},
         "targets": {"temp": scores}, "sensors": {"boiler-3": {"temp": scores}}}
    )  # fmt: skip
    lines = text.splitlines()
    assert "42 windows" in lines[0] and "seasonal naive (daily, 24 steps)" in lines[0]
    assert lines[3].split() == ["temp", "(all)", "0.5", "0.7", "1", "1.2", "2", "2.5", "0.5"]
    assert lines[4].startswith("boiler-3/temp")
    assert report.format_metrics({}) == "metrics: none recorded"
    assert "malformed" in report.format_metrics({"targets": {"x": 3}})


def test_inspect_prints_identity_settings_and_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = np.arange(20.0).reshape(1, 20, 1)
    metrics = report.evaluate(np.full((1, 1, 1), 20.0), np.full((1, 1, 1), 20.5), history,
                              ["value"], None)  # fmt: skip
    root = make_bundle(tmp_path / "b", metrics={**metrics, "n_test": 1},
                       versions={"keras": "3.15.1"})  # fmt: skip
    assert report.run_inspect(root) == 0
    out = capsys.readouterr().out
    expected = (
        "tiny@",
        "many_to_one: 1 LSTM layer(s) of 8 units",
        "60 s (1 min)",
        "window (each window",
        "keras 3.15.1",
        "moving average of the window (20 steps)",
    )
    assert all(part in out for part in expected), out
