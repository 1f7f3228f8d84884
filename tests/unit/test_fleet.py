"""The simulated fleet: each sensor stays in its own plausible range over simulated days."""

from __future__ import annotations

from sensorcast.demo.fleet import CATALOGUE, DAY_S, make_fleet

RANGES = {
    "office-temp": (15, 28),
    "office-humidity": (30, 60),
    "office-co2": (350, 1500),
    "boiler-flow": (40, 80),
    "main-power": (0, 10),
    "outdoor-pressure": (990, 1030),
    "outdoor-temp": (-5, 25),
    "freezer-temp": (-25, -8),
    "solar-power": (0, 5000),
    "server-cpu": (35, 90),
    "greenhouse-light": (0, 25000),
    "soil-moisture": (20, 40),
}


def test_every_sensor_stays_in_range_and_moves():
    fleet = make_fleet(len(CATALOGUE), faults=False)
    assert set(RANGES) == {s.sensor_id for s in fleet}
    for sensor in fleet:
        values = [sensor.sample(1.7e9 + k, 1.0) for k in range(int(3 * DAY_S))]
        low, high = RANGES[sensor.sensor_id]
        assert low <= min(values) and max(values) <= high, sensor.sensor_id
        assert len(set(values)) > 10, sensor.sensor_id


def test_larger_fleets_repeat_the_kinds_under_new_ids():
    ids = [s.sensor_id for s in make_fleet(len(CATALOGUE) + 2)]
    assert len(set(ids)) == len(ids)
    assert ids[-2:] == ["office-temp-2", "office-humidity-2"]


def test_faults_spike_stick_and_drift_now_and_then():
    fleet = make_fleet(len(CATALOGUE))
    days = 10
    for sensor in fleet:
        values = [sensor.sample(1.7e9 + k, 1.0) for k in range(int(days * DAY_S))]
        spikes = [ts for ts, kind in sensor.faults if kind == "spike"]
        assert 0 < len(spikes) < 4 * days, sensor.sensor_id
        swing = sensor.typical_swing()
        ks = [k for k in (int(ts - 1.7e9) for ts in spikes) if 0 < k < len(values) - 1]
        jumps = [abs(values[k] - (values[k - 1] + values[k + 1]) / 2) for k in ks]
        # a spike is 4-8 swings; the sensor's own moves (bumps, a floor) may hide a few
        assert sum(j > 2 * swing for j in jumps) >= 0.7 * len(jumps), sensor.sensor_id
    kinds = {kind for sensor in fleet for _, kind in sensor.faults}
    assert kinds == {"spike", "stuck", "drift"}
