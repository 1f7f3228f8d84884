"""The history people already have, read as training tables: Home Assistant and InfluxDB.

- A Home Assistant history export (the history panel's download: `entity_id,state,
  last_changed`) records a state when it changes, and the state holds until the next
  change. Each numeric entity becomes one series, resampled onto a regular grid by
  carrying the last state forward (at `resample` seconds, default: the median time
  between changes in the file); `unavailable`, `unknown` and other words are gaps.
  The feature is named `value`, the default model's feature.
- An InfluxDB annotated CSV (Flux query results: `#datatype`, `#group`, `#default`
  annotation rows, tables separated by blank lines, `_time`, `_value`, `_field`,
  `_measurement` and tag columns; or pivoted, one column per field): one series per
  measurement and tag set, named like line protocol (`sensors,room=kitchen`); each
  numeric field is a feature named after it.
Both come back as a long `Table` (`time,sensor_id,<features>`), so training treats
them like any other CSV.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Literal

import numpy as np

from sensorcast.errors import UserError
from sensorcast.models.csvdata import SENSOR_COLUMN, Table
from sensorcast.readings import from_iso

Format = Literal["auto", "csv", "homeassistant", "influx"]
FORMATS: tuple[Format, ...] = ("auto", "csv", "homeassistant", "influx")
HA_COLUMNS = ("entity_id", "state", "last_changed")
INFLUX_SYSTEM = frozenset({"", "result", "table", "_start", "_stop", "_time", "_measurement"})
INFLUX_NUMERIC = frozenset({"double", "long", "unsignedLong"})
MAX_ROWS = 5_000_000
"""Resampled rows beyond which a Home Assistant export is refused (choose a coarser grid)."""


def detect(path: Path) -> Format:
    """`homeassistant`, `influx` or `csv`, from the file's first non-empty line."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            first = next((line for line in f if line.strip()), "")
    except FileNotFoundError:
        raise UserError(f"data file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if first.startswith(("#datatype", "#group", "#default")):
        return "influx"
    header = [h.strip() for h in next(csv.reader([first]), [])]
    if all(c in header for c in HA_COLUMNS):
        return "homeassistant"
    if "_time" in header and ("_value" in header or "_measurement" in header):
        return "influx"
    return "csv"


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                yield reader.line_num, [c.strip() for c in row]
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    except csv.Error as exc:
        raise UserError(f"{path} is not valid CSV: {exc}") from None


def _time(path: Path, line: int, text: str) -> float:
    try:
        stamp = from_iso(text)
    except ValueError:
        raise UserError(f"{path.name} line {line}: cannot read time {text!r} (ISO-8601)") from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return float("nan")
    return value if np.isfinite(value) else float("nan")


def read_homeassistant(path: Path, resample: float | None = None) -> Table:
    """A Home Assistant history export as a long table on a regular grid (see module doc)."""
    rows = _rows(path)
    _, header = next(rows, (0, []))
    col = {name: header.index(name) for name in HA_COLUMNS if name in header}
    if len(col) < len(HA_COLUMNS):
        raise UserError(f"{path.name}: a Home Assistant export has columns {','.join(HA_COLUMNS)}")
    changes: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for line, row in rows:
        if not any(row):
            continue
        if len(row) != len(header):
            raise UserError(f"{path.name} line {line} has {len(row)} fields, not {len(header)}")
        when = _time(path, line, row[col["last_changed"]])
        changes[row[col["entity_id"]]].append((when, _number(row[col["state"]]), line))
    numeric = {e: sorted(c) for e, c in changes.items() if any(np.isfinite(v) for _, v, _ in c)}
    if not numeric:
        raise UserError(f"{path.name}: no entity has numeric states to learn from")
    step = resample or _median_step(numeric.values())
    if step <= 0:
        raise UserError("--resample must be a positive number of seconds")
    out: list[list[str]] = []
    lines: list[int] = []
    for entity, points in numeric.items():
        times = np.array([t for t, _, _ in points])
        start = np.ceil(times[0] / step) * step
        # counted before the grid is made: a fine step over months would not fit in memory
        if len(out) + max(0.0, (times[-1] - start) / step) >= MAX_ROWS:
            raise UserError(
                f"{path.name}: resampling every {step:g}s makes over {MAX_ROWS:,} rows; "
                "choose a coarser --resample"
            )
        grid = np.arange(start, times[-1] + step / 2, step)
        latest = np.searchsorted(times, grid, side="right") - 1  # the state holding at t
        for t, i in zip(grid.tolist(), latest.tolist(), strict=True):
            value = points[i][1]
            out.append([repr(t), entity, repr(value) if np.isfinite(value) else ""])
            lines.append(points[i][2])
    return Table(path, ["time", SENSOR_COLUMN, "value"], 0, 1, out, lines)


def _median_step(series: Iterable[list[tuple[float, float, int]]]) -> float:
    """The median time between changes, in whole seconds (at least 1)."""
    gaps = [np.diff([t for t, _, _ in points]) for points in series]
    steps = np.concatenate(gaps) if gaps else np.array([])
    steps = steps[steps > 0]
    return float(max(1.0, round(float(np.median(steps))))) if steps.size else 1.0


def read_influx(path: Path) -> Table:
    """An InfluxDB annotated CSV as a long table, one series per measurement and tag set."""
    values: dict[tuple[str, float], dict[str, str]] = defaultdict(dict)
    first_line: dict[tuple[str, float], int] = {}
    fields: dict[str, None] = {}
    header: list[str] | None = None
    datatypes: list[str] = []
    for line, row in _rows(path):
        if not any(row):
            header, datatypes = None, []  # a blank line ends a table
            continue
        if row[0].startswith("#"):
            if row[0] == "#datatype":
                datatypes, header = row, None
            continue
        if header is None:
            header = row
            if "_time" not in header:
                raise UserError(f"{path.name} line {line}: an InfluxDB table needs a _time column")
            continue
        if len(row) != len(header):
            raise UserError(f"{path.name} line {line} has {len(row)} fields, not {len(header)}")
        cells = dict(zip(header, row, strict=True))
        types = dict(zip(header, datatypes, strict=False)) if datatypes else {}
        when = _time(path, line, cells["_time"])
        if "_field" in cells and "_value" in cells:
            measured = {cells["_field"]: cells["_value"]}
            tags = [c for c in header if c not in INFLUX_SYSTEM | {"_field", "_value"}]
        else:  # pivoted: numeric columns are fields, the others tags
            measured = {
                c: v
                for c, v in cells.items()
                if c not in INFLUX_SYSTEM and _is_field(types.get(c), v)
            }
            tags = [c for c in header if c not in INFLUX_SYSTEM and c not in measured]
        name = ",".join(
            [cells.get("_measurement", "")] + [f"{t}={cells[t]}" for t in sorted(tags)]
        ).strip(",")
        key = (name or path.stem, when)
        first_line.setdefault(key, line)
        for field, text in measured.items():
            if text == "" or np.isfinite(_number(text)):  # string fields are not features
                values[key][field] = text
                fields.setdefault(field)
    if not values:
        raise UserError(f"{path.name}: no numeric InfluxDB rows found")
    columns = list(fields)
    rows = []
    lines = []
    for key in sorted(values):
        rows.append([repr(key[1]), key[0], *(values[key].get(f, "") for f in columns)])
        lines.append(first_line[key])
    return Table(path, ["time", SENSOR_COLUMN, *columns], 0, 1, rows, lines)


def _is_field(datatype: str | None, text: str) -> bool:
    if datatype is not None:
        return datatype in INFLUX_NUMERIC
    return bool(text) and np.isfinite(_number(text))
