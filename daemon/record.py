"""`sensorcast record`: subscribe like `run` and append readings to a training CSV.

The rows are the long training format, `time,sensor_id,<feature>...`, that
`sensorcast train` reads: time in epoch seconds (the reading's `ts`, else the
receive time). Topics, payloads and the time rules are the daemon's own (same
settings, `TopicTemplate`, `PayloadParser`; a reading not newer than its
sensor's last is dropped as stale), so what is recorded is what `run` would
see. The recorder uses its own client id and a clean session, so it never
takes over the daemon's persistent session.
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import math
import signal
import sys
import threading
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, TextIO

from sensorcast.config import GLOB_HELP, settings_from_args
from sensorcast.drops import Drop, DropLog
from sensorcast.errors import ConfigError, UserError
from sensorcast.globs import uncovered
from sensorcast.logs import LEVELS, setup_logging
from sensorcast.metrics import Metrics
from sensorcast.models.bundle import BundleError, load_bundle
from sensorcast.mqttio import MQTTLink
from sensorcast.readings import PayloadParser, read_message
from sensorcast.signals import STOP_SIGNALS, capture_signals
from sensorcast.topics import TopicTemplate

log = logging.getLogger(__name__)

FLUSH_EVERY = 0.5
"""Seconds between writes to the file: a killed recorder loses at most this much."""
CLIENT_SUFFIX = "-record"


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add `sensorcast record`'s options to `p`."""
    p.add_argument("--out", type=Path, required=True, metavar="FILE.csv", help="CSV to append to")
    p.add_argument("--config", metavar="FILE", help="TOML config file (or SENSORCAST_CONFIG)")
    p.add_argument("--model", metavar="DIR", help="model bundle whose features to record")
    p.add_argument(
        "--sensors",
        metavar="GLOB",
        help="record only sensors whose id matches, e.g. a route's 'boiler-*' (default: all)",
    )
    p.add_argument("--log-level", type=str.upper, choices=LEVELS, help="log.level (any case)")
    p.add_argument(
        "--duration", type=float, default=0, metavar="S", help="stop after S seconds (0: never)"
    )
    p.add_argument(
        "--count", type=int, default=0, metavar="N", help="stop after N readings (0: never)"
    )


HEADER_MAX = 65536
"""Longest header line read from an existing --out file: a device or a file without line
ends (/dev/zero, a binary file) is refused rather than read whole."""


def csv_header(features: list[str]) -> list[str]:
    """The long training format's columns for a model's features."""
    return ["time", "sensor_id", *features]


def open_csv(path: Path, header: list[str]) -> TextIO:
    """Open `path` for appending: write the header if it is new or empty, refuse another one.

    An unfinished last line (a killed writer) is cut off, so new rows start on a line.
    """
    try:
        with path.open("a+b") as f:
            f.seek(0)
            first = f.readline(HEADER_MAX + 1)
            if len(first) > HEADER_MAX:
                raise UserError(
                    f"{path} has no header line (no line end in its first {HEADER_MAX} bytes): "
                    "choose another --out file"
                )
            end = f.seek(0, 2)
            found = first.decode("utf-8-sig", "replace").strip()
            if first and [c.strip() for c in found.split(",")] != header:
                shown = found if len(found) <= 200 else found[:200] + "..."
                raise UserError(
                    f"{path} has the header {shown!r}, but this model records "
                    f"{','.join(header)!r}: choose another --out file"
                )
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    _cut_unfinished_line(f, path, end)
        out = path.open("a", encoding="utf-8", newline="")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    if out.tell() == 0:
        out.write(",".join(header) + "\n")
        out.flush()
    return out


def _cut_unfinished_line(f: Any, path: Path, end: int) -> None:
    """Truncate after the last newline, searching back in chunks; a lone header gets one."""
    pos = end
    while pos > 0:
        start = max(0, pos - 65536)
        f.seek(start)
        newline = f.read(pos - start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            f.truncate(keep)
            log.warning("%s ended in an unfinished line; removed it (%d bytes)", path, end - keep)
            return
        pos = start
    f.write(b"\n")


def _format_row(ts: float, sensor_id: str, values: tuple[float, ...]) -> str:
    return ",".join([repr(ts), sensor_id, *(repr(v) for v in values)]) + "\n"


class Recorder:
    """Turns messages into CSV lines (network thread) and writes them out (main thread)."""

    def __init__(
        self,
        topic: TopicTemplate,
        parser: PayloadParser,
        *,
        max_sensors: int,
        count: int,
        drop_interval: float,
        sensors: str | None = None,
    ) -> None:
        self.topic = topic
        self.sensors = sensors
        """A glob on the sensor id: other sensors are passed over (not counted as drops)."""
        self.parser = parser
        self.max_sensors = max_sensors
        self.count = count
        self.recorded = 0
        self.dropped: Counter[Drop] = Counter()
        self.done = threading.Event()
        self._last: OrderedDict[str, float] = OrderedDict()
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._drop_log = DropLog(drop_interval, parser.ts_field)

    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Parse one message like the daemon does; never raises into the network loop."""
        try:
            self._take(topic, payload, time.time(), retained)
        except Exception:
            log.exception("unexpected error recording a message on %r", topic[:200])

    def _take(self, topic: str, payload: bytes, received: float, retained: bool = False) -> None:
        if self.done.is_set():
            return
        if self.sensors is not None:
            sensor_id = self.topic.sensor_id(topic)
            if sensor_id is not None and not fnmatch.fnmatchcase(sensor_id, self.sensors):
                return None
        message = read_message(self.topic, self.parser, topic, payload, received, retained)
        if isinstance(message, Drop):
            return self._drop(message, topic)
        sensor_id, ts, reading = message
        with self._lock:
            last = self._last.pop(sensor_id, None)
            if last is not None and ts <= last:
                self._last[sensor_id] = last
                return self._drop(Drop.STALE, topic)
            self._last[sensor_id] = ts
            if len(self._last) > self.max_sensors:
                self._last.popitem(last=False)
            self._lines.append(_format_row(ts, sensor_id, reading.values))
            self.recorded += 1
            if self.count and self.recorded >= self.count:
                self.done.set()
        return None

    def _drop(self, reason: Drop, topic: str) -> None:
        self.dropped[reason] += 1
        self._drop_log(reason, topic)

    def write(self, out: TextIO) -> None:
        """Append what was taken since the last call, and flush it to the OS."""
        with self._lock:
            lines, self._lines = self._lines, []
        if lines:
            out.write("".join(lines))
            out.flush()


def run(args: argparse.Namespace) -> int:
    """Record until SIGINT/SIGTERM/SIGHUP, `--duration` or `--count`; 0 after a clean stop
    (a hangup, the terminal it runs in closing, is a stop: what it wrote is summed up)."""
    settings = settings_from_args(args)
    setup_logging(settings.log.level, settings.log.format)
    if not args.duration >= 0 or args.count < 0:  # `not >=`: NaN is refused too
        raise UserError("--duration and --count must be 0 (no limit) or more")
    try:
        meta = load_bundle(settings.model.path).meta
    except BundleError as exc:
        raise ConfigError(f"invalid model.path (SENSORCAST_MODEL__PATH): {exc}") from None
    topic = TopicTemplate(settings.input.topic, allow_wildcards=True)
    cfg = settings.input
    try:
        parser = PayloadParser(
            meta.features,
            fields=cfg.fields,
            ts_field=cfg.ts_field,
            max_bytes=cfg.max_payload_bytes,
            max_future=cfg.max_future_s or math.inf,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.sensors is not None and uncovered(args.sensors) is None:
        raise UserError(f"--sensors {args.sensors!r} matches no sensor id ({GLOB_HELP})")
    recorder = Recorder(
        topic,
        parser,
        max_sensors=cfg.max_sensors,
        count=args.count,
        drop_interval=settings.log.drop_interval,
        sensors=args.sensors,
    )
    out = open_csv(args.out, csv_header(meta.features))
    link = MQTTLink(
        settings.mqtt,
        topic.subscription,
        recorder.on_message,
        Metrics(),
        client_id=settings.mqtt.client_id[: 64 - len(CLIENT_SUFFIX)] + CLIENT_SUFFIX,
        persistent=False,
    )
    link.limit_payload(cfg.max_payload_bytes)
    stop = recorder.done
    try:
        with capture_signals(lambda sig: stop.set(), (*STOP_SIGNALS, signal.SIGHUP)):
            link.start()
            deadline = time.monotonic() + args.duration if args.duration else float("inf")
            announced = False
            while not stop.wait(FLUSH_EVERY) and time.monotonic() < deadline:
                if not announced and link.subscribed.is_set():
                    log.info("recording %s from %s", topic.subscription, link.endpoint)
                    announced = True
                recorder.write(out)
            stop.set()
            link.stop(timeout=1.0)
    finally:
        recorder.write(out)
        out.close()
    dropped = ", ".join(f"{r.value} {n}" for r, n in recorder.dropped.most_common())
    print(
        f"recorded {recorder.recorded} readings to {args.out}"
        + (f"; dropped {recorder.dropped.total()} ({dropped})" if dropped else ""),
        file=sys.stderr,
    )
    return 0
