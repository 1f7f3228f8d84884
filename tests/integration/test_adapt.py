"""Adaptation through the public contract: readings in over a real mosquitto, forecasts out."""

from __future__ import annotations

import numpy as np
import pytest

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.models.realdata import by_name

from ..conftest import daemon_settings
from ..mqtt_helpers import wait_for

T0 = 1_700_000_000.0
META = load_bundle(DEFAULT_BUNDLE).meta
N = 1500
"""Hourly San Francisco temperatures: about two months, the last 300 scored."""


def temperatures() -> np.ndarray:
    _, v = by_name("sf_temp").load()
    out: np.ndarray = v[~np.isnan(v)][:N]
    return out


def step1_errors(values: np.ndarray, forecasts: list[dict], first: int) -> np.ndarray:
    """|one-step forecast - reading| for forecasts made at reading index >= first."""
    by_ts = {round((f["ts"] - T0) / 3600): f["forecast"][0] for f in forecasts}
    idx = [i for i in range(first, len(values) - 1) if i in by_ts]
    return np.array([abs(by_ts[i] - values[i + 1]) for i in idx])


def demand() -> np.ndarray:
    """Half-hourly electricity demand: a day of 48 readings, longer than the window."""
    _, v = by_name("electricity_demand").load()
    out: np.ndarray = v[~np.isnan(v)]
    return out


def publish_series(
    client_factory, values: np.ndarray, sensor: str, cadence: float = 3600.0
) -> None:
    pub = client_factory()
    for i, v in enumerate(values):
        pub.publish(f"sensors/{sensor}/reading", {"value": float(v), "ts": T0 + cadence * i})


def test_a_sensor_is_learned_and_its_error_falls(broker, client_factory, run_daemon):
    """The same series to two sensors of two daemons, adaptation on and off."""
    values = temperatures()
    expected = N - META.timesteps + 1
    on = run_daemon(daemon_settings(broker.port, output={"topic": "on/{sensor_id}"}))
    off = run_daemon(
        daemon_settings(
            broker.port,
            input={"topic": "plain/{sensor_id}/reading"},
            output={"topic": "off/{sensor_id}"},
            adapt={"enabled": False},
            mqtt={"client_id": "sensorcast-test-off"},
        )
    )
    sub = client_factory("on/#", "off/#")
    publish_series(client_factory, values, "sf")
    pub = client_factory()
    for i, v in enumerate(values):
        pub.publish("plain/sf/reading", {"value": float(v), "ts": T0 + 3600 * i})
    wait_for(lambda: len(sub.received("on/")) >= expected, timeout=60)
    wait_for(lambda: len(sub.received("off/")) >= expected, timeout=60)
    adapted = step1_errors(values, sub.json("on/"), N - 300).mean()
    plain = step1_errors(values, sub.json("off/"), N - 300).mean()
    assert adapted < 0.7 * plain, (adapted, plain)
    assert on.service.metrics.value("sensorcast_adapt_resets_total") == 0
    assert off.service.worker.served.heads is None
    for msg in sub.json("on/"):
        assert msg["source"] in ("model", "persistence")
        for lo, f, hi in zip(msg["lower"], msg["forecast"], msg["upper"], strict=True):
            assert lo <= f <= hi


@pytest.mark.parametrize(
    ("series", "cadence", "period"), [("sf", 3600.0, 0), ("demand", 1800.0, 48)]
)
def test_the_heads_survive_a_restart_with_a_state_dir(
    broker, client_factory, run_daemon, tmp_path, series, cadence, period
):
    """Hourly temperatures have their day in the window; half-hourly demand's day is
    learned from the readings' timestamps, and its head keeps a ring of readings."""
    settings = daemon_settings(broker.port, state={"dir": str(tmp_path)})
    first = run_daemon(settings)
    sub = client_factory("forecasts/#")
    values = (temperatures() if series == "sf" else demand())[:200]
    publish_series(client_factory, values, "s", cadence)
    wait_for(lambda: len(sub.received()) >= len(values) - META.timesteps + 1)
    metric = "sensorcast_adapted_sensors_with_period"
    wait_for(lambda: first.service.metrics.value(metric) == (period > 0))
    assert first.stop() == 0
    assert (tmp_path / "heads.npz").is_file()
    before = first.service.worker.served.heads
    assert before is not None and list(before.slots) == ["s"]
    second = run_daemon(settings)
    after = second.service.worker.served.heads
    assert after is not None and list(after.slots) == ["s"]
    a, b = before.to_arrays(), after.to_arrays()
    assert np.array_equal(a["weights"], b["weights"]) and a["weights"].any()
    assert np.array_equal(a["cov"], b["cov"])
    assert a["period"].tolist() == b["period"].tolist() == [period]
    assert np.array_equal(a["ring"], b["ring"]) and a["ring"].any() == (period > 0)
    assert a["ring_count"].tolist() == b["ring_count"].tolist()
