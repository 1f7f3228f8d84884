"""sensorcast: streaming sensor forecasts over MQTT, served with LiteRT."""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    """`__version__`, looked up on first use: importing importlib.metadata takes ~0.1 s,
    which every command would otherwise pay before it can install its signal handlers."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("sensorcast")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            return "0.0.0"
    raise AttributeError(f"module 'sensorcast' has no attribute {name!r}")
