"""Log formats: syslog priority prefixes for journald, timestamps for people, JSON lines."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensorcast.config import load_settings
from sensorcast.drops import Drop, DropLog
from sensorcast.errors import ConfigError
from sensorcast.events import SensorEvents
from sensorcast.linkproblems import PahoLog
from sensorcast.logs import JournalFormatter, JSONFormatter, level_name, stderr_is_journal


def record(level: int, msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("sensorcast.mqttio", level, __file__, 1, msg, (), None)
    rec.__dict__.update(extra)
    return rec


def test_journal_lines_carry_the_syslog_priority_on_every_line():
    fmt = JournalFormatter()
    assert fmt.format(record(logging.WARNING, "broker gone")) == (
        "<4>WARNING sensorcast.mqttio: broker gone"
    )
    assert fmt.format(record(logging.DEBUG, "x")).startswith("<7>")
    assert fmt.format(record(logging.INFO, "x")).startswith("<6>")
    assert fmt.format(record(logging.CRITICAL, "x")).startswith("<2>")
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record(logging.ERROR, "failed")
        rec.exc_info = sys.exc_info()
    lines = fmt.format(rec).splitlines()
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)  # the traceback too


def test_json_lines_carry_the_structured_fields():
    line = JSONFormatter().format(
        record(logging.INFO, "sensor a: first reading", sensor_id="a", event="first_seen")
    )
    doc = json.loads(line)
    assert doc["level"] == "info" and doc["logger"] == "sensorcast.mqttio"
    assert doc["message"] == "sensor a: first reading"
    assert doc["sensor_id"] == "a" and doc["event"] == "first_seen"
    assert doc["time"].endswith("+00:00")


def test_a_json_line_stays_one_line_for_every_reader():
    """A topic with U+2028 in it (any client may publish one) split the line where log tools
    split lines as Python's `splitlines` does."""
    text = "sensors/a\u2028b\u2029c\x85d/reading"
    line = JSONFormatter().format(record(logging.WARNING, "dropped", topic=text))
    assert line.splitlines() == [line]
    assert json.loads(line)["topic"] == text


def test_a_dropped_reading_s_json_line_carries_its_reason_and_topic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A log shipper filters drops by reason and topic, as the metric labels them, without
    parsing the message."""
    with caplog.at_level(logging.WARNING, logger="sensorcast"):
        DropLog(0.0)(Drop.BAD_TS, "sensors/boiler-3/reading")
    (rec,) = caplog.records
    doc = json.loads(JSONFormatter().format(rec))
    assert doc["event"] == "dropped" and doc["reason"] == "bad_ts"
    assert doc["topic"] == "sensors/boiler-3/reading"
    assert doc["message"].startswith("dropped a reading on 'sensors/boiler-3/reading': bad_ts")


def test_journal_stream_is_recognised_only_for_the_stream_it_names(tmp_path: Path):
    log = tmp_path / "stderr"
    with log.open("w") as f:
        st = os.fstat(f.fileno())
        assert stderr_is_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not stderr_is_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not stderr_is_journal(f, {"JOURNAL_STREAM": "garbage"})
        assert not stderr_is_journal(f, {})


SCRIPT = """
import logging
from sensorcast.logs import setup_logging
setup_logging("info", "{fmt}")
logging.getLogger("sensorcast.mqttio").warning("broker %s unreachable", "localhost:1883")
logging.getLogger("sensorcast.service").info("serving default")
logging.getLogger("sensorcast.service").debug("not shown")
"""


@pytest.mark.parametrize("journal", [True, False])
def test_auto_format_follows_journal_stream(tmp_path: Path, journal: bool):
    """As systemd starts the daemon: stderr a stream whose device:inode is in JOURNAL_STREAM."""
    out = tmp_path / "stderr"
    with out.open("w") as f:
        st = os.fstat(f.fileno())
        env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        if journal:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        subprocess.run(
            [sys.executable, "-c", SCRIPT.format(fmt="auto")], stderr=f, env=env, check=True
        )
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    if journal:
        assert lines == [
            "<4>WARNING sensorcast.mqttio: broker localhost:1883 unreachable",
            "<6>INFO sensorcast.service: serving default",
        ]
    else:
        assert lines[0][:4].isdigit() and " WARNING sensorcast.mqttio: broker" in lines[0]


def test_levels_in_any_case():
    assert level_name("debug") == "DEBUG" and level_name(" Warning ") == "WARNING"
    assert load_settings(None, log={"level": "info"}).log.level == "INFO"
    assert load_settings(None, log={"format": "json"}).log.format == "json"
    # every choice of words, as the level: `format = "JSON"` was refused, exit 78
    assert load_settings(None, log={"format": "JSON"}).log.format == "json"
    assert load_settings(None, inference={"overload": " Coalesce"}).inference.overload == "coalesce"
    assert load_settings(None, model={"backend": "LiteRT"}).model.backend == "litert"
    with pytest.raises(ConfigError, match=r"log\.format"):
        load_settings(None, log={"format": "yaml"})
    with pytest.raises(ConfigError, match=r"log\.level"):
        load_settings(None, log={"level": "loud"})
    with pytest.raises(ValueError):
        level_name("loud")


def test_sensor_events_are_bounded_and_summed_up(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, "sensorcast.sensors")
    events = SensorEvents(interval=60.0, burst=3, timesteps=20)
    for i in range(10):
        events.first_seen(f"s{i}")
    events.gap_reset("s1", gap=4.0, cadence=0.2, max_gap=3.0)
    events.window_ready("s1", "default@1")  # once per fill: `Window.first` (test_buffer)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == [f"sensor s{i}: first reading" for i in range(3)]
    assert lines[3] == (
        "sensor s1: window reset: 4s since the last reading, more than 3 x its cadence of "
        "0.2s; forecasts resume after 19 more readings"
    )
    assert lines[4] == "sensor s1: window full (20 readings), forecasting with default@1"
    assert len(lines) == 5
    events.gap_reset("s2", gap=900.0, cadence=60.0, max_gap=3.0, spread=4.6)  # on change
    assert caplog.records[-1].getMessage() == (
        "sensor s2: window reset: 900s since the last reading, more than 3 x its cadence of "
        "60s x its spread of 4.6; forecasts resume after 19 more readings"
    )
    events.gap_reset("s3", gap=-3600.0, cadence=60.0, max_gap=3.0)  # buffer.push, timed_here
    assert caplog.records[-1].getMessage() == (
        "sensor s3: window reset: the system clock went back 3600s (its readings carry no "
        "ts and are timed on arrival); forecasts resume after 19 more readings"
    )
    events.flush(now=1e12)  # the interval is over: what was held back is summed up
    assert caplog.records[-1].getMessage().startswith("... and 7 more new sensors in 60s")


PAHO = """
import logging
from sensorcast.logs import setup_logging
setup_logging("{level}", "journal")
logging.getLogger("sensorcast.paho").error(
    "Client is not connected. Socket: None). Last known Connection State: MQTT_CS_DISCONNECTED"
)
logging.getLogger("sensorcast.paho").error("a real paho error")
"""


@pytest.mark.parametrize("level", ["info", "debug"])
def test_pahos_not_connected_noise_at_a_clean_stop_is_not_an_error(level: str):
    """paho 2.x logs it at ERROR at every clean disconnect; journalctl -p err must stay quiet."""
    result = subprocess.run(
        [sys.executable, "-c", PAHO.format(level=level)], capture_output=True, text=True
    )
    lines = result.stderr.splitlines()
    assert "<3>ERROR sensorcast.paho: a real paho error" in lines
    noise = [line for line in lines if "not connected" in line]
    assert noise == ([] if level == "info" else [noise[0]])
    assert all(line.startswith("<7>DEBUG") for line in noise)


@pytest.mark.parametrize("way", ["receive", "send"])
def test_a_socket_error_is_left_to_the_link_to_name(way: str, caplog: pytest.LogCaptureFixture):
    """A broker that goes away mid-read or mid-write: the link says it disconnected (a
    warning); paho's own line about the socket is not a second one, at ERROR."""
    paho = PahoLog(logging.getLogger("sensorcast.paho"))
    error = BrokenPipeError(32, "Broken pipe")
    with caplog.at_level(logging.DEBUG, logger="sensorcast.paho"):
        paho.log(logging.ERROR, f"failed to {way} on socket: %s", error)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert paho.take_socket_error() is error
