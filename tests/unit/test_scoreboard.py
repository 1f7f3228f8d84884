"""The demo's scoring: a forecast counts for the reading at its `at`, against the last value."""

from __future__ import annotations

import pytest

from sensorcast.demo.scoreboard import Scoreboard

T0 = 1_700_000_000.0


def test_forecast_is_scored_on_the_reading_it_was_made_for():
    board = Scoreboard(["s"])
    board.reading("s", T0, 10.0)
    board.forecast("s", 11.0, T0 + 1)
    board.reading("s", T0 + 1.001, 12.0)  # `at` matches within a fraction of the interval
    s = board.scores["s"]
    assert s.predicted == 11.0
    assert s.mae_model == pytest.approx(1.0)
    assert s.mae_last == pytest.approx(2.0)
    assert board.beats_persistence() == (1, 1)
    assert board.served_model() == 1


def test_a_sensor_served_only_the_last_value_is_not_counted_as_served_the_model():
    board = Scoreboard(["s", "t"])
    board.forecast("s", 10.0, T0 + 1, persistence=True)
    board.forecast("t", 11.0, T0 + 1, persistence=False)
    board.forecast("t", 12.0, T0 + 2, persistence=True)
    assert board.served_model() == 1


def test_readings_without_a_forecast_for_them_are_not_scored():
    board = Scoreboard(["s"])
    board.reading("s", T0, 10.0)
    board.forecast("s", 11.0, T0 + 5)  # for a later reading
    board.reading("s", T0 + 1, 12.0)
    s = board.scores["s"]
    assert s.predicted is None and s.scored == 0
    assert s.next_value == 11.0
    board.reading("s", T0 + 5, 11.5)
    assert s.predicted == 11.0 and s.scored == 1
    assert s.mae_model == pytest.approx(0.5) and s.mae_last == pytest.approx(0.5)


def test_stale_forecasts_and_readings_are_ignored():
    board = Scoreboard(["s"])
    board.reading("s", T0, 10.0)
    board.forecast("s", 99.0, T0 + 1)
    board.reading("s", T0 + 3, 12.0)  # skipped past it
    board.reading("s", T0 + 2, 50.0)  # older than the last reading
    s = board.scores["s"]
    assert (s.value, s.readings, s.scored, s.pending) == (12.0, 2, 0, {})
    assert board.totals() == (2, 1)


def test_learned_shows_the_error_at_first_against_the_error_recently():
    board = Scoreboard(["s"])
    board.reading("s", T0, 0.0)
    for i in range(1, 241):  # the last value is always 1 off; the model 2 off, then 0.5 off
        board.forecast("s", i + (2.0 if i <= 60 else 0.5), T0 + i)
        board.reading("s", T0 + i, float(i))
    s = board.scores["s"]
    assert s.learned is not None
    first, now = s.learned
    assert first == pytest.approx(2.0)
    assert now == pytest.approx(0.5, abs=0.01)


def test_learned_waits_for_enough_readings():
    board = Scoreboard(["s"])
    board.reading("s", T0, 0.0)
    for i in range(1, 40):
        board.forecast("s", i + 1.0, T0 + i)
        board.reading("s", T0 + i, float(i))
    assert board.scores["s"].learned is None
