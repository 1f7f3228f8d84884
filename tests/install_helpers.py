"""What an error about a missing extra must say: how to install it from where sensorcast came."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def assert_installs_from_the_source(err: str, extra: str) -> None:
    """The hint installs the extra from the checkout or wheel this install came from, with
    this install's pip: `pip install 'sensorcast[...]'` would look on PyPI, which does not
    have it (or has another project of that name)."""
    assert "'sensorcast[" not in err
    command = shlex.split(err.split(": ")[-1])
    assert command[:4] == [sys.executable, "-m", "pip", "install"], command
    source, _, rest = command[4].rpartition("[")
    assert rest == f"{extra}]" and Path(source).exists(), command
