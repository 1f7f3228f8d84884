"""Tiny bundles trained once per session through the real `sensorcast train` path."""

from __future__ import annotations

import argparse
import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from sensorcast.models import DATA_DIR

COMMON = ["--units", "8", "--epochs", "2", "--batch-size", "32", "--patience", "1", "--quiet"]
SHAPES: dict[str, tuple[str, list[str]]] = {
    "many_to_one": ("co2.csv", ["--timesteps", "12", "--horizon", "2"]),
    "stacked": (
        "room.csv",
        ["--features", "temperature,humidity", "--targets", "temperature", "--layers", "2",
         "--dropout", "0.1", "--normalisation", "global"],
    ),
    "seq2seq": ("co2.csv", ["--timesteps", "8", "--seq2seq", "--normalisation", "window"]),
    "multi_target_global": (
        "room.csv",
        ["--features", "temperature,humidity,co2", "--targets", "temperature,co2",
         "--horizon", "3", "--normalisation", "global"],
    ),
    "multi_target_window": ("room.csv", ["--timesteps", "10", "--targets", "humidity,co2",
                                         "--normalisation", "window"]),
    "last_window_scale": ("room.csv", ["--features", "temperature,co2", "--horizon", "6",
                                       "--normalisation", "last", "--step-scale", "window"]),
    "last_trimmed_scale": ("room.csv", ["--features", "temperature,co2", "--horizon", "6",
                                        "--normalisation", "last", "--step-scale", "trimmed"]),
}  # fmt: skip
"""Seed shapes and normalisations covered by the train and parity tests."""


@dataclass(frozen=True)
class Trained:
    path: Path
    data: Path
    argv: list[str]
    stdout: str


def train_args(argv: list[str]) -> argparse.Namespace:
    from sensorcast.models import train

    parser = argparse.ArgumentParser()
    train.configure_parser(parser)
    return parser.parse_args(argv)


class BundleCache:
    """Trains each named shape on first use; later tests reuse the bundle."""

    def __init__(self, root: Path, data: Path) -> None:
        self.root, self.data = root, data
        self._done: dict[str, Trained] = {}

    def get(self, name: str) -> Trained:
        if name not in self._done:
            from sensorcast.models import train

            csv_name, extra = SHAPES[name]
            argv = [str(self.data / csv_name), "--out", str(self.root / name), *COMMON, *extra]
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert train.run(train_args(argv)) == 0
            self._done[name] = Trained(self.root / name, self.data / csv_name, argv, out.getvalue())
        return self._done[name]


@pytest.fixture(scope="session")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small slices of the real data: 700 weeks of CO2 (with its gaps), the room sensors."""
    root = tmp_path_factory.mktemp("data")
    co2 = (DATA_DIR / "co2_maunaloa_weekly.csv").read_text().splitlines(keepends=True)
    (root / "co2.csv").write_text("".join(co2[:701]))
    (root / "room.csv").write_text((DATA_DIR / "room_occupancy.csv").read_text())
    return root


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory, train_data: Path) -> BundleCache:
    return BundleCache(tmp_path_factory.mktemp("bundles"), train_data)
