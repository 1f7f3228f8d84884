"""One busy model does not starve another (issue 14): windows wait in one lane per route
and the worker takes a batch from each lane in turn, so a reading of a quiet route is
forecast while a flooded route's backlog is still being worked off, not after it."""

from __future__ import annotations

import json

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle

from ..conftest import daemon_settings
from ..hostile_bundles import rewritten
from ..mqtt_helpers import wait_for

T0 = 1_700_000_000.0
TIMESTEPS = load_bundle(DEFAULT_BUNDLE).meta.timesteps
BUSY, EXTRA = 200, 20
"""Busy sensors, and readings each sends beyond a full window in the flood."""


def test_a_quiet_route_is_served_while_a_flooded_route_works_off_its_backlog(
    tmp_path, broker, client_factory, run_daemon
):
    busy_bundle = rewritten(tmp_path / "busy", name="busy")
    settings = daemon_settings(
        broker.port,
        routes=[{"sensors": "busy-*", "model": str(busy_bundle)}],
        # one window per model call: the backlog builds up; and room for all of it in the
        # daemon's queue, where lanes apply (beyond max_pending it waits at the broker, in
        # arrival order, the quiet sensor's reading behind it)
        inference={"max_batch": 1, "max_pending": 10 * BUSY * (EXTRA + 1)},
    )
    run_daemon(settings)
    sub = client_factory("forecasts/#", qos=0)
    pub = client_factory()

    def reading(i: int) -> bytes:
        return json.dumps({"value": 20 + i % 7 / 3, "ts": T0 + 60 * i}).encode()

    for i in range(TIMESTEPS):
        pub.publish("sensors/quiet/reading", reading(i))
    wait_for(lambda: sub.received("forecasts/quiet"))

    for i in range(TIMESTEPS + EXTRA):  # the flood: every busy sensor, reading by reading
        for s in range(BUSY):
            pub.client.publish(f"sensors/busy-{s}/reading", reading(i), qos=0)
    pub.publish("sensors/quiet/reading", reading(TIMESTEPS))
    windows = BUSY * (EXTRA + 1)
    wait_for(lambda: len(sub.received("forecasts/quiet")) == 2, timeout=60)
    busy_before = len(sub.received("forecasts/busy-"))
    wait_for(lambda: len(sub.received("forecasts/busy-")) == windows, timeout=120)

    # in arrival order: the quiet sensor's forecast came while most of the flood waited
    assert busy_before < windows / 2, (busy_before, windows)
    models = {json.loads(p)["model"].split("@")[0] for _, p, _ in sub.received("forecasts/")}
    assert models == {"busy", "default"}
