"""Bundle validation: anything wrong with a bundle is one clear `BundleError`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sensorcast.models.bundle import (
    BundleError,
    content_hash,
    default_calibration,
    load_bundle,
    write_bundle_meta,
)


def bundle_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": "tiny",
        "created": "2025-01-01T00:00:00Z",
        "timesteps": 20,
        "features": ["value"],
        "targets": ["value"],
        "horizon": 1,
        "cadence_s": 60.0,
        "normalisation": {"mode": "window"},
        "architecture": {"kind": "many_to_one", "layers": 1, "units": 8, "dropout": 0.0},
        "tflite": {"batch_sizes": [1, 4], "signature": "b{batch}", "input": "window"},
    }
    fields = {**fields, **overrides}
    if "calibration" not in fields:
        fields["calibration"] = default_calibration(fields["horizon"], len(fields["targets"]))
        fields["calibration"] = fields["calibration"].model_dump()
    return fields


def make_bundle(root: Path, **overrides: Any) -> Path:
    """A bundle whose model.tflite is placeholder bytes: loading never parses it."""
    root.mkdir()
    (root / "model.tflite").write_bytes(b"placeholder model bytes")
    write_bundle_meta(root, bundle_fields(**overrides))
    return root


def edit_meta(root: Path, **changes: Any) -> None:
    meta = json.loads((root / "bundle.json").read_text())
    meta.update(changes)
    (root / "bundle.json").write_text(json.dumps(meta))


def test_a_written_bundle_loads_with_its_model_id(tmp_path: Path) -> None:
    bundle = load_bundle(make_bundle(tmp_path / "b"))
    assert bundle.meta.model_id == f"tiny@{bundle.meta.content_hash[:8]}"
    assert bundle.tflite_path == tmp_path / "b" / "model.tflite"


def test_tampered_model_fails_its_checksum(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    (root / "model.tflite").write_bytes(b"something else")
    with pytest.raises(BundleError, match=r"model\.tflite does not match its checksum"):
        load_bundle(root)


@pytest.mark.parametrize(
    "change",
    [{"timesteps": 21}, {"features": ["other"], "targets": ["other"]}, {"cadence_s": 120.0}],
)
def test_edited_settings_fail_the_content_hash(tmp_path: Path, change: dict[str, Any]) -> None:
    root = make_bundle(tmp_path / "b")
    edit_meta(root, **change)
    with pytest.raises(BundleError, match="content_hash does not match"):
        load_bundle(root)


def test_missing_model_file(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    (root / "model.tflite").unlink()
    with pytest.raises(BundleError, match=r"is missing model\.tflite"):
        load_bundle(root)


def test_wrong_schema_version(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    edit_meta(root, schema_version=3)
    with pytest.raises(BundleError, match="schema_version 3 is not supported"):
        load_bundle(root)


def test_schema_2_needs_a_calibration(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    meta = json.loads((root / "bundle.json").read_text())
    del meta["calibration"]
    (root / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="calibration is required") as caught:
        load_bundle(root)
    assert "\n" not in str(caught.value)


GOOD_CAL = {"levels": [0.5, 0.9], "abs_error": [[[0.7]], [[1.6]]], "n": 100}


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        ({**GOOD_CAL, "levels": [0.9, 0.5]}, "ascending, unique and within"),
        ({**GOOD_CAL, "levels": [0.5, 1.0]}, "ascending, unique and within"),
        ({**GOOD_CAL, "levels": []}, "calibration.levels"),
        ({**GOOD_CAL, "abs_error": [[[0.7]]]}, "one entry per level"),
        ({**GOOD_CAL, "abs_error": [[[0.7]], [[1.6], [2.0]]]}, r"shaped \(levels, horizon"),
        ({**GOOD_CAL, "abs_error": [[[0.7], [0.9]], [[1.6], [2.0]]]}, r"shaped \(levels, horizon"),
        ({**GOOD_CAL, "abs_error": [[[0.7]], [[-1.0]]]}, "finite and not negative"),
        ({**GOOD_CAL, "abs_error": [[[0.7]], [[float("nan")]]]}, "finite and not negative"),
        ({**GOOD_CAL, "abs_error": [[[0.7]], [["wide"]]]}, "calibration.abs_error"),
        ({**GOOD_CAL, "n": -1}, "calibration.n"),
        ({"levels": [0.5], "abs_error": [[[0.7]]]}, "calibration.n"),
        ({**GOOD_CAL, "extra": 1}, "calibration.extra"),
        ("0.9", "calibration"),
        ([], "calibration"),
    ],
)  # fmt: skip
def test_malformed_calibration_is_refused_at_load_with_one_line(
    tmp_path: Path, calibration: Any, message: str
) -> None:
    root = make_bundle(tmp_path / "b")
    edit_meta(root, calibration=calibration)
    with pytest.raises(BundleError, match=message) as caught:
        load_bundle(root)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(str(root))


def test_edited_calibration_fails_the_content_hash(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b", calibration=GOOD_CAL)
    edit_meta(root, calibration={**GOOD_CAL, "abs_error": [[[0.7]], [[9.9]]]})
    with pytest.raises(BundleError, match="content_hash does not match"):
        load_bundle(root)


def make_schema_1_bundle(root: Path) -> Path:
    """A bundle as the previous sensorcast wrote it: schema 1, no calibration."""
    make_bundle(root)
    meta = json.loads((root / "bundle.json").read_text())
    meta["schema_version"] = 1
    del meta["calibration"]
    meta["content_hash"] = content_hash(meta["files"]["model.tflite"], meta)
    (root / "bundle.json").write_text(json.dumps(meta))
    return root


def test_bundles_are_written_with_the_current_schema_and_their_calibration(
    tmp_path: Path,
) -> None:
    meta = load_bundle(make_bundle(tmp_path / "b")).meta
    assert meta.schema_version == 2 and meta.calibration is not None
    assert meta.interval_calibration == meta.calibration
    with pytest.raises(BundleError, match="calibration is required"):
        write_bundle_meta(tmp_path / "b", {**bundle_fields(), "calibration": None})


def test_schema_1_gets_the_documented_default_calibration(tmp_path: Path) -> None:
    meta = load_bundle(make_schema_1_bundle(tmp_path / "b")).meta
    assert meta.schema_version == 1
    assert meta.calibration is None
    cal = meta.interval_calibration
    assert cal.shape == (meta.horizon, len(meta.targets))
    q90 = cal.quantile(0.9)
    assert q90[0][0] == pytest.approx(1.645)
    # between stored levels the quantile is interpolated, and it grows with the level
    assert cal.quantile(0.8)[0][0] < cal.quantile(0.85)[0][0] < q90[0][0]


def test_window_normalisation_needs_targets_among_features(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="window normalisation needs every target"):
        make_bundle(tmp_path / "b", targets=["other"])
    root = make_bundle(tmp_path / "c")
    edit_meta(root, targets=["other"])
    with pytest.raises(BundleError, match="window normalisation needs every target"):
        load_bundle(root)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"normalisation": {"mode": "global", "mean": [1.0]}}, "global normalisation needs"),
        (
            {"normalisation": {"mode": "global", "mean": [1.0, 2.0], "std": [1.0, 1.0],
                               "target_mean": [0.0], "target_std": [1.0]}},
            "one value per feature",
        ),
        ({"tflite": {"batch_sizes": [0, 1]}}, "ascending, unique and start at 1"),
        ({"tflite": {"batch_sizes": [1, 100_000]}}, "must not exceed"),
        ({"tflite": {"batch_sizes": [1], "signature": "{0}"}}, "tflite.signature"),
        ({"name": "no spaces"}, "name"),
        ({"architecture": {"kind": "seq2seq", "layers": 1, "units": 8, "dropout": 0}},
         "horizon equal to timesteps"),
        ({"normalisation": {"mode": "window", "scale": [1.0]}}, "only last normalisation"),
        ({"normalisation": {"mode": "last", "scale": [0.0]}}, "finite and positive"),
        ({"normalisation": {"mode": "last", "scale": [1.0, 2.0]}}, "one value per feature"),
        ({"normalisation": {"mode": "last", "mean": [1.0]}}, "takes no mean or std"),
        ({"normalisation": {"mode": "last"}, "targets": ["other"]},
         "last normalisation needs every target"),
    ],
)  # fmt: skip
def test_inconsistent_fields_are_refused(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(BundleError, match=message):
        make_bundle(tmp_path / "b", **overrides)


def test_unreadable_bundles(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="is not a directory"):
        load_bundle(tmp_path / "nowhere")
    root = make_bundle(tmp_path / "b")
    (root / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="is not valid JSON"):
        load_bundle(root)
    edit_target = make_bundle(tmp_path / "c")
    edit_meta(edit_target, files={"../model.keras": "0" * 64, "model.tflite": "0" * 64})
    with pytest.raises(BundleError, match="lists a file outside the bundle"):
        load_bundle(edit_target)


def test_a_bundle_written_before_step_scale_existed_keeps_its_hash(tmp_path: Path) -> None:
    """Its bundle.json has no `step_scale`: it still loads, under the same model id."""
    root = make_bundle(tmp_path / "old", normalisation={"mode": "last"})
    meta = json.loads((root / "bundle.json").read_text())
    del meta["normalisation"]["step_scale"]
    (root / "bundle.json").write_text(json.dumps(meta))
    loaded = load_bundle(root).meta
    assert loaded.content_hash == meta["content_hash"] and loaded.normalisation.step_scale is None
    trimmed = dict(meta, normalisation={"mode": "last", "step_scale": "trimmed"})
    assert content_hash(meta["files"]["model.tflite"], trimmed) != meta["content_hash"]
