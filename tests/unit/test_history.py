"""Home Assistant history exports and InfluxDB annotated CSVs, read as training tables."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from sensorcast.errors import UserError
from sensorcast.models import DATA_DIR
from sensorcast.models.csvdata import load_series, read_csv
from sensorcast.models.history import detect

DATA = Path(__file__).resolve().parents[1] / "data"
HA = DATA / "homeassistant_history.csv"
INFLUX = DATA / "influx_annotated.csv"


def original(column: str) -> list[float]:
    with (DATA_DIR / "room_occupancy.csv").open() as f:
        return [float(r[column]) for r in list(csv.DictReader(f))[:200]]


def test_formats_are_told_apart():
    assert detect(HA) == "homeassistant"
    assert detect(INFLUX) == "influx"
    assert detect(DATA_DIR / "room_occupancy.csv") == "csv"


def test_home_assistant_export_becomes_one_regular_series_per_numeric_entity():
    table = read_csv(HA)
    assert table.header == ["time", "sensor_id", "value"]
    series = {s.name: s for s in load_series(table, ["value"])}
    assert set(series) == {"sensor.office_temperature", "sensor.office_co2"}  # on/off left out
    temp = series["sensor.office_temperature"]
    steps = np.diff(temp.times)
    assert (steps == 960).all()  # the median time between changes: the sensor's 16 minutes
    expected = original("temperature")
    values = temp.values[:, 0]
    assert np.isnan(values[60:63]).all()  # `unavailable` is a gap, not a number
    assert 190 < len(values) <= 200  # up to the last change: later, the export says nothing
    ok = [i for i in range(len(values)) if not 60 <= i < 63]
    assert np.allclose(values[ok], np.array(expected)[ok])  # unchanged states carried forward
    coarse = load_series(read_csv(HA, resample=1920), ["value"])
    assert np.diff(coarse[0].times).min() == 1920


def test_a_resample_step_too_fine_for_memory_is_refused_before_the_grid_is_made():
    """The grid used to be allocated before its size was checked: at 1e-9 s over the
    export's days, a numpy MemoryError traceback (1.36 PiB); a little coarser, gigabytes."""
    with pytest.raises(UserError, match="resampling every 1e-09s makes over 5,000,000 rows"):
        read_csv(HA, resample=1e-9)


@pytest.mark.parametrize(
    ("data", "what"),
    [(DATA_DIR / "room_occupancy.csv", "a sensor CSV"), (INFLUX, "an InfluxDB annotated CSV")],
)
def test_resample_on_data_that_is_not_a_home_assistant_export_is_refused(data: Path, what: str):
    """`--resample` used to be ignored there without a word: the bundle was trained on the
    file's own times while the user believed it resampled."""
    with pytest.raises(UserError, match=f"applies to Home Assistant history exports; .* is {what}"):
        read_csv(data, resample=60)


def test_influx_annotated_csv_becomes_one_series_per_measurement_and_tag_set():
    table = read_csv(INFLUX)
    assert table.header == ["time", "sensor_id", "temperature", "humidity"]
    (series,) = load_series(table, ["temperature", "humidity"])
    assert series.name == "climate,room=office"
    assert len(series.times) == 200
    assert np.allclose(series.values[:, 0], original("temperature"))
    assert np.allclose(series.values[:, 1], original("humidity"))


def test_forced_formats_and_one_line_errors(tmp_path: Path):
    words = tmp_path / "switches.csv"
    words.write_text("entity_id,state,last_changed\nswitch.a,on,2024-01-01T00:00:00Z\n")
    with pytest.raises(UserError, match="no entity has numeric states"):
        read_csv(words)
    bad = tmp_path / "bad.csv"
    bad.write_text("entity_id,state,last_changed\nsensor.a,1,yesterday\n")
    with pytest.raises(UserError, match=r"bad.csv line 2: cannot read time 'yesterday'"):
        read_csv(bad)
    no_time = tmp_path / "flux.csv"
    no_time.write_text("#datatype,string,double\n,result,_value\n,,1.0\n")
    with pytest.raises(UserError, match="needs a _time column"):
        read_csv(no_time)
    with pytest.raises(UserError, match="line 1: an InfluxDB table needs a _time column"):
        read_csv(HA, fmt="influx")  # a format forced on the wrong file
