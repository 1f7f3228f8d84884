"""sensorcast: streaming sensor forecasts over MQTT, served with LiteRT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sensorcast")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
