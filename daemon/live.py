"""Which settings a reload (SIGHUP) applies to the running daemon, and which wait for a
restart: the connection, the subscription and the listeners are made once, at start."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SecretStr

LIVE = frozenset(
    {
        "model.path",
        "model.fallback",
        "routes",
        "model.backend",
        "model.threads",
        "input.max_payload_bytes",
        "input.max_future_s",
        "input.fields",
        "input.ts_field",
        "input.max_sensors",
        "input.sensor_ttl",
        "input.max_gap",
        "input.gap_fill",
        "input.max_fill_steps",
        "output.retain",
        "output.level",
        "anomaly.level",
        "adapt.enabled",
        "adapt.max_sensors",
        "adapt.forgetting",
        "adapt.ridge",
        "adapt.idle_s",
        "inference.max_batch",
        "inference.max_wait_ms",
        "state.interval",
        "log.level",
        "log.drop_interval",
        "log.event_interval",
        "log.event_burst",
        "homeassistant.entities",
    }
)
"""Dotted keys a reload applies at once; every other changed key is named as needing a
restart (so a key added later is never silently ignored)."""


def changed_keys(old: BaseModel, new: BaseModel, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, in declaration order (secrets compared by value)."""
    keys: list[str] = []
    for name in type(old).model_fields:
        a, b = getattr(old, name), getattr(new, name)
        key = f"{prefix}{name}"
        if isinstance(a, BaseModel) and isinstance(b, BaseModel):
            keys += changed_keys(a, b, key + ".")
        elif _plain(a) != _plain(b):
            keys.append(key)
    return keys


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def apply_keys(target: BaseModel, source: BaseModel, keys: list[str]) -> None:
    """Copy the values of dotted `keys` from `source` into `target`."""
    for key in keys:
        *path, leaf = key.split(".")
        t, s = target, source
        for part in path:
            t, s = getattr(t, part), getattr(s, part)
        setattr(t, leaf, getattr(s, leaf))
