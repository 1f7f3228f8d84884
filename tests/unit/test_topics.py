"""TopicTemplate: `{sensor_id}` is exactly one topic level (SPEC sections 3-4)."""

from __future__ import annotations

import pytest

from sensorcast.topics import TopicTemplate, check_share_group, shared_subscription


@pytest.fixture
def readings() -> TopicTemplate:
    return TopicTemplate("sensors/{sensor_id}/reading", allow_wildcards=True)


@pytest.mark.parametrize(
    ("template", "subscription"),
    [
        ("sensors/{sensor_id}/reading", "sensors/+/reading"),
        ("{sensor_id}", "+"),
        ("{sensor_id}/reading", "+/reading"),
        ("tele/{sensor_id}/SENSOR", "tele/+/SENSOR"),
        ("site/+/{sensor_id}/temp", "site/+/+/temp"),
        ("a/b/c/{sensor_id}", "a/b/c/+"),
    ],
)
def test_subscription_replaces_placeholder_with_plus(template: str, subscription: str) -> None:
    assert TopicTemplate(template, allow_wildcards=True).subscription == subscription


@pytest.mark.parametrize(
    "sid",
    ["boiler-3", "a", "A_b.c:d-9", "x" * 64, "00:1A:2B:3C:4D:5E", "room.1"],
)
def test_valid_sensor_ids_are_extracted(readings: TopicTemplate, sid: str) -> None:
    assert readings.sensor_id(f"sensors/{sid}/reading") == sid


@pytest.mark.parametrize(
    "sid",
    [
        "",
        "x" * 65,
        "+",
        "#",
        "$x",
        "boiler 3",
        "boiler\n",
        "ä",
        "a/b",  # also a level-count mismatch
        "a\0b",
        "a*b",
        "{sensor_id}",
    ],
)
def test_invalid_sensor_ids_give_none(readings: TopicTemplate, sid: str) -> None:
    assert readings.sensor_id(f"sensors/{sid}/reading") is None


@pytest.mark.parametrize(
    "topic",
    ["sensors/boiler", "sensors/boiler/reading/extra", "boiler", "", "sensors//boiler/reading"],
)
def test_wrong_level_count_gives_none(readings: TopicTemplate, topic: str) -> None:
    assert readings.sensor_id(topic) is None


def test_sensor_id_with_wildcard_levels_in_template() -> None:
    t = TopicTemplate("site/+/{sensor_id}/temp", allow_wildcards=True)
    assert t.sensor_id("site/north/boiler-3/temp") == "boiler-3"
    assert t.sensor_id("site/north/boiler-3") is None


def test_sensor_id_at_first_and_last_level() -> None:
    assert TopicTemplate("{sensor_id}/x", allow_wildcards=True).sensor_id("s1/x") == "s1"
    assert TopicTemplate("x/{sensor_id}", allow_wildcards=True).sensor_id("x/s1") == "s1"


def test_topic_outside_the_template_gives_none(readings: TopicTemplate) -> None:
    # e.g. delivered by a subscription left in the persistent session by an old config
    assert readings.sensor_id("forecasts/boiler-3/reading") is None
    assert readings.sensor_id("sensors/boiler-3/status") is None


def test_format_builds_the_output_topic() -> None:
    t = TopicTemplate("forecasts/{sensor_id}", allow_wildcards=False)
    assert t.format("boiler-3") == "forecasts/boiler-3"
    assert t.subscription == "forecasts/+"


def test_format_round_trips_through_sensor_id() -> None:
    t = TopicTemplate("a/{sensor_id}/b", allow_wildcards=False)
    assert t.sensor_id(t.format("dev.1:x")) == "dev.1:x"


@pytest.mark.parametrize(
    "template",
    [
        "sensors/reading",  # no placeholder
        "",
        "sensors/{sensor_id}/{sensor_id}",  # twice
        "sensors/dev-{sensor_id}/reading",  # not a whole level
        "sensors/{sensor_id}x",
        "sensors/{sensorid}/reading",
        "sensors/{sensor_id}/{other}",
        "sensors/{sensor_id}/#",
        "sensors/#/{sensor_id}",
        "sensors/a+/{sensor_id}",
        "sensors/{sensor_id}/re\0ading",
        "$SYS/{sensor_id}",
        "{sensor_id}}",
    ],
)
def test_invalid_templates_are_refused(template: str) -> None:
    with pytest.raises(ValueError, match="topic"):
        TopicTemplate(template, allow_wildcards=True)


def test_plus_is_refused_where_wildcards_are_not_allowed() -> None:
    TopicTemplate("site/+/{sensor_id}", allow_wildcards=True)
    with pytest.raises(ValueError, match=r"\+"):
        TopicTemplate("site/+/{sensor_id}", allow_wildcards=False)


def test_error_names_the_template() -> None:
    with pytest.raises(ValueError, match="sensors/reading"):
        TopicTemplate("sensors/reading", allow_wildcards=True)


@pytest.mark.parametrize("group", ["sensorcast", "g", "fleet-1_a.b:c", "x" * 64, "Grüppe"])
def test_shared_subscription_wraps_the_plain_one(group: str) -> None:
    sub = TopicTemplate("site/+/{sensor_id}", allow_wildcards=True).subscription
    assert shared_subscription(sub, group) == f"$share/{group}/site/+/+"
    assert shared_subscription(sub, None) == "site/+/+"


@pytest.mark.parametrize(
    ("group", "why"),
    [
        ("", "empty"),
        ("a/b", "'/'"),
        ("a+", "'\\+'"),
        ("#", "'#'"),
        ("a b", "' '"),
        ("a\0b", "'\\\\x00'"),
        ("tab\t", "'\\\\t'"),
        ("x" * 65, "64"),
    ],
)
def test_invalid_share_groups_are_refused(group: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_share_group(group)


def test_message_topic_of_a_shared_subscription_still_names_the_sensor(
    readings: TopicTemplate,
) -> None:
    # brokers deliver with the publisher's topic, never with the $share prefix
    assert shared_subscription(readings.subscription, "g") == "$share/g/sensors/+/reading"
    assert readings.sensor_id("sensors/boiler-3/reading") == "boiler-3"
