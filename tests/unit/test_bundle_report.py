"""Test-tail baselines and the metrics report that `train` and `inspect` print."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sensorcast.models import report
from sensorcast.models.bundle import load_bundle

from .test_bundle import make_bundle

RNG = np.random.default_rng(5)


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
    meta = load_bundle(root).meta  # what SPEC section 6 lists of bundle.json, shown as well
    assert f"content hash   {meta.content_hash}\n" in out
    assert f"schema         version {meta.schema_version}\n" in out


GOOD_METRICS = {
    "n_test": 26,
    "targets": {"value": {"model": {"mae": 0.12, "rmse": 0.14},
                          "persistence": {"mae": 0.13, "rmse": 0.15},
                          "baseline": {"mae": 0.55, "rmse": 0.61}, "skill": 0.97}},
    "steps": {"value": {"validation": {"model": [0.11], "persistence": [0.12], "baseline": [0.5]},
                        "test": {"model": [0.12], "persistence": [0.13], "baseline": [0.55]}}},
    "coverage": {"levels": [0.5, 0.9], "targets": {"value": [[0.46], [0.92]]}},
}  # fmt: skip
"""Metrics shaped as `sensorcast train` writes them."""


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("coverage", "levels"), ["0.9"]),
        (("coverage", "targets", "value"), [0.46, 0.92]),
        (("steps", "value", "test", "model"), 0.12),
        (("steps", "value", "validation"), [0.11]),
        (("steps", "value", "validation", "persistence"), [[0.12]]),
    ],
)
def test_inspect_of_a_bundle_with_malformed_metrics_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: tuple[str, ...], value: object
) -> None:
    """Metrics are outside the content hash, so an edited bundle.json still loads and
    serves: `inspect` used to end in a traceback from the table's formatting."""
    assert report.run_inspect(make_bundle(tmp_path / "good", metrics=GOOD_METRICS)) == 0
    assert "value           1       0.11       0.12" in capsys.readouterr().out
    metrics = json.loads(json.dumps(GOOD_METRICS))
    parent = metrics
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    assert report.run_inspect(make_bundle(tmp_path / "bad", metrics=metrics)) == 0
    out = capsys.readouterr().out
    assert "tiny@" in out
    assert out.endswith("\nmetrics: malformed (not as sensorcast train writes them); not shown\n")


def test_season_by_autocorrelation_when_the_cadence_gives_none() -> None:
    t = np.arange(3000.0)
    series = np.sin(2 * np.pi * t / 12) + 0.01 * t + RNG.normal(0, 0.2, t.size)
    history = np.stack([series[i : i + 30] for i in range(0, 2900, 3)])[..., None]
    assert report.autocorrelation_season(history) == 12
    assert report.choose_season(None, 30, history) == ("autocorrelation", 12)
    assert report.choose_season(3600.0, 30, history) == ("daily", 24)  # the calendar first
    walk = np.cumsum(RNG.normal(0, 1, 3000))
    walks = np.stack([walk[i : i + 30] for i in range(0, 2900, 3)])[..., None]
    assert report.autocorrelation_season(walks) is None


def step_metrics(val_model: list[float]) -> dict[str, object]:
    return {
        "steps": {"value": {
            "validation": {"model": val_model, "persistence": [1.0, 2.0], "baseline": [3.0, 3.0]},
            "test": {"model": [0.5, 1.5], "persistence": [1.0, 2.0], "baseline": [3.0, 3.0]},
        }},
        "coverage": {"levels": [0.5, 0.9], "targets": {"value": [[0.51, 0.49], [0.9, 0.88]]}},
    }  # fmt: skip


def test_per_step_table_shows_ratios_and_coverage() -> None:
    lines = report.format_steps(step_metrics([0.8, 1.6]))
    assert "cov50" in lines[1] and "cov90" in lines[1]
    assert lines[2].split() == [
        "value", "1", "0.8", "1", "3", "0.8", "0.5", "1", "3", "0.5", "0.51", "0.9",
    ]  # fmt: skip
    assert lines[3].split()[:2] == ["value", "2"] and lines[3].split()[-2:] == ["0.49", "0.88"]
    assert report.persistence_warning(step_metrics([0.8, 1.6])) is None


def test_one_warning_line_when_validation_does_not_beat_persistence() -> None:
    metrics = step_metrics([0.8, 2.1])
    warning = report.persistence_warning(metrics)
    assert warning is not None and "\n" not in warning
    assert warning.startswith("warning:") and "value step 2 (1.05x)" in warning
    assert "step 1" not in warning
    text = report.format_metrics({**metrics, "targets": {"value": {}}})
    assert text.splitlines()[-1] == warning


def test_inspect_shows_the_calibration_or_that_it_is_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from .test_bundle import make_schema_1_bundle

    cal = {"levels": [0.5, 0.9], "abs_error": [[[0.7]], [[1.6]]], "n": 321}
    report.run_inspect(make_bundle(tmp_path / "b", calibration=cal))
    assert "split conformal on 321 held-back windows; 90% half-width per step" in (
        capsys.readouterr().out
    )
    report.run_inspect(make_schema_1_bundle(tmp_path / "c"))
    out = capsys.readouterr().out
    default = "none stored (schema 1): the documented default; 90% half-width per step"
    assert f"{default}, in scale units: 1.65" in out


def test_an_exact_persistence_has_no_ratio_instead_of_a_division_by_zero() -> None:
    """A flat stretch (a stuck sensor) makes persistence's error 0 on every window."""
    flat = {"model": [0.0, 0.2], "persistence": [0.0, 0.0], "baseline": [0.0, 0.0]}
    metrics = {
        "steps": {"value": {"validation": flat, "test": flat}},
        "targets": {"value": {"model": {"mae": 0.1, "rmse": 0.1}, "skill": None,
                              "persistence": {"mae": 0.0, "rmse": 0.0}}},
    }  # fmt: skip
    warning = report.persistence_warning(metrics)
    assert warning is not None and "value step 1 (n/a), value step 2 (n/a)" in warning
    assert warning.endswith("; n/a: persistence is exact (error 0)")
    lines = report.format_metrics(metrics).splitlines()
    assert lines[3].split()[-1] == "n/a"  # skill
    assert lines[7].split()[5] == "n/a" and lines[7].split()[9] == "n/a"  # ratios, step 2
