"""Why input was not taken in, and the bounded-rate log of it.

`Drop` is the label of `sensorcast_dropped_total`; `DropLog` reports
drops at most once per interval per reason, so a hostile sender cannot flood
the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from enum import StrEnum

log = logging.getLogger("sensorcast.readings")


class Drop(StrEnum):
    """Why an incoming message was not accepted; the label of the drop counter."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    TOO_DEEP = "too_deep"
    DUPLICATE_KEY = "duplicate_key"
    WRONG_TYPE = "wrong_type"
    MISSING_FEATURE = "missing_feature"
    NOT_FINITE = "not_finite"
    OVERFLOW = "overflow"
    BAD_TS = "bad_ts"
    FUTURE_TS = "future_ts"
    RETAINED_NO_TS = "retained_no_ts"
    BAD_SENSOR_ID = "bad_sensor_id"
    STALE = "stale"
    NO_ROUTE = "no_route"
    """The sensor matches no route and `model.fallback` is false (SPEC 3a)."""


WHY = {
    Drop.TOO_LARGE: "the payload is larger than input.max_payload_bytes",
    Drop.NOT_UTF8: "the payload is not UTF-8 text",
    Drop.NOT_JSON: 'the payload is not JSON: a number, or an object such as {"value": 21.5}',
    Drop.TOO_DEEP: "the JSON is nested too deeply",
    Drop.DUPLICATE_KEY: "a JSON object has the same key twice",
    Drop.WRONG_TYPE: "a feature is not a number, or the payload is neither a number nor an object",
    Drop.MISSING_FEATURE: "a feature the model reads is missing (its name, or its path in "
    "input.fields)",
    Drop.NOT_FINITE: "a value is NaN or infinite",
    Drop.OVERFLOW: "a value is beyond float32's range",
    Drop.BAD_TS: "{ts} is neither epoch seconds from 0 to 253402300799 (epoch milliseconds "
    "are larger) nor an ISO-8601 string",
    Drop.FUTURE_TS: "{ts} is more than input.max_future_s ahead of this machine's clock; an "
    "ISO-8601 time without a zone is taken as UTC, so a device's local time needs its offset",
    Drop.RETAINED_NO_TS: "a retained message without {ts}: its time is unknown",
    Drop.BAD_SENSOR_ID: "the sensor id in the topic is not 1 to 64 of A-Z a-z 0-9 _ . : -",
    Drop.STALE: "{ts} is not after the sensor's last reading (a repeat, or out of order)",
    Drop.NO_ROUTE: "the sensor matches no route and model.fallback is false",
}
"""What each reason means, in the log line: enough to fix the sender without the docs.
`{ts}` stands for the timestamp's field (`input.ts_field`); see `why`."""


def why(reason: Drop, ts_field: str = "ts") -> str:
    """`WHY[reason]`, naming the timestamp by the field the payloads carry it in."""
    return WHY[reason].replace("{ts}", ts_field)


class Quota:
    """At most one report per `interval` seconds per key; counts the ones held back."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def take(self, key: Hashable) -> int | None:
        """None if `key` was reported less than `interval` ago (this one is counted); else
        how many were held back since its last report."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)


class DropLog(Quota):
    """Logs dropped input at most once per `interval` seconds per reason, with counts.

    `ts_field`: the payloads' timestamp field (`input.ts_field`), as the log lines name it."""

    def __init__(self, interval: float, ts_field: str = "ts") -> None:
        super().__init__(interval)
        self.ts_field = ts_field

    def __call__(self, reason: Drop, topic: str) -> None:
        more = self.take(reason)
        if more is None:
            return
        extra = f" (and {more} more since the last report)" if more else ""
        log.warning(
            "dropped a reading on %r: %s (%s)%s",
            topic[:200],
            reason.value,
            why(reason, self.ts_field),
            extra,
            # fields of their own in `log.format = "json"`, so a log shipper can filter on them
            extra={"event": "dropped", "reason": reason.value, "topic": topic[:200]},
        )
