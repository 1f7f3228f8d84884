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
"""float32 carries about 7 significant digits; more would print noise."""


def _round(v: float) -> float:
    return float(f"{v:.{SIGNIFICANT_DIGITS}g}")


class ForecastEncoder:
    """Builds one forecast payload per window for a bundle.

    The payload is assembled as text: byte for byte what `json.dumps(msg,
    allow_nan=False, separators=(",", ":"))` writes, at a fraction of the cost
    (numbers as `float.__repr__`, strings through json's own escaper).
    """

    def __init__(self, meta: BundleMeta) -> None:
        self.model_id = meta.model_id
        self.targets = list(meta.targets)
        self.horizon = meta.horizon
        self._steps = np.arange(1, meta.horizon + 1, dtype=np.float64)
        self._step_list: list[float] = self._steps.tolist()
        self._fallback_cadence = meta.cadence_s
        self._model_json = encode_basestring_ascii(self.model_id)

    def encode(self, window: Window, forecast: NDArray[np.float64]) -> bytes | None:
        """The payload for one window's (horizon, targets) forecast; None if not finite."""
        if not np.isfinite(forecast).all():
            return None
        return self._payload(window, forecast.tolist())

    def encode_each(
        self, windows: Sequence[Window], forecasts: NDArray[np.float64]
    ) -> Iterator[bytes | None]:
        """`encode` for each window of a batch of (n, horizon, targets) forecasts, in turn."""
        finite = cast(list[bool], np.isfinite(forecasts).all(axis=(1, 2)).tolist())
        rows: list[list[list[float]]] = forecasts.tolist()
        for window, steps, ok in zip(windows, rows, finite, strict=True):
            yield self._payload(window, steps) if ok else None

    def _payload(self, window: Window, rows: list[list[float]]) -> bytes:
        if len(self.targets) == 1:
            values = "[" + ",".join([float.__repr__(_round(step[0])) for step in rows]) + "]"
        else:
            values = _STRICT.encode(
                [{t: _round(v) for t, v in zip(self.targets, step, strict=True)} for step in rows]
            )
        ts = window.ts
        text = (
            f'{{"sensor_id":{encode_basestring_ascii(window.sensor_id)},'
            f'"model":{self._model_json},"ts":{_number(ts)},"forecast":{values}'
        )
        cadence = window.cadence or self._fallback_cadence
        if cadence is not None and math.isfinite(cadence):
            at = ",".join([_number(_round_ts(ts + cadence * s)) for s in self._step_list])
            text += f',"at":[{at}]'
        return (text + "}").encode()


_STRICT = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def _number(v: float) -> str:
    """`v` exactly as the strict encoder writes it (and the same ValueError if not finite)."""
    if type(v) is float and math.isfinite(v):
        return float.__repr__(v)
    return _STRICT.encode(v)


def _round_ts(ts: float) -> float:
    return round(ts, 3)
