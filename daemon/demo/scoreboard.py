"""What `sensorcast demo` shows: readings against forecasts, scored as an MQTT subscriber sees them.

`Scoreboard` keeps, per sensor, the latest reading, the one-step forecast made
earlier for that reading's time (matched on the forecast's `at`), the next
forecast, and the running mean absolute error of the model and of the
persistence baseline (the last value) over the same readings, how often the
reading fell inside the forecast's interval, and the anomaly events.
`ScoreboardClient` feeds it from the broker like any other consumer would.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from sensorcast.topics import TopicTemplate

MATCH_TOLERANCE = 0.3
"""A forecast's `at` matches a reading within this fraction of the reading interval."""
FIRST = 30
"""Readings scored at first, against which the recent error is shown (adaptation's effect)."""
RECENT_WEIGHT = 1 / FIRST
"""Weight of the newest reading in the recent errors (about the last 30)."""


@dataclass
class SensorScore:
    """One sensor's latest values and error sums (model and persistence on the same readings)."""

    readings: int = 0
    forecasts: int = 0
    value: float | None = None
    ts: float | None = None
    predicted: float | None = None
    next_value: float | None = None
    next_at: float | None = None
    model_err: float = 0.0
    last_err: float = 0.0
    scored: int = 0
    next_lower: float | None = None
    next_upper: float | None = None
    persistence: bool = False
    model_served: int = 0
    """Forecasts published with `source` model (the guard serves the last value until the
    model has beaten it on the sensor)."""
    inside: int = 0
    banded: int = 0
    anomalies: int = 0
    last_anomaly: float | None = None
    first_model: float = 0.0
    first_last: float = 0.0
    """Error sums over the first `FIRST` scored readings, before the sensor was learned."""
    recent_model: float = 0.0
    recent_last: float = 0.0
    """Exponentially weighted errors over about the last `FIRST` readings."""
    pending: dict[float, tuple[float, float | None, float | None]] = field(default_factory=dict)

    @property
    def learned(self) -> tuple[float, float] | None:
        """(model / last value at first, recently): falls as the daemon learns the sensor."""
        if self.scored < 2 * FIRST or not self.first_last or not self.recent_last:
            return None
        return self.first_model / self.first_last, self.recent_model / self.recent_last

    @property
    def coverage(self) -> float | None:
        """Share of readings inside the interval forecast for them."""
        return self.inside / self.banded if self.banded else None

    @property
    def mae_model(self) -> float | None:
        return self.model_err / self.scored if self.scored else None

    @property
    def mae_last(self) -> float | None:
        return self.last_err / self.scored if self.scored else None


class Scoreboard:
    """Thread-safe per-sensor scores; fed on the MQTT thread, read by the view."""

    def __init__(self, sensors: list[str]) -> None:
        self.lock = threading.Lock()
        self.scores = {s: SensorScore() for s in sensors}

    def reading(self, sensor_id: str, ts: float, value: float) -> None:
        with self.lock:
            s = self.scores.setdefault(sensor_id, SensorScore())
            if s.ts is not None and ts <= s.ts:
                return
            step = ts - s.ts if s.ts is not None else 1.0
            tolerance = MATCH_TOLERANCE * step
            s.predicted = None
            band: tuple[float | None, float | None] = (None, None)
            for at in sorted(s.pending):
                if at < ts - tolerance:
                    del s.pending[at]
                elif at <= ts + tolerance:
                    s.predicted, *band = s.pending.pop(at)  # type: ignore[assignment]
            lo, hi = band
            if lo is not None and hi is not None:
                s.banded += 1
                s.inside += lo <= value <= hi
            if s.predicted is not None and s.value is not None:
                m, p = abs(s.predicted - value), abs(s.value - value)
                s.model_err += m
                s.last_err += p
                if s.scored < FIRST:
                    s.first_model += m
                    s.first_last += p
                w = 1.0 if not s.scored else RECENT_WEIGHT
                s.recent_model += w * (m - s.recent_model)
                s.recent_last += w * (p - s.recent_last)
                s.scored += 1
            s.readings += 1
            s.value, s.ts = value, ts

    def forecast(
        self,
        sensor_id: str,
        value: float,
        at: float | None,
        lower: float | None = None,
        upper: float | None = None,
        persistence: bool = False,
    ) -> None:
        with self.lock:
            s = self.scores.setdefault(sensor_id, SensorScore())
            s.forecasts += 1
            s.model_served += not persistence
            s.next_value, s.next_at = value, at
            s.next_lower, s.next_upper, s.persistence = lower, upper, persistence
            if at is not None:
                s.pending[at] = (value, lower, upper)

    def anomaly(self, sensor_id: str, ts: float) -> None:
        with self.lock:
            s = self.scores.setdefault(sensor_id, SensorScore())
            s.anomalies += 1
            s.last_anomaly = ts

    def coverage(self) -> float | None:
        """Share of all scored readings that fell inside their forecast's interval."""
        with self.lock:
            banded = sum(s.banded for s in self.scores.values())
            inside = sum(s.inside for s in self.scores.values())
        return inside / banded if banded else None

    def totals(self) -> tuple[int, int]:
        """All readings and forecasts seen so far."""
        with self.lock:
            scores = list(self.scores.values())
        return sum(s.readings for s in scores), sum(s.forecasts for s in scores)

    def beats_persistence(self) -> tuple[int, int]:
        """(sensors where the model's MAE is below the last value's, sensors scored)."""
        with self.lock:
            scored = [s for s in self.scores.values() if s.scored]
            better = sum(1 for s in scored if s.model_err < s.last_err)
        return better, len(scored)

    def served_model(self) -> int:
        """Sensors that have been served the model's forecast at least once."""
        with self.lock:
            return sum(1 for s in self.scores.values() if s.model_served)


def _first(values: Any) -> float | None:
    """The first step of a forecast-shaped list (a number, or the first target's)."""
    if not isinstance(values, list) or not values:
        return None
    step = values[0]
    if isinstance(step, dict):
        step = next(iter(step.values()), None)
    if not isinstance(step, (int, float)) or not math.isfinite(step):
        return None
    return float(step)


def _first_step(doc: dict[str, Any]) -> tuple[float, float | None, float | None, float | None]:
    """The first forecast step's value, target time, lower and upper from a forecast."""
    value = _first(doc.get("forecast"))
    if value is None:
        raise ValueError("no forecast")
    return value, _first(doc.get("at")), _first(doc.get("lower")), _first(doc.get("upper"))


class ScoreboardClient:
    """Subscribes to the demo's readings and forecasts and scores them."""

    def __init__(
        self,
        board: Scoreboard,
        port: int,
        readings: TopicTemplate,
        forecasts: TopicTemplate,
        feature: str,
        anomalies: TopicTemplate | None = None,
    ) -> None:
        self.board = board
        self.readings = readings
        self.forecasts = forecasts
        self.anomalies = anomalies
        self.feature = feature
        self.subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="sensorcast-demo-view",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: self.subscribed.set()
        self._client.connect("127.0.0.1", port)
        topics = [(readings.subscription, 1), (forecasts.subscription, 1)]
        if anomalies is not None:
            topics.append((anomalies.subscription, 1))
        self._client.subscribe(topics)
        self._client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        sensor = self.readings.sensor_id(msg.topic)
        value, ts = doc.get(self.feature), doc.get("ts")
        if sensor is not None and isinstance(value, (int, float)) and isinstance(ts, (int, float)):
            self.board.reading(sensor, float(ts), float(value))
            return
        sensor = self.forecasts.sensor_id(msg.topic)
        if sensor is not None:
            try:
                value, at, lower, upper = _first_step(doc)
            except ValueError:
                return
            pers = doc.get("source") == "persistence"
            self.board.forecast(sensor, value, at, lower, upper, pers)
            return
        sensor = self.anomalies.sensor_id(msg.topic) if self.anomalies else None
        if sensor is not None and isinstance(ts, (int, float)):
            self.board.anomaly(sensor, float(ts))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
