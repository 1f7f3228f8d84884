"""Parse and validate reading payloads; every rejection is a `Drop` with a reason.

A payload is a bare JSON number (for a one-feature model) or a JSON object with
the model's feature names as keys (or dotted paths configured per feature),
optionally with a timestamp: epoch seconds or an ISO-8601 / RFC 3339 string.
A name or path with dots (a feature trained on a CSV column `temp.c`, Tasmota's
`AM2301.Temperature`) is read from a key of that whole name when the object has one,
else from the nested objects its levels name.
An object with a key twice is refused (`duplicate_key`): which of the two values
a sender meant is unknowable. `"ts": null` is not a time (`bad_ts`); a sender
without a clock leaves `ts` out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sensorcast.drops import Drop
from sensorcast.topics import TopicTemplate

FLOAT32_MAX = 3.4028234663852886e38
MAX_TS = 253402300799.0  # 9999-12-31T23:59:59Z


class _Reject(Exception):
    def __init__(self, reason: Drop) -> None:
        self.reason = reason


def _reject_constant(name: str) -> float:
    raise _Reject(Drop.NOT_FINITE)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Reject(Drop.DUPLICATE_KEY)
    return obj


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


@dataclass(frozen=True, slots=True)
class Reading:
    """One accepted reading: feature values in the model's order, and its timestamp if given."""

    values: tuple[float, ...]
    ts: float | None


def _number(value: Any) -> float:
    if type(value) is float and -FLOAT32_MAX <= value <= FLOAT32_MAX:
        return value  # the common case, decided without the checks below (NaN fails both)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Reject(Drop.WRONG_TYPE)
    v = float(value) if isinstance(value, float) else _int_to_float(value)
    if not math.isfinite(v):
        raise _Reject(Drop.NOT_FINITE)
    if abs(v) > FLOAT32_MAX:
        raise _Reject(Drop.OVERFLOW)
    return v


def _int_to_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        raise _Reject(Drop.OVERFLOW) from None


def from_iso(text: str) -> datetime:
    """`datetime.fromisoformat`, with RFC 3339's lowercase zone letter (`...00z`), which it
    refuses; readings, CSV files and history exports all read times with it."""
    return datetime.fromisoformat(text[:-1] + "Z" if text[-1:] == "z" else text)


def parse_ts(value: Any) -> float:
    """Epoch seconds from a number or an ISO-8601 string (naive means UTC)."""
    if type(value) is float and 0.0 <= value <= MAX_TS:
        return value  # the common case
    if isinstance(value, str):
        try:
            dt = from_iso(value)
        except ValueError:
            raise _Reject(Drop.BAD_TS) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ts = dt.timestamp()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            ts = float(value)
        except OverflowError:  # an integer beyond float range
            raise _Reject(Drop.BAD_TS) from None
    else:
        raise _Reject(Drop.BAD_TS)
    if not (0.0 <= ts <= MAX_TS):
        raise _Reject(Drop.BAD_TS)
    return ts


def _lookup(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any
    if len(path) > 1 and type(obj) is dict:  # a key with the dots in it, as the name has them
        cur = obj.get(".".join(path), _MISSING)
        if cur is not _MISSING:
            return cur
    cur = obj
    for key in path:
        if type(cur) is dict:  # what JSON decodes to; skips the slower ABC check
            cur = cur.get(key, _MISSING)
            if cur is _MISSING:
                return _MISSING
        elif isinstance(cur, Mapping) and key in cur:
            cur = cur[key]
        else:
            return _MISSING
    return cur


_MISSING = object()


def read_message(
    topics: TopicTemplate,
    parser: PayloadParser,
    topic: str,
    payload: bytes,
    received: float,
    retained: bool = False,
) -> tuple[str, float, Reading] | Drop:
    """(sensor id, timestamp, reading) of one message, or why it is dropped.

    The timestamp is the reading's own, else `received`. A retained message replayed by the
    broker without a `ts` has no time of its own (`retained_no_ts`): taking the receive time
    would take it in again at every connect. A `ts` more than `parser.max_future` seconds
    ahead of `received` is dropped (`future_ts`): it would make every later reading of the
    sensor stale. Used by `run` and `record` alike.
    """
    sensor_id = topics.sensor_id(topic)
    if sensor_id is None:
        return Drop.BAD_SENSOR_ID
    return read_payload(sensor_id, parser, payload, received, retained)


def read_payload(
    sensor_id: str, parser: PayloadParser, payload: bytes, received: float, retained: bool = False
) -> tuple[str, float, Reading] | Drop:
    """`read_message` once the sensor id is known (and with it the route, whose bundle's
    features the parser reads)."""
    reading = parser.parse(payload)
    if isinstance(reading, Drop):
        return reading
    ts = reading.ts
    if ts is None:
        return Drop.RETAINED_NO_TS if retained else (sensor_id, received, reading)
    if ts > received + parser.max_future:
        return Drop.FUTURE_TS
    return sensor_id, ts, reading


class PayloadParser:
    """Turns raw payload bytes into a `Reading` for a model's features, or a `Drop`."""

    def __init__(
        self,
        features: list[str],
        *,
        fields: Mapping[str, str] | None = None,
        ts_field: str = "ts",
        max_bytes: int = 65536,
        max_future: float = math.inf,
    ) -> None:
        """`max_future`: seconds a reading's `ts` may be ahead of its arrival (see
        `read_message`)."""
        mapping = dict(fields or {})
        unknown = set(mapping) - set(features)
        if unknown:
            raise ValueError(f"input.fields names features the model does not have: {unknown}")
        self.features = list(features)
        self._paths = [tuple(mapping.get(f, f).split(".")) for f in features]
        self.ts_field = ts_field
        self._ts_path = tuple(ts_field.split("."))
        self._max_bytes = max_bytes
        self._bare_ok = len(features) == 1
        self.max_future = max_future

    def parse(self, payload: bytes) -> Reading | Drop:
        if len(payload) > self._max_bytes:
            return Drop.TOO_LARGE
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return Drop.NOT_UTF8
        try:
            doc = _DECODER.decode(text)  # json.loads(text, parse_constant=...) minus its setup
            return self._reading(doc)
        except _Reject as r:
            return r.reason
        except RecursionError:
            return Drop.TOO_DEEP
        except json.JSONDecodeError:
            return Drop.NOT_JSON
        except ValueError:  # an integer of more digits than Python converts (4300)
            return Drop.OVERFLOW

    def _reading(self, doc: Any) -> Reading:
        if isinstance(doc, dict):
            values = []
            for path in self._paths:
                raw = _lookup(doc, path)
                if raw is _MISSING:
                    raise _Reject(Drop.MISSING_FEATURE)
                values.append(_number(raw))
            raw_ts = _lookup(doc, self._ts_path)
            ts = None if raw_ts is _MISSING else parse_ts(raw_ts)
            return Reading(tuple(values), ts)
        if self._bare_ok and not isinstance(doc, (list, str)) and doc is not None:
            return Reading((_number(doc),), None)
        raise _Reject(Drop.WRONG_TYPE)
