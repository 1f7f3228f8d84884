"""Intervals, the persistence guard and anomaly events, over a real mosquitto."""

from __future__ import annotations

import json

import numpy as np

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle

from ..conftest import daemon_settings
from ..mqtt_helpers import wait_for

T0 = 1_700_000_000.0
TIMESTEPS = load_bundle(DEFAULT_BUNDLE).meta.timesteps


def test_every_forecast_has_an_interval_and_a_spike_is_an_anomaly(
    broker, client_factory, run_daemon
):
    daemon = run_daemon(daemon_settings(broker.port, model={"path": str(DEFAULT_BUNDLE)}))
    meta = daemon.service.meta
    sub = client_factory("forecasts/#", "anomalies/#")
    pub = client_factory()
    rng = np.random.default_rng(7)
    n = meta.timesteps + 300
    values = 20 + np.cumsum(rng.normal(0, 0.1, n)) + rng.normal(0, 0.05, n)
    spike = n - 20
    values[spike] += 5.0
    for i, v in enumerate(values):
        pub.publish("sensors/fridge/reading", {"value": round(float(v), 4), "ts": T0 + 60 * i})
    expected = n - meta.timesteps + 1
    wait_for(lambda: len(sub.received("forecasts/")) >= expected, timeout=30)
    forecasts = sub.json("forecasts/")
    assert len(forecasts) == expected
    for msg in forecasts:
        assert msg["level"] == 0.9
        assert msg["source"] in ("model", "persistence")
        assert len(msg["lower"]) == len(msg["upper"]) == meta.horizon
        for lo, f, hi in zip(msg["lower"], msg["forecast"], msg["upper"], strict=True):
            assert lo <= f <= hi
    anomalies = sub.json("anomalies/")
    assert T0 + 60 * spike in [a["ts"] for a in anomalies]
    hit = next(a for a in anomalies if a["ts"] == T0 + 60 * spike)
    assert hit["sensor_id"] == "fridge" and hit["level"] == 0.99
    assert hit["score"] > 1 and not hit["lower"] <= hit["value"] <= hit["upper"]
    assert daemon.service.metrics.value("sensorcast_anomalies_total") == len(anomalies)
    assert len(anomalies) <= 8  # the spike, and about 1% of 300 clean readings


def test_anomaly_events_are_not_retained_with_retained_forecasts(
    broker, client_factory, run_daemon
):
    """`output.retain` keeps the last forecast at the broker; an anomaly is an event: kept,
    it was replayed to every later subscriber (Home Assistant's anomaly sensor turned on
    again at each of its restarts)."""
    run_daemon(daemon_settings(broker.port, output={"retain": True}))
    sub = client_factory("anomalies/#", "forecasts/#")
    pub = client_factory()
    rng = np.random.default_rng(7)
    n = TIMESTEPS + 60
    values = 20 + np.cumsum(rng.normal(0, 0.1, n)) + rng.normal(0, 0.05, n)
    values[n - 5] += 5.0
    for i, v in enumerate(values):
        pub.publish("sensors/fridge/reading", {"value": round(float(v), 4), "ts": T0 + 60 * i})
    wait_for(lambda: sub.received("anomalies/fridge"), timeout=30)
    # every window forecast: nothing more is published after this
    wait_for(lambda: len(sub.received("forecasts/fridge")) == n - TIMESTEPS + 1, timeout=30)
    # the broker replays what it keeps of a topic right after its subscription: an anomaly
    # kept would come before the forecast, subscribed to second
    late = client_factory("anomalies/#", "forecasts/#")
    wait_for(lambda: late.received("forecasts/fridge"))
    assert [retained for _, _, retained in late.received("forecasts/fridge")] == [True]
    assert late.received("anomalies/") == []


def test_anomalies_off_publish_none(broker, client_factory, run_daemon):
    run_daemon(daemon_settings(broker.port, anomaly={"enabled": False}))
    sub = client_factory("anomalies/#", "forecasts/#")
    pub = client_factory()
    values = [20.0] * (TIMESTEPS + 5) + [90.0, 20.0, 20.0]
    for i, v in enumerate(values):
        pub.publish("sensors/a/reading", {"value": v, "ts": T0 + i})
    wait_for(lambda: len(sub.received("forecasts/")) >= len(values) - TIMESTEPS + 1)
    assert sub.received("anomalies/") == []
    assert all(json.loads(p)["lower"] for _, p, _ in sub.received("forecasts/"))


def test_scores_survive_a_restart_with_a_state_dir(broker, client_factory, run_daemon, tmp_path):
    settings = daemon_settings(broker.port, state={"dir": str(tmp_path)})
    first = run_daemon(settings)
    pub = client_factory()
    sub = client_factory("forecasts/#")
    for i in range(TIMESTEPS + 40):
        pub.publish("sensors/b/reading", {"value": 10 + (i % 5), "ts": T0 + i})
    wait_for(lambda: len(sub.received()) >= 41)
    assert first.stop() == 0
    assert (tmp_path / "scores.npz").is_file()
    scores = first.service.worker.served.scores
    second = run_daemon(settings)
    restored = second.service.worker.served.scores
    a = scores.to_arrays(first.service.table.slots.in_order())
    b = restored.to_arrays(second.service.table.slots.in_order())
    assert b["sensor_ids"].tolist() == ["b"]
    assert np.array_equal(a["q_model"], b["q_model"])


def test_a_spike_while_the_window_refills_after_a_gap_is_an_anomaly(
    broker, client_factory, run_daemon
):
    """A gap resets the window; until it is full again no forecast is published, but each
    reading is still checked against the one before it: the spike is reported, once."""
    daemon = run_daemon(daemon_settings(broker.port))
    t = daemon.service.meta.timesteps
    sub = client_factory("forecasts/#", "anomalies/#")
    pub = client_factory()
    rng = np.random.default_rng(3)
    n = t + 200 + t
    values = 20 + np.cumsum(rng.normal(0, 0.1, n))
    ts = T0 + 60.0 * np.arange(n)
    ts[t + 200 :] += 3600.0  # an hour without readings: the window restarts
    spike = t + 200 + 10
    values[spike] += 5.0
    for v, when in zip(values, ts, strict=True):
        pub.publish("sensors/vat/reading", {"value": round(float(v), 4), "ts": float(when)})
    wait_for(lambda: len(sub.received("forecasts/")) >= 201 + 1, timeout=30)
    wait_for(lambda: ts[spike] in [a["ts"] for a in sub.json("anomalies/")], timeout=10)
    after_gap = [a for a in sub.json("anomalies/") if a["ts"] > ts[t + 199]]
    assert [a["ts"] for a in after_gap] == [ts[spike]]
    assert abs(after_gap[0]["expected"] - values[spike - 1]) < 1e-3  # the reading before it
    forecasts_after = [f for f in sub.json("forecasts/") if f["ts"] > ts[t + 199]]
    assert [f["ts"] for f in forecasts_after] == [ts[-1]]  # none while refilling
