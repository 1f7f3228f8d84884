"""Forecast messages: the JSON payload of SPEC section 5, strict (no NaN/Infinity)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sensorcast.buffer import Window
from sensorcast.models.bundle import BundleMeta

SIGNIFICANT_DIGITS = 7
"""float32 carries about 7 significant digits; more would print noise."""


def _round(v: float) -> float:
    return float(f"{v:.{SIGNIFICANT_DIGITS}g}")


class ForecastEncoder:
    """Builds one forecast payload per window for a bundle."""

    def __init__(self, meta: BundleMeta) -> None:
        self.model_id = meta.model_id
        self.targets = list(meta.targets)
        self.horizon = meta.horizon
        self._steps = np.arange(1, meta.horizon + 1, dtype=np.float64)
        self._fallback_cadence = meta.cadence_s

    def encode(self, window: Window, forecast: NDArray[np.float64]) -> bytes | None:
        """The payload for one window's (horizon, targets) forecast; None if not finite."""
        if not np.isfinite(forecast).all():
            return None
        if len(self.targets) == 1:
            values: list[Any] = [_round(v) for v in forecast[:, 0].tolist()]
        else:
            values = [
                {t: _round(v) for t, v in zip(self.targets, step, strict=True)}
                for step in forecast.tolist()
            ]
        msg: dict[str, Any] = {
            "sensor_id": window.sensor_id,
            "model": self.model_id,
            "ts": window.ts,
            "forecast": values,
        }
        cadence = window.cadence or self._fallback_cadence
        if cadence is not None and math.isfinite(cadence):
            msg["at"] = [_round_ts(window.ts + cadence * s) for s in self._steps.tolist()]
        return json.dumps(msg, allow_nan=False, separators=(",", ":")).encode()


def _round_ts(ts: float) -> float:
    return round(ts, 3)
