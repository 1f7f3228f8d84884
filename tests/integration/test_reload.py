"""SIGHUP to a running `sensorcast run` (issue 15): a reload onto any crafted bundle or a
broken config keeps the old model serving (D1); changed settings are applied or named
(D7); a SIGHUP while starting or stopping never ends the process (notes)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.mqttio import status_topic

from ..hostile_bundles import LOAD_FAILURES, SERVE_FAILURES, rewritten
from ..mqtt_helpers import wait_for
from .conftest import Daemon, message, write_config

T0 = 1_700_000_000.0
TIMESTEPS = load_bundle(DEFAULT_BUNDLE).meta.timesteps


def reading(i: int) -> dict[str, float]:
    return {"value": 20 + (i % 5) / 3, "ts": T0 + 60 * i}


def count(daemon: Daemon, text: str) -> int:
    return sum(text in line for line in daemon.lines)


def test_sighup_onto_every_crafted_bundle_keeps_the_old_model_serving(
    tmp_path, broker, client_factory, daemon_proc
):
    first = rewritten(tmp_path / "first", name="first")
    config = write_config(tmp_path / "c.toml", broker.port, first, "sc-reload")
    sub = client_factory("forecasts/#", status_topic("sc-reload"))
    pub = client_factory()
    daemon = daemon_proc(config)
    wait_for(lambda: sub.received(status_topic("sc-reload")), timeout=20)
    for i in range(TIMESTEPS):
        pub.publish("sensors/s1/reading", reading(i))
    wait_for(lambda: sub.json("forecasts/"))

    crafted = {**LOAD_FAILURES, **{n: b for n, (b, _) in SERVE_FAILURES.items()}}
    for k, (name, build) in enumerate(crafted.items(), start=1):
        write_config(config, broker.port, build(tmp_path / name), "sc-reload")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda k=k: count(daemon, "reload failed, still serving first@") == k)
        pub.publish("sensors/s1/reading", reading(TIMESTEPS + k))
        wait_for(lambda k=k: len(sub.json("forecasts/")) == k + 1)
        assert sub.json("forecasts/")[-1]["model"].startswith("first@"), name
    config.write_text("[mqtt\nport = ")  # a config file that is not TOML at all
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: count(daemon, "reload failed") == len(crafted) + 1)
    assert daemon.logged("is not valid TOML")

    write_config(config, broker.port, rewritten(tmp_path / "second", name="second"), "sc-reload")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.logged("reloaded: now serving second@"))
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert not daemon.logged("Traceback")
    failures = [line for line in daemon.lines if "reload failed" in line]
    assert all(
        message(line).startswith("ERROR sensorcast.service: reload failed") for line in failures
    )


def test_sighup_applies_live_settings_and_names_the_rest(
    tmp_path, broker, client_factory, daemon_proc
):
    def config_with(max_bytes: int, level: str, keepalive: int) -> Path:
        path = tmp_path / "c.toml"
        path.write_text(
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "sc-live"\n'
            f'keepalive = {keepalive}\n[model]\npath = "{DEFAULT_BUNDLE}"\n'
            f'[input]\nmax_payload_bytes = {max_bytes}\n[log]\nlevel = "{level}"\n'
            "drop_interval = 0\n"
        )
        return path

    config = config_with(65536, "INFO", 30)
    sub = client_factory(status_topic("sc-live"))
    pub = client_factory()
    daemon = daemon_proc(config)
    wait_for(lambda: sub.received(status_topic("sc-live")), timeout=20)
    padded = {"value": 21.5, "ts": T0, "note": "x" * 300}
    pub.publish("sensors/p/reading", padded)
    time.sleep(0.5)
    assert not daemon.logged("too_large")
    assert not daemon.logged("DEBUG")

    config_with(200, "DEBUG", 60)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.logged("reloaded: now serving"))
    assert daemon.logged("applied input.max_payload_bytes, log.level")
    # the next log line: it may reach the test's reader of stderr a moment later
    wait_for(lambda: daemon.logged("reload: mqtt.keepalive changed; restart sensorcast to apply"))
    pub.publish("sensors/p/reading", {**padded, "ts": T0 + 60})
    wait_for(lambda: daemon.logged("'sensors/p/reading': too_large"))
    # the new level: paho's packet log shows (the reading's PUBACK, logged by the network
    # thread just after the drop line, so it may reach the log a moment later)
    wait_for(lambda: daemon.logged("DEBUG sensorcast.paho"))
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def catches(pid: int, sig: signal.Signals) -> bool:
    """The process has a handler installed for `sig` (SigCgt in /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(ln for ln in status.splitlines() if ln.startswith("SigCgt:")).split()[1], 16)
    return bool(mask >> (sig - 1) & 1)


def test_sighup_while_starting_or_stopping_never_ends_the_process(
    tmp_path, broker, client_factory, daemon_proc
):
    """Before the daemon's handlers are in place and after they are removed, SIGHUP's
    default action would end the process with status 129. `sensorcast run` catches it from
    its first statement (after the interpreter has started) and reloads once started."""
    config = write_config(tmp_path / "c.toml", broker.port, DEFAULT_BUNDLE, "sc-early")
    daemon = daemon_proc(config)
    wait_for(lambda: catches(daemon.proc.pid, signal.SIGHUP), interval=0.001)
    daemon.signal(signal.SIGHUP)
    sent_before_start = not daemon.logged("serving")
    wait_for(lambda: daemon.logged("connected to"), timeout=20)
    assert daemon.proc.poll() is None
    assert sent_before_start  # the bundle takes far longer to load than this
    wait_for(lambda: daemon.logged("reloaded: now serving"))
    daemon.signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    while daemon.proc.poll() is None and time.monotonic() < deadline:
        daemon.signal(signal.SIGHUP)  # all through the drain, the teardown, the exit
        time.sleep(0.002)
    assert daemon.wait() == 0, daemon.lines
    assert daemon.logged("stopped")
    assert count(daemon, "reloaded:") == 1  # SIGHUPs after SIGTERM reload nothing
