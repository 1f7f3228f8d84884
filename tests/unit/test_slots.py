"""SlotIndex: ids to slots, least recently seen first out, as an OrderedDict moved to its end
on every use would order them; and one string per sensor for every table."""

from __future__ import annotations

import random
from collections import OrderedDict

import numpy as np
import pytest

from sensorcast.buffer import SensorTable, Window
from sensorcast.scoring import SensorScores
from sensorcast.slots import OLDEST_SHARE, SlotIndex

from .test_scoring import meta as scoring_meta


@pytest.mark.parametrize("seed", range(4))
def test_the_oldest_is_the_least_recently_seen_through_any_mix_of_uses(seed: int) -> None:
    rng = random.Random(seed)
    index, reference = SlotIndex(), OrderedDict[str, int]()
    free = list(range(2000))[::-1]
    for step in range(20_000):
        op = rng.random()
        sid = f"s{rng.randrange(3000)}"
        if op < 0.5 and sid in reference:  # a reading of a kept sensor
            index.touch(reference[sid])
            reference.move_to_end(sid)
        elif op < 0.8 and free:  # a new sensor
            if sid not in reference:
                slot = free.pop()
                index.add(sid, slot)
                reference[sid] = slot
        elif op < 0.9 and sid in reference:  # one leaves
            free.append(index.pop(sid) or -1)
            del reference[sid]
        elif reference:  # the oldest is evicted
            sid, slot = index.oldest()
            assert (sid, slot) == next(iter(reference.items())), step
            index.pop(sid)
            free.append(reference.pop(sid))
        assert len(index) == len(reference)
    assert list(index) == list(reference)
    ids, slots = index.in_order()
    assert ids == list(reference) and slots.tolist() == list(reference.values())


def test_a_sorted_batch_of_oldest_serves_many_evictions_and_is_redone_when_spent() -> None:
    index = SlotIndex()
    n = 64 * OLDEST_SHARE
    for i in range(n):
        index.add(f"s{i}", i)
    for i in range(n // 2):  # evict half, touching the next oldest now and then
        if i % 3 == 0:
            index.touch(index.oldest()[1])  # it was seen again: no longer the oldest
        sid, _ = index.oldest()
        index.pop(sid)
    assert len(index) == n // 2
    stamps = [index._stamp[s] for s in index.slots()]
    ids, _ = index.in_order()
    assert index.oldest()[0] == ids[0] and min(stamps) == index._stamp[index[ids[0]]]


def test_an_empty_index_has_no_oldest() -> None:
    with pytest.raises(KeyError):
        SlotIndex().oldest()


def test_tables_key_every_sensor_on_the_buffers_own_string() -> None:
    """A reading's id is a new string each time; the window carries the table's, so scores
    (and heads) keep one string per sensor with the table, however many readings came."""
    table = SensorTable(4, 1)
    first = "".join(["sens", "or-1"])
    for i in range(6):
        again = "".join(["sens", "or-1"])  # equal, another object
        assert again is not first or i == 0
        window = table.push(first if i == 0 else again, float(i), (float(i),))
    assert isinstance(window, Window)
    kept = table.slots.id_of(table.slots["sensor-1"])
    assert kept is first and window.sensor_id is first
    assert table.slots.canonical("".join(["sens", "or-1"])) is first
    assert np.array_equal(table.to_arrays()["sensor_ids"], ["sensor-1"])


def test_scores_restored_with_the_tables_strings_share_them() -> None:
    table = SensorTable(4, 1)
    for i in range(4):
        window = table.push("".join(["a", "b"]), float(i), (1.0,))
    assert isinstance(window, Window)
    scores = SensorScores(scoring_meta(horizon=3), level=0.9, anomaly_level=0.99, max_sensors=4)
    scores.score([window], np.ones((1, 3, 1)), np.ones((1, 1, 1)))
    restored = SensorScores(scoring_meta(horizon=3), level=0.9, anomaly_level=0.99, max_sensors=4)
    again = SensorTable(4, 1)
    again.load_arrays(table.to_arrays())
    assert restored.load_arrays(scores.to_arrays(table.slots.in_order()), again.slots) == 1
    slot = again.slots["ab"]
    assert restored._owner[slot] is again.slots.id_of(slot)


def test_what_else_keeps_a_sensor_keeps_the_buffers_string() -> None:
    """Every reading's topic gives a new string; discovery's record of the sensors it
    announced keeps the one the buffers keep, not a copy per sensor."""
    import time

    from sensorcast.config import load_settings
    from sensorcast.service import Service

    settings = load_settings(
        None, mqtt={"host": "127.0.0.1", "port": 1}, homeassistant={"discovery": True}
    )
    service = Service(settings)
    t = service.meta.timesteps
    for i in range(t + 1):
        topic = "".join(["sensors/", "boiler-", "3/reading"])  # a new string each time
        service._ingest(topic, b'{"value": %d, "ts": %d}' % (i, 1_700_000_000 + i), time.time())
    kept = service.table.slots.id_of(service.table.slots["boiler-3"])
    assert service.discovery is not None
    announced = [sid for sid in service.discovery._announced if sid == "boiler-3"]
    assert announced and announced[0] is kept
