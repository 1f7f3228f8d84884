"""Forecast messages: the JSON payload of SPEC section 5, strict (no NaN/Infinity)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from json.encoder import encode_basestring_ascii
from typing import cast

import numpy as np
from numpy.typing import NDArray

from sensorcast.buffer import Window
from sensorcast.models.bundle import BundleMeta

SIGNIFICANT_DIGITS = 7
"""float32 carries about 7 significant digits of a window's range; more would print noise."""
MAX_DIGITS = 12
"""At most this many, for readings that are large beside their changes."""
_FORMATS = {d: f"%.{d}g" for d in range(SIGNIFICANT_DIGITS, MAX_DIGITS + 1)}


def _round(v: float) -> float:
    return float(f"{v:.{SIGNIFICANT_DIGITS}g}")


def _digits(size: float, width: float) -> int:
    """Significant digits that show a thousandth of `width` on a number of `size`: 7 for
    most sensors, more for one large beside its changes (an energy meter at 12,345,678.9 Wh
    whose interval is 3 Wh wide prints 12345682.9, not 1.234568e+07), at most 12; 7 when
    there is no interval to tell."""
    size = abs(size)
    if size == 0.0 or width * 1000.0 >= size or not width > 0.0:  # no logarithm: common
        return SIGNIFICANT_DIGITS  # (no interval, or a zero-width one, tells nothing)
    return min(MAX_DIGITS, max(SIGNIFICANT_DIGITS, math.ceil(math.log10(size / width)) + 4))


def _text(v: float, digits: int = SIGNIFICANT_DIGITS) -> str:
    """A finite float as a JSON number with `digits` significant digits, always with a point
    or an exponent (so every parser reads a float): five times cheaper than repr(_round(v))."""
    t = _FORMATS[digits] % v
    return t if "." in t or "e" in t else t + ".0"


class ForecastEncoder:
    """Builds one forecast payload per window for a bundle, and anomaly payloads.

    The payload is assembled as text: strict, compact JSON, at a fraction of the cost of
    `json.dumps` (numbers formatted to 7 significant digits, strings through json's own
    escaper).
    """

    def __init__(self, meta: BundleMeta, level: float = 0.9) -> None:
        self.model_id = meta.model_id
        self.targets = list(meta.targets)
        self.horizon = meta.horizon
        self.level = level
        self._steps = np.arange(1, meta.horizon + 1, dtype=np.float64)
        self._step_list: list[float] = self._steps.tolist()
        self._fallback_cadence = meta.cadence_s
        self._model_json = encode_basestring_ascii(self.model_id)
        self._target_json = [encode_basestring_ascii(t) for t in self.targets]
        self._level_json = _number(float(level))

    def encode(
        self,
        window: Window,
        forecast: NDArray[np.float64],
        lower: NDArray[np.float64] | None = None,
        upper: NDArray[np.float64] | None = None,
        persistence: bool = False,
    ) -> bytes | None:
        """The payload for one window's (horizon, targets) forecast; None if not finite."""
        lo = forecast if lower is None else lower
        hi = forecast if upper is None else upper
        return next(
            self.encode_each([window], forecast[None], lo[None], hi[None], np.array([persistence]))
        )

    def encode_each(
        self,
        windows: Sequence[Window],
        forecasts: NDArray[np.float64],
        lower: NDArray[np.float64],
        upper: NDArray[np.float64],
        persistence: NDArray[np.bool_],
    ) -> Iterator[bytes | None]:
        """The payload of each window of a batch of (n, horizon, targets) forecasts with their
        intervals, in turn; None for one with a value that is not finite."""
        finite = cast(
            list[bool],
            (
                np.isfinite(forecasts).all(axis=(1, 2))
                & np.isfinite(lower).all(axis=(1, 2))
                & np.isfinite(upper).all(axis=(1, 2))
            ).tolist(),
        )
        rows = zip(forecasts.tolist(), lower.tolist(), upper.tolist(), strict=True)
        sources = cast(list[bool], persistence.tolist())
        for window, (f, lo, hi), ok, pers in zip(windows, rows, finite, sources, strict=True):
            yield self._payload(window, f, lo, hi, pers) if ok else None

    def _values(self, rows: list[list[float]], digits: list[int]) -> str:
        if len(self.targets) == 1:
            d = digits[0]
            return "[" + ",".join([_text(step[0], d) for step in rows]) + "]"
        return (
            "["
            + ",".join(
                "{"
                + ",".join(
                    f"{name}:{_text(v, d)}"
                    for name, v, d in zip(self._target_json, step, digits, strict=True)
                )
                + "}"
                for step in rows
            )
            + "]"
        )

    @staticmethod
    def _digits(value: list[float], lower: list[float], upper: list[float]) -> list[int]:
        """Per target, from the first step's value and interval width."""
        return [_digits(v, hi - lo) for v, lo, hi in zip(value, lower, upper, strict=True)]

    def _payload(
        self,
        window: Window,
        rows: list[list[float]],
        lower: list[list[float]],
        upper: list[list[float]],
        persistence: bool,
    ) -> bytes:
        ts = window.ts
        source = '"persistence"' if persistence else '"model"'
        d = self._digits(rows[0], lower[0], upper[0])
        text = (
            f'{{"sensor_id":{encode_basestring_ascii(window.sensor_id)},'
            f'"model":{self._model_json},"ts":{_number(ts)},"forecast":{self._values(rows, d)},'
            f'"lower":{self._values(lower, d)},"upper":{self._values(upper, d)},'
            f'"level":{self._level_json},"source":{source}'
        )
        cadence = window.cadence or self._fallback_cadence
        if cadence is not None and math.isfinite(ts + cadence * self.horizon):
            places = 3  # the millisecond; steps less than 10 ms apart get enough to differ
            if cadence < FINE_CADENCE:
                places = min(6, math.ceil(-math.log10(cadence)) + 1) if cadence > 0 else 6
            at = ",".join([_stamp(ts + cadence * s, places) for s in self._step_list])
            text += f',"at":[{at}]'
        return (text + "}").encode()

    def anomaly(
        self,
        window: Window,
        value: NDArray[np.float64],
        expected: NDArray[np.float64],
        lower: NDArray[np.float64],
        upper: NDArray[np.float64],
        level: float,
        score: float,
    ) -> bytes | None:
        """The anomaly payload of SPEC section 5a (one value per target); None if not finite."""
        parts = (value, expected, lower, upper)
        if not all(np.isfinite(x).all() for x in parts) or not math.isfinite(score):
            return None

        d = self._digits(expected.tolist(), lower.tolist(), upper.tolist())

        def one(x: NDArray[np.float64]) -> str:
            return self._values([x.tolist()], d)[1:-1]  # a number, or one object

        return (
            f'{{"sensor_id":{encode_basestring_ascii(window.sensor_id)},'
            f'"model":{self._model_json},"ts":{_number(window.ts)},"value":{one(value)},'
            f'"expected":{one(expected)},"lower":{one(lower)},"upper":{one(upper)},'
            f'"level":{_number(float(level))},"score":{_number(_round(score))}}}'
        ).encode()


_STRICT = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def _number(v: float) -> str:
    """`v` exactly as the strict encoder writes it (and the same ValueError if not finite)."""
    if type(v) is float and math.isfinite(v):
        return float.__repr__(v)
    return _STRICT.encode(v)


FINE_CADENCE = 0.01
"""Steps of a cadence shorter than this (seconds) get `at` beyond the millisecond: to the
digit a tenth of the cadence (at most the microsecond, which epoch seconds in float64 hold),
so each step's time is its own and after the reading's."""


def _stamp(ts: float, decimals: int) -> str:
    """A finite timestamp to `decimals` digits after the point, as `repr(round(ts, decimals))`
    writes it when that has no exponent (always, for epoch seconds), at a third of the cost."""
    text = f"{ts:.{decimals}f}".rstrip("0")
    return text + "0" if text.endswith(".") else text
