"""`sensorcast train` on the history people have: Home Assistant and InfluxDB exports."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from sensorcast.models.bundle import load_bundle

from .conftest import COMMON, train_args

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.train
@pytest.mark.parametrize(
    ("name", "extra", "features"),
    [
        ("homeassistant_history.csv", [], ["value"]),
        ("influx_annotated.csv", ["--features", "temperature"], ["temperature"]),
    ],
)
def test_history_exports_train_into_bundles(tmp_path: Path, name, extra, features) -> None:
    from sensorcast.models import train

    out = tmp_path / "bundle"
    argv = [str(DATA / name), "--out", str(out), "--timesteps", "8", *COMMON, *extra]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert train.run(train_args(argv)) == 0
    meta = load_bundle(out).meta
    assert meta.features == features
    assert meta.cadence_s == 960  # the room sensors' 16 minutes, from the export's times
    assert "wrote" in stdout.getvalue()
    assert json.loads((out / "bundle.json").read_text())["training"]
