"""deploy/sensorcast.service passes systemd's own verifier, where systemd is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sensorcast.cli import EXIT_CONFIG
from sensorcast.config import CREDENTIAL_NAME

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "sensorcast.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_unit_file_verifies(tmp_path: Path) -> None:
    sensorcast = Path(sys.executable).with_name("sensorcast")
    text = UNIT.read_text().replace("/opt/sensorcast/bin/sensorcast", str(sensorcast))
    unit = tmp_path / "sensorcast.service"
    unit.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "sensorcast.service" not in result.stderr  # no warnings about our unit


def test_unit_keeps_the_promises_the_readme_makes() -> None:
    lines = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert lines["Type"] == "notify"
    assert lines["RestartPreventExitStatus"] == str(EXIT_CONFIG)
    assert lines["ExecReload"].endswith("kill -HUP $MAINPID")
    assert int(lines["WatchdogSec"]) > 0
    assert lines["LoadCredential"].startswith(f"{CREDENTIAL_NAME}:")
