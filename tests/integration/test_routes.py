"""Several models in one daemon (issue 14, SPEC 3a), with a real mosquitto and `sensorcast
run` as a process: three routes (two bundles trained here with real TensorFlow, of different
timesteps, and the shipped default) serve their sensors with the right model ids; a SIGHUP
that changes one route's bundle keeps the other routes' buffers; a route file that does not
validate is refused and the old routes keep serving."""

from __future__ import annotations

import argparse
import contextlib
import io
import signal
from pathlib import Path

import pytest

from sensorcast.models import DATA_DIR, DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.mqttio import status_topic

from ..mqtt_helpers import wait_for
from .conftest import write_config

pytest.importorskip("tensorflow")

T0 = 1_700_000_000.0
DEFAULT_T = load_bundle(DEFAULT_BUNDLE).meta.timesteps


def train(data: Path, out: Path, name: str, timesteps: int) -> Path:
    from sensorcast.models import train as train_command

    parser = argparse.ArgumentParser()
    train_command.configure_parser(parser)
    argv = [str(data), "--out", str(out), "--name", name, "--timesteps", str(timesteps)]
    argv += ["--units", "4", "--epochs", "1", "--batch-size", "64", "--patience", "1"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert train_command.run(parser.parse_args([*argv, "--quiet"])) == 0
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """boiler (8 readings), room (12) and boiler-v2 (10), from 700 weeks of real CO2 data."""
    root = tmp_path_factory.mktemp("routes")
    data = root / "co2.csv"
    lines = (DATA_DIR / "co2_maunaloa_weekly.csv").read_text().splitlines(keepends=True)
    data.write_text("".join(lines[:701]))
    return {
        "boiler": train(data, root / "boiler", "boiler", 8),
        "room": train(data, root / "room", "room", 12),
        "boiler-v2": train(data, root / "boiler-v2", "boilerv2", 10),
    }


def routes_toml(boiler: Path, room: Path, extra: str = "") -> str:
    return (
        f'[[routes]]\nsensors = "boiler-*"\nmodel = "{boiler}"\nunit = "°C"\n'
        f'[[routes]]\nsensors = "room-*"\nmodel = "{room}"\n{extra}'
        "[log]\nevent_interval = 0\n"
    )


def test_three_routes_serve_reload_one_and_refuse_a_bad_route_file(
    tmp_path, broker, client_factory, daemon_proc, trained
):
    ids = {name: load_bundle(path).meta.model_id for name, path in trained.items()}
    ids["default"] = load_bundle(DEFAULT_BUNDLE).meta.model_id
    config = tmp_path / "c.toml"
    write_config(
        config,
        broker.port,
        DEFAULT_BUNDLE,
        "sc-routes",
        routes_toml(trained["boiler"], trained["room"]),
    )
    sub = client_factory("forecasts/#", status_topic("sc-routes"))
    pub = client_factory()
    daemon = daemon_proc(config)
    wait_for(lambda: sub.received(status_topic("sc-routes")), timeout=30)
    sent = {"boiler-1": 0, "room-1": 0, "hall": 0}

    def send(sensor: str, n: int = 1) -> None:
        for _ in range(n):
            i = sent[sensor]
            value = 400 + i % 4 * 0.3  # the trained bundles' feature is co2, the default's value
            reading = {"co2": value, "value": value, "ts": T0 + 604_800 * i}
            pub.publish(f"sensors/{sensor}/reading", reading)
            sent[sensor] += 1

    def forecasts(sensor: str) -> list[str]:
        return [f["model"] for f in sub.json(f"forecasts/{sensor}")]

    # each route's window: a forecast on exactly its timesteps-th reading, by its model
    for sensor, timesteps in (("boiler-1", 8), ("room-1", 12), ("hall", DEFAULT_T)):
        send(sensor, timesteps - 1)
    send("boiler-1", 1)
    wait_for(lambda: forecasts("boiler-1") == [ids["boiler"]])
    send("room-1", 1)
    wait_for(lambda: forecasts("room-1") == [ids["room"]])
    send("hall", 1)
    wait_for(lambda: forecasts("hall") == [ids["default"]])
    assert forecasts("boiler-1") == [ids["boiler"]] and forecasts("room-1") == [ids["room"]]

    # SIGHUP with boiler-* on a bundle of another shape: its window starts over; the room
    # and default routes keep their buffers, so their next reading is forecast at once
    config.write_text(config.read_text().replace(str(trained["boiler"]), str(trained["boiler-v2"])))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.logged("reloaded: now serving"))
    assert daemon.logged("buffers reset (timesteps or features changed)")
    assert daemon.logged("room-*' (" + str(trained["room"]) + "): buffers kept")
    send("room-1")
    send("hall")
    wait_for(lambda: len(forecasts("room-1")) == 2 and len(forecasts("hall")) == 2)
    assert forecasts("room-1")[-1] == ids["room"] and forecasts("hall")[-1] == ids["default"]
    send("boiler-1", 9)
    send("room-1")  # after boiler's 9 readings: its forecast, if any, would be in by now
    wait_for(lambda: len(forecasts("room-1")) == 3)
    assert forecasts("boiler-1") == [ids["boiler"]]  # the new window is not full yet
    send("boiler-1")
    wait_for(lambda: forecasts("boiler-1") == [ids["boiler"], ids["boiler-v2"]])

    # a route file with an unreachable route, then one with a missing bundle: refused
    # in one line each, the three routes serve on with their buffers
    good = config.read_text()
    config.write_text(
        good.replace("[log]", '[[routes]]\nsensors = "boiler-9"\nmodel = "/x"\n[log]')
    )
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.logged("routes[2] (sensors = 'boiler-9') is unreachable"))
    config.write_text(good.replace(str(trained["room"]), str(tmp_path / "missing")))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.logged("invalid routes[1].model (SENSORCAST_ROUTES)"))
    failed = [line for line in daemon.lines if "reload failed" in line]
    assert len(failed) == 2 and all(ids["room"] in line for line in failed)
    for sensor in sent:
        send(sensor)
    wait_for(lambda: len(forecasts("hall")) == 3 and len(forecasts("room-1")) == 4)
    wait_for(lambda: len(forecasts("boiler-1")) == 3)
    assert [forecasts(s)[-1] for s in sent] == [ids["boiler-v2"], ids["room"], ids["default"]]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert not daemon.logged("Traceback")
