"""`sensorcast record` -> `sensorcast train` -> the daemon serves the new bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from sensorcast.inference import ServedBundle
from sensorcast.models import train
from sensorcast.models.bundle import SCHEMA_VERSION, load_bundle
from sensorcast.models.realdata import by_name
from sensorcast.readings import PayloadParser
from sensorcast.record import Recorder, csv_header, open_csv
from sensorcast.topics import TopicTemplate

from .conftest import train_args

pytestmark = pytest.mark.train


def test_recorded_readings_train_a_bundle_the_daemon_serves(tmp_path: Path) -> None:
    topic = TopicTemplate("sensors/{sensor_id}/reading", allow_wildcards=True)
    recorder = Recorder(topic, PayloadParser(["value"]), max_sensors=10, count=0, drop_interval=60)
    sensors = ("room_temperature", "room_humidity", "room_co2")
    series = {name: by_name(name).load() for name in sensors}
    for i in range(509):  # interleaved, as readings arrive
        for name, (times, values) in series.items():
            if np.isfinite(values[i]):
                payload = json.dumps({"value": values[i], "ts": times[i]}).encode()
                recorder.on_message(f"sensors/{name}/reading", payload)
    data = tmp_path / "readings.csv"
    with open_csv(data, csv_header(["value"])) as out:
        recorder.write(out)
    assert recorder.recorded == 3 * 509
    argv = [str(data), "--out", str(tmp_path / "b"), "--horizon", "3", "--units", "8",
            "--epochs", "2", "--quiet"]  # fmt: skip
    assert train.run(train_args(argv)) == 0
    bundle = load_bundle(tmp_path / "b")
    assert bundle.meta.schema_version == SCHEMA_VERSION and bundle.meta.training["sensors"] == 3
    # several sensors: `last` with each window's own step scale, not a pooled statistic
    assert bundle.meta.normalisation.mode == "last" and bundle.meta.normalisation.scale is None
    served = ServedBundle.load(bundle)
    window = series["room_co2"][1][:20].reshape(1, 20, 1)
    forecast, scale = served.forecaster.forecast_scaled(window)
    assert forecast.shape == (1, 3, 1) and scale.shape == (1, 1, 1) and (scale > 0).all()
    assert np.isfinite(forecast).all()
