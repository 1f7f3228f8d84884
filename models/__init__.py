"""Model side of sensorcast: the bundle format, shared preprocessing, training and export.

Importing this package never imports TensorFlow; only the training modules
(`dataset`, `build`, `train`, `export`) do, and only when they are used.
"""

import json
import shlex
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default"
"""The pretrained bundle shipped in the wheel; the daemon's default `model.path`."""

DATA_DIR = Path(__file__).resolve().parent / "data"
"""Real sensor series shipped for examples and the default model (see data/README.md)."""


def install_hint(extra: str) -> str:
    """The command that adds `extra` to this install. sensorcast is installed from a checkout
    or a wheel, not from PyPI (where `sensorcast[train]` would be someone else's package, if
    any): name the source this install came from (PEP 610's direct_url.json), with its pip."""
    pip = f"{shlex.quote(sys.executable)} -m pip install"
    site = Path(__file__).resolve().parents[2]  # this install's, not a checkout's egg-info
    found = metadata.distributions(name="sensorcast", path=[str(site)])
    try:
        origin = json.loads(next(iter(found)).read_text("direct_url.json") or "")
        url = urlparse(origin["url"])
        source = unquote(url.path) if url.scheme == "file" else ""
    except (StopIteration, ValueError, KeyError, TypeError):
        source = ""
    if not source:
        return f"{pip} '/path/to/sensorcast[{extra}]' (the checkout or wheel sensorcast came from)"
    return f"{pip} {shlex.quote(f'{source}[{extra}]')}"
