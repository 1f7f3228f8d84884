"""Why input was not taken in, and the bounded-rate log of it.

`Drop` is the label of `sensorcast_readings_dropped_total`; `DropLog` reports
drops at most once per interval per reason, so a hostile sender cannot flood
the log.
"""

from __future__ import annotations

import logging
import time
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


class DropLog:
    """Logs dropped input at most once per `interval` seconds per reason, with counts."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[Drop, float] = {}
        self._suppressed: dict[Drop, int] = {}

    def __call__(self, reason: Drop, topic: str) -> None:
        now = time.monotonic()
        last = self._last.get(reason)
        if last is not None and now - last < self.interval:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        self._last[reason] = now
        more = self._suppressed.pop(reason, 0)
        extra = f" (and {more} more since the last report)" if more else ""
        log.warning("dropped a reading on %r: %s%s", topic[:200], reason.value, extra)
