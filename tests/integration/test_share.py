"""Shared subscriptions on a real mosquitto: the wiring, and the split it causes.

mosquitto delivers each message of `$share/<group>/...` to one member, round-robin: every
reading reaches exactly one daemon, but a sensor's readings are dealt out between them,
so each member's windows miss readings. The members notice and say so.
"""

from __future__ import annotations

import logging
import time

import pytest

from sensorcast.sandbox import ServiceThread
from sensorcast.service import Service

from ..conftest import daemon_settings
from ..mqtt_helpers import wait_for
from .test_lifecycle import run_cli

T0 = 1_700_000_000.0
PERIOD = 0.3


def member(port: int, name: str, group: str = "fleet") -> ServiceThread:
    settings = daemon_settings(
        port, mqtt={"client_id": name}, input={"share_group": group}, log={"drop_interval": 0}
    )
    service = Service(settings)
    assert service.group is not None
    service.group.detector.period = PERIOD
    thread = ServiceThread(service)
    thread.start()
    assert thread.wait_subscribed(), thread.error
    return thread


def test_members_share_the_readings_and_report_the_split(
    broker, client_factory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="sensorcast.overlap")
    members = [member(broker.port, "sc-a"), member(broker.port, "sc-b")]
    try:
        assert members[0].service.link.subscription == "$share/fleet/sensors/+/reading"
        sub = client_factory("forecasts/#")
        pub = client_factory()
        sensors = [f"s{i}" for i in range(5)]  # an odd count: round-robin deals each one out
        rounds = 40
        for i in range(rounds):
            for s in sensors:
                pub.publish(f"sensors/{s}/reading", {"value": 20 + i % 3, "ts": T0 + 60 * i})
            time.sleep(0.03)

        def taken() -> list[float]:
            return [m.service.metrics.value("sensorcast_readings_total") for m in members]

        wait_for(lambda: sum(taken()) == rounds * len(sensors))  # each reading reaches one
        assert min(taken()) > 0
        # each member saw the sensor ids in the messages' own topics
        forecast_topics = {t for t, _, _ in sub.received("forecasts/")}
        assert forecast_topics <= {f"forecasts/{s}" for s in sensors}

        def split() -> list[float]:
            return [m.service.metrics.value("sensorcast_group_split_sensors") for m in members]

        for i in range(rounds, rounds + 150):  # readings keep coming while they compare notes
            for s in sensors:
                pub.publish(f"sensors/{s}/reading", {"value": 20 + i % 3, "ts": T0 + 60 * i})
            time.sleep(0.03)
            if min(split()) == len(sensors):
                break
        assert split() == [len(sensors), len(sensors)]
        assert [m.service.metrics.value("sensorcast_group_members") for m in members] == [2, 2]
        lines = [r.getMessage() for r in caplog.records if r.name == "sensorcast.overlap"]
        assert len(lines) == 2, lines  # one line per member, however many periods passed
        assert "5 sensors (s0, s1, s2, s3, s4)" in lines[0]
        assert "share group 'fleet'" in lines[0]
    finally:
        for m in members:
            m.stop()


def test_a_lone_member_reports_no_split(broker, client_factory):
    alone = member(broker.port, "sc-alone")
    try:
        pub = client_factory()
        for i in range(30):
            pub.publish("sensors/x/reading", {"value": 1.0 + i % 2, "ts": T0 + 60 * i})
            time.sleep(0.03)
        wait_for(lambda: alone.service.metrics.value("sensorcast_group_members") == 1)
        assert alone.service.metrics.value("sensorcast_readings_total") == 30
        assert alone.service.metrics.value("sensorcast_group_split_sensors") == 0
    finally:
        alone.stop()


def test_check_config_accepts_a_share_group():
    result = run_cli("check-config", env={"SENSORCAST_INPUT__SHARE_GROUP": "fleet-1"})
    assert result.returncode == 0, result.stderr
    assert '"share_group": "fleet-1"' in result.stdout


@pytest.mark.parametrize("group", ["a/b", "", "fleet+", "#"])
def test_an_invalid_share_group_is_one_line_and_exit_78(group: str):
    for command in ("check-config", "run"):
        result = run_cli(command, env={"SENSORCAST_INPUT__SHARE_GROUP": group})
        assert result.returncode == 78, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "input.share_group (SENSORCAST_INPUT__SHARE_GROUP)" in lines[0]
