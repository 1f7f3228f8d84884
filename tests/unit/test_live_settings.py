"""What a reload applies live and what it names for a restart (issue 15, D7), and the
bounded repetition of recurring problems."""

from __future__ import annotations

import pytest

from sensorcast.config import load_settings
from sensorcast.live import LIVE, apply_keys, changed_keys
from sensorcast.recurring import RecurringProblem


def test_changed_keys_are_dotted_and_in_declaration_order() -> None:
    old = load_settings(None)
    new = load_settings(
        None,
        log={"level": "DEBUG"},
        input={"max_payload_bytes": 512, "fields": {"value": "a.b"}},
        mqtt={"keepalive": 60, "tls": {"enabled": True}},
    )
    assert changed_keys(old, new) == [
        "mqtt.tls.enabled",
        "mqtt.keepalive",
        "input.max_payload_bytes",
        "input.fields",
        "log.level",
    ]
    assert changed_keys(old, load_settings(None)) == []


def test_a_changed_password_is_noticed_but_never_shown() -> None:
    old = load_settings(None, mqtt={"username": "gw", "password": "one"})
    new = load_settings(None, mqtt={"username": "gw", "password": "two"})
    assert changed_keys(old, new) == ["mqtt.password"]


def test_apply_keys_copies_only_the_named_keys() -> None:
    running = load_settings(None)
    new = load_settings(None, log={"level": "DEBUG"}, input={"topic": "tele/{sensor_id}/x"})
    apply_keys(running, new, [k for k in changed_keys(running, new) if k in LIVE])
    assert running.log.level == "DEBUG"
    assert running.input.topic == "sensors/{sensor_id}/reading"  # needs a restart


@pytest.mark.parametrize("key", ["mqtt.host", "input.topic", "metrics.port", "state.dir"])
def test_connection_and_listener_keys_need_a_restart(key: str) -> None:
    assert key not in LIVE


def test_every_live_key_exists() -> None:
    settings = load_settings(None)
    for key in LIVE:
        obj: object = settings
        for part in key.split("."):
            obj = getattr(obj, part)


def test_recurring_problem_is_said_once_then_reminded(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("sensorcast.recurring.time.monotonic", lambda: now[0])
    problem = RecurringProblem(interval=600)
    assert problem.report("refused") == "refused"
    for _ in range(50):
        now[0] += 1
        assert problem.report("refused") is None
    assert problem.report("unreachable") == "unreachable"  # a new problem is said at once
    now[0] += 601
    assert problem.report("unreachable") == "unreachable"
    now[0] += 10
    problem.report("unreachable")
    now[0] += 601
    assert problem.report("unreachable") == (
        "unreachable (still; 1 more times since the last report)"
    )
    assert problem.clear() == "unreachable"
    assert problem.report("unreachable") == "unreachable"
