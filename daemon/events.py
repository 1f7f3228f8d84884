"""Sensor life events at INFO, at a bounded rate: first seen, first forecast, gap reset, evicted.

A person watching the log learns why a sensor forecasts or does not (its window
filled, a gap started it over, it was forgotten) without a line per reading:
each kind of event prints at most `burst` lines per `interval` seconds, and what
was held back is summed up in one line when the interval ends.
"""

from __future__ import annotations

import logging
import threading
import time
from enum import StrEnum

log = logging.getLogger("sensorcast.sensors")


class Event(StrEnum):
    FIRST_SEEN = "first_seen"
    FIRST_FORECAST = "first_forecast"
    GAP_RESET = "gap_reset"
    EVICTED = "evicted"


_SUMMARY = {
    Event.FIRST_SEEN: "new sensors",
    Event.FIRST_FORECAST: "sensors with a first full window",
    Event.GAP_RESET: "windows reset by a gap",
    Event.EVICTED: "sensors evicted",
}

_WHY = {
    "max_sensors": "input.max_sensors reached; it was the least recently heard from",
    "sensor_ttl": "not heard from for input.sensor_ttl",
}


class SensorEvents:
    """Logs sensor life events; thread-safe (the network, worker and main threads report)."""

    def __init__(self, interval: float = 10.0, burst: int = 20, timesteps: int = 0) -> None:
        self.interval = interval
        self.burst = burst
        self.timesteps = timesteps
        self._lock = threading.Lock()
        self._started: dict[Event, float] = {}
        self._logged: dict[Event, int] = {}
        self._held: dict[Event, int] = {}

    def first_seen(self, sensor_id: str) -> None:
        self._emit(Event.FIRST_SEEN, sensor_id, "sensor %s: first reading", sensor_id)

    def window_ready(self, sensor_id: str, model: str, timesteps: int | None = None) -> None:
        """A sensor's first full window was handed to the model (`Window.first`: the table
        knows, no set of 100,000 ids here). `timesteps`: the serving model's window, when
        routes serve several."""
        self._emit(
            Event.FIRST_FORECAST,
            sensor_id,
            "sensor %s: window full (%d readings), forecasting with %s",
            sensor_id,
            self.timesteps if timesteps is None else timesteps,
            model,
            model=model,
        )

    def gap_reset(
        self,
        sensor_id: str,
        gap: float,
        cadence: float,
        max_gap: float,
        timesteps: int | None = None,
        spread: float = 1.0,
    ) -> None:
        """`spread`: how much longer than its cadence the sensor's long intervals are
        (buffer.SPREAD_LEVEL); 1 for a sensor reporting regularly."""
        rest = (self.timesteps if timesteps is None else timesteps) - 1
        if gap < 0:  # a reading timed on arrival, by a clock that went back (buffer.push)
            self._emit(
                Event.GAP_RESET,
                sensor_id,
                "sensor %s: window reset: the system clock went back %.6gs (its readings "
                "carry no ts and are timed on arrival); forecasts resume after %d more readings",
                sensor_id,
                -gap,
                rest,
                gap_s=gap,
            )
            return
        irregular = f" x its spread of {spread:.2g}" if spread >= 1.1 else ""
        self._emit(
            Event.GAP_RESET,
            sensor_id,
            "sensor %s: window reset: %.3gs since the last reading, more than %g x its "
            "cadence of %.3gs%s; forecasts resume after %d more readings",
            sensor_id,
            gap,
            max_gap,
            cadence,
            irregular,
            rest,  # the reading that found the gap starts the new window: full this many later
            gap_s=gap,
            cadence_s=cadence,
            spread=spread,
        )

    def evicted(self, sensor_id: str, why: str) -> None:
        """`why`: `max_sensors` or `sensor_ttl`, the setting that evicted it."""
        because = _WHY.get(why, why)
        self._emit(Event.EVICTED, sensor_id, "sensor %s: evicted (%s)", sensor_id, because)

    def flush(self, now: float | None = None) -> None:
        """Sum up what was held back in intervals that have ended (called periodically)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            ended = [e for e, t in self._started.items() if now - t >= self.interval]
            summaries = [(e, self._held.pop(e, 0)) for e in ended]
            for e in ended:
                del self._started[e]
                self._logged.pop(e, None)
        for event, held in summaries:
            if held:
                log.info(
                    "... and %d more %s in %gs (sensor events are logged at most %d a kind "
                    "per %gs)",
                    held,
                    _SUMMARY[event],
                    self.interval,
                    self.burst,
                    self.interval,
                    extra={"event": event.value},
                )

    def _emit(
        self, event: Event, sensor_id: str, msg: str, *args: object, **fields: object
    ) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        now = time.monotonic()
        with self._lock:
            started = self._started.get(event)
            if started is not None and now - started >= self.interval:
                started = None  # the interval ended: flush its summary below, start anew
            if started is None:
                held = self._held.pop(event, 0)
                self._started[event] = now
                self._logged[event] = 0
            else:
                held = 0
            if self._logged[event] >= self.burst:
                self._held[event] = self._held.get(event, 0) + 1
                return
            self._logged[event] += 1
        if held:
            log.info("... and %d more %s", held, _SUMMARY[event], extra={"event": event.value})
        log.info(msg, *args, extra={"event": event.value, "sensor_id": sensor_id, **fields})
