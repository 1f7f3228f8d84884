"""`sensorcast deploy`: the files of deploy/ as the wheel ships them, for installs without
a checkout (the systemd unit, the example configuration, the Grafana dashboard, ...)."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from sensorcast.errors import UserError

PACKAGE = "sensorcast.deploy"
ALIASES = {
    "unit": "sensorcast.service",
    "group": "sensorcast@.service",
    "config": "sensorcast.toml",
    "dashboard": "grafana-dashboard.json",
    "telegraf": "telegraf.conf",
    "prometheus": "prometheus.yml",
    "nats": "nats-server.conf",
}
"""Short names for the files; any file's own name works too."""
UNIT_EXEC = "/opt/sensorcast/bin/sensorcast"
HIDDEN_FROM_UNIT = (Path("/home"), Path("/root"), Path("/run/user"))
"""What the units' ProtectHome=yes makes inaccessible to the service."""


def files() -> dict[str, Traversable]:
    """Every shipped deploy file by name."""
    root = resources.files(PACKAGE)
    return {
        f.name: f
        for f in root.iterdir()
        if f.is_file() and not f.name.startswith(("_", ".")) and not f.name.endswith(".py")
    }


def text(name: str) -> str:
    """A deploy file's text by short or file name; unit files point at this install."""
    shipped = files()
    file_name = ALIASES.get(name, name)
    if file_name not in shipped:
        names = [a for a, f in ALIASES.items() if f in shipped] + sorted(shipped)
        raise UserError(f"no deploy file {name!r}; choose one of: {', '.join(names)}")
    content = shipped[file_name].read_text(encoding="utf-8")
    if file_name.endswith(".service"):
        content = content.replace(UNIT_EXEC, unit_word(_executable()))
    return content


def unit_word(path: Path) -> str:
    """`path` as the executable word of a unit's command line: `%` doubled (systemd expands
    specifiers there), quoted when it holds a space, a quote or a backslash (systemd splits
    the line at spaces: `/srv/my gateway/bin/sensorcast` ran `/srv/my`)."""
    text = str(path).replace("%", "%%")
    if any(c.isspace() or c in "\"'\\" for c in text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def unit_warning(name: str) -> str | None:
    """Why a printed unit would not start from this install, if it would not: an ExecStart
    under /home, /root or /run/user, which the unit's ProtectHome=yes hides from the
    service (a virtualenv in a checkout, e.g. `./dev demo`'s .venv)."""
    if not ALIASES.get(name, name).endswith(".service"):
        return None
    exe = _executable()
    hidden = next((d for d in HIDDEN_FROM_UNIT if exe.is_relative_to(d)), None)
    if hidden is None:
        return None
    return (
        f"warning: ExecStart={exe} is under {hidden}, which the unit's ProtectHome=yes hides "
        f"from the service, so it would not start; install sensorcast outside it, e.g. in "
        f"{Path(UNIT_EXEC).parents[1]} (README, 'Install on a gateway')"
    )


def _executable() -> Path:
    """This install's `sensorcast` script (the unit's ExecStart), or the usual path."""
    candidate = Path(sys.executable).with_name("sensorcast")
    return candidate if candidate.is_file() else Path(UNIT_EXEC)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Print a deploy file shipped with this install: unit (the systemd service), group "
        "(one instance of a group), config (the example configuration), dashboard (Grafana), "
        "telegraf and prometheus (wiring for the dashboard), nats (nats-server for a group). "
        "Unit files name this "
        "install's sensorcast in ExecStart."
    )
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--print", dest="name", metavar="NAME", help="write NAME to stdout")
    group.add_argument("--list", action="store_true", help="list the deploy files")


def run(args: argparse.Namespace) -> int:
    if args.list:
        by_file = {f: a for a, f in ALIASES.items()}
        for name in sorted(files()):
            alias = by_file.get(name)
            print(f"{alias or '-':<11} {name}")
        return 0
    sys.stdout.write(text(args.name))
    warning = unit_warning(args.name)
    if warning:
        print(f"sensorcast deploy: {warning}", file=sys.stderr)
    return 0
