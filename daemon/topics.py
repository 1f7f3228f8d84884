"""Topic templates: `{sensor_id}` is exactly one topic level."""

from __future__ import annotations

import re

SENSOR_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
PLACEHOLDER = "{sensor_id}"


class TopicTemplate:
    """A topic such as `sensors/{sensor_id}/reading`, for subscribing or publishing."""

    def __init__(self, template: str, *, allow_wildcards: bool) -> None:
        levels = template.split("/")
        if levels.count(PLACEHOLDER) != 1 or template.count(PLACEHOLDER) != 1:
            raise ValueError(
                f"topic {template!r} must contain {PLACEHOLDER} once, as a whole level"
            )
        for level in levels:
            if level == PLACEHOLDER:
                continue
            if "{" in level or "}" in level or "#" in level or "\0" in level:
                raise ValueError(f"topic {template!r} has an invalid level {level!r}")
            if "+" in level and (not allow_wildcards or level != "+"):
                raise ValueError(f"topic {template!r} may not use '+' in level {level!r}")
        if template.startswith("$"):
            raise ValueError(f"topic {template!r} may not start with '$'")
        self.template = template
        self.levels = levels
        self.index = levels.index(PLACEHOLDER)
        self.subscription = "/".join("+" if lv == PLACEHOLDER else lv for lv in levels)
        self._literal = [(i, lv) for i, lv in enumerate(levels) if lv not in (PLACEHOLDER, "+")]

    def sensor_id(self, topic: str) -> str | None:
        """The sensor id in a topic matching the subscription, or None if it is not valid."""
        parts = topic.split("/")
        if len(parts) != len(self.levels):
            return None
        for i, level in self._literal:  # e.g. a stale subscription of the persistent session
            if parts[i] != level:
                return None
        sid = parts[self.index]
        return sid if SENSOR_ID_RE.fullmatch(sid) else None

    def format(self, sensor_id: str) -> str:
        return self.template.replace(PLACEHOLDER, sensor_id)


def status_topic(client_id: str) -> str:
    """Where a daemon with this client id publishes `online` and `offline` (retained)."""
    return f"sensorcast/{client_id}/status"


def topics_overlap(subscribed: str, published: str) -> bool:
    """Whether some topic of the template `published` (`{sensor_id}` any valid id) is matched
    by the subscription of the template `subscribed` (whose `+` levels match any level)."""
    sub, pub = subscribed.split("/"), published.split("/")
    if len(sub) != len(pub):
        return False
    anything = (PLACEHOLDER, "+")
    for s_level, p_level in zip(sub, pub, strict=True):
        if s_level in anything or s_level == p_level:
            continue
        if p_level == PLACEHOLDER and SENSOR_ID_RE.fullmatch(s_level):
            continue
        return False
    return True


SHARE_PREFIX = "$share"
MAX_SHARE_GROUP = 64
_SHARE_FORBIDDEN = frozenset("/+#")


def check_share_group(group: str) -> str:
    """A valid MQTT shared-subscription group name, or ValueError saying what is wrong.

    MQTT 5 (4.8.2) forbids `/`, `+` and `#` in the name; control characters and spaces
    are refused too (no broker needs them and they hide in logs)."""
    if not group:
        raise ValueError("a share group name must not be empty")
    if len(group) > MAX_SHARE_GROUP:
        raise ValueError(f"a share group name has at most {MAX_SHARE_GROUP} characters")
    bad = sorted({c for c in group if c in _SHARE_FORBIDDEN or not c.isprintable() or c.isspace()})
    if bad:
        raise ValueError(f"a share group name may not contain {' '.join(map(repr, bad))}")
    return group


def shared_subscription(subscription: str, group: str | None) -> str:
    """`$share/<group>/<subscription>` for a member of a shared-subscription group, or the
    plain subscription. The broker delivers each message with its own topic, so the sensor
    id is still read from the message's topic by `TopicTemplate.sensor_id`."""
    if group is None:
        return subscription
    return f"{SHARE_PREFIX}/{check_share_group(group)}/{subscription}"
