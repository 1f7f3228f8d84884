"""Logging for every command: one place that sets the format and the level.

Three formats (`log.format`):
- `text`: `2025-11-28 07:50:12,345 WARNING sensorcast.mqttio: message`, for a terminal;
- `journal`: `<4>WARNING sensorcast.mqttio: message`, the syslog priority prefix that
  journald reads from a service's stderr (sd-daemon(3)), so `journalctl -p warning`
  finds warnings; no timestamp, journald adds its own;
- `json`: one JSON object a line (`time`, `level`, `logger`, `message`, and `sensor_id`,
  `event` and the like when a line carries them), for log shippers.
`auto` (the default) picks `journal` when stderr is the journal stream systemd set up
(`JOURNAL_STREAM` names stderr's device and inode), `text` otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
"""The levels a user can choose, in any case: `info` is `INFO`."""
LogFormat = Literal["auto", "text", "journal", "json"]
FORMATS: tuple[LogFormat, ...] = ("auto", "text", "journal", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}
"""syslog priorities (sd-daemon's SD_DEBUG .. SD_ERR); CRITICAL and above are 2 (SD_CRIT)."""
_STRUCTURED = ("sensor_id", "event", "gap_s", "cadence_s", "model", "reason", "topic")
"""Attributes passed with `extra=` that the JSON format carries as fields of their own."""


def level_name(value: str | int) -> str:
    """`value` as one of LEVELS, whatever its case (ValueError otherwise)."""
    if isinstance(value, int):
        return logging.getLevelName(value)
    name = value.strip().upper()
    if name not in LEVELS:
        raise ValueError(f"{value!r} is not a log level (one of {', '.join(LEVELS)}, any case)")
    return name


def priority(levelno: int) -> int:
    """The syslog priority of a logging level."""
    if levelno >= logging.CRITICAL:
        return 2
    for threshold in (logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= threshold:
            return _PRIORITY[threshold]
    return 7


class JournalFormatter(logging.Formatter):
    """Every line of a record (a traceback too) prefixed with `<priority>`, so journald
    files none of it at the wrong priority."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


class JSONFormatter(logging.Formatter):
    """One JSON object a line; never raises on odd messages (they are rendered as text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _STRUCTURED:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str).translate(_LINE_BREAKS)


_LINE_BREAKS = {c: f"\\u{c:04x}" for c in (0x85, 0x2028, 0x2029)}
"""Characters JSON leaves as they are and that end a line for some readers of logs (Python's
`splitlines`, JavaScript before ES2019): escaped, so a topic or payload that holds one cannot
split a JSON line in two."""


def stderr_is_journal(stream: TextIO | None = None, environ: dict[str, str] | None = None) -> bool:
    """True when `stream` (stderr) is the journal stream systemd connected (JOURNAL_STREAM)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(device) and st.st_ino == int(inode)


def resolve_format(fmt: LogFormat, stream: TextIO | None = None) -> LogFormat:
    """The concrete format `auto` stands for on this stream."""
    if fmt != "auto":
        return fmt
    return "journal" if stderr_is_journal(stream) else "text"


def make_formatter(fmt: LogFormat, stream: TextIO | None = None) -> logging.Formatter:
    concrete = resolve_format(fmt, stream)
    if concrete == "journal":
        return JournalFormatter()
    if concrete == "json":
        return JSONFormatter()
    return logging.Formatter(TEXT_FORMAT)


class PahoNotConnected(logging.Filter):
    """paho-mqtt 2.x logs "Client is not connected" at ERROR whenever its network loop
    turns without a socket: once at every clean stop, and between reconnect attempts,
    which sensorcast reports itself at WARNING. Demoted to DEBUG, so `journalctl -p err`
    shows real errors only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.getMessage().startswith(
            "Client is not connected"
        ):
            if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


PAHO_LOGGER = "sensorcast.paho"


def setup_logging(level: str | int, fmt: LogFormat = "auto") -> None:
    """Log lines to stderr at `level` in `fmt` (the root too, so library warnings show)."""
    name = level_name(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(fmt, sys.stderr))
    logging.basicConfig(level=name, handlers=[handler], force=True)
    logging.getLogger("sensorcast").setLevel(name)
    paho = logging.getLogger(PAHO_LOGGER)
    if not any(isinstance(f, PahoNotConnected) for f in paho.filters):
        paho.addFilter(PahoNotConnected())
