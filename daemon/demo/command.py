"""`sensorcast demo`: a private broker, a simulated fleet, the daemon and a live view, at once.

Everything but mosquitto runs in this process: the daemon is the real
`Service` on a thread, the fleet and the view are MQTT clients of their own.
SIGINT, SIGTERM and SIGHUP stop the fleet, drain the daemon, then stop the
broker; a second Ctrl-C skips the waiting. The demo ignores SENSORCAST_*
settings, so a configured production daemon cannot leak into it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sensorcast.config import (
    AnomalyConfig,
    InferenceConfig,
    InputConfig,
    LogConfig,
    MetricsConfig,
    ModelConfig,
    MQTTConfig,
    OutputConfig,
    Settings,
    StateConfig,
)
from sensorcast.demo.broker import start_broker
from sensorcast.demo.fleet import FleetPublisher, make_fleet
from sensorcast.demo.scoreboard import Scoreboard, ScoreboardClient
from sensorcast.errors import UserError
from sensorcast.logs import setup_logging
from sensorcast.models import DEFAULT_BUNDLE, install_hint
from sensorcast.models.bundle import BundleMeta, load_bundle
from sensorcast.models.runtime import native_info_held
from sensorcast.sandbox import ServiceThread
from sensorcast.service import Service
from sensorcast.signals import capture_signals
from sensorcast.topics import TopicTemplate

if TYPE_CHECKING:  # rich comes with the [demo] extra, imported once the demo runs
    from rich.console import Console, RenderableType

    from sensorcast.demo.view import DemoInfo

CLIENT_ID = "sensorcast-demo"
REPORT_EVERY = 5.0
"""Seconds between blocks of plain output."""
STARTUP_TIMEOUT = 20.0


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add `sensorcast demo`'s options to `p`."""
    p.add_argument("--sensors", type=int, default=12, metavar="N", help="simulated sensors (12)")
    p.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between readings (1.0)"
    )
    p.add_argument(
        "--duration", type=float, default=0, metavar="S", help="stop after S seconds (0: Ctrl-C)"
    )
    p.add_argument("--model", type=Path, metavar="DIR", help="model bundle (the shipped default)")
    p.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "embedded"],
        default="auto",
        help="mosquitto if installed (auto), or the embedded pure-Python amqtt",
    )
    p.add_argument(
        "--no-live", dest="live", action="store_false", help="plain lines instead of a live table"
    )


def demo_settings(port: int, protocol: str, model: Path) -> Settings:
    """The daemon's settings for the demo, built from the sections so no environment applies."""
    mqtt = MQTTConfig(
        host="127.0.0.1",
        port=port,
        client_id=CLIENT_ID,
        protocol="3.1.1" if protocol == "3.1.1" else "5",
        reconnect_min=0.1,
        reconnect_max=2.0,
    )
    return Settings.model_construct(
        mqtt=mqtt,
        input=InputConfig(),
        output=OutputConfig(),
        anomaly=AnomalyConfig(),
        model=ModelConfig(path=model),
        inference=InferenceConfig(),
        state=StateConfig(),
        metrics=MetricsConfig(),
        log=LogConfig(),
    )


def _check(args: argparse.Namespace) -> tuple[Path, BundleMeta]:
    if not 1 <= args.sensors <= 1000:
        raise UserError(f"--sensors must be between 1 and 1000, not {args.sensors}")
    if not 0.05 <= args.interval <= 60:
        raise UserError(f"--interval must be between 0.05 and 60 seconds, not {args.interval:g}")
    if not args.duration >= 0:  # `not >=`: NaN is refused too
        raise UserError(f"--duration must be 0 (until Ctrl-C) or more, not {args.duration:g}")
    path = args.model or DEFAULT_BUNDLE
    meta = load_bundle(path).meta
    if len(meta.features) != 1 or len(meta.targets) != 1:
        raise UserError(
            f"the demo's sensors send one value, but model {meta.model_id} has features "
            f"{','.join(meta.features)} and targets {','.join(meta.targets)}"
        )
    return path, meta


def _wait(ready: Callable[[], bool], stop: threading.Event, what: str) -> bool:
    """Wait for `ready` until the startup timeout; False if the user stopped the demo first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready():
        if stop.wait(0.05):
            return False
        if time.monotonic() > deadline:
            raise UserError(f"the demo did not start: {what} within {STARTUP_TIMEOUT:g} s")
    return True


def _setup_logging(console: Console | None) -> None:
    """Warnings above the live view, or daemon info lines to stderr in plain mode."""
    if console is not None:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False)
        logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
        return
    setup_logging(logging.WARNING)
    logging.getLogger("sensorcast").setLevel(logging.INFO)


def _start(
    args: argparse.Namespace,
    path: Path,
    meta: BundleMeta,
    stop: threading.Event,
    stack: contextlib.ExitStack,
) -> tuple[DemoInfo, Scoreboard, ServiceThread] | None:
    """Broker, view client, daemon, fleet, in that order; each registers its stop on `stack`."""
    from sensorcast.demo.view import DemoInfo

    broker = start_broker(args.broker)
    stack.callback(broker.close)
    settings = demo_settings(broker.port, broker.protocol, path)
    readings = TopicTemplate(settings.input.topic, allow_wildcards=False)
    forecasts = TopicTemplate(settings.output.topic, allow_wildcards=False)
    feature = meta.features[0]
    sensors = make_fleet(args.sensors)
    board = Scoreboard([s.sensor_id for s in sensors])
    anomalies = TopicTemplate(settings.anomaly.topic, allow_wildcards=False)
    view = ScoreboardClient(board, broker.port, readings, forecasts, feature, anomalies)
    stack.callback(view.close)
    daemon = ServiceThread(Service(settings))
    daemon.start()
    stack.callback(daemon.stop)
    subscribed = daemon.service.link.subscribed
    if not _wait(lambda: subscribed.is_set() or not daemon.is_alive(), stop, "daemon subscribed"):
        return None
    if not daemon.is_alive():
        raise UserError(f"the daemon stopped at start: {daemon.error}")
    if not _wait(view.subscribed.is_set, stop, "view subscribed"):
        return None
    fleet = FleetPublisher(
        sensors,
        broker.port,
        topic=readings,
        feature=feature,
        interval=args.interval,
        history=meta.timesteps,
    )
    fleet.start()
    stack.callback(fleet.stop)
    info = DemoInfo(
        broker.kind,
        broker.port,
        meta.model_id,
        sensors,
        args.interval,
        meta.timesteps,
        time.monotonic(),
    )
    return info, board, daemon


def _show(
    info: DemoInfo,
    board: Scoreboard,
    daemon: ServiceThread,
    stop: threading.Event,
    duration: float,
    console: Console | None,
) -> None:
    """Show the scores until stopped, `duration` is over or the daemon dies."""
    from sensorcast.demo.view import live_view, plain_report

    deadline = info.started + duration if duration > 0 else float("inf")

    def done() -> bool:
        return stop.wait(0.2) or time.monotonic() >= deadline or not daemon.is_alive()

    if console is not None:
        from rich.live import Live

        screen = console

        def render() -> RenderableType:
            view: RenderableType = live_view(board, info, screen.width, screen.height)
            return view

        with native_info_held(), Live(get_renderable=render, console=console):
            while not done():
                pass
    else:
        for line in info.intro():
            print(line, flush=True)
        # between two sensors' readings, so no row is caught before its new forecast arrives
        next_report = info.started + REPORT_EVERY + info.interval / (2 * len(info.sensors))
        while not done():
            if time.monotonic() >= next_report:
                plain_report(board, info, lambda line: print(line, flush=True))
                next_report += REPORT_EVERY
    if not daemon.is_alive() and not stop.is_set():
        raise UserError(f"the daemon stopped unexpectedly: {daemon.error}")


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C, SIGTERM or `--duration`; 0 after a clean stop."""
    try:
        from rich.console import Console
    except ImportError:  # the gateway runtime has no demo dependencies
        raise UserError(f"sensorcast demo needs the [demo] extra: {install_hint('demo')}") from None
    from sensorcast.demo.view import summary

    path, meta = _check(args)
    console = Console() if args.live and sys.stdout.isatty() else None
    _setup_logging(console)
    stop = threading.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():  # a second Ctrl-C skips the waiting
            raise KeyboardInterrupt
        stop.set()

    with capture_signals(on_signal, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
        with contextlib.ExitStack() as stack:
            started = _start(args, path, meta, stop, stack)
            if started is None:
                return 0
            info, board, daemon = started
            _show(info, board, daemon, stop, args.duration, console)
        for line in summary(board, info):
            print(line, flush=True)
    return 0
