"""Deploy files travel with the package, and what they refer to exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sensorcast.config import TLS_KEY_CREDENTIAL, load_settings
from sensorcast.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SENSORCAST = Path(sys.executable).with_name("sensorcast")


def deploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SENSORCAST), "deploy", *args], capture_output=True, text=True, timeout=60
    )


def test_the_installed_package_prints_its_deploy_files():
    unit = deploy("--print", "unit")
    assert unit.returncode == 0, unit.stderr
    expected = (DEPLOY / "sensorcast.service").read_text()
    assert unit.stdout == expected.replace("/opt/sensorcast/bin/sensorcast", str(SENSORCAST))
    for alias, name in (("config", "sensorcast.toml"), ("dashboard", "grafana-dashboard.json")):
        printed = deploy("--print", alias)
        assert printed.returncode == 0 and printed.stdout == (DEPLOY / name).read_text()
    listing = deploy("--list").stdout
    assert "unit        sensorcast.service" in listing and "telegraf" in listing
    wrong = deploy("--print", "nope")
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1 and "unit" in wrong.stderr
    assert deploy().returncode == 2  # an argument error


@pytest.mark.parametrize(
    ("install", "name", "warned"),
    [
        ("/home/ann/sensorcast/.venv", "unit", True),
        ("/root/venv", "group", True),
        ("/opt/sensorcast", "unit", False),
        ("/home/ann/sensorcast/.venv", "config", False),
    ],
)
def test_a_unit_printed_from_an_install_its_protecthome_hides_says_so(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    install: str,
    name: str,
    warned: bool,
):
    """The units have ProtectHome=yes: one whose ExecStart is in a home directory (`./dev
    demo`'s .venv in a checkout) would not start, so printing it says so on stderr."""
    import argparse

    from sensorcast import deployfiles

    exe = Path(install) / "bin" / "sensorcast"
    monkeypatch.setattr(deployfiles, "_executable", lambda: exe)
    assert deployfiles.run(argparse.Namespace(list=False, name=name)) == 0
    out, err = capsys.readouterr()
    if name != "config":
        assert f"ExecStart={exe} run" in out and "ProtectHome=yes" in out
    if warned:
        assert err.count("\n") == 1 and f"ExecStart={exe} is under" in err
    else:
        assert not err


@pytest.mark.parametrize("name", ["unit", "group"])
def test_a_unit_printed_from_an_install_whose_path_has_a_space_starts_that_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
):
    """ExecStart took the path as it was: systemd splits it at the space (and expands `%`),
    so the unit ran `/srv/iot` and failed; now the path is one quoted word."""
    from sensorcast import deployfiles

    exe = tmp_path / "iot gateway 100%" / "bin" / "sensorcast"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setattr(deployfiles, "_executable", lambda: exe)
    text = deployfiles.text(name)
    quoted = '"' + str(exe).replace("%", "%%") + '"'
    assert f"ExecStart={quoted} run --config" in text
    if shutil.which("systemd-analyze") is None:
        return
    unit = tmp_path / ("sensorcast.service" if name == "unit" else "sensorcast@0.service")
    unit.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "not executable" not in result.stderr


def test_the_example_config_is_valid_with_its_home_assistant_section_on(tmp_path: Path):
    text = (DEPLOY / "sensorcast.toml").read_text()
    uncommented = re.sub(
        r"^# (\[homeassistant\]|\[\[homeassistant.entities\]\]|discovery|sensors|"
        r"unit|device_class|name|precision)",
        r"\1",
        text,
        flags=re.M,
    )
    path = tmp_path / "sensorcast.toml"
    path.write_text(uncommented)
    settings = load_settings(path)
    assert settings.homeassistant.discovery
    assert settings.homeassistant.entities[0].device_class == "temperature"


def test_the_tls_key_comes_from_its_systemd_credential(pki, tmp_path: Path, monkeypatch):
    key = tmp_path / "creds" / TLS_KEY_CREDENTIAL
    key.parent.mkdir()
    key.write_bytes(pki.client_key.read_bytes())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(key.parent))
    tls = load_settings(
        None, mqtt={"tls": {"enabled": True, "cert_file": str(pki.client_crt)}}
    ).mqtt.tls
    assert tls.key_file == key
    unit = (DEPLOY / "sensorcast.service").read_text()
    assert f"#LoadCredential={TLS_KEY_CREDENTIAL}:/etc/sensorcast/client.key" in unit


def dashboard_queries() -> list[str]:
    doc = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def metric_names(expr: str) -> set[str]:
    words = set(re.findall(r"\b([a-z_]+_[a-z_]+)(?:\{|\[| offset|\)|$)", expr))
    return {w for w in words if w.startswith(("sensorcast_", "process_"))}


def test_every_dashboard_metric_is_exported_by_the_daemon_or_the_telegraf_config():
    from prometheus_client import generate_latest

    daemon = {
        m.group(1)
        for m in re.finditer(
            r"^# TYPE (\S+) (\S+)", generate_latest(Metrics().registry).decode(), re.M
        )
    }
    exported = set()
    for name in daemon:  # counters and histograms are queried by their sample names
        exported |= {name, f"{name}_total", f"{name}_bucket", f"{name}_info"}
    telegraf = tomllib.loads((DEPLOY / "telegraf.conf").read_text())
    for consumer in telegraf["inputs"]["mqtt_consumer"]:
        for parser in consumer["json_v2"]:
            for field in parser["field"]:
                exported.add(f"{parser['measurement_name']}_{field.get('rename', field['path'])}")
    used = set().union(*(metric_names(q) for q in dashboard_queries()))
    assert used and used <= exported, used - exported


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (prometheus) not installed")
def test_every_dashboard_query_is_valid_promql(tmp_path: Path):
    rules = {"groups": [{"name": "dashboard", "rules": []}]}
    for i, expr in enumerate(dashboard_queries()):
        concrete = (
            expr.replace("$__rate_interval", "1m").replace("$cadence", "1m").replace("$sensor", "x")
        )
        rules["groups"][0]["rules"].append({"record": f"dashboard:q{i}", "expr": concrete})
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
