"""Routes (SPEC 3a): validation of the route list, and which route serves a sensor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sensorcast import service as service_module
from sensorcast.buffer import SensorTable, Window
from sensorcast.config import load_settings
from sensorcast.errors import ConfigError
from sensorcast.globs import uncovered
from sensorcast.handoff import ReadyQueue
from sensorcast.readings import read_payload
from sensorcast.routes import load_models
from sensorcast.service import Service

from ..hostile_bundles import rewritten


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("SENSORCAST_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Copies of the shipped bundle under other names (so other model ids), same shape."""
    root = tmp_path_factory.mktemp("bundles")
    return {name: rewritten(root / name, name=name) for name in ("boiler", "co2", "boiler2")}


def error_of(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(None, **overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- globs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "earlier", "covered"),
    [
        ("boiler-1*", ["boiler-*"], True),
        ("boiler-*", ["boiler-1*"], False),
        ("[ab]*", ["a*", "b*"], True),  # covered by the two together, by neither alone
        ("[ab]*", ["a*"], False),
        ("a?c", ["a*c"], True),
        ("a*c", ["a?c"], False),
        ("b[0-9]", ["b[0-4]", "b[5-9]"], True),
        ("b[0-9]", ["b[0-4]", "b[5-8]"], False),
        ("*", ["?*"], True),  # ids are at least one character long
        ("*-co2", ["room-*"], False),
    ],
)
def test_a_glob_is_covered_exactly_when_earlier_globs_match_all_it_matches(
    glob: str, earlier: list[str], covered: bool
) -> None:
    witness = uncovered(glob, earlier)
    assert (witness is None) == covered
    if witness is not None:  # a real sensor id the glob takes and the earlier ones do not
        import fnmatch

        assert fnmatch.fnmatchcase(witness, glob)
        assert not any(fnmatch.fnmatchcase(witness, e) for e in earlier)


def test_a_glob_that_no_sensor_id_can_match_has_no_witness() -> None:
    assert uncovered("boiler/1") is None  # '/' is never in a sensor id
    assert uncovered("?" * 65) is None  # ids are at most 64 characters
    assert uncovered("boiler-*") == "boiler-"


# --- configuration --------------------------------------------------------------


def test_routes_from_toml_keep_their_order_and_presentation(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[[routes]]\nsensors = "boiler-*"\nmodel = "/b/boiler"\nunit = "°C"\n'
        'device_class = "temperature"\nname = "Boiler {sensor_id}"\n'
        '[[routes]]\nsensors = "*-co2"\nmodel = "/b/co2"\n'
    )
    s = load_settings(config)
    assert [(r.sensors, str(r.model)) for r in s.routes] == [
        ("boiler-*", "/b/boiler"),
        ("*-co2", "/b/co2"),
    ]
    assert (s.routes[0].unit, s.routes[0].device_class) == ("°C", "temperature")
    assert s.model.fallback is True


def test_routes_from_the_environment_are_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    routes = [{"sensors": "boiler-*", "model": "/b/boiler"}, {"sensors": "x?", "model": "/b/x"}]
    monkeypatch.setenv("SENSORCAST_ROUTES", json.dumps(routes))
    monkeypatch.setenv("SENSORCAST_MODEL__FALLBACK", "false")
    s = load_settings()
    assert [r.sensors for r in s.routes] == ["boiler-*", "x?"]
    assert s.model.fallback is False


def test_model_path_from_the_environment_alone_is_one_model_and_no_routes(
    monkeypatch: pytest.MonkeyPatch, bundles: dict[str, Path]
) -> None:
    monkeypatch.setenv("SENSORCAST_MODEL__PATH", str(bundles["boiler"]))
    s = load_settings()
    assert s.routes == []
    [only] = load_models(s)
    assert only.spec.index is None and only.bundle.meta.name == "boiler"


def test_a_duplicate_route_is_refused() -> None:
    routes = [{"sensors": "boiler-*", "model": "/a"}, {"sensors": "boiler-*", "model": "/b"}]
    assert error_of(routes=routes) == (
        "invalid config routes (SENSORCAST_ROUTES): routes[1] repeats routes[0] "
        "(sensors = 'boiler-*')"
    )


def test_a_route_shadowed_by_earlier_ones_is_refused_naming_them() -> None:
    routes = [
        {"sensors": "boiler-*", "model": "/a"},
        {"sensors": "room-*", "model": "/b"},
        {"sensors": "boiler-1*", "model": "/c"},
    ]
    message = error_of(routes=routes)
    assert message.startswith("invalid config routes (SENSORCAST_ROUTES): routes[2] ")
    assert "is unreachable" in message and "routes[0] ('boiler-*')" in message
    assert "routes[1]" not in message.split("unreachable")[1]  # room-* does not overlap


def test_a_more_specific_route_first_is_fine() -> None:
    routes = [{"sensors": "boiler-1*", "model": "/a"}, {"sensors": "boiler-*", "model": "/b"}]
    assert [r.sensors for r in load_settings(None, routes=routes).routes] == [
        "boiler-1*",
        "boiler-*",
    ]


@pytest.mark.parametrize(
    ("route", "where", "says"),
    [
        ({"sensors": "a/b", "model": "/a"}, "routes[0].sensors", "matches no sensor id"),
        ({"sensors": "", "model": "/a"}, "routes[0].sensors", "at least 1 character"),
        ({"sensors": "a*"}, "routes[0].model", "Field required"),
        ({"sensors": "a*", "model": "/a", "colour": 1}, "routes[0].colour", "unknown config"),
        (
            {"sensors": "a*", "model": "/a", "device_class": "warmth"},
            "routes[0].device_class",
            "not a numeric Home Assistant sensor device class",
        ),
        ({"sensors": "a*", "model": "/a", "name": "{room}"}, "routes[0].name", "{sensor_id}"),
    ],
)
def test_a_bad_route_entry_names_its_key(route: dict[str, Any], where: str, says: str) -> None:
    message = error_of(routes=[route])
    assert f"{where} (SENSORCAST_ROUTES)" in message and says in message


def test_no_fallback_and_no_routes_would_serve_nothing() -> None:
    assert "model.fallback = false with no routes" in error_of(model={"fallback": False})


def test_a_route_whose_bundle_cannot_serve_is_one_config_error(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    routes = [
        {"sensors": "boiler-*", "model": str(bundles["boiler"])},
        {"sensors": "room-*", "model": str(tmp_path / "missing")},
    ]
    with pytest.raises(ConfigError) as info:
        load_models(load_settings(None, routes=routes))
    assert str(info.value).startswith("invalid routes[1].model (SENSORCAST_ROUTES): ")
    assert str(tmp_path / "missing") in str(info.value)


def test_a_look_for_a_target_no_bundle_forecasts_is_refused(bundles: dict[str, Path]) -> None:
    """The shipped bundle's one target is `value`: a look for `valeu` would never apply."""
    route = {"sensors": "boiler-*", "model": str(bundles["boiler"]), "unit": "°C"}
    load_models(load_settings(None, routes=[{**route, "targets": {"value": {"unit": "K"}}}]))
    with pytest.raises(ConfigError) as info:
        load_models(load_settings(None, routes=[{**route, "targets": {"valeu": {"unit": "K"}}}]))
    assert str(info.value) == (
        "invalid config routes[0].targets: valeu is no target of its bundle (its targets: value)"
    )
    rules = [{"sensors": "*", "targets": {"co2": {"unit": "ppm"}}}]
    with pytest.raises(ConfigError, match=r"homeassistant.entities\[0\].targets: co2 is no"):
        load_models(load_settings(None, homeassistant={"entities": rules}))


def run_cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORCAST_")}
    return subprocess.run(
        [sys.executable, "-m", "sensorcast", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_check_config_prints_the_routes_and_refuses_an_unreachable_one(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    config = tmp_path / "c.toml"
    good = (
        f'[[routes]]\nsensors = "boiler-*"\nmodel = "{bundles["boiler"]}"\nunit = "°C"\n'
        f'[[routes]]\nsensors = "*-co2"\nmodel = "{bundles["co2"]}"\n'
    )
    config.write_text(good)
    ok = run_cli("check-config", config=config)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stderr.splitlines()
    at = lines.index("routes (the first whose sensors glob matches serves a sensor):")
    assert lines[at + 1].split()[:2] == ["routes[0]", "boiler-*"] and "boiler@" in lines[at + 1]
    assert "unit '°C'" in lines[at + 1]
    assert lines[at + 2].split()[:2] == ["routes[1]", "*-co2"]
    assert lines[at + 3].split()[:2] == ["default", "*"]
    assert json.loads(ok.stdout)["routes"][1]["sensors"] == "*-co2"

    config.write_text(good + f'[[routes]]\nsensors = "boiler-7"\nmodel = "{bundles["co2"]}"\n')
    for command in ("check-config", "run"):
        bad = run_cli(command, config=config)
        assert bad.returncode == 78
        [line] = bad.stderr.splitlines()
        assert "routes[2] (sensors = 'boiler-7') is unreachable" in line


# --- routing --------------------------------------------------------------------


def service_with(routes: list[dict[str, Any]], **sections: Any) -> Service:
    """A daemon that is built but never started: messages are fed to it directly."""
    return Service(
        load_settings(None, routes=routes, mqtt={"host": "127.0.0.1", "port": 1}, **sections)
    )


def feed(service: Service, sensor_id: str, n: int, t0: float = 1.7e9) -> None:
    for i in range(n):
        payload = json.dumps({"value": 20 + i % 3, "ts": t0 + 60 * i}).encode()
        service._ingest(f"sensors/{sensor_id}/reading", payload, t0 + 60 * i + 1)


def test_the_first_matching_route_serves_and_the_default_takes_the_rest(
    bundles: dict[str, Path],
) -> None:
    service = service_with(
        [
            {"sensors": "boiler-1*", "model": str(bundles["boiler2"])},
            {"sensors": "boiler-*", "model": str(bundles["boiler"])},
            {"sensors": "*-co2", "model": str(bundles["co2"])},
        ]
    )
    for sid in ("boiler-12", "boiler-3", "room-co2", "hall"):
        feed(service, sid, 2)
    tables = {r.meta.name: list(r.table.slots) for r in service.routes}
    assert tables == {
        "boiler2": ["boiler-12"],
        "boiler": ["boiler-3"],
        "co2": ["room-co2"],
        "default": ["hall"],
    }
    assert service.metrics.value("sensorcast_readings_total") == 8
    service._housekeeping()
    boiler = service.routes[1].meta.model_id
    assert service.metrics.value("sensorcast_model_readings_total", model=boiler) == 2


def test_without_fallback_an_unrouted_sensor_is_dropped_and_counted(
    bundles: dict[str, Path],
) -> None:
    service = service_with(
        [{"sensors": "boiler-*", "model": str(bundles["boiler"])}], model={"fallback": False}
    )
    feed(service, "boiler-1", 3)
    feed(service, "hall", 3)
    assert [list(r.table.slots) for r in service.routes] == [["boiler-1"]]
    assert service.metrics.value("sensorcast_dropped_total", reason="no_route") == 3


def test_windows_queue_per_route(bundles: dict[str, Path]) -> None:
    service = service_with([{"sensors": "boiler-*", "model": str(bundles["boiler"])}])
    t = service.meta.timesteps
    feed(service, "boiler-1", t + 2)
    feed(service, "hall", t)
    first = service.queue.take(256)
    second = service.queue.take(256)
    assert {p.window.sensor_id for p in first} == {"boiler-1"} and len(first) == 3
    assert [p.window.sensor_id for p in second] == ["hall"]
    assert first[0].lane is service.routes[0].lane and second[0].lane is service.routes[1].lane


def test_a_reload_keeps_unchanged_routes_buffers_and_moves_sensors_between_routes(
    bundles: dict[str, Path],
) -> None:
    routes = [
        {"sensors": "boiler-*", "model": str(bundles["boiler"])},
        {"sensors": "*-co2", "model": str(bundles["co2"])},
    ]
    current = {"routes": routes}

    def settings() -> Any:
        return load_settings(None, mqtt={"host": "127.0.0.1", "port": 1}, **current)

    service = Service(settings(), reload_settings=settings)
    for sid in ("boiler-1", "room-co2", "hall-7"):
        feed(service, sid, 5)
    co2_route, co2_table = service.routes[1], service.routes[1].table
    # boiler gets another bundle; a new first route takes hall-* from the default route
    current["routes"] = [
        {"sensors": "hall-*", "model": str(bundles["boiler2"])},
        {"sensors": "boiler-*", "model": str(bundles["co2"])},
        routes[1],
    ]
    assert service.reload()
    names = [r.meta.name for r in service.routes]
    assert names == ["boiler2", "co2", "co2", "default"]
    assert service.routes[2] is co2_route and service.routes[2].table is co2_table
    assert list(service.routes[0].table.slots) == ["hall-7"]  # moved, window and all
    assert list(service.routes[1].table.slots) == ["boiler-1"]  # same shape: kept
    assert len(service.routes[3].table) == 0
    last = service.routes[0].table.last_ts("hall-7")
    assert last == 1.7e9 + 60 * 4

    current["routes"] = [*current["routes"], {"sensors": "hall-7", "model": "/nowhere"}]
    assert not service.reload()  # unreachable: refused, the routes serve on
    assert [r.meta.name for r in service.routes] == names


def test_a_sensor_keeps_its_window_when_a_reload_moves_it_off_a_route_whose_model_changed(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    """A route's model takes another shape on a reload (its buffers start over), and a new
    route ahead of it takes one of its sensors with a bundle of the sensor's shape: the
    sensor moves there with its window (the route's buffers were reset before the sensors
    were moved, so it started over, and uncounted)."""
    other = rewritten(tmp_path / "co2-other", name="co2x", features=["co2"], targets=["co2"])
    routes = [{"sensors": "*-co2", "model": str(bundles["co2"])}]
    current: dict[str, Any] = {"routes": routes}

    def settings() -> Any:
        return load_settings(None, mqtt={"host": "127.0.0.1", "port": 1}, **current)

    service = Service(settings(), reload_settings=settings)
    feed(service, "room-co2", 5)
    current["routes"] = [
        {"sensors": "room-*", "model": str(bundles["co2"])},
        {"sensors": "*-co2", "model": str(other)},
    ]
    assert service.reload()
    room, co2 = service.routes[0], service.routes[1]
    assert co2.meta.features == ["co2"] and len(co2.table) == 0
    assert list(room.table.slots) == ["room-co2"]  # moved, window and all
    assert room.table.last_ts("room-co2") == 1.7e9 + 60 * 4


def test_readings_of_a_route_a_reload_takes_away_are_counted_for_their_model(
    bundles: dict[str, Path],
) -> None:
    """The readings a route took since the last housekeeping are counted per model then: a
    reload that removed the route lost them from `sensorcast_model_readings_total`."""
    boiler = {"sensors": "boiler-*", "model": str(bundles["boiler"])}
    current: dict[str, Any] = {"routes": [boiler, {**boiler, "sensors": "hall-*"}]}

    def settings() -> Any:
        return load_settings(None, mqtt={"host": "127.0.0.1", "port": 1}, **current)

    service = Service(settings(), reload_settings=settings)
    feed(service, "boiler-1", 3)
    feed(service, "hall-1", 2)
    current["routes"] = [boiler]
    assert service.reload()
    service._housekeeping()
    model = service.routes[0].meta.model_id
    assert service.metrics.value("sensorcast_readings_total") == 5
    assert service.metrics.value("sensorcast_model_readings_total", model=model) == 5


def test_windows_waiting_when_a_reload_changes_their_models_shape_are_counted(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    """A reload that gives a route a model of another shape drops the windows waiting for
    the worker (they no longer fit): they were not forecast, so they are counted."""
    other = rewritten(tmp_path / "co2-only", name="co2x", features=["co2"], targets=["co2"])
    current: dict[str, Any] = {"routes": [{"sensors": "boiler-*", "model": str(bundles["boiler"])}]}

    def settings() -> Any:
        return load_settings(None, mqtt={"host": "127.0.0.1", "port": 1}, **current)

    service = Service(settings(), reload_settings=settings)
    feed(service, "boiler-1", service.meta.timesteps + 2)  # three windows wait
    assert len(service.queue) == 3
    current["routes"] = [{"sensors": "boiler-*", "model": str(other)}]
    assert service.reload()
    assert len(service.queue) == 0
    assert service.metrics.value("sensorcast_forecasts_dropped_total", reason="shape") == 3


def test_a_reading_read_while_a_reload_swaps_the_routes_goes_to_the_route_serving_it_now(
    bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route is chosen and the payload read before the buffers' lock is taken: a reload
    in between put the reading into the buffers of a route no longer served (lost)."""
    current: dict[str, Any] = {"routes": [{"sensors": "boiler-*", "model": str(bundles["boiler"])}]}

    def settings() -> Any:
        return load_settings(None, mqtt={"host": "127.0.0.1", "port": 1}, **current)

    service = Service(settings(), reload_settings=settings)
    feed(service, "boiler-1", 3)
    old = service.routes[0]
    reads = []

    def read_during_a_reload(*args: Any) -> Any:
        if not reads:  # the reload lands as the first read is under way
            current["routes"] = [{"sensors": "hall-*", "model": str(bundles["boiler"])}]
            assert service.reload()
        reads.append(args[1])  # the parser it was read with
        return read_payload(*args)

    monkeypatch.setattr(service_module, "read_payload", read_during_a_reload)
    payload = json.dumps({"value": 20.0, "ts": 1.7e9 + 180}).encode()
    service._ingest("sensors/boiler-1/reading", payload, 1.7e9 + 181)
    now = service.router.route("boiler-1")
    assert now is not None and now is not old and now.meta.name == "default"
    assert now.table.last_ts("boiler-1") == 1.7e9 + 180  # moved there with its window
    assert reads == [old.parser, now.parser]
    assert "boiler-1" not in old.table.slots


# --- the pieces -------------------------------------------------------------------


def window(sid: str) -> Window:
    return Window(sid, np.zeros((2, 1)), 0.0, None)


def test_lanes_take_turns_so_a_busy_route_does_not_starve_another() -> None:
    queue = ReadyQueue(1000)
    busy, quiet = object(), object()
    for i in range(10):
        queue.put(window(f"b{i}"), 0.0, busy)
    queue.put(window("q"), 0.0, quiet)
    sizes = []
    for _ in range(4):
        batch = queue.take(4)
        sizes.append(("busy" if batch[0].lane is busy else "quiet", len(batch)))
    assert sizes == [("busy", 4), ("quiet", 1), ("busy", 4), ("busy", 2)]
    assert len(queue) == 0


def test_a_sensor_moves_between_tables_of_one_shape_with_its_window() -> None:
    a, b = SensorTable(3, 1), SensorTable(3, 1)
    for i in range(3):
        a.push("s", 100.0 + i, (float(i),))
    assert a.move_to("s", b)
    assert len(a) == 0 and b.last_ts("s") == 102.0
    w = b.push("s", 103.0, (3.0,))
    assert isinstance(w, Window) and w.values[:, 0].tolist() == [1.0, 2.0, 3.0]
    assert not a.move_to("s", b)


def test_the_example_configs_routes_are_valid_uncommented(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "deploy" / "sensorcast.toml").read_text()
    head, block = text.split("# [[routes]]\n")
    block = "[[routes]]\n" + "".join(
        line.removeprefix("#   ") + "\n" for line in block.splitlines()
    )
    config = tmp_path / "c.toml"
    config.write_text(head + block)
    [route] = load_settings(config).routes
    assert (route.sensors, route.unit, route.device_class) == ("boiler-*", "°C", "temperature")


def test_a_snapshot_from_before_routes_restores_into_the_routes_that_serve_now(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    state = {"dir": str(tmp_path / "state")}
    before = service_with([], state=state)
    for sid in ("boiler-1", "hall"):
        feed(before, sid, 5)
    before.snapshot()
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "buffers.npz",
        "heads.npz",
        "scores.npz",
    ]

    after = service_with([{"sensors": "boiler-*", "model": str(bundles["boiler"])}], state=state)
    after._restore(tmp_path / "state")
    boiler, default = after.routes
    assert list(boiler.table.slots) == ["boiler-1"] and list(default.table.slots) == ["hall"]
    assert boiler.table.last_ts("boiler-1") == 1.7e9 + 60 * 4
    feed(after, "boiler-1", 1, t0=1.7e9 + 60 * 5)  # the window goes on where it was
    assert boiler.table.last_ts("boiler-1") == 1.7e9 + 60 * 5

    after.snapshot()  # each route in its own place, and back again at the next start
    routed = boiler.spec.state_dir(tmp_path / "state")
    assert routed.parent.name == "routes" and (routed / "buffers.npz").is_file()
    again = service_with([{"sensors": "boiler-*", "model": str(bundles["boiler"])}], state=state)
    again._restore(tmp_path / "state")
    assert [list(r.table.slots) for r in again.routes] == [["boiler-1"], ["hall"]]


def test_home_assistant_sees_each_routes_model_and_presentation(bundles: dict[str, Path]) -> None:
    service = service_with(
        [
            {
                "sensors": "boiler-*",
                "model": str(bundles["boiler"]),
                "unit": "°C",
                "device_class": "temperature",
                "name": "Boiler {sensor_id}",
            }
        ],
        homeassistant={
            "discovery": True,
            "entities": [{"sensors": "boiler-2", "unit": "K"}],
        },
    )
    assert service.discovery is not None

    def forecast_config(sid: str) -> dict[str, Any]:
        topic, payload = service.discovery.messages(sid, 60.0)[0]
        assert "/sensor/" in topic
        return dict(json.loads(payload))

    one, two, hall = (forecast_config(s) for s in ("boiler-1", "boiler-2", "hall"))
    boiler_id = service.routes[0].meta.model_id
    assert (one["unit_of_measurement"], one["device_class"]) == ("°C", "temperature")
    assert one["device"]["name"] == "Boiler boiler-1" and one["device"]["model"] == boiler_id
    assert two["unit_of_measurement"] == "K" and two["device_class"] == "temperature"
    assert "unit_of_measurement" not in hall and hall["device"]["model"].startswith("default@")


def test_inference_time_and_forecasts_are_counted_per_model(bundles: dict[str, Path]) -> None:
    service = service_with([{"sensors": "boiler-*", "model": str(bundles["boiler"])}])
    t = service.meta.timesteps
    feed(service, "boiler-1", t)
    feed(service, "hall", t)
    feed(service, "hall-2", t)
    for _ in range(2):
        service.worker._serve(service.queue.take(256))
    boiler, default = (r.meta.model_id for r in service.routes)
    count = "sensorcast_model_inference_seconds_count"
    assert service.metrics.value(count, model=boiler) == 1
    assert service.metrics.value(count, model=default) == 1
    assert service.metrics.value("sensorcast_batch_size_sum") == 3
    published = "sensorcast_model_forecasts_total"
    lost = "sensorcast_model_forecasts_dropped_total"
    for model, n in ((boiler, 1), (default, 2)):  # queued to the client, or counted lost
        assert (
            service.metrics.value(published, model=model)
            + service.metrics.value(lost, model=model, reason="queue_full")
            == n
        )


def test_record_takes_only_a_routes_sensors_when_asked() -> None:
    from sensorcast.readings import PayloadParser
    from sensorcast.record import Recorder
    from sensorcast.topics import TopicTemplate

    topic = TopicTemplate("sensors/{sensor_id}/reading", allow_wildcards=True)
    recorder = Recorder(
        topic, PayloadParser(["value"]), max_sensors=10, count=0, drop_interval=60,
        sensors="boiler-*",
    )  # fmt: skip
    for sid in ("boiler-1", "hall", "boiler-2"):
        recorder.on_message(f"sensors/{sid}/reading", b'{"value": 1.5, "ts": 1700000000}')
    assert recorder.recorded == 2 and not recorder.dropped


def test_readings_refilling_a_window_after_a_gap_are_checked_by_their_routes_scores(
    bundles: dict[str, Path],
) -> None:
    """After a gap, each route's table refills its own window; until it is full the readings
    are still checked for anomalies, by the scores of the route that serves the sensor: a
    spike on boiler-1 is reported under the boiler model, once; hall (same readings, no
    spike, default route) reports nothing after the gap."""
    service = service_with([{"sensors": "boiler-*", "model": str(bundles["boiler"])}])
    published: list[tuple[str, dict[str, Any]]] = []

    def publish(topic: str, payload: bytes, retain: bool | None = None) -> bool:
        published.append((topic, json.loads(payload)))
        return True

    service.worker._publish = publish
    t = service.meta.timesteps
    rng = np.random.default_rng(4)
    n = t + 200 + t
    values = 20 + np.cumsum(rng.normal(0, 0.1, n))
    ts = 1.7e9 + 60.0 * np.arange(n)
    ts[t + 200 :] += 3600.0  # an hour without readings: both windows restart
    spike = t + 200 + 10
    for i in range(n):
        for sid in ("boiler-1", "hall"):
            v = values[i] + (5.0 if sid == "boiler-1" and i == spike else 0.0)
            payload = json.dumps({"value": round(float(v), 4), "ts": float(ts[i])}).encode()
            service._ingest(f"sensors/{sid}/reading", payload, float(ts[i]) + 1)
        while len(service.queue):
            service.worker._serve(service.queue.take(256))
    boiler, default = (r.meta.model_id for r in service.routes)
    gap_at = ts[t + 199]
    after_gap = [p for topic, p in published if topic.startswith("anomalies/") and p["ts"] > gap_at]
    assert [(p["sensor_id"], p["model"], p["ts"]) for p in after_gap] == [
        ("boiler-1", boiler, ts[spike])
    ]
    assert abs(after_gap[0]["expected"] - values[spike - 1]) < 1e-3  # the reading before it
    forecasts = [p for topic, p in published if topic.startswith("forecasts/")]
    assert {p["model"] for p in forecasts if p["sensor_id"] == "hall"} == {default}
    assert [p["ts"] for p in forecasts if p["ts"] > gap_at] == [ts[-1], ts[-1]]  # none refilling


def test_the_keras_backend_without_tensorflow_names_model_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gateway install has no TensorFlow: `model.backend = "keras"` is the key to change,
    not `model.path` (whose bundle is fine), in the one line check-config and run print."""
    monkeypatch.setitem(sys.modules, "keras", None)  # import keras fails, as without [train]
    settings = load_settings(None, model={"backend": "keras"})
    with pytest.raises(ConfigError) as info:
        load_models(settings)
    message = str(info.value)
    assert message.startswith(
        "invalid config model.backend (SENSORCAST_MODEL__BACKEND) = 'keras': the keras backend "
        "needs TensorFlow, the [train] extra: "
    ), message
    assert "model.path" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("globs", "warned"),
    [(["*"], True), (["[a-m]*", "[!a-m]*"], True), (["boiler-*"], False)],
)
def test_routes_that_leave_the_default_route_nothing_are_warned_about(
    bundles: dict[str, Path], globs: list[str], warned: bool
) -> None:
    """A route for every id: model.path's bundle serves no sensor, yet check-config listed it
    for '*' and the daemon loaded it. Without fallback there is nothing to warn about."""
    from sensorcast.config import config_warnings

    routes = [{"sensors": g, "model": str(bundles["boiler"])} for g in globs]
    found = [w for w in config_warnings(load_settings(None, routes=routes)) if "fallback" in w]
    assert bool(found) is warned, found
    if warned:
        assert found[0].startswith("the routes match every sensor id, so model.path")
    off = load_settings(None, routes=routes, model={"fallback": False})
    assert not [w for w in config_warnings(off) if "fallback" in w]
