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
