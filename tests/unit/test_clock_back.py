"""The daemon's clock times readings that carry no ts: when it goes back, they are not lost."""

from __future__ import annotations

from sensorcast.config import load_settings
from sensorcast.service import Service


def test_readings_without_a_ts_are_taken_after_the_clock_went_back() -> None:
    settings = load_settings(
        None, mqtt={"host": "127.0.0.1", "port": 1}, anomaly={"enabled": False}
    )
    service = Service(settings)
    t = service.meta.timesteps
    received = [1_700_000_000.0 + 60 * i for i in range(t)]
    received += [received[-1] - 3600 + 60 * i for i in range(1, t + 1)]  # an hour back
    for i, at in enumerate(received):
        service._ingest("sensors/boiler-3/reading", b'{"value": %d}' % (i % 5), at)
    assert service.table.last_ts("boiler-3") == received[-1]  # every reading was taken
    assert service.table.gap_resets == 1
    assert len(service.queue) == 2  # the window full before the step, and the one after
    # a reading with a time of its own that goes back is stale, as ever
    service._ingest("sensors/boiler-3/reading", b'{"value": 1, "ts": 1.0}', received[-1] + 60)
    assert service.table.last_ts("boiler-3") == received[-1]
