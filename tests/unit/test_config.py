"""Configuration: defaults, precedence, secrets and one-line errors (SPEC section 3)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sensorcast.cli import EXIT_OK, main
from sensorcast.config import Settings, config_warnings, effective_config, load_settings
from sensorcast.errors import ConfigError
from sensorcast.models import DEFAULT_BUNDLE

from ..tls_helpers import PKI

SECRET = "hunter2-Secret-Value"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No SENSORCAST_* or systemd credential variables leak in from the caller."""
    for name in list(os.environ):
        if name.upper().startswith("SENSORCAST_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    yield


def write_toml(tmp_path: Path, text: str, name: str = "sensorcast.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, "a config error is one line"
    return msg


# --- defaults and precedence ----------------------------------------------------


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "gw-1")
    s = load_settings()
    assert (s.mqtt.host, s.mqtt.port) == ("localhost", 1883)
    assert s.mqtt.client_id == "sensorcast-gw-1"
    assert s.mqtt.username is None and s.mqtt.password is None
    assert s.mqtt.tls.enabled is False
    assert s.mqtt.qos == 1
    assert s.mqtt.protocol == "5"
    assert s.input.topic == "sensors/{sensor_id}/reading"
    assert s.input.max_sensors == 100_000
    assert s.output.topic == "forecasts/{sensor_id}"
    assert s.model.path == DEFAULT_BUNDLE
    assert s.state.dir is None
    assert s.metrics.port is None


def test_default_client_id_fits_the_64_char_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "h" * 100)
    cid = load_settings().mqtt.client_id
    assert cid.startswith("sensorcast-hhh") and len(cid) == 64


def test_toml_file_sets_values(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[mqtt]\nhost = "broker.lan"\nport = 8883\n[input]\ntopic = "tele/{sensor_id}/SENSOR"\n'
        '[input.fields]\nvalue = "AM2301.Temperature"\n',
    )
    s = load_settings(path)
    assert (s.mqtt.host, s.mqtt.port) == ("broker.lan", 8883)
    assert s.input.topic == "tele/{sensor_id}/SENSOR"
    assert s.input.fields == {"value": "AM2301.Temperature"}


@pytest.mark.parametrize("qos", ["0", "1", "2"])
def test_subscription_qos_is_set_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, qos: str
) -> None:
    monkeypatch.setenv("SENSORCAST_MQTT__QOS", qos)
    assert load_settings().mqtt.qos == int(qos)


def test_precedence_override_over_env_over_toml_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(
        tmp_path, '[mqtt]\nhost = "toml-host"\nport = 1000\nclient_id = "toml-id"\nqos = 0\n'
    )
    monkeypatch.setenv("SENSORCAST_MQTT__PORT", "2000")
    monkeypatch.setenv("SENSORCAST_MQTT__HOST", "env-host")
    s = load_settings(path, mqtt={"port": 3000})
    assert s.mqtt.port == 3000  # override beats env and file
    assert s.mqtt.host == "env-host"  # env beats file
    assert s.mqtt.client_id == "toml-id"  # file beats default
    assert s.mqtt.qos == 0
    assert s.mqtt.keepalive == 30  # default where nobody says otherwise


def test_env_beats_toml_for_one_key_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, '[mqtt]\nhost = "toml-host"\nport = 1000\n')
    monkeypatch.setenv("SENSORCAST_MQTT__PORT", "2000")
    s = load_settings(path)
    assert (s.mqtt.host, s.mqtt.port) == ("toml-host", 2000)


def test_env_values_are_parsed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SENSORCAST_MQTT__TLS__ENABLED", "true")
    monkeypatch.setenv("SENSORCAST_INPUT__MAX_SENSORS", "42")
    monkeypatch.setenv("SENSORCAST_STATE__DIR", str(tmp_path))
    monkeypatch.setenv("SENSORCAST_METRICS__PORT", "9108")
    monkeypatch.setenv("SENSORCAST_INPUT__FIELDS", '{"value": "AM2301.Temperature"}')
    s = load_settings()
    assert s.mqtt.tls.enabled is True
    assert s.input.max_sensors == 42
    assert s.state.dir == tmp_path
    assert s.metrics.port == 9108
    assert s.input.fields == {"value": "AM2301.Temperature"}


def test_sensorcast_config_env_selects_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(tmp_path, "[mqtt]\nport = 1234\n")
    monkeypatch.setenv("SENSORCAST_CONFIG", str(path))
    assert load_settings().mqtt.port == 1234


def test_explicit_config_file_beats_sensorcast_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = write_toml(tmp_path, "[mqtt]\nport = 1111\n", name="env.toml")
    flag_file = write_toml(tmp_path, "[mqtt]\nport = 2222\n", name="flag.toml")
    monkeypatch.setenv("SENSORCAST_CONFIG", str(env_file))
    assert load_settings(flag_file).mqtt.port == 2222


def test_empty_toml_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(write_toml(tmp_path, "")).mqtt.port == 1883


def test_toml_is_not_read_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_toml(tmp_path, "[mqtt]\nport = 1234\n")  # sensorcast.toml in the cwd is not magic
    assert load_settings().mqtt.port == 1883


# --- errors ------------------------------------------------------------------------


def test_env_error_names_key_and_env_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORCAST_MQTT__PORT", "abc")
    msg = config_error()
    assert "mqtt.port (SENSORCAST_MQTT__PORT)" in msg
    assert "'abc'" in msg


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"mqtt": {"port": 0}}, "mqtt.port (SENSORCAST_MQTT__PORT)"),
        ({"mqtt": {"port": 65536}}, "mqtt.port (SENSORCAST_MQTT__PORT)"),
        ({"mqtt": {"host": ""}}, "mqtt.host (SENSORCAST_MQTT__HOST)"),
        ({"mqtt": {"qos": 3}}, "mqtt.qos (SENSORCAST_MQTT__QOS)"),
        ({"mqtt": {"client_id": "bad id"}}, "mqtt.client_id (SENSORCAST_MQTT__CLIENT_ID)"),
        ({"mqtt": {"client_id": "x" * 65}}, "mqtt.client_id (SENSORCAST_MQTT__CLIENT_ID)"),
        ({"mqtt": {"keepalive": 1}}, "mqtt.keepalive (SENSORCAST_MQTT__KEEPALIVE)"),
        (
            {"mqtt": {"session_expiry": 2**32}},
            "mqtt.session_expiry (SENSORCAST_MQTT__SESSION_EXPIRY)",
        ),
        ({"mqtt": {"reconnect_min": 5, "reconnect_max": 1}}, "mqtt (SENSORCAST_MQTT)"),
        # a delay no wait can take killed the network thread at the first failed connect
        (
            {"mqtt": {"reconnect_min": 1e300, "reconnect_max": 1e300}},
            "mqtt.reconnect_min (SENSORCAST_MQTT__RECONNECT_MIN)",
        ),
        (
            {"mqtt": {"reconnect_max": float("inf")}},
            "mqtt.reconnect_max (SENSORCAST_MQTT__RECONNECT_MAX)",
        ),
        ({"input": {"topic": "sensors/reading"}}, "input.topic (SENSORCAST_INPUT__TOPIC)"),
        ({"input": {"topic": "a/#/{sensor_id}"}}, "input.topic (SENSORCAST_INPUT__TOPIC)"),
        ({"input": {"max_sensors": 0}}, "input.max_sensors (SENSORCAST_INPUT__MAX_SENSORS)"),
        ({"input": {"max_gap": 1.0}}, "input.max_gap (SENSORCAST_INPUT__MAX_GAP)"),
        ({"input": {"gap_fill": "zero"}}, "input.gap_fill (SENSORCAST_INPUT__GAP_FILL)"),
        ({"output": {"topic": "out/+/{sensor_id}"}}, "output.topic (SENSORCAST_OUTPUT__TOPIC)"),
        ({"output": {"max_queue": 70_000}}, "output.max_queue (SENSORCAST_OUTPUT__MAX_QUEUE)"),
        ({"model": {"backend": "onnx"}}, "model.backend (SENSORCAST_MODEL__BACKEND)"),
        ({"metrics": {"port": 0}}, "metrics.port (SENSORCAST_METRICS__PORT)"),
        ({"log": {"level": "LOUD"}}, "log.level (SENSORCAST_LOG__LEVEL)"),
        ({"output": {"level": 1.0}}, "output.level (SENSORCAST_OUTPUT__LEVEL)"),
        ({"output": {"level": 0}}, "output.level (SENSORCAST_OUTPUT__LEVEL)"),
        ({"anomaly": {"level": 1.5}}, "anomaly.level (SENSORCAST_ANOMALY__LEVEL)"),
        ({"anomaly": {"level": -0.1}}, "anomaly.level (SENSORCAST_ANOMALY__LEVEL)"),
        ({"anomaly": {"topic": "a/#"}}, "anomaly.topic (SENSORCAST_ANOMALY__TOPIC)"),
        ({"input": {"max_gap": "inf"}}, "input.max_gap (SENSORCAST_INPUT__MAX_GAP)"),
        ({"state": {"interval": float("inf")}}, "state.interval (SENSORCAST_STATE__INTERVAL)"),
        ({"inference": {"max_wait_ms": "nan"}}, "inference.max_wait_ms"),
    ],
)
def test_invalid_values_name_key_and_env_form(overrides: dict[str, Any], where: str) -> None:
    msg = config_error(None, **overrides)
    assert where in msg


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1:1883", "without a port"),
        ("broker.lan:8883", "without a port"),
        ("mqtt://broker.lan", "without a scheme"),
        ("mqtts://broker.lan:8883", "without a scheme"),
        (" broker.lan", "no spaces"),
        ("[::1]", "without brackets"),
    ],
)
def test_a_broker_host_no_broker_can_have_is_a_config_error(host: str, why: str) -> None:
    """The daemon retried such a host forever ('broker mqtt://127.0.0.1:1883:1883
    unreachable'); check-config passed it."""
    msg = config_error(None, mqtt={"host": host})
    assert msg.startswith(f"invalid config mqtt.host (SENSORCAST_MQTT__HOST) = {host!r}: ")
    assert why in msg


@pytest.mark.parametrize("host", ["localhost", "broker.lan", "10.0.0.5", "::1", "fe80::1%eth0"])
def test_a_broker_host_name_or_address_is_taken(host: str) -> None:
    assert load_settings(None, mqtt={"host": host}).mqtt.host == host


@pytest.mark.parametrize(
    ("inputs", "where"),
    [
        ({"fields": {"value": "AM2301..Temperature"}}, "input.fields.value"),
        ({"fields": {"value": ".Temperature"}}, "input.fields.value"),
        ({"ts_field": "Time."}, "input.ts_field"),
    ],
)
def test_a_dotted_path_with_an_empty_level_is_a_config_error(
    inputs: dict[str, Any], where: str
) -> None:
    """No payload has such a path (a typo): every reading was dropped as missing its feature."""
    msg = config_error(None, input=inputs)
    assert msg.startswith(f"invalid config {where} ("), msg
    assert "without an empty level" in msg


def test_dotted_paths_are_taken() -> None:
    cfg = load_settings(None, input={"fields": {"value": "AM2301.Temperature"}, "ts_field": "Time"})
    assert cfg.input.fields == {"value": "AM2301.Temperature"} and cfg.input.ts_field == "Time"


@pytest.mark.parametrize("host", ["", "127.0.0.1:9108", "http://127.0.0.1", "192.0.2.1"])
def test_a_metrics_host_run_could_not_bind_is_a_config_error(host: str) -> None:
    """Empty, with a port or a scheme, or not this machine's: `run` could not serve metrics
    there, so `check-config` refuses it (exit 78) rather than passing it."""
    msg = config_error(None, metrics={"port": 9108, "host": host})
    assert msg.startswith(f"invalid config metrics.host (SENSORCAST_METRICS__HOST) = {host!r}: ")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0.0.0.0"])
def test_a_metrics_host_of_this_machine_is_taken(host: str) -> None:
    assert load_settings(None, metrics={"port": 9108, "host": host}).metrics.host == host


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"output": {"topic": "sensors/{sensor_id}/reading"}}, "output (SENSORCAST_OUTPUT)"),
        ({"input": {"topic": "+/{sensor_id}"}}, "output (SENSORCAST_OUTPUT)"),
        (
            {"input": {"topic": "x/{sensor_id}/+"}, "anomaly": {"topic": "x/boiler/{sensor_id}"}},
            "anomaly (SENSORCAST_ANOMALY)",
        ),
        (
            {"mqtt": {"client_id": "gw1"}, "input": {"topic": "sensorcast/{sensor_id}/status"}},
            "the status topic 'sensorcast/gw1/status'",
        ),
        (
            {"input": {"topic": "+/+/+/{sensor_id}/config"}, "homeassistant": {"discovery": True}},
            "a Home Assistant discovery topic 'homeassistant/sensor/sensorcast/",
        ),
    ],
)
def test_a_topic_the_daemon_would_read_back_is_refused(
    overrides: dict[str, Any], where: str
) -> None:
    msg = config_error(None, **overrides)
    assert where in msg and "read what it publishes back" in msg


def test_the_read_back_error_names_the_topic_not_the_whole_section() -> None:
    msg = config_error(None, input={"topic": "+/{sensor_id}"})
    assert "output.topic 'forecasts/{sensor_id}' is also matched" in msg
    assert "OutputConfig(" not in msg and "retain=" not in msg


def test_discovery_topics_matter_only_with_discovery_on() -> None:
    s = load_settings(None, input={"topic": "+/+/+/{sensor_id}/config"})
    assert s.input.topic == "+/+/+/{sensor_id}/config"


@pytest.mark.parametrize(
    ("prefix", "why"),
    [
        ("homeassistant/", "no empty topic level"),
        ("/homeassistant", "no empty topic level"),
        ("ha//x", "no empty topic level"),
        ("$ha", "does not start with '$'"),
        ("ha/+", "without wildcards"),
        ("", "without wildcards"),
    ],
)
def test_a_discovery_prefix_home_assistant_would_not_read_is_refused(prefix: str, why: str):
    msg = config_error(None, homeassistant={"prefix": prefix})
    assert "homeassistant.prefix (SENSORCAST_HOMEASSISTANT__PREFIX)" in msg and why in msg


def test_a_discovery_prefix_of_several_levels_is_taken() -> None:
    s = load_settings(None, homeassistant={"prefix": "site-1/homeassistant"})
    assert s.homeassistant.prefix == "site-1/homeassistant"


def test_topics_that_cannot_meet_are_accepted() -> None:
    s = load_settings(
        None,
        input={"topic": "home/{sensor_id}/state"},
        output={"topic": "home/{sensor_id}/forecast"},
        anomaly={"topic": "alerts/{sensor_id}"},
    )
    assert s.output.topic == "home/{sensor_id}/forecast"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[mqtt]\nport = true\n", "mqtt.port (SENSORCAST_MQTT__PORT) = 'true'"),
        ("[output]\nlevel = false\n", "output.level (SENSORCAST_OUTPUT__LEVEL) = 'false'"),
        ("[metrics]\nport = true\n", "metrics.port (SENSORCAST_METRICS__PORT) = 'true'"),
    ],
)
def test_a_bool_for_a_number_is_refused_not_taken_as_1(tmp_path: Path, text: str, where: str):
    assert where in config_error(write_toml(tmp_path, text))


def test_an_empty_field_path_and_a_directory_for_a_file_are_refused(tmp_path: Path) -> None:
    assert "input.fields.value" in config_error(None, input={"fields": {"value": ""}})
    msg = config_error(None, mqtt={"tls": {"enabled": True, "ca_file": str(tmp_path)}})
    assert "is not a regular file" in msg


def test_unknown_key_in_toml(tmp_path: Path) -> None:
    msg = config_error(write_toml(tmp_path, '[mqtt]\nhots = "broker"\n'))
    assert "unknown config key mqtt.hots (SENSORCAST_MQTT__HOTS)" in msg


def test_unknown_section_in_toml(tmp_path: Path) -> None:
    msg = config_error(write_toml(tmp_path, "[mqqt]\nport = 1\n"))
    assert "mqqt" in msg and "unknown" in msg


def test_unknown_nested_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORCAST_MQTT__PORTT", "1")
    assert "mqtt.portt (SENSORCAST_MQTT__PORTT)" in config_error()


def test_wrong_type_in_toml(tmp_path: Path) -> None:
    msg = config_error(write_toml(tmp_path, '[mqtt]\nport = "high"\n'))
    assert "mqtt.port (SENSORCAST_MQTT__PORT)" in msg


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[mqtt\nport = = 1\n")
    msg = config_error(path)
    assert str(path) in msg and "TOML" in msg


def test_a_file_that_is_not_utf8_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[mqtt]\nhost = "broker" # 21 \xb0C\n')
    msg = config_error(path)
    assert str(path) in msg and "not UTF-8" in msg and "0xb0" in msg and "\n" not in msg


def test_a_file_saved_with_a_byte_order_mark_is_told_so(tmp_path: Path) -> None:
    """Some Windows editors save UTF-8 with a BOM, which TOML refuses: the error used to be
    'Invalid statement (at line 1, column 1)' on a line that looks right."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[mqtt]\nport = 1884\n")
    msg = config_error(path)
    assert msg == (
        f"config file {path} starts with a byte order mark (BOM), which TOML does not "
        "allow: save it as UTF-8 without BOM"
    )


def test_a_state_dir_that_is_a_dangling_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").symlink_to(tmp_path / "gone")
    msg = config_error(None, state={"dir": tmp_path / "state"})
    assert "state.dir (SENSORCAST_STATE__DIR)" in msg and "does not exist" in msg


def test_an_empty_state_dir_means_no_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    """It used to be `.`: snapshots in the working directory (`/` under systemd)."""
    assert load_settings(state={"dir": ""}).state.dir is None
    monkeypatch.setenv("SENSORCAST_STATE__DIR", "")
    assert load_settings().state.dir is None


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    msg = config_error(path)
    assert str(path) in msg


def test_missing_file_from_sensorcast_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nope.toml"
    monkeypatch.setenv("SENSORCAST_CONFIG", str(path))
    assert str(path) in config_error()


def test_directory_as_config_file(tmp_path: Path) -> None:
    assert str(tmp_path) in config_error(tmp_path)


@pytest.mark.parametrize(
    ("name", "value", "where"),
    [
        ("SENSORCAST_INPUT__FIELDS", "value=AM2301.Temperature", "input.fields"),
        ("SENSORCAST_MQTT", "{not json", "mqtt"),
        ("SENSORCAST_MQTT__TLS", "on", "mqtt.tls"),
        ("SENSORCAST_ROUTES", "sensors=kitchen-*", "routes"),
    ],
)
def test_non_json_env_for_structured_key_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, where: str
) -> None:
    """The error names the key and the variable that was not JSON, not just its section."""
    monkeypatch.setenv("SENSORCAST_INPUT__TOPIC", "sensors/+/reading")  # not JSON, and fine
    monkeypatch.setenv(name, value)
    msg = config_error()
    assert msg.startswith(f"invalid config {where} ({name}): not JSON ("), msg


def test_a_variable_that_is_almost_json_says_where_it_breaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An escape JSON has not (a glob's backslash): the message points at the character."""
    monkeypatch.setenv("SENSORCAST_ROUTES", '[{"sensors": "x\\*", "model": "m"}]')
    msg = config_error()
    assert msg.startswith(
        "invalid config routes (SENSORCAST_ROUTES): not JSON (Invalid \\escape at character 16)"
    ), msg


# --- protocol ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml_value", "expected"),
    [('"5"', "5"), ('"3.1.1"', "3.1.1"), ("5", "5"), ("3.1", "3.1.1")],
)
def test_protocol_values_in_toml(tmp_path: Path, toml_value: str, expected: str) -> None:
    path = write_toml(tmp_path, f"[mqtt]\nprotocol = {toml_value}\n")
    assert load_settings(path).mqtt.protocol == expected


@pytest.mark.parametrize("value", ["5", "3.1.1"])
def test_protocol_values_from_env(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SENSORCAST_MQTT__PROTOCOL", value)
    assert load_settings().mqtt.protocol == value


@pytest.mark.parametrize("value", ["4", "3.1", "v5", 3, 4, 3.11])
def test_bad_protocol_names_the_key(value: object) -> None:
    msg = config_error(None, mqtt={"protocol": value})
    assert "mqtt.protocol (SENSORCAST_MQTT__PROTOCOL)" in msg


# --- TLS --------------------------------------------------------------------------


def test_tls_files_that_work_are_accepted(pki: PKI) -> None:
    tls = {
        "enabled": True,
        "ca_file": str(pki.ca_crt),
        "cert_file": str(pki.client_crt),
        "key_file": str(pki.client_key),
    }
    s = load_settings(None, mqtt={"tls": tls})
    assert s.mqtt.tls.enabled and s.mqtt.tls.ca_file == pki.ca_crt


def test_tls_ca_file_that_is_not_a_certificate(pki: PKI, tmp_path: Path) -> None:
    """Loaded at config time (issue 15, D3), so `run` and `check-config` both refuse it."""
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    for wrong in (tmp_path / "notes.txt", pki.ca_key):
        msg = config_error(None, mqtt={"tls": {"enabled": True, "ca_file": str(wrong)}})
        assert f"ca_file {wrong} holds no usable CA certificate" in msg


def test_tls_certificate_and_key_that_do_not_match(pki: PKI) -> None:
    tls = {"enabled": True, "cert_file": str(pki.client_crt), "key_file": str(pki.server_key)}
    msg = config_error(None, mqtt={"tls": tls})
    assert "are not a certificate and its key: key values mismatch" in msg


def test_tls_encrypted_key_is_refused_without_a_prompt(pki: PKI, tmp_path: Path) -> None:
    key = tmp_path / "enc.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(pki.client_key), "-aes128", "-passout", "pass:x",
         "-out", str(key)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = {"enabled": True, "cert_file": str(pki.client_crt), "key_file": str(key)}
    assert f"key_file {key} is encrypted" in config_error(None, mqtt={"tls": tls})


def test_tls_file_name_too_long_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / ("c" * 300 + ".pem")
    msg = config_error(None, mqtt={"tls": {"enabled": True, "ca_file": str(path)}})
    assert "mqtt.tls.ca_file (SENSORCAST_MQTT__TLS__CA_FILE)" in msg
    assert "File name too long" in msg


@pytest.mark.parametrize("key", ["ca_file", "cert_file", "key_file"])
def test_missing_tls_file_names_the_key(tmp_path: Path, key: str) -> None:
    (tmp_path / "other.pem").write_text("x")
    tls: dict[str, Any] = {"enabled": True}
    if key != "ca_file":
        tls["cert_file"] = tls["key_file"] = str(tmp_path / "other.pem")
    tls[key] = str(tmp_path / "missing.pem")
    msg = config_error(None, mqtt={"tls": tls})
    assert f"mqtt.tls.{key} (SENSORCAST_MQTT__TLS__{key.upper()})" in msg
    assert "missing.pem" in msg


def test_missing_tls_file_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SENSORCAST_MQTT__TLS__CA_FILE", str(tmp_path / "ca.pem"))
    assert "SENSORCAST_MQTT__TLS__CA_FILE" in config_error()


def test_state_dir_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    msg = config_error(None, state={"dir": str(tmp_path / "file" / "state")})
    assert "state.dir (SENSORCAST_STATE__DIR)" in msg
    assert f"{tmp_path / 'file'} exists and is not a directory" in msg
    assert "exists and is not a directory" in config_error(
        None, state={"dir": str(tmp_path / "file")}
    )
    s = load_settings(None, state={"dir": str(tmp_path / "new" / "state")})  # can be made
    assert s.state.dir == tmp_path / "new" / "state"


def test_client_cert_without_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    msg = config_error(None, mqtt={"tls": {"cert_file": str(tmp_path / "cert.pem")}})
    assert "mqtt.tls (SENSORCAST_MQTT__TLS)" in msg


# --- secrets ------------------------------------------------------------------------


def assert_secret_hidden(settings: Settings) -> None:
    shown = json.dumps(effective_config(settings))
    assert SECRET not in shown
    assert effective_config(settings)["mqtt"]["password"] == "********"
    assert SECRET not in repr(settings) and SECRET not in str(settings)


def test_password_from_override_is_usable_but_masked() -> None:
    s = load_settings(None, mqtt={"username": "u", "password": SECRET})
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == SECRET
    assert_secret_hidden(s)


def test_password_from_env_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORCAST_MQTT__PASSWORD", SECRET)
    s = load_settings()
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == SECRET
    assert_secret_hidden(s)


def test_no_password_shows_none() -> None:
    assert effective_config(load_settings())["mqtt"]["password"] is None


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_password_file_is_read_without_line_ending(tmp_path: Path, ending: str) -> None:
    pw = tmp_path / "pw"
    pw.write_text(SECRET + ending, encoding="utf-8")
    s = load_settings(None, mqtt={"password_file": str(pw)})
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == SECRET
    assert_secret_hidden(s)


def test_systemd_credential_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mqtt_password").write_text(SECRET + "\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    s = load_settings()
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == SECRET
    assert_secret_hidden(s)


def test_credentials_directory_without_the_file_means_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert load_settings().mqtt.password is None


def test_explicit_password_beats_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mqtt_password").write_text("from-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    s = load_settings(None, mqtt={"password": SECRET})
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == SECRET


def test_password_file_beats_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cred = tmp_path / "cred"
    cred.mkdir()
    (cred / "mqtt_password").write_text("from-credential")
    (tmp_path / "pw").write_text(SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(cred))
    s = load_settings(None, mqtt={"password_file": str(tmp_path / "pw")})
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == SECRET


def test_unreadable_password_file_is_a_config_error(tmp_path: Path) -> None:
    msg = config_error(None, mqtt={"password_file": str(tmp_path / "missing")})
    assert "mqtt (SENSORCAST_MQTT)" in msg and "missing" in msg


def test_a_password_file_without_end_is_refused_not_read_whole() -> None:
    msg = config_error(None, mqtt={"password_file": "/dev/zero"})
    assert "larger than" in msg and "\n" not in msg


def test_password_and_password_file_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("other")
    msg = config_error(None, mqtt={"password": SECRET, "password_file": str(tmp_path / "pw")})
    assert "password_file" in msg
    assert SECRET not in msg


@pytest.mark.parametrize("source", ["password", "password_file", "credential"])
def test_a_password_without_a_user_name_is_warned_about(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password is sent only with a user name, so the broker would see no login at all."""
    (tmp_path / "mqtt_password").write_text(SECRET)
    mqtt = {
        "password": {"password": SECRET},
        "password_file": {"password_file": str(tmp_path / "mqtt_password")},
        "credential": {},
    }[source]
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (warning,) = config_warnings(load_settings(None, mqtt=mqtt))
    assert "mqtt.username (SENSORCAST_MQTT__USERNAME) is not set" in warning
    assert SECRET not in warning
    assert config_warnings(load_settings(None, mqtt={**mqtt, "username": "u"})) == []


def test_a_variable_of_the_prefix_that_is_no_setting_is_warned_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One underscore where two are meant: pydantic-settings ignores the variable."""
    monkeypatch.setenv("SENSORCAST_MQTT_HOST", "broker")
    monkeypatch.setenv("SENSORCAST_MQTT", '{"port": 1884}')  # a whole section: a setting
    (warning,) = config_warnings(load_settings(None))
    assert "SENSORCAST_MQTT_HOST is not a setting" in warning and "MQTT__HOST" in warning


@pytest.mark.parametrize(
    "name", ["SENSORCAST_METRIC__PORT", "SENSORCAST_MQQT__HOST", "sensorcast_metric__port"]
)
def test_a_variable_of_the_prefix_with_a_misspelt_section_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """pydantic-settings ignores a nested variable whose section is none of the settings' (a
    misspelt key inside a section is an error): metrics stayed off without a word."""
    monkeypatch.setenv(name, "9108")
    (warning,) = config_warnings(load_settings(None))
    assert f"{name} is not a setting and is ignored" in warning
    assert "is no section: mqtt, input," in warning


def test_tls_files_without_tls_enabled_are_warned_about(pki: PKI) -> None:
    """A CA file set and mqtt.tls.enabled left false connected in plaintext without a word."""
    ca = pki.ca_crt
    (warning,) = config_warnings(load_settings(None, mqtt={"tls": {"ca_file": str(ca)}}))
    assert warning.startswith("mqtt.tls.ca_file set, but mqtt.tls.enabled")
    assert "plaintext" in warning
    on = load_settings(None, mqtt={"tls": {"ca_file": str(ca), "enabled": True}})
    assert config_warnings(on) == []


@pytest.mark.parametrize(
    ("unit", "device_class", "takes"),
    [("C", "temperature", "°C or °F or K"), (None, "humidity", "%"), ("AQI", "aqi", "no unit")],
)
def test_a_unit_home_assistant_refuses_with_the_device_class_is_warned_about(
    unit: str | None, device_class: str, takes: str
) -> None:
    """Home Assistant refuses the whole discovery config then and only logs why: the
    forecast entity never appeared, and check-config passed it."""
    rule = {"sensors": "boiler-*", "unit": unit, "device_class": device_class}
    ha = {"discovery": True, "entities": [rule]}
    (warning,) = config_warnings(load_settings(None, homeassistant=ha))
    assert warning.startswith("homeassistant.entities[0] (sensors 'boiler-*'): ")
    assert f"Home Assistant takes {takes} with device_class {device_class}" in warning
    right = {"temperature": "°C", "humidity": "%", "aqi": None}[device_class]
    fixed = {**ha, "entities": [{**rule, "unit": right}]}
    assert config_warnings(load_settings(None, homeassistant=fixed)) == []
    assert config_warnings(load_settings(None, homeassistant={**ha, "discovery": False})) == []


def test_check_config_warns_in_one_line_of_a_password_without_a_user_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mqtt_password").write_text(SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert main(["check-config"]) == EXIT_OK
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "set mqtt.username" in warnings[0]
    monkeypatch.setenv("SENSORCAST_MQTT__USERNAME", "sensorcast")
    assert main(["check-config"]) == EXIT_OK
    assert "warning" not in capsys.readouterr().err


def test_password_never_appears_in_errors_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORCAST_MQTT__PASSWORD", SECRET)
    monkeypatch.setenv("SENSORCAST_MQTT__PORT", "abc")
    assert SECRET not in config_error()


def test_password_never_appears_in_section_errors(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        f'[mqtt]\npassword = "{SECRET}"\nreconnect_min = 5\nreconnect_max = 1\n',
    )
    msg = config_error(path)
    assert "reconnect_max" in msg
    assert SECRET not in msg


def test_password_of_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    msg = config_error(write_toml(tmp_path, "[mqtt]\npassword = 987654321\n"))
    assert "mqtt.password (SENSORCAST_MQTT__PASSWORD)" in msg
    assert "987654321" not in msg


def test_share_group_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().input.share_group is None
    monkeypatch.setenv("SENSORCAST_INPUT__SHARE_GROUP", "sensorcast")
    assert load_settings().input.share_group == "sensorcast"


@pytest.mark.parametrize("group", ["a/b", "", "+", "fleet#1", "x" * 65])
def test_invalid_share_group_names_key_env_form_and_value(
    monkeypatch: pytest.MonkeyPatch, group: str
) -> None:
    monkeypatch.setenv("SENSORCAST_INPUT__SHARE_GROUP", group)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith(
        f"invalid config input.share_group (SENSORCAST_INPUT__SHARE_GROUP) = {group!r}: "
    )
    assert "\n" not in message
