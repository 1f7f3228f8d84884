"""Model side of sensorcast: the bundle format, shared preprocessing, training and export.

Importing this package never imports TensorFlow; only the training modules
(`dataset`, `build`, `train`, `export`) do, and only when they are used.
"""

from pathlib import Path

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default"
"""The pretrained bundle shipped in the wheel; the daemon's default `model.path`."""

DATA_DIR = Path(__file__).resolve().parent / "data"
"""Real sensor series shipped for examples and the default model (see data/README.md)."""
