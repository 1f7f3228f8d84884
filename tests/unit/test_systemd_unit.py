"""deploy/sensorcast.service and the group template deploy/sensorcast@.service pass systemd's
own verifier, where systemd is installed, and keep the README's promises."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sensorcast.cli import EXIT_CONFIG
from sensorcast.config import CREDENTIAL_NAME

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
README = DEPLOY.parent / "README.md"
UNIT = DEPLOY / "sensorcast.service"
TEMPLATE = DEPLOY / "sensorcast@.service"


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


@pytest.mark.parametrize("unit", [UNIT, TEMPLATE], ids=lambda p: p.name)
def test_unit_comments_name_readme_sections_that_exist(unit: Path) -> None:
    headings = {ln.lstrip("#").strip() for ln in README.read_text().splitlines() if ln[:1] == "#"}
    comments = " ".join(ln.lstrip("# ") for ln in unit.read_text().splitlines() if ln[:1] == "#")
    named = re.findall(r'"([^"]+)"', comments)
    assert named and set(named) <= headings, set(named) - headings


def settings(path: Path) -> list[tuple[str, str]]:
    """(key, value) of every setting line, in order (keys may repeat)."""
    return [
        (line.split("=", 1)[0], line.split("=", 1)[1])
        for line in path.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_group_template_verifies_as_an_instance(tmp_path: Path) -> None:
    sensorcast = Path(sys.executable).with_name("sensorcast")
    text = TEMPLATE.read_text().replace("/opt/sensorcast/bin/sensorcast", str(sensorcast))
    (tmp_path / "sensorcast@.service").write_text(text)
    instance = tmp_path / "sensorcast@1.service"  # as `systemctl enable sensorcast@1` links it
    instance.symlink_to("sensorcast@.service")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "sensorcast@" not in result.stderr  # no warnings about our unit


def test_group_template_differs_from_the_unit_only_per_instance() -> None:
    comments = [ln for ln in UNIT.read_text().splitlines() if ln.startswith("#LoadCredential")]
    assert comments and all(ln in TEMPLATE.read_text().splitlines() for ln in comments)
    single, group = dict(settings(UNIT)), settings(TEMPLATE)
    keys = dict(group)
    per_instance = {"Description", "StateDirectory", "ExecStartPre", "After"}
    for key, value in single.items():
        if key not in per_instance and key != "Environment":
            assert keys.get(key) == value, key  # hardening, restart policy, credential...
    env = dict(v.split("=", 1) for k, v in group if k == "Environment")
    assert env["SENSORCAST_MQTT__CLIENT_ID"] == "sensorcast-%i"
    assert env["SENSORCAST_INPUT__TOPIC"] == "part/%i/{sensor_id}"
    assert env["SENSORCAST_STATE__DIR"] == "%S/sensorcast/%i"
    assert env["SENSORCAST_INPUT__GROUP"] == "true"
    assert keys["StateDirectory"] == "sensorcast/%i"
    files = [v for k, v in group if k == "EnvironmentFile"]
    assert files == ["-/etc/sensorcast/group.env", "-/etc/sensorcast/group-%i.env"]


def test_group_template_environment_is_a_valid_configuration(tmp_path: Path) -> None:
    """What the template sets for instance 3 passes `sensorcast check-config`."""
    env = {
        k: v.replace("%i", "3").replace("%S", str(tmp_path))
        for k, v in (line.split("=", 1) for key, line in settings(TEMPLATE) if key == "Environment")
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SENSORCAST_")}
    result = subprocess.run(
        [sys.executable, "-m", "sensorcast", "check-config"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["mqtt"]["client_id"] == "sensorcast-3"
    assert effective["mqtt"]["protocol"] == "3.1.1"
    assert effective["input"]["topic"] == "part/3/{sensor_id}"
    assert effective["input"]["group"] is True
    assert effective["state"]["dir"] == str(tmp_path / "sensorcast" / "3")


def test_the_group_files_ship_with_the_package() -> None:
    sensorcast = Path(sys.executable).with_name("sensorcast")

    def printed(name: str) -> str:
        result = subprocess.run(
            [str(sensorcast), "deploy", "--print", name], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    template = TEMPLATE.read_text().replace("/opt/sensorcast/bin/sensorcast", str(sensorcast))
    assert printed("group") == template
    assert printed("nats") == (DEPLOY / "nats-server.conf").read_text()
