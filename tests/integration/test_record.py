"""`sensorcast record` against a real mosquitto: what `run` accepts lands in a trainable CSV."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from sensorcast.models import DEFAULT_BUNDLE, dataset

from ..conftest import daemon_settings
from ..mqtt_helpers import wait_for
from .command import Command
from .conftest import write_config

T0 = 1_700_000_000.0
HEADER = "time,sensor_id,value\n"


def start_record(config: Path, out: Path, *args: str) -> Command:
    rec = Command("record", "--config", str(config), "--out", str(out), *args)
    rec.wait_line("recording sensors/+/reading", stream="stderr")
    return rec


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True) if path.exists() else []


@pytest.fixture
def config(tmp_path, broker) -> Path:
    return write_config(tmp_path / "rec.toml", broker.port, DEFAULT_BUNDLE, client_id="sc-rec")


def test_records_accepted_readings_and_skips_bad_ones(tmp_path, config, client_factory):
    out = tmp_path / "readings.csv"
    rec = start_record(config, out)
    pub = client_factory()
    try:
        pub.publish("sensors/boiler-3/reading", {"value": 61.5, "ts": T0})
        pub.publish("sensors/boiler-3/reading", {"value": 61.75, "ts": "2023-11-14T22:14:20Z"})
        before = time.time()
        pub.publish("sensors/room.kitchen/reading", 21)
        pub.publish("sensors/room.kitchen/reading", {"value": 21.25})
        after = time.time()
        for topic, bad in [
            ("sensors/boiler-3/reading", b"not json"),
            ("sensors/boiler-3/reading", {"value": "hot"}),
            ("sensors/boiler-3/reading", b'{"value": NaN}'),
            ("sensors/boiler-3/reading", {"temperature": 60}),
            ("sensors/boiler-3/reading", {"value": 60, "ts": T0}),  # stale
            ("sensors/bad id!/reading", 1),
        ]:
            pub.publish(topic, bad)
        pub.publish("sensors/boiler-3/reading", {"value": 62, "ts": T0 + 120})
        # on disk while it still runs: a killed recorder loses at most the last flush
        wait_for(lambda: len(lines_of(out)) == 6, timeout=5)
        rec.signal(signal.SIGINT)
        assert rec.wait(timeout=15) == 0
    finally:
        rec.close()
    lines = lines_of(out)
    assert lines[0] == HEADER
    rows = [line.rstrip("\n").split(",") for line in lines[1:]]
    boiler = [r for r in rows if r[1] == "boiler-3"]
    assert boiler == [
        ["1700000000.0", "boiler-3", "61.5"],
        ["1700000060.0", "boiler-3", "61.75"],
        ["1700000120.0", "boiler-3", "62.0"],
    ]
    kitchen = [r for r in rows if r[1] == "room.kitchen"]
    assert [r[2] for r in kitchen] == ["21.0", "21.25"]
    assert all(before - 1 <= float(r[0]) <= after + 1 for r in kitchen)  # receive time
    summary = rec.stderr[-1]
    assert "recorded 5 readings" in summary and "dropped 6" in summary
    # the training loader reads it as two series
    series = dataset.load_series(dataset.read_csv(out), ["value"])
    assert {s.name: s.values[:, 0].tolist() for s in series} == {
        "boiler-3": [61.5, 61.75, 62.0],
        "room.kitchen": [21.0, 21.25],
    }


def test_appends_to_its_own_file_and_refuses_another_header(tmp_path, config, client_factory):
    out = tmp_path / "readings.csv"
    pub = client_factory()
    for run, start in enumerate((0, 3)):
        rec = start_record(config, out, "--count", "2")
        try:
            for i in range(start, start + 3):
                pub.publish("sensors/s1/reading", {"value": i, "ts": T0 + i})
            assert rec.wait(timeout=15) == 0  # --count ends it
        finally:
            rec.close()
        assert lines_of(out).count(HEADER) == 1
        assert len(lines_of(out)) == 1 + 2 * (run + 1)
    times = [float(line.split(",")[0]) for line in lines_of(out)[1:]]
    assert times == [T0, T0 + 1, T0 + 3, T0 + 4]

    other = tmp_path / "climate.csv"
    other.write_text("time,sensor_id,temperature\n1,a,2\n")
    rec = Command("record", "--config", str(config), "--out", str(other))
    assert rec.wait(timeout=15) == 1
    assert len(rec.stderr) == 1 and "header" in rec.stderr[0]
    assert other.read_text() == "time,sensor_id,temperature\n1,a,2\n"


def test_a_hangup_ends_it_as_a_stop_does(tmp_path, config, client_factory):
    """The terminal it was started from closed (SIGHUP): exit 0 with its summary (it died of
    the signal, exit 129, and said nothing of what it had written)."""
    out = tmp_path / "readings.csv"
    rec = start_record(config, out)
    try:
        client_factory().publish("sensors/s1/reading", {"value": 1.5, "ts": T0})
        wait_for(lambda: len(lines_of(out)) == 2, timeout=5)
        rec.signal(signal.SIGHUP)
        assert rec.wait(timeout=15) == 0
    finally:
        rec.close()
    assert "recorded 1 readings" in rec.stderr[-1]


def test_a_sensors_glob_that_matches_no_id_is_refused_in_one_line(tmp_path, config):
    rec = Command(
        "record", "--config", str(config), "--out", str(tmp_path / "r.csv"), "--sensors", "["
    )
    assert rec.wait(timeout=15) == 1
    assert len(rec.stderr) == 1 and "matches no sensor id" in rec.stderr[0]


@pytest.mark.parametrize("limit", [["--duration", "nan"], ["--count", "-1"]])
def test_a_limit_that_is_not_a_number_of_at_least_0_is_refused(tmp_path, config, limit):
    rec = Command("record", "--config", str(config), "--out", str(tmp_path / "r.csv"), *limit)
    assert rec.wait(timeout=15) == 1
    assert len(rec.stderr) == 1 and "must be 0 (no limit) or more" in rec.stderr[0]


def test_recorder_leaves_the_daemons_session_alone(tmp_path, broker, client_factory, run_daemon):
    """Same config, same client_id as the daemon: both keep their connections and both see all."""
    settings = daemon_settings(broker.port)
    daemon = run_daemon(settings)
    config = write_config(tmp_path / "same.toml", broker.port, DEFAULT_BUNDLE, client_id="sc-test")
    out = tmp_path / "readings.csv"
    rec = start_record(config, out)
    sub = client_factory("forecasts/#")
    pub = client_factory()
    t = daemon.service.meta.timesteps
    try:
        for i in range(t + 2):
            pub.publish("sensors/boiler-3/reading", {"value": 60 + i % 3, "ts": T0 + 60 * i})
        wait_for(lambda: len(sub.received()) == 3, timeout=10)
        wait_for(lambda: len(lines_of(out)) == 1 + t + 2, timeout=5)
        assert daemon.service.link.connected.is_set()
        rec.signal(signal.SIGTERM)
        assert rec.wait(timeout=15) == 0
    finally:
        rec.close()
    assert daemon.service.link.connected.is_set()
