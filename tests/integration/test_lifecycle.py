"""`sensorcast run` as a process: signals, reload, exit codes, as systemd drives it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle, write_bundle_meta
from sensorcast.mqttio import status_topic

from ..install_helpers import assert_installs_from_the_source
from ..mqtt_helpers import wait_for
from .conftest import write_config

T0 = 1_700_000_000.0
BUNDLE = DEFAULT_BUNDLE


def renamed_copy(src: Path, dst: Path, name: str) -> Path:
    """A valid copy of a bundle under another name (so its model id differs)."""
    shutil.copytree(src, dst)
    meta = load_bundle(dst).meta.model_dump(mode="json")
    for key in ("schema_version", "files", "content_hash"):
        meta.pop(key)
    write_bundle_meta(dst, {**meta, "name": name})
    return dst


def test_sighup_reloads_a_valid_bundle_and_keeps_the_old_one_on_an_invalid(
    tmp_path, broker, client_factory, daemon_proc
):
    first = renamed_copy(BUNDLE, tmp_path / "first", "first")
    second = renamed_copy(BUNDLE, tmp_path / "second", "second")
    broken = renamed_copy(BUNDLE, tmp_path / "broken", "broken")
    (broken / "model.tflite").write_bytes(b"\0" * 64)
    config = write_config(tmp_path / "sensorcast.toml", broker.port, first)
    status = status_topic("sc-life")
    sub = client_factory("forecasts/#", status)
    pub = client_factory()
    daemon = daemon_proc(config)
    wait_for(lambda: sub.received(status), timeout=20)
    t = load_bundle(first).meta.timesteps

    def send(i: int) -> None:
        pub.publish("sensors/s1/reading", {"value": 20 + (i % 5) / 3, "ts": T0 + 60 * i})

    for i in range(t):
        send(i)
    wait_for(lambda: sub.json("forecasts/"))
    assert sub.json("forecasts/")[-1]["model"].startswith("first@")

    write_config(config, broker.port, second)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.logged("now serving second@"))
    send(t)  # one reading is enough: the buffers were kept
    wait_for(lambda: len(sub.json("forecasts/")) == 2)
    assert sub.json("forecasts/")[-1]["model"].startswith("second@")

    write_config(config, broker.port, broken)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.logged("reload failed"))
    assert daemon.logged("checksum")
    send(t + 1)
    wait_for(lambda: len(sub.json("forecasts/")) == 3)
    assert sub.json("forecasts/")[-1]["model"].startswith("second@")

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert not daemon.logged("Traceback")
    wait_for(lambda: [m for m in sub.received(status) if m[1] == b"offline"])


def test_sigterm_drains_and_exits_zero_with_offline_status(
    tmp_path, broker, client_factory, daemon_proc
):
    config = write_config(tmp_path / "c.toml", broker.port, BUNDLE, client_id="sc-term")
    status = status_topic("sc-term")
    sub = client_factory(status)
    daemon = daemon_proc(config)
    wait_for(lambda: sub.received(status), timeout=20)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    wait_for(lambda: [m for m in sub.received(status) if m[1:] == (b"offline", False)])


def test_unreachable_broker_at_startup_is_retried_not_fatal(tmp_path, daemon_proc):
    from ..mqtt_helpers import Mosquitto

    late = Mosquitto()
    config = write_config(tmp_path / "c.toml", late.port, BUNDLE, client_id="sc-late")
    daemon = daemon_proc(config)
    try:
        wait_for(lambda: daemon.logged("unreachable"), timeout=20)
        assert daemon.proc.poll() is None
        late.start()
        wait_for(lambda: daemon.logged("connected to"), timeout=20)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        late.close()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorcast", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_check_config_prints_effective_config_with_secret_masked(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[mqtt]\nusername = "gw"\npassword = "hunter2"\n')
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["mqtt"]["username"] == "gw"
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SENSORCAST_MQTT__PORT": "99999"}, "mqtt.port (SENSORCAST_MQTT__PORT)"),
        ({"SENSORCAST_MQTT__PROTOCOL": "4"}, "mqtt.protocol"),
        ({"SENSORCAST_INPUT__TOPIC": "sensors/#"}, "input.topic"),
        ({"SENSORCAST_OUTPUT__LEVEL": "1"}, "output.level (SENSORCAST_OUTPUT__LEVEL)"),
        ({"SENSORCAST_ANOMALY__LEVEL": "0"}, "anomaly.level (SENSORCAST_ANOMALY__LEVEL)"),
        ({"SENSORCAST_CONFIG": "/nonexistent.toml"}, "/nonexistent.toml"),
    ],
)
def test_invalid_config_is_one_line_and_exit_78(env, needle):
    for command in ("check-config", "run"):
        result = run_cli(command, env=env)
        assert result.returncode == 78, result.stderr
        assert needle in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr


def test_invalid_bundle_is_one_line_and_exit_78(tmp_path):
    """The configuration points at a bundle that cannot work: EX_CONFIG, so systemd's
    RestartPreventExitStatus=78 stops the unit instead of restarting it every 2 s."""
    for command in ("run", "check-config"):
        result = run_cli(command, "--model", str(tmp_path))
        assert result.returncode == 78
        assert result.stderr.strip().splitlines() == [
            "sensorcast: config error: invalid model.path (SENSORCAST_MODEL__PATH): "
            f"model bundle {tmp_path} has no bundle.json"
        ]


def test_training_without_tensorflow_is_one_line(tmp_path):
    # a gateway install: make the tensorflow module unfindable for this process
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['tensorflow'] = None\n")
    data = DEFAULT_BUNDLE.parent / "data" / "co2_maunaloa_weekly.csv"
    env = {"PYTHONPATH": str(tmp_path)}
    result = run_cli("train", str(data), "--out", str(tmp_path / "b"), env=env)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("sensorcast: error: training needs TensorFlow, the [train] extra: ")
    assert_installs_from_the_source(line, "train")


def test_output_piped_into_a_closed_reader_is_not_a_traceback():
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensorcast", "inspect", str(DEFAULT_BUNDLE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # like `| head -0`
    assert b"Traceback" not in proc.stderr.read()
    proc.wait(timeout=60)
