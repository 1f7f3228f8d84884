"""A simulated sensor fleet for `sensorcast demo`: realistic signals published over MQTT.

Time is compressed so the demo moves: one simulated day passes in `DAY_S`
seconds of wall time. Each sensor is a daily shape in its own units plus a slow
trend, AR(1) noise, measurement noise, lasting level steps and decaying bumps;
values are rounded to the sensor's resolution like a real device would send.
Now and then a sensor misbehaves as real ones do: a single-reading spike, a
value stuck for a while, or a slow drift away from the truth; the daemon's
anomaly events should catch the spikes.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from sensorcast.topics import TopicTemplate

DAY_S = 60.0
"""Wall-clock seconds per simulated day."""
SPIKES_PER_DAY = 1.0
"""Single-reading spikes per sensor and simulated day (about one a minute in the fleet)."""
STUCK_PER_DAY = 0.15
"""Times per sensor and day its value freezes for a while (a hung sensor)."""
DRIFTS_PER_DAY = 0.1
"""Times per sensor and day it starts drifting away from the truth (a failing sensor)."""


def diurnal(f: float, peak_hour: float) -> float:
    """A daily cosine in [-1, 1] that peaks at `peak_hour` (f is the fraction of the day)."""
    return math.cos(2 * math.pi * (f - peak_hour / 24))


def occupancy(f: float) -> float:
    """People in the building: about 1 from 08:30 to 17:30, a dip at lunch, 0 at night."""
    h = 24 * f
    present = 1 / (1 + math.exp(-3 * (h - 8.5))) - 1 / (1 + math.exp(-3 * (h - 17.5)))
    return present * (1 - 0.35 * math.exp(-(((h - 12.5) / 0.6) ** 2)))


def daylight(f: float) -> float:
    """Sun height: 0 at night, a bell from 06:00 to 18:00."""
    return max(0.0, math.sin(math.pi * (24 * f - 6) / 12))


def sawtooth(f: float, cycles_per_day: float) -> float:
    """A slow rise and a quick fall in [-1, 1], like a compressor switching on."""
    x = (f * cycles_per_day) % 1.0
    return 2 * x / 0.8 - 1 if x < 0.8 else 1 - 2 * (x - 0.8) / 0.2


@dataclass(frozen=True)
class SensorSpec:
    """How one kind of sensor behaves; amounts are in its own units, rates per simulated day."""

    name: str
    unit: str
    decimals: int
    level: float
    shape: Callable[[float], float]
    noise: float = 0.0
    drift: float = 0.0
    drift_phi: float = 0.9
    trend: float = 0.0
    steps: float = 0.0
    step_size: float = 0.0
    bumps: float = 0.0
    bump_size: float = 0.0
    bump_half_life: float = 0.02
    floor: float | None = None
    refill: tuple[float, float] | None = None
    """When the value falls below the first number, a step brings it to the second."""


CATALOGUE: tuple[SensorSpec, ...] = (
    SensorSpec("office-temp", "°C", 2, 21.0,
               lambda f: 1.2 * diurnal(f, 15) + 0.6 * occupancy(f),
               noise=0.03, drift=0.04, steps=0.5, step_size=0.6),
    SensorSpec("office-humidity", "%", 1, 45.0,
               lambda f: 4.0 * diurnal(f, 5) + 3.0 * occupancy(f), noise=0.3, drift=0.3),
    SensorSpec("office-co2", "ppm", 0, 430.0, lambda f: 480.0 * occupancy(f),
               noise=6.0, drift=8.0, bumps=3.0, bump_size=180.0, bump_half_life=0.03),
    SensorSpec("boiler-flow", "°C", 1, 60.0, lambda f: 3.0 * diurnal(f, 7),
               noise=0.2, drift=0.3, steps=1.5, step_size=4.0),
    SensorSpec("main-power", "kW", 3, 0.6, lambda f: 2.4 * occupancy(f),
               noise=0.04, drift=0.08, bumps=10.0, bump_size=1.8, bump_half_life=0.006,
               floor=0.05),
    SensorSpec("outdoor-pressure", "hPa", 1, 1013.2, lambda f: 0.6 * diurnal(2 * f, 10),
               noise=0.05, drift=0.25, drift_phi=0.995, trend=-1.5),
    SensorSpec("outdoor-temp", "°C", 1, 9.0, lambda f: 5.0 * diurnal(f, 15),
               noise=0.1, drift=0.15, steps=0.4, step_size=2.5),
    SensorSpec("freezer-temp", "°C", 1, -18.0, lambda f: 1.5 * sawtooth(f, 6),
               noise=0.05, drift=0.05, bumps=2.0, bump_size=3.0, bump_half_life=0.01),
    SensorSpec("solar-power", "W", 0, 0.0, lambda f: 3200.0 * daylight(f),
               noise=15.0, drift=150.0, drift_phi=0.8, floor=0.0),
    SensorSpec("server-cpu", "°C", 1, 46.0, lambda f: 9.0 * occupancy(f),
               noise=0.4, drift=0.6, bumps=4.0, bump_size=6.0, bump_half_life=0.02),
    SensorSpec("greenhouse-light", "lx", 0, 0.0, lambda f: 18000.0 * daylight(f),
               noise=120.0, drift=900.0, drift_phi=0.8, floor=0.0),
    SensorSpec("soil-moisture", "%", 1, 34.0, lambda f: 0.0,
               noise=0.15, drift=0.1, trend=-14.0, refill=(24.0, 38.0)),
)  # fmt: skip


class SimulatedSensor:
    """One sensor of the fleet: a spec, its own random state and its remembered offsets."""

    def __init__(
        self, spec: SensorSpec, sensor_id: str, seed: int, phase: float, faults: bool = True
    ) -> None:
        self.spec = spec
        self.faulty = faults
        self.sensor_id = sensor_id
        self.phase = phase
        self._rng = random.Random(seed)
        self._drift = 0.0
        self._offset = self._rng.uniform(-0.02, 0.02) * (abs(spec.level) + 1)
        self._bump = 0.0
        self._last: float | None = None
        self._stuck_until = -math.inf
        self._fault_drift = 0.0
        self._fault_drift_left = 0.0
        self._drift_rate = 0.0
        self.faults: list[tuple[float, str]] = []
        """(time, kind) of each fault injected: spike, stuck, drift."""

    def sample(self, ts: float, interval: float) -> float:
        """The reading at wall time `ts`, `interval` seconds after the previous one."""
        s, rng = self.spec, self._rng
        days = ts / DAY_S + self.phase
        dt = interval / DAY_S
        shock = rng.gauss(0, s.drift * math.sqrt(1 - s.drift_phi**2))
        self._drift = s.drift_phi * self._drift + shock
        if rng.random() < s.steps * dt:
            self._offset += rng.choice((-1, 1)) * s.step_size * rng.uniform(0.5, 1.5)
        self._bump *= 0.5 ** (dt / s.bump_half_life)
        if rng.random() < s.bumps * dt:
            self._bump += s.bump_size * rng.uniform(0.5, 1.5)
        self._offset += s.trend * dt
        value = s.level + self._offset + s.shape(days % 1.0) + self._drift + self._bump
        if s.refill is not None and value < s.refill[0]:
            self._offset += s.refill[1] - value
            value = s.refill[1]
        value += rng.gauss(0, s.noise)
        if self.faulty:
            value = self._faults(ts, dt, value)
        if s.floor is not None:
            value = max(s.floor, value)
        if self._last is None or ts >= self._stuck_until:  # a stuck sensor repeats itself
            self._last = round(value, s.decimals)
        return self._last

    def _faults(self, ts: float, dt: float, value: float) -> float:
        """The value as a misbehaving sensor would report it."""
        s, rng = self.spec, self._rng
        value += self._faulty_drift(ts, dt)
        if ts < self._stuck_until:
            return value
        if rng.random() < STUCK_PER_DAY * dt:
            self._stuck_until = ts + rng.uniform(0.02, 0.06) * DAY_S
            self.faults.append((ts, "stuck"))
        if rng.random() < SPIKES_PER_DAY * dt:
            value += rng.choice((-1, 1)) * self.typical_swing() * rng.uniform(4, 8)
            self.faults.append((ts, "spike"))
            if s.floor is not None:
                value = abs(value - s.floor) + s.floor  # a spike up, where it cannot go down
        return value

    def typical_swing(self) -> float:
        """A size of ordinary change for this sensor, the unit of its faults."""
        s = self.spec
        return max(s.noise * 4, s.drift, 10.0**-s.decimals)

    def _faulty_drift(self, ts: float, dt: float) -> float:
        if self._fault_drift_left <= 0 and self._rng.random() < DRIFTS_PER_DAY * dt:
            self._fault_drift_left = self._rng.uniform(0.05, 0.15)
            self._drift_rate = self._rng.choice((-1, 1)) * self.typical_swing() * 40
            self.faults.append((ts, "drift"))
        if self._fault_drift_left > 0:
            self._fault_drift += self._drift_rate * dt
            self._fault_drift_left -= dt
        else:
            self._fault_drift *= 0.5 ** (dt / 0.01)  # repaired: back to the truth
        return self._fault_drift


def make_fleet(n: int, seed: int = 7, faults: bool = True) -> list[SimulatedSensor]:
    """`n` sensors from the catalogue; beyond its length, more of each kind (`office-temp-2`).
    `faults`: sensors sometimes spike, stick or drift."""
    sensors = []
    for i in range(n):
        spec = CATALOGUE[i % len(CATALOGUE)]
        copy = i // len(CATALOGUE)
        sensor_id = spec.name if copy == 0 else f"{spec.name}-{copy + 1}"
        seed_i = seed * 1000 + i
        sensors.append(SimulatedSensor(spec, sensor_id, seed_i, phase=0.03 * copy, faults=faults))
    return sensors


class FleetPublisher(threading.Thread):
    """Publishes every sensor's reading each `interval` seconds, staggered, with `ts`.

    It first sends `history` readings per sensor, stamped in the recent past, so
    that the daemon's windows are full within seconds of the start.
    """

    def __init__(
        self,
        sensors: list[SimulatedSensor],
        port: int,
        *,
        topic: TopicTemplate,
        feature: str,
        interval: float,
        history: int = 0,
    ) -> None:
        super().__init__(name="sensorcast-demo-fleet", daemon=True)
        self.sensors = sensors
        self.topic = topic
        self.feature = feature
        self.interval = interval
        self.history = history
        self.published = 0
        self._halt = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="sensorcast-demo-fleet",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self._client.max_queued_messages_set(10_000)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _send(self, sensor: SimulatedSensor, ts: float) -> None:
        value = sensor.sample(ts, self.interval)
        payload = json.dumps({self.feature: value, "ts": round(ts, 3)})
        self._client.publish(self.topic.format(sensor.sensor_id), payload, qos=1)
        self.published += 1

    def _schedule(self, start: float) -> Iterator[tuple[float, int]]:
        """(wall time, sensor index) in time order; sensors spread evenly over the interval."""
        n = len(self.sensors)
        heap = [(start + self.interval * i / n, i) for i in range(n)]
        while True:
            at, i = heapq.heappop(heap)
            yield at, i
            heapq.heappush(heap, (at + self.interval, i))

    def run(self) -> None:
        """Send the history at once (its times are past), then each reading on time."""
        for at, i in self._schedule(time.time() - self.history * self.interval):
            if self._halt.wait(max(0.0, at - time.time())):
                return
            self._send(self.sensors[i], at)

    def stop(self) -> None:
        """Stop publishing and disconnect."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()
