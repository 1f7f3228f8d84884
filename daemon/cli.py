"""The `sensorcast` command: one subcommand per job, one-line errors, EX_CONFIG on bad config."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sensorcast import __version__
from sensorcast.errors import ConfigError, UserError

if TYPE_CHECKING:
    from sensorcast.config import Settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h; systemd's RestartPreventExitStatus


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("sensorcast").setLevel(level)


def _settings(args: argparse.Namespace) -> Settings:
    from sensorcast.config import load_settings

    overrides: dict[str, Any] = {}
    if getattr(args, "model", None):
        overrides["model"] = {"path": args.model}
    if getattr(args, "log_level", None):
        overrides["log"] = {"level": args.log_level}
    return load_settings(args.config, **overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from sensorcast.service import Service

    settings: Settings = _settings(args)
    _setup_logging(settings.log.level)
    service = Service(settings, reload_settings=lambda: _settings(args))
    service.install_signal_handlers()
    return service.run()


def cmd_check_config(args: argparse.Namespace) -> int:
    from sensorcast.config import effective_config
    from sensorcast.models.bundle import load_bundle

    settings = _settings(args)
    bundle = load_bundle(settings.model.path)
    print(json.dumps(effective_config(settings), indent=2))
    print(f"model bundle OK: {bundle.meta.model_id}", file=sys.stderr)
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from sensorcast.models import train

    code: int = train.run(args)
    return code


def cmd_inspect(args: argparse.Namespace) -> int:
    from sensorcast.models import report

    code: int = report.run_inspect(args.bundle)
    return code


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config file (or SENSORCAST_CONFIG)")
    p.add_argument("--model", metavar="DIR", help="model bundle directory (model.path)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log.level")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sensorcast", description="Streaming sensor forecasts over MQTT."
    )
    parser.add_argument("--version", action="version", version=f"sensorcast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon in the foreground")
    _add_config_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate the configuration and print it")
    _add_config_args(p)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("train", help="train a model bundle from a CSV file (needs [train])")
    try:
        from sensorcast.models import train

        train.configure_parser(p)
    except ImportError:  # pragma: no cover - module absent in a broken install
        pass
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("inspect", help="print a bundle's metadata and metrics")
    p.add_argument("bundle", metavar="BUNDLE_DIR")
    p.set_defaults(func=cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
