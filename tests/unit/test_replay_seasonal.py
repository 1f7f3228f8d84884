"""The seasonal naive baseline of `tests/perf/replay.py`, which the README's tables quote."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

PERF = Path(__file__).resolve().parents[1] / "perf"


def replay() -> ModuleType:
    spec = importlib.util.spec_from_file_location("perf_replay", PERF / "replay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_seasonal_reading_is_a_day_back_by_the_clock_where_nights_are_missing() -> None:
    """A sensor silent at night (a PV inverter, a counter kept in business hours): the reading
    96 places back is not the same time yesterday, and the seasonal naive forecast compared
    the forecasts with readings of other hours (bank calls: 0.12 of its MAE)."""
    r = replay()
    day = np.arange(96) * 900.0  # every 15 minutes
    kept = (day >= 8 * 3600) & (day < 16 * 3600)  # 08:00 to 16:00 only
    times = np.concatenate([d * 86_400.0 + day[kept] for d in range(3)])
    assert r.season_of(times) == 96
    back = r.season_back(times, 96)
    have = back >= 0
    assert have.sum() == 2 * kept.sum()  # every reading of days 2 and 3, none of day 1
    assert np.all(times[have] - times[back[have]] == 86_400.0)


def test_a_regular_series_takes_the_reading_a_season_of_places_back() -> None:
    r = replay()
    times = 1.7e9 + 1800.0 * np.arange(200)
    back = r.season_back(times, r.season_of(times))
    assert back[:48].tolist() == [-1] * 48
    assert back[48:].tolist() == list(range(152))
    assert (r.season_back(times, 1) == -1).all()
