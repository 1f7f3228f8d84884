"""ForecastEncoder: the forecast payload of SPEC section 5."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest

from sensorcast.buffer import Window
from sensorcast.forecasts import ForecastEncoder
from sensorcast.models.bundle import BundleMeta

HASH = "3f2a9c1b" + "0123456789abcdef" * 3 + "01234567"


def make_meta(
    targets: list[str] | None = None,
    features: list[str] | None = None,
    horizon: int = 3,
    cadence_s: float | None = None,
    name: str = "default",
) -> BundleMeta:
    features = features or ["value"]
    return BundleMeta.model_validate(
        {
            "schema_version": 1,
            "name": name,
            "content_hash": HASH,
            "created": "2024-01-01T00:00:00Z",
            "timesteps": 4,
            "features": features,
            "targets": targets or features[:1],
            "horizon": horizon,
            "cadence_s": cadence_s,
            "normalisation": {"mode": "window"},
            "architecture": {"kind": "many_to_one", "layers": 1, "units": 8, "dropout": 0.0},
            "tflite": {"batch_sizes": [1, 4]},
            "files": {"model.tflite": "0" * 64},
        }
    )


def window(
    ts: float = 1_700_000_000.0, cadence: float | None = None, sid: str = "boiler-3"
) -> Window:
    return Window(sid, np.zeros((4, 1)), ts, cadence)


def _no_constants(name: str) -> Any:
    raise AssertionError(f"non-strict JSON constant {name}")


def decode(payload: bytes | None) -> dict[str, Any]:
    assert payload is not None
    doc = json.loads(payload.decode("utf-8"), parse_constant=_no_constants)
    assert isinstance(doc, dict)
    return doc


def test_single_target_payload() -> None:
    assert len(HASH) == 64
    enc = ForecastEncoder(make_meta(horizon=3))
    fc = np.array([[21.73], [21.8], [21.9]])
    upper = fc + np.array([[0.5], [0.75], [1.0]])
    msg = decode(enc.encode(window(cadence=60.0), fc, fc - 0.5, upper))
    assert msg == {
        "sensor_id": "boiler-3",
        "model": "default@3f2a9c1b",
        "ts": 1_700_000_000.0,
        "forecast": [21.73, 21.8, 21.9],
        "lower": [21.23, 21.3, 21.4],
        "upper": [22.23, 22.55, 22.9],
        "level": 0.9,
        "source": "model",
        "at": [1_700_000_060.0, 1_700_000_120.0, 1_700_000_180.0],
    }


def test_level_and_source_persistence() -> None:
    enc = ForecastEncoder(make_meta(horizon=1), level=0.8)
    fc = np.array([[5.0]])
    msg = decode(enc.encode(window(), fc, fc - 1, fc + 1, persistence=True))
    assert (msg["level"], msg["source"]) == (0.8, "persistence")


def test_multi_target_interval_is_one_object_per_step() -> None:
    meta = make_meta(features=["t", "h"], targets=["t", "h"], horizon=1)
    fc = np.array([[21.0, 40.0]])
    msg = decode(ForecastEncoder(meta).encode(window(), fc, fc - 1, fc + 2))
    assert msg["lower"] == [{"t": 20.0, "h": 39.0}]
    assert msg["upper"] == [{"t": 23.0, "h": 42.0}]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_interval_gives_none(bad: float) -> None:
    fc = np.array([[1.0], [2.0], [3.0]])
    hi = fc + np.array([[1.0], [bad], [1.0]])
    assert ForecastEncoder(make_meta()).encode(window(), fc, fc - 1, hi) is None


def test_anomaly_payload_is_section_5a() -> None:
    enc = ForecastEncoder(make_meta(horizon=1))
    one = np.array
    payload = enc.anomaly(
        window(ts=1_700_000_060.0), one([35.2]), one([21.8]), one([20.9]), one([22.7]), 0.99, 14.9
    )
    assert decode(payload) == {
        "sensor_id": "boiler-3",
        "model": "default@3f2a9c1b",
        "ts": 1_700_000_060.0,
        "value": 35.2,
        "expected": 21.8,
        "lower": 20.9,
        "upper": 22.7,
        "level": 0.99,
        "score": 14.9,
    }


def test_anomaly_payload_with_several_targets_has_objects() -> None:
    meta = make_meta(features=["t", "h"], targets=["t", "h"], horizon=1)
    v = np.array([1.0, 2.0])
    msg = decode(ForecastEncoder(meta).anomaly(window(), v, v, v - 1, v + 1, 0.99, 3.0))
    assert msg["value"] == {"t": 1.0, "h": 2.0} and msg["lower"] == {"t": 0.0, "h": 1.0}


def test_model_is_name_at_first_eight_of_hash() -> None:
    enc = ForecastEncoder(make_meta(name="room.co2_v2"))
    msg = decode(enc.encode(window(), np.zeros((3, 1))))
    assert msg["model"] == "room.co2_v2@" + HASH[:8]


@pytest.mark.parametrize("ts", [1_700_000_000.123456789, 1e-6, 0.0, 253402300799.0, 1.5])
def test_ts_is_exactly_the_reading_ts(ts: float) -> None:
    enc = ForecastEncoder(make_meta())
    msg = decode(enc.encode(window(ts=ts), np.zeros((3, 1))))
    assert msg["ts"] == ts
    assert isinstance(msg["ts"], float)


def test_multi_target_forecast_is_one_object_per_step() -> None:
    meta = make_meta(features=["temperature", "humidity"], targets=["temperature", "humidity"])
    enc = ForecastEncoder(meta)
    fc = np.array([[21.7, 40.2], [21.8, 40.1], [21.9, 40.0]])
    msg = decode(enc.encode(window(), fc))
    assert msg["forecast"] == [
        {"temperature": 21.7, "humidity": 40.2},
        {"temperature": 21.8, "humidity": 40.1},
        {"temperature": 21.9, "humidity": 40.0},
    ]


def test_multi_target_keys_follow_model_target_order() -> None:
    meta = make_meta(features=["a", "b", "c"], targets=["c", "a"], horizon=1)
    msg = decode(ForecastEncoder(meta).encode(window(), np.array([[3.0, 1.0]])))
    assert list(msg["forecast"][0]) == ["c", "a"]
    assert msg["forecast"][0] == {"c": 3.0, "a": 1.0}


def test_no_at_when_cadence_unknown() -> None:
    msg = decode(ForecastEncoder(make_meta()).encode(window(cadence=None), np.zeros((3, 1))))
    assert "at" not in msg


def test_at_falls_back_to_bundle_cadence() -> None:
    enc = ForecastEncoder(make_meta(horizon=2, cadence_s=300.0))
    msg = decode(enc.encode(window(ts=1000.0, cadence=None), np.zeros((2, 1))))
    assert msg["at"] == [1300.0, 1600.0]


def test_learned_cadence_beats_bundle_cadence() -> None:
    enc = ForecastEncoder(make_meta(horizon=2, cadence_s=300.0))
    msg = decode(enc.encode(window(ts=1000.0, cadence=10.0), np.zeros((2, 1))))
    assert msg["at"] == [1010.0, 1020.0]


@pytest.mark.parametrize("cadence", [0.005, 2e-4, 1e-5])
def test_at_tells_apart_the_steps_of_a_cadence_under_10_ms(cadence: float) -> None:
    """To the millisecond, steps 0.2 ms apart all read the same time, and the first could read
    before the reading's own."""
    ts = 1_795_941_141.7530071
    enc = ForecastEncoder(make_meta(horizon=6))
    msg = decode(enc.encode(window(ts=ts, cadence=cadence), np.zeros((6, 1))))
    at = msg["at"]
    assert at[0] > ts and all(b > a for a, b in itertools.pairwise(at))
    assert at == pytest.approx([ts + cadence * s for s in range(1, 7)], rel=0, abs=cadence / 9)


def test_at_has_one_entry_per_step_and_increases() -> None:
    enc = ForecastEncoder(make_meta(horizon=24))
    msg = decode(enc.encode(window(ts=1_700_000_000.5, cadence=2.5), np.zeros((24, 1))))
    assert len(msg["at"]) == len(msg["forecast"]) == 24
    assert msg["at"] == pytest.approx([1_700_000_000.5 + 2.5 * s for s in range(1, 25)])


def test_float32_output_is_not_printed_with_noise() -> None:
    fc = np.array([[21.73], [0.1], [-3.3]], dtype=np.float32).astype(np.float64)
    payload = ForecastEncoder(make_meta()).encode(window(), fc)
    assert payload is not None
    assert b"[21.73,0.1,-3.3]" in payload


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_forecast_gives_none(bad: float) -> None:
    fc = np.array([[1.0], [bad], [2.0]])
    assert ForecastEncoder(make_meta()).encode(window(), fc) is None


def test_non_finite_in_any_target_gives_none() -> None:
    meta = make_meta(features=["a", "b"], targets=["a", "b"], horizon=1)
    assert ForecastEncoder(meta).encode(window(), np.array([[1.0, np.nan]])) is None


def test_large_finite_values_stay_strict_json() -> None:
    fc = np.array([[1e300], [-1e300], [5e-324]])
    msg = decode(ForecastEncoder(make_meta()).encode(window(), fc))
    assert msg["forecast"][0] == pytest.approx(1e300)
    assert msg["forecast"][1] == pytest.approx(-1e300)


def test_payload_is_compact_utf8_json() -> None:
    payload = ForecastEncoder(make_meta()).encode(window(sid="a.b:c-d_e"), np.zeros((3, 1)))
    assert payload is not None
    assert b" " not in payload
    assert decode(payload)["sensor_id"] == "a.b:c-d_e"


def test_a_reading_large_beside_its_interval_keeps_its_small_steps() -> None:
    """An energy meter at 12,345,678.9 Wh moving by 0.1 Wh: 7 significant digits would print
    1.234568e+07 for every step and bound; enough digits show its steps and its interval."""
    fc = np.array([[12_345_679.0], [12_345_679.1], [12_345_679.2]])
    msg = decode(ForecastEncoder(make_meta()).encode(window(), fc, fc - 1.5, fc + 1.5))
    assert msg["forecast"] == [12345679.0, 12345679.1, 12345679.2]
    assert msg["lower"] == [12345677.5, 12345677.6, 12345677.7]
    assert msg["upper"] == [12345680.5, 12345680.6, 12345680.7]


def test_a_small_reading_with_a_tiny_interval_keeps_its_digits() -> None:
    fc = np.array([[52.123456], [52.123457], [52.123458]])
    msg = decode(ForecastEncoder(make_meta()).encode(window(), fc, fc - 2e-6, fc + 2e-6))
    assert msg["forecast"] == [52.123456, 52.123457, 52.123458]
    assert msg["lower"][0] == 52.123454


def test_several_targets_each_get_their_own_digits() -> None:
    meta = make_meta(features=["a", "b"], targets=["a", "b"], horizon=1)
    fc = np.array([[12_345_679.1, 21.73]])
    width = np.array([[3.0, 0.4]])
    msg = decode(ForecastEncoder(meta).encode(window(), fc, fc - width, fc + width))
    assert msg["forecast"] == [{"a": 12345679.1, "b": 21.73}]
