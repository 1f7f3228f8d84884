"""Reading training CSVs, cutting at gaps, splitting by time and windowing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sensorcast.errors import UserError
from sensorcast.models import DATA_DIR, csvdata, dataset


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def series_of(path: Path, columns: list[str] | None = None) -> list[dataset.Series]:
    table = dataset.read_csv(path)
    feats, _ = dataset.resolve_columns(table, columns, None)
    return dataset.load_series(table, feats)


def ramp_csv(
    tmp_path: Path, n: int, *, missing: tuple[int, ...] = (), jump_after: int = -1
) -> Path:
    """value = row index at a 60 s cadence, so a window spans a gap iff its values skip."""
    lines = ["time,value"]
    t = 1_700_000_000
    for i in range(n):
        t += 60 if i != jump_after + 1 or i == 0 else 600
        lines.append(f"{t},{'' if i in missing else i}")
    return write(tmp_path, "\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000", 1_700_000_000.0),
        ("1700000000.5", 1_700_000_000.5),
        ("2023-11-14T22:13:20", 1_700_000_000.0),
        ("2023-11-14 22:13:20", 1_700_000_000.0),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14t22:13:20z", 1_700_000_000.0),  # RFC 3339 allows both in lowercase
        ("2023-11-15T00:13:20+02:00", 1_700_000_000.0),
        ("20231114", 1_699_920_000.0),
    ],
)
def test_time_column_forms(tmp_path: Path, text: str, expected: float) -> None:
    (s,) = series_of(write(tmp_path, f"ts,value\n{text},1.5\n"))
    assert s.times.tolist() == [expected]


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("1700000000000", "milliseconds"),
        ("1700000000000000", "microseconds"),
        ("1700000000000000000", "nanoseconds"),
        ("100000000000", "milliseconds"),  # 1e11 s would be the year 5138; 1e11 ms is 1973
        ("99999999999", "seconds"),
    ],
)
def test_epoch_numbers_too_large_for_seconds_are_converted(
    tmp_path: Path, text: str, unit: str
) -> None:
    path = write(tmp_path, f"time,value\n{text},1.5\n")
    assert dataset.read_csv(path).time_unit == unit
    (s,) = series_of(path)
    assert s.times[0] == pytest.approx(int(text) / csvdata.EPOCH_UNITS.get(unit, 1.0))
    assert s.times[0] < csvdata.MAX_EPOCH_SECONDS


def test_time_column_is_found_by_name_or_else_first(tmp_path: Path) -> None:
    table = dataset.read_csv(write(tmp_path, "value,Date\n1,20200101\n"))
    assert table.header[table.time_column] == "Date"
    table = dataset.read_csv(write(tmp_path, "when,value\n20200101,1\n"))
    assert table.time_column == 0


def test_a_datetime_column_is_the_time(tmp_path: Path) -> None:
    """`datetime` names the time as pandas and many loggers write it (a glucose monitor's
    `isig,datetime,glucose`): its first column, a sensor current, was taken as the time and
    the file refused as going back."""
    path = write(
        tmp_path,
        "isig,datetime,glucose\n22.59,2010-03-24 09:51:00,258\n22.52,2010-03-24 09:56:00,260\n"
        "22.23,2010-03-24 10:01:00,258\n",
    )
    (s,) = series_of(path, ["glucose"])
    assert s.times.tolist() == [1269424260.0, 1269424560.0, 1269424860.0]
    assert s.values[:, 0].tolist() == [258.0, 260.0, 258.0]


def test_a_first_column_taken_as_the_time_must_go_forward(tmp_path: Path) -> None:
    """Without a time column, `temperature` was read as epoch seconds and the rows sorted by
    it: a model trained on humidity shuffled, without a word."""
    path = write(tmp_path, "temperature,humidity\n20.5,40\n21.0,41\n19.5,42\n")
    with pytest.raises(UserError, match="the first, 'temperature', taken as the time, goes back"):
        series_of(path)
    (s,) = series_of(write(tmp_path, "when,value\n1,5\n2,6\n3,7\n"))
    assert s.values[:, 0].tolist() == [5.0, 6.0, 7.0]
    (s,) = series_of(write(tmp_path, "Time,value\n3,7\n1,5\n2,6\n"))  # named: sorted
    assert s.values[:, 0].tolist() == [5.0, 6.0, 7.0]
    long = "when,sensor_id,value\n1,a,1\n1,b,2\n2,a,3\n2,b,4\n"  # per sensor, forward
    assert [x.times.tolist() for x in series_of(write(tmp_path, long))] == [[1, 2], [1, 2]]


def test_long_format_groups_sorts_and_drops_repeated_times(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "time,sensor_id,temp,note\n3,b,30,x\n1,a,10,x\n2,a,20,x\n1,b,99,x\n2,a,20,x\n2,b,21,x\n",
    )
    table = dataset.read_csv(path)
    assert dataset.resolve_columns(table, None, None) == (["temp"], ["temp"])
    b, a = dataset.load_series(table, ["temp"])  # in order of first appearance
    assert (a.name, a.times.tolist(), a.values[:, 0].tolist(), a.duplicates) == (
        "a", [1.0, 2.0], [10.0, 20.0], 1,
    )  # fmt: skip
    assert (b.name, b.times.tolist(), b.values[:, 0].tolist()) == ("b", [1, 2, 3], [99, 21, 30])


def test_the_sensor_id_column_is_found_in_any_case(tmp_path: Path) -> None:
    """As the time column is: `Sensor_ID` used to be a text column left out of the
    features, so two sensors made one series, half their rows dropped as repeated times."""
    path = write(tmp_path, "Time,Sensor_ID,value\n1,a,10\n1,b,20\n2,a,11\n2,b,21\n")
    a, b = series_of(path)
    assert (a.name, a.values[:, 0].tolist(), a.duplicates) == ("a", [10.0, 11.0], 0)
    assert (b.name, b.values[:, 0].tolist(), b.duplicates) == ("b", [20.0, 21.0], 0)


def test_spreadsheet_exports_trailing_commas_are_unnamed_empty_columns(tmp_path: Path) -> None:
    """Two trailing commas used to be refused as 'repeated column names: time, value, , '."""
    (s,) = series_of(write(tmp_path, "time,value,,\n1,5,,\n2,6,,\n"))
    assert s.values[:, 0].tolist() == [5.0, 6.0]
    with pytest.raises(UserError, match=r"repeated column names: time, value, value$"):
        series_of(write(tmp_path, "time,value,value,\n1,5,5,\n"))


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_file_separated_by_another_character_is_told_so(tmp_path: Path, sep: str) -> None:
    """It used to be 'has no numeric value columns', the header read as one column."""
    path = write(tmp_path, f"time{sep}value\n1{sep}5\n2{sep}6\n")
    with pytest.raises(UserError) as caught:
        series_of(path)
    assert f"has one column, {f'time{sep}value'!r}: its values are separated by {sep!r}" in str(
        caught.value
    )


def test_wide_format_is_one_series_named_after_the_file(tmp_path: Path) -> None:
    (s,) = series_of(write(tmp_path, "time,a,b\n1,1,\n2,2,5\n", name="boiler.csv"))
    assert s.name == "boiler"
    assert np.isnan(s.values[0, 1]) and s.values[1].tolist() == [2.0, 5.0]


def test_real_files_parse_with_their_gaps() -> None:
    (co2,) = series_of(DATA_DIR / "co2_maunaloa_weekly.csv")
    assert len(co2.times) == 2284 and int(np.isnan(co2.values).sum()) == 59
    assert dataset.cadence(co2.times) == 7 * 86_400
    (room,) = series_of(DATA_DIR / "room_occupancy.csv")
    assert room.values.shape == (509, 4) and dataset.cadence(room.times) == 960


def test_segment_runs_break_at_missing_rows_and_long_steps() -> None:
    times = np.array([0, 60, 120, 180, 900, 960, 1020, 1080], dtype=float)
    usable = np.array([True, True, False, True, True, True, True, True])
    runs = dataset.segment_runs(times, usable, max_step=90)
    assert runs == [range(0, 2), range(3, 4), range(4, 8)]


def test_split_is_chronological_and_pieces_never_cross_it() -> None:
    train, val, test = dataset.split_bounds(100, 0.15, 0.15)
    assert (train, val, test) == (range(0, 70), range(70, 85), range(85, 100))
    assert dataset.clip_runs([range(60, 90)], val) == [range(70, 85)]


def test_windows_never_span_a_gap(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    path = ramp_csv(tmp_path, 200, missing=(30, 31, 150), jump_after=90)
    spec = dataset.WindowSpec(["value"], ["value"], timesteps=5, horizon=2)
    prep = dataset.prepare(series_of(path), spec)
    for split in (prep.train, prep.val, prep.test):
        seq = np.concatenate([split.x[..., 0], split.y[..., 0]], axis=1)
        assert (np.diff(seq, axis=1) == 1).all()  # consecutive rows, no gap inside
        assert split.x.shape[1:] == (5, 1) and split.y.shape[1:] == (2, 1)
    starts = prep.train.x[:, 0, 0]
    assert not ((starts <= 31) & (starts + 6 >= 30)).any()  # missing values
    assert not ((starts <= 90) & (starts + 6 >= 91)).any()  # 10-minute jump
    assert len(prep.train) == (30 - 6) + (91 - 32 - 6) + (140 - 91 - 6)


def test_seq2seq_targets_are_the_next_timesteps_values(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    spec = dataset.WindowSpec(["value"], ["value"], timesteps=4, horizon=4)
    prep = dataset.prepare(series_of(ramp_csv(tmp_path, 100)), spec)
    x, y = prep.train.x[0, :, 0], prep.train.y[0, :, 0]
    assert x.tolist() == [0, 1, 2, 3] and y.tolist() == [4, 5, 6, 7]


def test_split_order_and_statistics_come_from_training_rows_only(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    spec = dataset.WindowSpec(["value"], ["value"], timesteps=3, horizon=1)
    prep = dataset.prepare(series_of(ramp_csv(tmp_path, 100)), spec)
    assert prep.train.y.max() < prep.val.x.min() and prep.val.y.max() < prep.test.x.min()
    train_rows = np.arange(70.0)
    assert prep.mean.tolist() == [train_rows.mean()]
    assert prep.std.tolist() == pytest.approx([train_rows.std()])
    assert prep.target_mean.tolist() == [train_rows.mean()]
    assert prep.cadence_s == 60.0


def test_long_format_windows_stay_within_one_sensor(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    rows = [f"{t * 60},{s},{k * 1000 + t}" for t in range(50) for k, s in enumerate("ab")]
    path = write(tmp_path, "time,sensor_id,value\n" + "\n".join(rows) + "\n")
    spec = dataset.WindowSpec(["value"], ["value"], timesteps=4, horizon=1)
    prep = dataset.prepare(series_of(path), spec)
    x = prep.train.x[..., 0]
    assert ((x // 1000).min(axis=1) == (x // 1000).max(axis=1)).all()
    assert prep.sensors == ["a", "b"]
    assert ((x[:, 0] // 1000) == prep.train.sensor).all()


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        ("time,value\n1,2\n", ["temp"], "'temp' is not a column (value columns: value)"),
        ("time,value\n1,2\n", ["time"], "'time' is the time or sensor_id column"),
        ("time,value\n1,1\nyesterday,2\n", None, "line 3: cannot read time 'yesterday'"),
        ("time,value\n1,1\n2,abc\n", None, "line 3, column 'value': 'abc' is not a finite"),
        ("time,value\n1,1\n2,inf\n", None, "'inf' is not a finite number"),
        ("time,value\n1,1\n2,1e300\n", None, "line 3, column 'value': '1e300' is beyond float32"),
        ("time,value\n1,-3.5e38\n", None, "line 2, column 'value': '-3.5e38' is beyond"),
        ("time,value\n1,1\n2\n", None, "line 3 has 1 fields, the header has 2"),
        ("time,value\n", None, "has a header but no data rows"),
        ("time,sensor_id,value\n1,,2\n", None, "line 2: empty sensor_id"),
        ("time,CO2 ppm\n1,2\n", None, "column 'CO2 ppm' cannot name a feature"),
    ],
)
def test_bad_csv_is_one_clear_error(
    tmp_path: Path, text: str, columns: list[str] | None, message: str
) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        series_of(write(tmp_path, text), columns)


def test_values_are_read_within_the_bound_the_daemon_accepts(tmp_path: Path) -> None:
    from sensorcast.readings import FLOAT32_MAX

    assert csvdata.FLOAT32_MAX == FLOAT32_MAX
    (s,) = series_of(write(tmp_path, f"time,value\n1,{FLOAT32_MAX!r}\n2,-3.4e38\n"))
    assert s.values[:, 0].tolist() == [FLOAT32_MAX, -3.4e38]


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data file .*nope.csv does not exist"):
        dataset.read_csv(tmp_path / "nope.csv")


def test_too_few_rows_for_one_window(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    spec = dataset.WindowSpec(["value"], ["value"], timesteps=20, horizon=1)
    with pytest.raises(UserError, match="too few rows for one training window: it needs 21"):
        dataset.prepare(series_of(ramp_csv(tmp_path, 25)), spec)
