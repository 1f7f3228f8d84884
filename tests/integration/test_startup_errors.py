"""`run` and `check-config` agree on what cannot work, and say it in one line (issue 15:
D2 crafted bundles at start-up, D3 TLS files and a taken metrics port, D8 bundles that
check-config passed and run refused)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ..hostile_bundles import LOAD_FAILURES, SERVE_FAILURES
from ..tls_helpers import PKI

BUNDLES: dict[str, Callable[[Path], Path]] = {
    **LOAD_FAILURES,
    **{name: build for name, (build, _) in SERVE_FAILURES.items()},
}


def sensorcast(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A command as a user runs it; `run` gets an unused broker port (it never connects)."""
    return subprocess.run(
        [sys.executable, "-m", "sensorcast", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "SENSORCAST_MQTT__PORT": "1", **(env or {})},
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("name", BUNDLES)
def test_a_crafted_bundle_stops_run_and_check_config_alike(tmp_path: Path, name: str) -> None:
    root = BUNDLES[name](tmp_path / name)
    run = sensorcast("run", "--model", str(root))
    check = sensorcast("check-config", "--model", str(root))
    assert (run.returncode, check.returncode) == (78, 78)
    assert one_line(run) == one_line(check)
    assert one_line(run).startswith(
        "sensorcast: config error: invalid model.path (SENSORCAST_MODEL__PATH): "
    )
    assert check.stdout == ""  # no "model bundle OK", no effective config


@pytest.mark.parametrize("name", SERVE_FAILURES)
def test_check_config_names_why_run_could_not_serve(tmp_path: Path, name: str) -> None:
    build, says = SERVE_FAILURES[name]
    assert says in one_line(sensorcast("check-config", "--model", str(build(tmp_path / "b"))))


def test_check_config_still_passes_the_shipped_bundle() -> None:
    result = sensorcast("check-config")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("model bundle OK: default@")


@pytest.mark.parametrize(
    ("tls", "says"),
    [
        ({"CA_FILE": "{pki}/server.key"}, "holds no usable CA certificate"),
        (
            {"CERT_FILE": "{pki}/client.crt", "KEY_FILE": "{pki}/server.key"},
            "key values mismatch",
        ),
        ({"CA_FILE": "{tmp}/" + "c" * 300}, "File name too long"),
    ],
    ids=["ca-not-a-certificate", "cert-key-mismatch", "ca-path-too-long"],
)
def test_unusable_tls_files_stop_run_and_check_config_alike(
    pki: PKI, tmp_path: Path, tls: dict[str, str], says: str
) -> None:
    env = {"SENSORCAST_MQTT__TLS__ENABLED": "true"}
    for key, value in tls.items():
        env[f"SENSORCAST_MQTT__TLS__{key}"] = value.format(pki=pki.dir, tmp=tmp_path)
    run = sensorcast("run", env=env)
    check = sensorcast("check-config", env=env)
    assert (run.returncode, check.returncode) == (78, 78)
    assert one_line(run) == one_line(check)
    assert says in one_line(run)


def test_a_state_dir_under_a_file_stops_run_and_check_config(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    env = {"SENSORCAST_STATE__DIR": str(tmp_path / "file" / "state")}
    run, check = sensorcast("run", env=env), sensorcast("check-config", env=env)
    assert (run.returncode, check.returncode) == (78, 78)
    assert "state.dir (SENSORCAST_STATE__DIR)" in one_line(run) == one_line(check)


def test_a_state_dir_that_cannot_be_written_stops_run_with_one_line() -> None:
    """It was taken, and every snapshot then failed (an error a minute for as long as the
    daemon ran). /proc takes no directory, even from root."""
    result = sensorcast("run", env={"SENSORCAST_STATE__DIR": "/proc/sensorcast-state"})
    assert result.returncode == 78
    assert one_line(result).startswith(
        "sensorcast: config error: state.dir /proc/sensorcast-state cannot be written: "
    )


def test_a_taken_metrics_port_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = sensorcast("run", env={"SENSORCAST_METRICS__PORT": str(port)})
    assert result.returncode == 1
    assert one_line(result) == (
        f"sensorcast: error: metrics.port {port} on 127.0.0.1 cannot be opened: "
        "Address already in use"
    )
