"""The `sensorcast` command: one subcommand per job, one-line errors, EX_CONFIG on bad config."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from sensorcast.errors import ConfigError, UserError
from sensorcast.logs import LEVELS

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h; systemd's RestartPreventExitStatus


_early_hangups: list[signal.Signals] = []


def _remember_hangup(signum: int, frame: FrameType | None) -> None:
    _early_hangups.append(signal.Signals(signum))


def cmd_run(args: argparse.Namespace) -> int:
    from sensorcast.config import config_warnings, settings_from_args
    from sensorcast.logs import setup_logging
    from sensorcast.service import Service
    from sensorcast.signals import capture_signals
    from sensorcast.state import map_large_allocations

    map_large_allocations()
    settings = settings_from_args(args)
    setup_logging(settings.log.level, settings.log.format)
    for line in config_warnings(settings):
        logging.getLogger("sensorcast.config").warning(line)
    service = Service(settings, reload_settings=lambda: settings_from_args(args))
    with capture_signals(service.on_signal, Service.SIGNALS):
        if _early_hangups:  # a SIGHUP while starting: reload once started
            service.request_reload()
        return service.run()


def cmd_check_config(args: argparse.Namespace) -> int:
    from sensorcast.config import config_warnings, effective_config, settings_from_args
    from sensorcast.routes import describe_routes, load_models

    settings = settings_from_args(args)
    models = load_models(settings)  # as `run` loads them: the interpreters included
    print(json.dumps(effective_config(settings), indent=2))
    for line in config_warnings(settings):
        print(f"sensorcast: warning: {line}", file=sys.stderr)
    if settings.routes:
        print(describe_routes(models, settings.model.fallback), file=sys.stderr)
    ids = ", ".join(dict.fromkeys(m.bundle.meta.model_id for m in models))
    print(f"model bundle{'s' if len(models) > 1 else ''} OK: {ids}", file=sys.stderr)
    return EXIT_OK


def _configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config file (or SENSORCAST_CONFIG)")
    p.add_argument("--model", metavar="DIR", help="model bundle directory (model.path)")
    p.add_argument("--log-level", type=str.upper, choices=LEVELS, help="log.level (any case)")


def _configure_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE_DIR")


def _inspect(args: argparse.Namespace) -> int:
    from sensorcast.models.report import run_inspect

    code: int = run_inspect(args.bundle)
    return code


Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


def _module(name: str) -> Callable[[], tuple[Configure, Run]]:
    """A command implemented by a module with `configure_parser` and `run`, imported late."""

    def load() -> tuple[Configure, Run]:
        mod = importlib.import_module(name)
        return mod.configure_parser, mod.run

    return load


COMMANDS: dict[str, tuple[str, Callable[[], tuple[Configure, Run]]]] = {
    "run": ("run the daemon in the foreground", lambda: (_configure_run, cmd_run)),
    "check-config": (
        "validate the configuration and print it",
        lambda: (_configure_run, cmd_check_config),
    ),
    "train": (
        "train a model bundle from a CSV file (needs [train])",
        _module("sensorcast.models.train"),
    ),
    "inspect": (
        "print a bundle's metadata and metrics",
        lambda: (_configure_inspect, _inspect),
    ),
    "demo": (
        "a private broker, simulated sensors, the daemon and a live view",
        _module("sensorcast.demo.command"),
    ),
    "record": ("append incoming readings to a training CSV", _module("sensorcast.record")),
    "deploy": (
        "print a shipped deploy file: systemd unit, example config, Grafana dashboard",
        _module("sensorcast.deployfiles"),
    ),
    "bench": (
        "measure throughput, latency, memory and start-up here",
        _module("sensorcast.bench.command"),
    ),
}


class _Version(argparse.Action):
    """argparse's version action, with the version looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        import sensorcast

        parser.exit(message=f"sensorcast {sensorcast.__version__}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported (all of them when None)."""
    parser = argparse.ArgumentParser(
        prog="sensorcast", description="Streaming sensor forecasts over MQTT."
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, load) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or command == name:
            configure, run = load()
            configure(p)
            p.set_defaults(func=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if a in COMMANDS), "")
    guard_hangup = command == "run" and argv is None
    if guard_hangup:
        # Until the daemon's handlers are in place a SIGHUP (`systemctl reload`) is kept for
        # after the start; once they are removed it is ignored (SIG_IGN, which Python keeps
        # through interpreter shutdown, unlike a handler of its own).
        signal.signal(signal.SIGHUP, _remember_hangup)
    try:
        return _main(command, args_list)
    finally:
        if guard_hangup:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _main(command: str, args_list: list[str]) -> int:
    try:
        args = build_parser(command).parse_args(args_list)
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"sensorcast: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UserError as exc:
        print(f"sensorcast: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `sensorcast inspect DIR | head`: the reader went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
