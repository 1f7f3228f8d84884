"""The eight real series of the README's "On series it has never seen", as CSVs.

    python tests/perf/unseen_series.py DIR
    python tests/perf/guard_trace.py DIR/pm25.csv --column value
    python tests/perf/replay.py DIR/sunspots_1929.csv --column value --spikes 8

They come from data files inside three PyPI packages, downloaded (no dependencies, not
installed) with this Python's pip: pvlib 0.16.1 (NREL TMY3 hourly weather at Greensboro
and Sand Point, an hourly PM2.5 record; BSD-3), vega-datasets 0.9.0 (Seattle's daily
weather; MIT), pmdarima 2.1.1 (monthly sunspot numbers 1749-1983; MIT). Each CSV has the
columns `timestamp,value`. A TMY3 year is months of different years put together, so its
hours are numbered from 2021-01-01 01:00. Nothing here is collected by pytest.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

PACKAGES = ("pvlib==0.16.1", "vega-datasets==0.9.0", "pmdarima==2.1.1")
Rows = list[tuple[str, str]]


def tmy3(text: str, column: str) -> Rows:
    """An hourly TMY3 column, its hours numbered from 2021-01-01 01:00."""
    table = list(csv.reader(io.StringIO(text)))
    at = table[1].index(column)
    start = dt.datetime(2021, 1, 1, 1)
    return [
        ((start + dt.timedelta(hours=k)).isoformat(), row[at]) for k, row in enumerate(table[2:])
    ]


def series(read: dict[str, bytes]) -> dict[str, Rows]:
    greensboro = read["pvlib/data/723170TYA.CSV"].decode()
    sand_point = read["pvlib/data/703165TY.csv"].decode()
    soiling = list(
        csv.DictReader(io.StringIO(read["pvlib/data/soiling_hsu_example_inputs.csv"].decode()))
    )
    seattle = list(
        csv.DictReader(io.StringIO(read["vega_datasets/_data/seattle-weather.csv"].decode()))
    )
    text = gzip.decompress(read["pmdarima/datasets/data/sunspots.txt.gz"]).decode()
    spots = [v for line in text.splitlines() for v in line.split()]
    months = [(f"{1749 + k // 12:04d}-{k % 12 + 1:02d}-01", v) for k, v in enumerate(spots)]
    return {
        "greensboro_temp": tmy3(greensboro, "Dry-bulb (C)"),
        "greensboro_ghi": tmy3(greensboro, "GHI (W/m^2)"),
        "sandpoint_wind": tmy3(sand_point, "Wspd (m/s)"),
        "pm25": [(r["TimeStamp"].replace(" ", "T"), r["PM2_5"]) for r in soiling],
        "seattle_tmax": [(r["date"].replace("/", "-"), r["temp_max"]) for r in seattle],
        "seattle_wind": [(r["date"].replace("/", "-"), r["wind"]) for r in seattle],
        "sunspots": months,
        "sunspots_1929": months[-660:],
    }


def main(
    packages: tuple[str, ...] = PACKAGES,
    wanted: Callable[[str], bool] = lambda name: "data/" in name,
    make: Callable[[dict[str, bytes]], dict[str, Rows]] = series,
    doc: str = __doc__,
) -> int:
    """Download `packages` (their wheels, no dependencies), read their files `wanted` and
    write the series `make` finds in them as CSVs to the directory given."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("out", type=Path, help="directory for the CSVs")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp]
        subprocess.run([*pip, *packages], check=True)
        read: dict[str, bytes] = {}
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as z:
                read.update({name: z.read(name) for name in z.namelist() if wanted(name)})
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in make(read).items():
        with (args.out / f"{name}.csv").open("w", newline="") as f:
            csv.writer(f).writerows([("timestamp", "value"), *rows])
        print(f"{args.out / name}.csv: {len(rows)} readings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
