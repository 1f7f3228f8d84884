"""Crafted bundles (issue 15, D1, D2, D8): every one is refused with one line, and what
`check-config` loads is what `run` serves, so they refuse the same bundles."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sensorcast.config import load_settings
from sensorcast.errors import ConfigError
from sensorcast.models.bundle import BundleError, load_bundle
from sensorcast.service import load_model

from ..hostile_bundles import LOAD_FAILURES, SERVE_FAILURES, copy_default, rewritten


@pytest.mark.parametrize("build", LOAD_FAILURES.values(), ids=LOAD_FAILURES.keys())
def test_a_crafted_bundle_is_one_bundle_error(tmp_path: Path, build: Callable[..., Path]) -> None:
    root = build(tmp_path / "b")
    started = time.monotonic()
    with pytest.raises(BundleError) as info:
        load_bundle(root)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600
    assert str(tmp_path) in message  # names the bundle
    assert time.monotonic() - started < 5  # a FIFO or a device is not opened and waited on


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (LOAD_FAILURES["huge_integer"], "is not valid JSON: it holds a number too long"),
        (LOAD_FAILURES["deep_nesting"], "is not valid JSON: nested too deeply"),
        (LOAD_FAILURES["long_file_name"], "File name too long"),
        (LOAD_FAILURES["model_links_to_proc_mem"], "model.tflite is a link that leads out of"),
        (LOAD_FAILURES["meta_links_to_proc_mem"], "bundle.json is a link that leads out of"),
        (LOAD_FAILURES["model_is_a_fifo"], "model.tflite is not a regular file"),
        (LOAD_FAILURES["symlink_loop"], "model.tflite is a link that leads nowhere"),
    ],
)
def test_each_crafted_bundle_says_what_is_wrong(
    tmp_path: Path, build: Callable[..., Path], says: str
) -> None:
    with pytest.raises(BundleError, match=".*".join(map(_escape, says.split()))):
        load_bundle(build(tmp_path / "b"))


def _escape(word: str) -> str:
    import re

    return re.escape(word)


def test_a_link_to_another_file_inside_the_bundle_is_followed(tmp_path: Path) -> None:
    root = copy_default(tmp_path / "b")
    (root / "model-v3.tflite").write_bytes((root / "model.tflite").read_bytes())
    (root / "model.tflite").unlink()
    (root / "model.tflite").symlink_to("model-v3.tflite")
    assert load_bundle(root).meta.name == "default"
    linked = tmp_path / "current"  # the bundle directory itself may be a link
    linked.symlink_to(root)
    assert load_bundle(linked).meta.name == "default"


def test_a_link_out_of_the_bundle_is_refused_even_to_a_good_copy(tmp_path: Path) -> None:
    root = copy_default(tmp_path / "b")
    outside = tmp_path / "elsewhere.tflite"
    outside.write_bytes((root / "model.tflite").read_bytes())
    (root / "model.tflite").unlink()
    (root / "model.tflite").symlink_to(outside)
    with pytest.raises(BundleError, match="leads out of the bundle"):
        load_bundle(root)


def test_a_model_file_beyond_the_size_cap_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_default(tmp_path / "b")
    monkeypatch.setattr("sensorcast.models.bundle.MAX_MODEL_BYTES", 1000)
    with pytest.raises(BundleError, match=r"model\.tflite is larger than 1000 bytes"):
        load_bundle(root)


@pytest.mark.parametrize("name", SERVE_FAILURES, ids=SERVE_FAILURES.keys())
def test_load_model_refuses_what_run_cannot_serve(tmp_path: Path, name: str) -> None:
    """`load_model` is what `run` and `check-config` both call: the interpreter is built."""
    build, says = SERVE_FAILURES[name]
    settings = load_settings(None, model={"path": str(build(tmp_path / "b"))})
    with pytest.raises(ConfigError) as info:
        load_model(settings)
    message = str(info.value)
    assert message.startswith("invalid model.path (SENSORCAST_MODEL__PATH): ")
    assert says in message and "\n" not in message


def test_load_model_serves_a_valid_renamed_bundle(tmp_path: Path) -> None:
    root = rewritten(tmp_path / "b", name="renamed")
    bundle, served, parser = load_model(load_settings(None, model={"path": str(root)}))
    assert bundle.meta.name == "renamed"
    assert parser.features == ["value"]
    windows = [[[20.0 + i % 3] for i in range(bundle.meta.timesteps)]]
    import numpy as np

    assert served.forecaster.forecast(np.asarray(windows)).shape == (1, bundle.meta.horizon, 1)


def test_input_fields_naming_a_missing_feature_is_a_config_error() -> None:
    settings = load_settings(None, input={"fields": {"humidity": "AM2301.Humidity"}})
    with pytest.raises(ConfigError, match=r"input.fields \(SENSORCAST_INPUT__FIELDS\)"):
        load_model(settings)


def test_fifo_bundle_json_does_not_block(tmp_path: Path) -> None:
    root = copy_default(tmp_path / "b")
    (root / "bundle.json").unlink()
    os.mkfifo(root / "bundle.json")
    with pytest.raises(BundleError, match=r"bundle\.json is not a regular file"):
        load_bundle(root)
