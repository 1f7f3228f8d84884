"""Sensor CSVs as training reads them: wide or long, any of three time forms.

Home Assistant history exports and InfluxDB annotated CSVs are read by `history`
into the same long table.

A CSV is wide (`time,<feature>...`: one series) or long (`time,sensor_id,<feature>...`:
one series per sensor). Times are epoch seconds, ISO-8601 (naive means UTC) or
`YYYYMMDD`; epoch numbers too large to be seconds are milliseconds, microseconds or
nanoseconds, by size, and converted (as an export from JavaScript or InfluxDB means
them; `train` says so in one line). Empty cells are gaps; values must lie within
float32's range, as readings do in the daemon. Every mistake is a one-line `UserError`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from sensorcast.errors import UserError
from sensorcast.models.bundle import FEATURE_PATTERN
from sensorcast.readings import from_iso

TIME_NAMES = ("time", "date", "timestamp", "datetime", "ts")
SENSOR_COLUMN = "sensor_id"
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})
FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Largest value magnitude a CSV may hold: the bound the daemon accepts a reading within
(`sensorcast.readings.FLOAT32_MAX`), so a bundle is never trained on what serving drops."""
_YYYYMMDD = re.compile(r"^\d{8}$")
MAX_EPOCH_SECONDS = 1e11
"""Epoch seconds from here on (the year 5138) are no plausible date: such a time column
counts the first of `EPOCH_UNITS` that makes it one (1e11 ms is 1973)."""
EPOCH_UNITS = {"milliseconds": 1e3, "microseconds": 1e6, "nanoseconds": 1e9}
"""Each unit per second."""

Float64 = NDArray[np.float64]


@dataclass(frozen=True)
class Table:
    """A CSV as read: column roles and raw cells; cells are parsed only when used."""

    path: Path
    header: list[str]
    time_column: int
    sensor_column: int | None
    rows: list[list[str]]
    lines: list[int]
    time_unit: str = "seconds"
    """What the time column's epoch numbers count (see `EPOCH_UNITS`); read as seconds."""

    @property
    def value_columns(self) -> list[str]:
        """Every column that is neither the time nor the sensor id."""
        roles = {self.time_column, self.sensor_column}
        return [c for i, c in enumerate(self.header) if i not in roles]


@dataclass(frozen=True)
class Series:
    """One sensor's readings in time order: `values` is (rows, columns), NaN for a gap."""

    name: str
    times: Float64
    values: Float64
    duplicates: int


def read_csv(path: str | Path, fmt: str = "auto", resample: float | None = None) -> Table:
    """Read a CSV's header and rows; raise `UserError` for a missing or malformed file.

    `fmt`: `csv` (wide or long), `homeassistant` (a history export), `influx` (an InfluxDB
    annotated CSV) or `auto` to tell them apart; see `sensorcast.models.history`.
    """
    from sensorcast.models import history

    p = Path(path)
    kind = history.detect(p) if fmt == "auto" else fmt
    if kind == "homeassistant":
        return history.read_homeassistant(p, resample)
    if resample is not None:  # ignored, it would leave the user believing the data resampled
        what = "an InfluxDB annotated CSV" if kind == "influx" else "a sensor CSV"
        raise UserError(
            f"--resample applies to Home Assistant history exports; {p.name} is {what}, "
            "trained on its own times"
        )
    if kind == "influx":
        return history.read_influx(p)
    return _read_plain(p)


def _read_plain(p: Path) -> Table:
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise UserError(f"{p} is empty: expected a header line such as time,value")
            rows: list[list[str]] = []
            lines: list[int] = []
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise UserError(
                        f"{p} line {reader.line_num} has {len(row)} fields, "
                        f"the header has {len(header)}"
                    )
                rows.append([c.strip() for c in row])
                lines.append(reader.line_num)
    except FileNotFoundError:
        raise UserError(f"data file {p} does not exist") from None
    except UnicodeDecodeError:
        raise UserError(f"{p} is not UTF-8 text") from None
    except csv.Error as exc:
        raise UserError(f"{p} is not valid CSV: {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read {p}: {exc.strerror}") from None
    if not rows:
        raise UserError(f"{p} has a header but no data rows")
    named = [h for h in header if h]  # unnamed columns: a spreadsheet's trailing commas
    if len(set(named)) != len(named):
        raise UserError(f"{p} has repeated column names: {', '.join(named)}")
    if len(header) == 1 and (sep := next((c for c in ";\t|" if c in header[0]), None)):
        raise UserError(
            f"{p} has one column, {header[0]!r}: its values are separated by {sep!r}, and "
            "sensorcast reads comma-separated values (export it with ',' between values)"
        )
    lower = [h.lower() for h in header]
    time_col = next((lower.index(n) for n in lower if n in TIME_NAMES), 0)
    sensor_col = lower.index(SENSOR_COLUMN) if SENSOR_COLUMN in lower else None  # any case
    unit = _epoch_unit(next((r[time_col] for r in rows if r[time_col]), ""))
    return Table(p, header, time_col, sensor_col, rows, lines, unit)


def numeric_columns(table: Table) -> list[str]:
    """Value columns whose first non-empty cell is a number: the default features."""
    found = []
    for name in table.value_columns:
        i = table.header.index(name)
        first = next((r[i] for r in table.rows if r[i].lower() not in MISSING), None)
        if first is not None and _is_number(first):
            found.append(name)
    return found


def resolve_columns(
    table: Table, features: Sequence[str] | None, targets: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """Features (default: every numeric column) and targets (default: the features)."""
    feats = list(features) if features else numeric_columns(table)
    if not feats:
        raise UserError(f"{table.path} has no numeric value columns")
    tgts = list(targets) if targets else list(feats)
    available = ", ".join(table.value_columns)
    for name in dict.fromkeys([*feats, *tgts]):
        if name not in table.value_columns:
            role = "the time or sensor_id column" if name in table.header else "not a column"
            raise UserError(f"{table.path.name}: {name!r} is {role} (value columns: {available})")
        if not re.match(FEATURE_PATTERN, name):
            raise UserError(
                f"{table.path.name}: column {name!r} cannot name a feature "
                "(letters, digits, _ and ., starting with a letter or _): rename it"
            )
    return feats, tgts


def load_series(table: Table, columns: Sequence[str]) -> list[Series]:
    """Parse times and the given columns, group by sensor, sort by time, drop repeated times.

    A repeated timestamp keeps its first row, as the daemon does with live readings.
    """
    times = _parse_times(table)
    values = np.column_stack([_parse_column(table, c) for c in columns])
    names, sensor = _sensor_ids(table)
    _check_unnamed_time_goes_forward(table, times, sensor)
    order = np.lexsort((times, sensor))  # by sensor, then time; stable, so file order on ties
    bounds = np.cumsum(np.bincount(sensor, minlength=len(names)))[:-1]
    out = []
    for name, idx in zip(names, np.split(order, bounds), strict=True):
        keep = np.ones(idx.size, dtype=bool)
        keep[1:] = np.diff(times[idx]) > 0
        out.append(Series(name, times[idx[keep]], values[idx[keep]], int((~keep).sum())))
    return out


def _check_unnamed_time_goes_forward(
    table: Table, times: Float64, sensor: NDArray[np.intp]
) -> None:
    """A first column taken as the time for want of a time-named one must go forward in the
    file: else it is most likely a value (`temperature,humidity` with no time at all), and
    sorting the rows by it would train on a shuffled series without a word."""
    name = table.header[table.time_column]
    if name.lower() in TIME_NAMES:
        return  # a time column by name may come unsorted: the rows are sorted by it
    idx = np.argsort(sensor, kind="stable")  # each sensor's rows in file order
    back = np.flatnonzero((np.diff(times[idx]) < 0) & (np.diff(sensor[idx]) == 0))
    if back.size:
        line = table.lines[int(idx[back[0] + 1])]
        raise UserError(
            f"{table.path.name}: no column is named {', '.join(TIME_NAMES[:-1])} or "
            f"{TIME_NAMES[-1]}, and the first, "
            f"{name!r}, taken as the time, goes back at line {line}: name the time column "
            "'time' (the file needs one)"
        )


def _sensor_ids(table: Table) -> tuple[list[str], NDArray[np.intp]]:
    """Sensor names in order of first appearance, and each row's index into them."""
    if table.sensor_column is None:
        return [table.path.stem], np.zeros(len(table.rows), dtype=np.intp)
    ids = np.array([r[table.sensor_column] for r in table.rows])
    if (ids == "").any():
        line = table.lines[int(np.flatnonzero(ids == "")[0])]
        raise UserError(f"{table.path.name} line {line}: empty sensor_id")
    names, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    by_first = np.argsort(first)
    rank = np.empty_like(by_first)
    rank[by_first] = np.arange(by_first.size)
    return [str(n) for n in names[by_first]], rank[inverse]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_column(table: Table, name: str) -> Float64:
    i = table.header.index(name)
    cells = ["nan" if r[i].lower() in MISSING else r[i] for r in table.rows]
    try:
        out = np.array(cells, dtype=np.float64)
    except ValueError:
        out = None
    if out is not None and not (np.abs(out) > FLOAT32_MAX).any():
        return out  # NaN (a gap) compares False
    for row, text in enumerate(cells):
        if not _is_number(text) or np.isinf(float(text)):
            raise UserError(
                f"{table.path.name} line {table.lines[row]}, column {name!r}: "
                f"{text!r} is not a finite number"
            )
        if abs(float(text)) > FLOAT32_MAX:
            raise UserError(
                f"{table.path.name} line {table.lines[row]}, column {name!r}: {text!r} is "
                f"beyond float32's largest value {FLOAT32_MAX:.7g}: the daemon drops such readings"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _parse_times(table: Table) -> Float64:
    i = table.time_column
    cells = [r[i] for r in table.rows]
    parse = _time_parser(next((c for c in cells if c), ""))
    per_second = EPOCH_UNITS.get(table.time_unit, 1.0)
    out = np.empty(len(cells))
    for row, text in enumerate(cells):
        try:
            out[row] = parse(text)
        except (ValueError, OverflowError):
            raise UserError(
                f"{table.path.name} line {table.lines[row]}: cannot read time "
                f"{text!r} in column {table.header[i]!r} (epoch seconds, ISO-8601 or YYYYMMDD)"
            ) from None
    return out / per_second


def _epoch_unit(sample: str) -> str:
    """The unit of a time column whose first value is `sample` (as `_time_parser` picks the
    format from it): seconds unless it is an epoch number of `MAX_EPOCH_SECONDS` or more."""
    if _time_parser(sample) is not _parse_epoch:
        return "seconds"
    size = abs(float(sample))
    if not MAX_EPOCH_SECONDS <= size < np.inf:
        return "seconds"
    plausible = (u for u, per_s in EPOCH_UNITS.items() if size / per_s < MAX_EPOCH_SECONDS)
    return next(plausible, "nanoseconds")


def _time_parser(sample: str) -> Callable[[str], float]:
    """Pick the column's time format from its first value; 8 digits that make a date are one."""
    try:
        _parse_yyyymmdd(sample)
        return _parse_yyyymmdd
    except ValueError:
        return _parse_epoch if _is_number(sample) else _parse_iso


def _parse_yyyymmdd(text: str) -> float:
    if not _YYYYMMDD.match(text):
        raise ValueError(text)
    return datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC).timestamp()


def _parse_epoch(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(text)
    return value


def _parse_iso(text: str) -> float:
    stamp = from_iso(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()
