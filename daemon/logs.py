"""Logging for every command: one format, one place to set the level."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | int) -> None:
    """Log lines to stderr at `level` (the root too, so library warnings show)."""
    logging.basicConfig(level=level, stream=sys.stderr, format=FORMAT, force=True)
    logging.getLogger("sensorcast").setLevel(level)
