"""Configuration: one pydantic model per section, loaded with pydantic-settings.

Precedence: command-line flag > environment (`SENSORCAST_`, nested with `__`)
> TOML file (`--config FILE` or `SENSORCAST_CONFIG`) > defaults. Every error
names the key, its environment form, the value and what is allowed.
"""

from __future__ import annotations

import codecs
import ipaddress
import json
import os
import re
import socket
import ssl
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from sensorcast.errors import ConfigError
from sensorcast.globs import uncovered
from sensorcast.topics import (
    PLACEHOLDER,
    TopicTemplate,
    check_share_group,
    status_topic,
    topics_overlap,
)

ENV_PREFIX = "SENSORCAST_"
CONFIG_ENV = "SENSORCAST_CONFIG"
CREDENTIAL_NAME = "mqtt_password"
TLS_KEY_CREDENTIAL = "mqtt_tls_key"
"""systemd credentials read when the config names no file: the broker password and the TLS
client key (under DynamicUser a key file in /etc is not readable; a credential is)."""
NOT_SETTINGS = ("SENSORCAST_VENV",)
"""Variables of the prefix that are not settings: the developer script's virtualenv."""
GLOB_HELP = "ids are 1 to 64 of A-Z a-z 0-9 _ . : -; the glob takes * ? [...]"
"""What a sensor id may be and a glob may use, for errors about a glob."""
SECRET_MAX = 65536
"""Largest password file read (a device such as /dev/zero is not read without end)."""
SESSION_EXPIRY_MAX = 0xFFFF_FFFF
"""MQTT 5 carries the session expiry in four bytes; this value means it never expires."""
RECONNECT_MAX = 86_400.0
"""Longest reconnect delay, seconds: beyond what a wait can take (about 292 years) the network
thread died with a traceback, and an infinite one made the delay NaN, no wait at all."""
_toml_file: ContextVar[Path | None] = ContextVar("sensorcast_toml_file", default=None)


class Section(BaseModel):
    # inf or nan is no setting: a gap of `inf` printed as `Infinity` by check-config, which
    # is not JSON, and no number of seconds, sensors or levels means "without end"
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _as_meant(cls, data: Any) -> Any:
        """`port = true` is a mistake, not port 1 (pydantic takes a bool as an int): a bool
        given for a number is refused as the text it is, naming the key. A word from a fixed
        set of choices is taken in any case (`format = "JSON"`, `level = "debug"`)."""
        if not isinstance(data, dict):
            return data
        return {name: _as_meant(cls.model_fields.get(name), value) for name, value in data.items()}


NUMBERS = (int, float, int | None, float | None)


def _as_meant(field: FieldInfo | None, value: Any) -> Any:
    if field is None:
        return value
    if isinstance(value, bool) and field.annotation in NUMBERS:
        return str(value).lower()
    if isinstance(value, str) and get_origin(field.annotation) is Literal:
        choices = {str(c).lower(): c for c in get_args(field.annotation)}
        return choices.get(value.strip().lower(), value)
    return value


class TLSConfig(Section):
    enabled: bool = Field(False, description="Connect with TLS; never falls back to plaintext.")
    ca_file: Path | None = Field(None, description="CA bundle; the system store when unset.")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: Path | None = Field(None, description="Client private key (PEM) for mutual TLS.")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _check_file(cls, path: Path | None) -> Path | None:
        try:
            if path is not None and not path.is_file():
                what = "is not a regular file" if path.exists() else "does not exist"
                raise ValueError(f"file {path} {what}")
        except OSError as exc:  # e.g. a file name longer than the file system allows
            raise ValueError(f"file {path} cannot be used: {exc.strerror}") from None
        return path

    @model_validator(mode="after")
    def _check_pair(self) -> TLSConfig:
        if self.cert_file is not None and self.key_file is None:
            self.key_file = credential(TLS_KEY_CREDENTIAL)
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                f"cert_file and key_file go together (the key may also come from the "
                f"systemd credential {TLS_KEY_CREDENTIAL})"
            )
        check_tls_files(self.ca_file, self.cert_file, self.key_file)
        return self


def check_tls_files(ca_file: Path | None, cert_file: Path | None, key_file: Path | None) -> None:
    """Load the files as the connection will, so a wrong one is a config error at start, not
    a traceback (or a silent retry loop) at the first connect."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(
                f"ca_file {ca_file} holds no usable CA certificate: {_ssl_reason(exc)}"
            ) from None
    if cert_file is not None and key_file is not None:
        asked: list[bool] = []

        def password() -> bytes:  # instead of OpenSSL prompting on the terminal
            asked.append(True)
            return b""

        try:
            ctx.load_cert_chain(str(cert_file), str(key_file), password=password)
        except (ssl.SSLError, OSError) as exc:
            if asked:
                raise ValueError(
                    f"key_file {key_file} is encrypted; sensorcast needs an unencrypted key "
                    "(protect it with file permissions)"
                ) from None
            raise ValueError(
                f"cert_file {cert_file} and key_file {key_file} are not a certificate and its "
                f"key: {_ssl_reason(exc)}"
            ) from None


def _ssl_reason(exc: Exception) -> str:
    """OpenSSL's reason without the source location, e.g. 'key values mismatch'."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return re.sub(r"^\[[^]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(text)) or type(exc).__name__


def credential(name: str) -> Path | None:
    """The file of systemd credential `name` (LoadCredential=), if the service has it."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if not cred_dir:
        return None
    path = Path(cred_dir) / name
    return path if path.is_file() else None


class MQTTConfig(Section):
    host: str = Field("localhost", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port.")
    client_id: str = Field(
        default_factory=lambda: f"sensorcast-{socket.gethostname()}"[:64],
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Fixed client id; the persistent session is keyed by it.",
    )
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Broker password (a secret).")
    password_file: Path | None = Field(
        None, description="File holding the password, e.g. a systemd credential."
    )
    tls: TLSConfig = Field(default_factory=TLSConfig)
    qos: int = Field(1, ge=0, le=2, description="Subscription QoS.")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version.")
    keepalive: int = Field(30, ge=5, le=3600, description="Keepalive interval, seconds.")
    session_expiry: int = Field(
        3600,
        ge=0,
        le=SESSION_EXPIRY_MAX,
        description="Seconds the broker keeps the session while disconnected (v5).",
    )
    reconnect_min: float = Field(
        0.5, gt=0, le=RECONNECT_MAX, description="First reconnect delay, seconds."
    )
    reconnect_max: float = Field(
        30.0, gt=0, le=RECONNECT_MAX, description="Cap on the reconnect delay, seconds."
    )

    @field_validator("host")
    @classmethod
    def _check_host(cls, host: str) -> str:
        """A name or address no broker can have is refused: the daemon would retry it forever
        (a name that does not resolve yet is taken: DNS may come up after the daemon)."""
        if "://" in host:
            raise ValueError(
                "a host name or address, without a scheme (TLS is mqtt.tls.enabled, the port "
                "mqtt.port)"
            )
        if host.startswith("[") and host.endswith("]"):
            raise ValueError("an IPv6 address without brackets, e.g. ::1")
        if ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(
                    "a host name or address, without a port (the port is mqtt.port, "
                    "SENSORCAST_MQTT__PORT)"
                ) from None
        elif any(c.isspace() or c in "/[]@" for c in host):
            raise ValueError("a host name or address: no spaces, '/', '[', ']' or '@'")
        return host

    @model_validator(mode="before")
    @classmethod
    def _coerce_protocol(cls, data: Any) -> Any:
        proto = data.get("protocol") if isinstance(data, dict) else None
        if isinstance(proto, (int, float)) and not isinstance(proto, bool):
            data = {**data, "protocol": {5: "5", 3.1: "3.1.1"}.get(proto, proto)}
        return data

    @model_validator(mode="after")
    def _resolve_password(self) -> MQTTConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        path = self.password_file
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if path is None and self.password is None and cred_dir:
            candidate = Path(cred_dir) / CREDENTIAL_NAME
            path = candidate if candidate.is_file() else None
        if path is not None:
            try:
                with path.open("rb") as f:
                    raw = f.read(SECRET_MAX + 1)
                if len(raw) > SECRET_MAX:
                    raise ValueError(f"password_file {path} is larger than {SECRET_MAX} bytes")
                secret = raw.decode("utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"password_file {path} cannot be read: {exc}") from None
            self.password = SecretStr(secret)
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be at least reconnect_min")
        return self


def _dotted_path(path: str) -> str:
    """A JSON path as input.fields and input.ts_field take it: keys joined by '.', none empty
    (an empty one is a typo that no payload matches: every reading would be dropped)."""
    if "" in path.split("."):
        raise ValueError(
            "a dotted path such as AM2301.Temperature, without an empty level (a leading, "
            "trailing or doubled '.')"
        )
    return path


DottedPath = Annotated[str, Field(min_length=1), AfterValidator(_dotted_path)]


class InputConfig(Section):
    topic: str = Field("sensors/{sensor_id}/reading", description="Reading topic template.")
    max_sensors: int = Field(100_000, ge=1, description="Cap on tracked sensors (LRU eviction).")
    sensor_ttl: float = Field(
        0, ge=0, description="Evict sensors not heard from for this many seconds (0: never)."
    )
    max_payload_bytes: int = Field(65536, ge=16, description="Larger payloads are dropped.")
    max_future_s: float = Field(
        300.0,
        ge=0,
        description="Drop readings whose ts is more than this many seconds ahead of their "
        "arrival (0: no limit).",
    )
    fields: dict[str, DottedPath] = Field(
        default_factory=dict,
        description="Feature name -> dotted path in the JSON payload (e.g. AM2301.Temperature).",
    )
    ts_field: DottedPath = Field("ts", description="Dotted path of the reading timestamp.")
    max_gap: float = Field(
        3.0,
        gt=1.0,
        description="A gap longer than this many of the sensor's long intervals (its cadence, "
        "for a sensor reporting regularly) resets the window.",
    )
    gap_fill: Literal["reset", "interpolate"] = Field(
        "reset", description="On a long gap: reset the window, or fill it linearly."
    )
    max_fill_steps: int = Field(
        10, ge=1, description="With gap_fill=interpolate, longer gaps still reset."
    )
    share_group: str | None = Field(
        None,
        description="Subscribe as a member of this MQTT shared-subscription group "
        "($share/<group>/<subscription>); see README 'Many daemons'.",
    )
    group: bool = Field(
        False,
        description="One of a group of daemons (README 'Many daemons'): a sensor that goes "
        "quiet here may be served by another member now, so evicting it leaves its Home "
        "Assistant entities and retained forecast alone. Implied by share_group.",
    )

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, topic: str) -> str:
        TopicTemplate(topic, allow_wildcards=True)
        return topic

    @field_validator("share_group")
    @classmethod
    def _check_share_group(cls, group: str | None) -> str | None:
        return None if group is None else check_share_group(group)


def _publish_topic(topic: str) -> str:
    TopicTemplate(topic, allow_wildcards=False)
    return topic


PublishTopic = Annotated[str, AfterValidator(_publish_topic)]
"""A topic template sensorcast publishes to: no wildcards."""


class OutputConfig(Section):
    topic: PublishTopic = Field("forecasts/{sensor_id}", description="Forecast topic template.")
    retain: bool = Field(False, description="Publish forecasts retained.")
    qos: int = Field(
        1,
        ge=0,
        le=1,
        description="QoS of forecasts and anomaly events; 0 spares the broker's acknowledgements.",
    )
    max_queue: int = Field(
        50_000,
        ge=1,
        le=60_000,
        description="Cap on forecasts queued to the broker; beyond it "
        "forecasts are dropped and counted (paho reuses QoS 1 ids past 65535).",
    )
    level: float = Field(
        0.9, gt=0, lt=1, description="Probability of the forecast interval (lower, upper)."
    )
    guard: bool = Field(
        True,
        description="Serve the last value (source persistence) for a sensor until the model has "
        "beaten it there, and wherever the model has recently done worse than persistence.",
    )


class AnomalyConfig(Section):
    enabled: bool = Field(True, description="Publish anomaly events.")
    topic: PublishTopic = Field("anomalies/{sensor_id}", description="Anomaly topic template.")
    level: float = Field(
        0.99,
        gt=0,
        lt=1,
        description="A reading outside the one-step interval at this probability is an anomaly.",
    )


class AdaptConfig(Section):
    enabled: bool = Field(
        True,
        description="Learn a per-sensor correction of the model's forecast, and the "
        "sensor's own regression on its last steps, online (README: Adaptation).",
    )
    max_sensors: int = Field(
        4096,
        ge=1,
        description="Sensors adapted at once (about 6 kB each with the default model); "
        "beyond it a new sensor takes the least recently seen sensor's head once that sensor "
        "has been quiet for idle_s, else it is served the model unadapted.",
    )
    idle_s: float = Field(
        3600.0, ge=0, description="Quiet seconds before a sensor's head may be recycled."
    )
    forgetting: float = Field(
        0.999, gt=0.9, le=1.0, description="Weight of the past per reading (0.999: ~1000)."
    )
    ridge: float = Field(
        3.0, gt=0, le=1e6, description="Pull of each head toward the model's own forecast."
    )


class ModelConfig(Section):
    path: Path = Field(
        default_factory=lambda: _default_bundle(),
        description="Model bundle directory; serves every sensor no route matches.",
    )
    fallback: bool = Field(
        True,
        description="Serve sensors that match no route with model.path; false: they get no "
        "forecast (their readings are dropped, counted as no_route).",
    )
    backend: Literal["litert", "keras"] = Field("litert", description="Inference backend.")
    threads: int = Field(1, ge=1, le=64, description="LiteRT interpreter threads.")


class InferenceConfig(Section):
    max_batch: int = Field(256, ge=1, le=4096, description="Most windows in one model call.")
    max_wait_ms: float = Field(
        0.0, ge=0, le=1000, description="Extra wait to fill a batch once a window is ready."
    )
    max_pending: int = Field(
        4096, ge=1, description="Ready windows queued for inference before the overload policy."
    )
    overload: Literal["backpressure", "coalesce"] = Field(
        "backpressure",
        description="Beyond max_pending: stop reading and let the broker hold the backlog "
        "(every window forecast), or keep only each sensor's newest waiting window.",
    )


class StateConfig(Section):
    dir: Path | None = Field(
        None, description="Directory for buffer snapshots (off when unset or empty)."
    )
    interval: float = Field(60.0, gt=0, description="Seconds between periodic snapshots.")

    @field_validator("dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """`SENSORCAST_STATE__DIR=` (an env file turning snapshots off) is no directory: it
        used to become `.`, snapshots written wherever the process happened to run."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("dir")
    @classmethod
    def _check_dir(cls, path: Path | None) -> Path | None:
        """A directory that exists or can be created: refuse one under a regular file."""
        if path is None:
            return None
        if path.is_symlink() and not path.exists():
            raise ValueError(
                f"{path} is a symbolic link to {os.readlink(path)}, which does not exist"
            )
        try:
            for p in (path, *path.absolute().parents):
                if p.exists():
                    if not p.is_dir():
                        under = "" if p == path else f", so {path} cannot be created"
                        raise ValueError(f"{p} exists and is not a directory{under}")
                    break
        except OSError as exc:
            raise ValueError(f"{path} cannot be used: {exc.strerror}") from None
        return path


class MetricsConfig(Section):
    port: int | None = Field(None, ge=1, le=65535, description="Prometheus port on 127.0.0.1.")
    host: str = Field("127.0.0.1", description="Address the metrics endpoint binds.")

    @field_validator("host")
    @classmethod
    def _check_host(cls, host: str, info: ValidationInfo) -> str:
        """With a port, the host must be an address of this machine (or a name for one), so
        `check-config` refuses what `run` could not bind; a port another process holds is
        not checked here (it may be freed)."""
        if info.data.get("port") is None:
            return host
        if not host:
            raise ValueError("must be an address of this machine, e.g. 127.0.0.1")
        try:
            family, kind, _, _, addr = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
            with socket.socket(family, kind) as probe:
                probe.bind(addr)  # port 0: any free one, released at once
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ValueError(
                f"not an address of this machine to serve metrics on ({reason}); an address "
                "or host name without port or scheme, e.g. 127.0.0.1"
            ) from None
        return host


_DEVICE_CLASS_NAMES = (
    "apparent_power aqi area atmospheric_pressure battery blood_glucose_concentration "
    "carbon_monoxide carbon_dioxide conductivity current data_rate data_size distance "
    "duration energy energy_distance energy_storage frequency gas humidity illuminance "
    "irradiance moisture monetary nitrogen_dioxide nitrogen_monoxide nitrous_oxide ozone ph "
    "pm1 pm10 pm25 power_factor power precipitation precipitation_intensity pressure "
    "reactive_power signal_strength sound_pressure speed sulphur_dioxide temperature "
    "volatile_organic_compounds volatile_organic_compounds_parts voltage volume "
    "volume_storage volume_flow_rate water weight wind_direction wind_speed "
)
SENSOR_DEVICE_CLASSES = frozenset(_DEVICE_CLASS_NAMES.split())
"""Home Assistant's numeric sensor device classes (SensorDeviceClass, 2025.4); Home Assistant
refuses a whole discovery config whose device_class is not one of them."""
_UG_M3 = ("µg/m³", "μg/m³")  # the micro sign or the Greek mu: Home Assistant used both
DEVICE_CLASS_UNITS: dict[str, tuple[str, ...]] = {
    "temperature": ("°C", "°F", "K"),
    **dict.fromkeys(("humidity", "battery", "moisture"), ("%",)),
    **dict.fromkeys(("carbon_dioxide", "carbon_monoxide"), ("ppm",)),
    "volatile_organic_compounds_parts": ("ppm", "ppb"),
    **dict.fromkeys(
        [
            "pm1",
            "pm10",
            "pm25",
            "nitrogen_dioxide",
            "nitrogen_monoxide",
            "nitrous_oxide",
            "ozone",
            "sulphur_dioxide",
            "volatile_organic_compounds",
        ],
        _UG_M3,
    ),
    "illuminance": ("lx",),
    "wind_direction": ("°",),
    "current": ("A", "mA"),
    "frequency": ("Hz", "kHz", "MHz", "GHz"),
    "signal_strength": ("dB", "dBm"),
    **dict.fromkeys(("aqi", "ph"), ()),
}
"""The units Home Assistant takes with these device classes (DEVICE_CLASS_UNITS, 2025.4; the
classes whose units later versions did not extend); it refuses a whole discovery config with
any other, and only logs why."""


LOOK_FIELDS = ("unit", "device_class", "precision")


class Look(Section):
    """How one forecast entity looks in Home Assistant."""

    unit: str | None = Field(
        None, min_length=1, description="unit_of_measurement of the forecast, e.g. °C."
    )
    device_class: str | None = Field(
        None, description="Home Assistant sensor device class, e.g. temperature."
    )
    precision: int | None = Field(
        None, ge=0, le=10, description="Decimals Home Assistant shows (suggested precision)."
    )

    @field_validator("device_class")
    @classmethod
    def _check_device_class(cls, value: str | None) -> str | None:
        if value is not None and value not in SENSOR_DEVICE_CLASSES:
            raise ValueError(
                f"not a numeric Home Assistant sensor device class (e.g. temperature, "
                f"humidity, power, carbon_dioxide; see {HA_DEVICE_CLASS_DOCS})"
            )
        return value


class Presentation(Look):
    """How a sensor's forecasts look in Home Assistant (a route's `unit`, `device_class`,
    `name` in SPEC 3a are the same fields). A bundle with several targets gives each its
    own entity: `targets` sets one's unit, device_class or precision over these."""

    name: str | None = Field(
        None, min_length=1, description="Device name template, e.g. 'Boiler {sensor_id}'."
    )
    targets: dict[str, Look] = Field(
        default_factory=dict,
        description="Per target of a bundle with several, its own unit, device_class and "
        "precision, over the ones above ([routes.targets.co2] in TOML).",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.format(sensor_id="x")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"the only placeholder is {{sensor_id}} ({exc})") from None
        return value

    def for_target(self, target: str) -> Look:
        """The look of `target`'s forecast entity: its own fields, else the sensor's."""
        own = self.targets.get(target)
        if own is None:
            return self
        return Look.model_construct(**{f: _first(own, self, field=f) for f in LOOK_FIELDS})

    def over(self, base: Presentation) -> Presentation:
        """This look field by field over `base` (an entity rule over its sensor's route); a
        field set here wins over `base`'s, a target's own fields over both."""
        fields = {f: _first(self, base, field=f) for f in (*LOOK_FIELDS, "name")}
        targets = {
            t: Look.model_construct(**{
                f: _first(self.targets.get(t), self, base.targets.get(t), field=f)
                for f in LOOK_FIELDS
            })
            for t in {*self.targets, *base.targets}
        }  # fmt: skip
        return Presentation.model_construct(**fields, targets=targets)


def _first(*looks: Look | None, field: str) -> Any:
    """The first value of `field` that is set, among `looks`."""
    return next((v for look in looks if (v := getattr(look, field, None)) is not None), None)


HA_DEVICE_CLASS_DOCS = "https://www.home-assistant.io/integrations/sensor/#device-class"


class EntityRule(Presentation):
    sensors: str = Field(
        min_length=1, description="Glob on the sensor id, e.g. 'boiler-*'; the first match wins."
    )

    @field_validator("sensors")
    @classmethod
    def _check_glob(cls, glob: str) -> str:
        """As a route's: a rule no sensor id can match (a space, an unclosed '[') is a typo
        that would leave the sensors it was meant for without their unit, silently."""
        return check_glob(glob)


class RouteConfig(Presentation):
    """One entry of `routes` (SPEC 3a): the sensors it serves, the bundle that serves them
    and how their forecasts look in Home Assistant."""

    sensors: str = Field(
        min_length=1, description="Glob on the sensor id, e.g. 'boiler-*'; the first match wins."
    )
    model: Path = Field(description="Model bundle directory serving these sensors.")

    @field_validator("sensors")
    @classmethod
    def _check_glob(cls, glob: str) -> str:
        return check_glob(glob)


def check_glob(glob: str) -> str:
    """`glob`, or ValueError if no sensor id can match it."""
    if uncovered(glob) is None:
        raise ValueError(f"matches no sensor id ({GLOB_HELP})")
    return glob


def check_routes(routes: list[RouteConfig]) -> None:
    """Refuse a route no sensor can reach: a duplicate glob, or one whose every match is
    taken by earlier routes (ValueError naming both)."""
    for i, route in enumerate(routes):
        globs = [r.sensors for r in routes[:i]]
        if route.sensors in globs:
            j = globs.index(route.sensors)
            raise ValueError(f"routes[{i}] repeats routes[{j}] (sensors = {route.sensors!r})")
        if i and uncovered(route.sensors, globs) is None:
            earlier = [
                f"routes[{j}] ({g!r})" for j, g in enumerate(globs) if _overlap(g, route.sensors)
            ]
            raise ValueError(
                f"routes[{i}] (sensors = {route.sensors!r}) is unreachable: every sensor id it "
                f"matches is matched first by {', '.join(earlier)}; put it before them"
            )


def _overlap(a: str, b: str) -> bool:
    """Some sensor id matches both globs."""
    return uncovered(b, [a]) != uncovered(b)


class HomeAssistantConfig(Section):
    discovery: bool = Field(False, description="Announce forecasts via MQTT discovery.")
    prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix.")
    node_id: str = Field(
        "sensorcast",
        pattern=r"^[A-Za-z0-9-]{1,32}$",
        description="Names this installation in unique ids and discovery topics; change it "
        "only to run two independent installations against one Home Assistant.",
    )
    entities: list[EntityRule] = Field(
        default_factory=list,
        description="Per-sensor unit, device_class, name and precision, by glob on the sensor "
        "id ([[homeassistant.entities]] in TOML); the first match wins.",
    )

    @field_validator("prefix")
    @classmethod
    def _topic_levels(cls, prefix: str) -> str:
        """Home Assistant subscribes to `<prefix>/#`: a trailing or doubled `/` would put the
        configs where it never looks, and `$` topics are the broker's own."""
        if not prefix or any(c in prefix for c in "#+\0") or prefix.startswith("$"):
            raise ValueError("a topic without wildcards (+ #) that does not start with '$'")
        if "" in prefix.split("/"):
            raise ValueError("no empty topic level: no leading, trailing or doubled '/'")
        return prefix


class LogConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level, any case."
    )
    format: Literal["auto", "text", "journal", "json"] = Field(
        "auto",
        description="auto: syslog priority prefixes under systemd's journal, timestamps "
        "otherwise; or text, journal, json (one JSON object a line).",
    )
    drop_interval: float = Field(
        10.0, ge=0, description="Seconds between log lines about dropped input, per reason."
    )
    event_interval: float = Field(
        10.0,
        ge=0,
        description="Sensor life events (first seen, first forecast, gap reset, evicted) "
        "logged at INFO: at most event_burst lines of a kind per this many seconds.",
    )
    event_burst: int = Field(
        20, ge=0, description="Sensor life event lines of one kind per event_interval."
    )


def _default_bundle() -> Path:
    from sensorcast.models import DEFAULT_BUNDLE

    path: Path = DEFAULT_BUNDLE
    return path


class Settings(BaseSettings):
    """The daemon's whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    mqtt: MQTTConfig = Field(default_factory=MQTTConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    adapt: AdaptConfig = Field(default_factory=AdaptConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    routes: list[RouteConfig] = Field(
        default_factory=list,
        description="Several models in one daemon ([[routes]] in TOML, a JSON list in the "
        "environment): the first route whose sensors glob matches serves a sensor; "
        "model.path serves the rest (unless model.fallback is false).",
    )

    @field_validator("output", "anomaly")
    @classmethod
    def _check_not_read_back(
        cls, section: OutputConfig | AnomalyConfig, info: ValidationInfo
    ) -> OutputConfig | AnomalyConfig:
        """Refuse a topic the daemon publishes to that its own subscription would take in as
        readings: it would read its forecasts back (each dropped as missing its feature)."""
        inputs = info.data.get("input")
        if isinstance(inputs, InputConfig):
            _refuse_read_back(inputs, f"{info.field_name}.topic", section.topic)
        return section

    @field_validator("input")
    @classmethod
    def _check_status_not_read_back(cls, inputs: InputConfig, info: ValidationInfo) -> InputConfig:
        """The status topic, `online` and `offline` retained, is not a reading either."""
        mqtt = info.data.get("mqtt")
        if isinstance(mqtt, MQTTConfig):
            _refuse_read_back(inputs, "the status topic", status_topic(mqtt.client_id))
        return inputs

    @field_validator("homeassistant")
    @classmethod
    def _check_discovery_not_read_back(
        cls, ha: HomeAssistantConfig, info: ValidationInfo
    ) -> HomeAssistantConfig:
        inputs = info.data.get("input")
        if ha.discovery and isinstance(inputs, InputConfig):
            for kind in ("sensor", "binary_sensor"):
                config_topic = f"{ha.prefix}/{kind}/{ha.node_id}/{PLACEHOLDER}/config"
                _refuse_read_back(inputs, "a Home Assistant discovery topic", config_topic)
        return ha

    @field_validator("routes")
    @classmethod
    def _check_routes(cls, routes: list[RouteConfig], info: ValidationInfo) -> list[RouteConfig]:
        check_routes(routes)
        model = info.data.get("model")
        if not routes and isinstance(model, ModelConfig) and not model.fallback:
            raise ValueError(
                "model.fallback = false with no routes would serve no sensor; add [[routes]]"
            )
        return routes

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _toml_file.get()
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if toml is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=toml),)
        return sources


def _refuse_read_back(inputs: InputConfig, what: str, published: str) -> None:
    """ValueError if the subscription of `input.topic` takes in the topic (template)
    `published`, one the daemon publishes to."""
    if topics_overlap(inputs.topic, published):
        raise ValueError(
            f"{what} {published!r} is also matched by input.topic {inputs.topic!r}: "
            "the daemon would read what it publishes back as readings"
        )


def _describe(loc: tuple[int | str, ...]) -> str:
    """`routes[1].model (SENSORCAST_ROUTES)`: a list is one environment variable (JSON)."""
    key, env_parts = "", []
    for p in loc:
        if isinstance(p, int):
            key += f"[{p}]"
            env_parts.append("")  # the list's variable holds the rest
        elif not p.startswith("function-"):
            key += f".{p}" if key else p
            if "" not in env_parts:
                env_parts.append(p)
    names = [p.upper() for p in env_parts if p]
    env = ENV_PREFIX + "__".join(names) if names else CONFIG_ENV
    return f"{key or 'config'} ({env})"


def _one_line(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    msg = re.sub(r"^(Value|Assertion) error, ", "", str(err["msg"]))
    where = _describe(tuple(err["loc"]))
    if err["type"] == "extra_forbidden":
        return f"unknown config key {where}"
    value = err.get("input")
    hidden = isinstance(value, (dict, list, BaseModel)) or "password" in where
    shown = "" if hidden else f" = {value!r}"
    return f"invalid config {where}{shown}: {msg}"


def _not_json_env(section: str) -> str:
    """`input.fields (SENSORCAST_INPUT__FIELDS): not JSON (...)`: the key and variable under
    the top-level key `section` whose value pydantic-settings could not read as the JSON its
    type needs (its error names only the top-level key), and where the JSON breaks."""
    head = (ENV_PREFIX + section).upper()
    for name, value in sorted(os.environ.items()):
        upper = name.upper()
        if not section or not (upper == head or upper.startswith(head + "__")):
            continue
        path = upper[len(ENV_PREFIX) :].lower().split("__")
        why = _json_problem(value) if _structured(path) else None
        if why is not None:
            return f"{'.'.join(path)} ({name}): not JSON ({why})"
    return f"{section or 'config'} ({head}...)"


_UNDER_MAPPING = object()
"""`_setting_at` past a mapping's key (input.fields.<feature>: any key is one)."""


def _setting_at(path: list[str]) -> Any:
    """The annotation of the setting at `path`; None if it names none; `_UNDER_MAPPING` for
    a path that goes on below a mapping setting."""
    annotation: Any = Settings
    for part in path:
        model = _model_of(annotation)
        if model is None:
            mapping = any(get_origin(a) is dict for a in (annotation, *get_args(annotation)))
            return _UNDER_MAPPING if mapping else None
        if part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
    return annotation


def _structured(path: list[str]) -> bool:
    """Whether the setting at `path` is a table, list or mapping (given as JSON in the
    environment)."""
    annotation = _setting_at(path)
    if annotation is None or annotation is _UNDER_MAPPING:
        return False
    return _model_of(annotation) is not None or any(
        get_origin(a) in (dict, list) for a in (annotation, *get_args(annotation))
    )


def is_setting(key: str) -> bool:
    """Whether the dotted `key` (`mqtt.protocol`, `input.fields.value`) names a setting: the
    environment ignores a variable of the prefix that names none, so a tool that passes
    settings on as variables checks them with this first."""
    return _setting_at(key.lower().split(".")) is not None


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for a in (annotation, *get_args(annotation)):  # X | None
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _json_problem(value: str) -> str | None:
    """Why `value` is not JSON (what and at which character), or None if it is."""
    try:
        json.loads(value)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at character {exc.pos + 1}"
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        return str(exc)
    return None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from all sources; raise `ConfigError` with one line on any problem."""
    path = config_file or os.environ.get(CONFIG_ENV) or None
    toml: Path | None = None
    if path:
        toml = Path(path)
        try:
            with toml.open("rb") as f:
                tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"config file {toml} cannot be read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            if toml.read_bytes().startswith(codecs.BOM_UTF8):  # invisible in most editors
                raise ConfigError(
                    f"config file {toml} starts with a byte order mark (BOM), which TOML "
                    "does not allow: save it as UTF-8 without BOM"
                ) from None
            raise ConfigError(f"config file {toml} is not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:  # TOML is UTF-8; a Latin-1 "°C" in a comment is not
            raise ConfigError(
                f"config file {toml} is not UTF-8: byte {exc.object[exc.start]:#04x} at offset "
                f"{exc.start}"
            ) from None
    token = _toml_file.set(toml)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    except SettingsError as exc:  # an environment value that should have been JSON
        field = re.search(r'field "([^"]+)"', str(exc))
        where = _not_json_env(field.group(1) if field else "")
        raise ConfigError(
            f"invalid config {where}: a table, list or mapping given in the environment "
            f"must be JSON, e.g. {ENV_PREFIX}INPUT__FIELDS="
            f'\'{{"value": "AM2301.Temperature"}}\''
        ) from None
    finally:
        _toml_file.reset(token)


def settings_from_args(args: Any) -> Settings:
    """`load_settings` with the command line's `--config`, `--model` and `--log-level`
    (attributes of an argparse namespace; absent ones are ignored)."""
    overrides: dict[str, Any] = {}
    if getattr(args, "model", None):
        overrides["model"] = {"path": args.model}
    if getattr(args, "log_level", None):
        overrides["log"] = {"level": args.log_level}
    return load_settings(getattr(args, "config", None), **overrides)


def effective_config(settings: Settings) -> dict[str, Any]:
    """The configuration as a plain dict, secrets masked, for `check-config`."""
    data = settings.model_dump(mode="json")
    if settings.mqtt.password is not None:
        data["mqtt"]["password"] = "********"
    return data


def config_warnings(settings: Settings) -> list[str]:
    """Settings that validate but will not do what was meant, one line each, for
    `check-config` and the daemon's start."""
    found = []
    for name in sorted(os.environ):  # the environment source matches names in any case
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in (CONFIG_ENV, *NOT_SETTINGS):
            continue
        section = upper[len(ENV_PREFIX) :].split("__")[0].lower()
        if section in Settings.model_fields:
            continue  # a misspelt key inside a section is an error, naming it
        why = (
            f"nested keys take two underscores: {ENV_PREFIX}MQTT__HOST"
            if "__" not in name
            else f"{section!r} is no section: {', '.join(Settings.model_fields)}"
        )
        found.append(f"environment variable {name} is not a setting and is ignored ({why})")
    tls = settings.mqtt.tls
    files = [k for k in ("ca_file", "cert_file", "key_file") if getattr(tls, k) is not None]
    if files and not tls.enabled:
        named = ", ".join(f"mqtt.tls.{k}" for k in files)
        found.append(
            f"{named} set, but mqtt.tls.enabled (SENSORCAST_MQTT__TLS__ENABLED) is false, so the "
            "connection to the broker is plaintext: set mqtt.tls.enabled = true for TLS"
        )
    globs = [r.sensors for r in settings.routes]
    if globs and settings.model.fallback and uncovered("*", globs) is None:
        found.append(
            "the routes match every sensor id, so model.path (the default route) serves no "
            "sensor, yet its bundle is loaded and kept: set [model] fallback = false "
            "(SENSORCAST_MODEL__FALLBACK=false)"
        )
    if settings.homeassistant.discovery:
        rules: list[tuple[str, int, EntityRule | RouteConfig]] = [
            *(
                ("homeassistant.entities", i, r)
                for i, r in enumerate(settings.homeassistant.entities)
            ),
            *(("routes", i, r) for i, r in enumerate(settings.routes)),
        ]
        for where, i, rule in rules:
            looks = [("", rule), *((f" target {t}", rule.for_target(t)) for t in rule.targets)]
            for of, look in looks:
                units = DEVICE_CLASS_UNITS.get(look.device_class or "")
                if units is None or look.unit in units or (not units and look.unit is None):
                    continue
                takes = " or ".join(units) if units else "no unit"
                given = "no unit" if look.unit is None else f"unit {look.unit!r}"
                found.append(
                    f"{where}[{i}] (sensors {rule.sensors!r}){of}: Home Assistant takes "
                    f"{takes} with device_class {look.device_class}, not {given}, and refuses "
                    "the whole entity otherwise (it only logs why)"
                )
    if settings.mqtt.password is not None and settings.mqtt.username is None:
        found.append(
            "mqtt.username (SENSORCAST_MQTT__USERNAME) is not set, so the broker password "
            f"(mqtt.password, mqtt.password_file or the credential {CREDENTIAL_NAME}) is not "
            "sent: set mqtt.username too"
        )
    return found
