"""The real series shipped in `models/data/`, one univariate series per quantity.

The catalogue the default model, the normalisation comparison and the tests
share; `held_out` series are kept out of all tuning (see data/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sensorcast.models import DATA_DIR, dataset


@dataclass(frozen=True)
class RealSeries:
    """One column of one shipped CSV."""

    name: str
    file: str
    column: str
    kind: str
    """`noisy` (lag-1 autocorrelation of first differences below 0.5: near a random
    walk), `seasonal` (a daily or yearly cycle dominates) or `smooth`."""
    max_gap: float = 1.5
    """Gap factor for training: trading days skip weekends, so prices need 4.5."""
    held_out: bool = False

    def load(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Times (epoch seconds) and values, NaN for a gap."""
        table = dataset.read_csv(DATA_DIR / self.file)
        (s,) = dataset.load_series(table, [self.column])
        return s.times, s.values[:, 0]


SERIES = (
    RealSeries("co2_maunaloa", "co2_maunaloa_weekly.csv", "co2", "noisy"),
    RealSeries("room_temperature", "room_occupancy.csv", "temperature", "smooth"),
    RealSeries("room_humidity", "room_occupancy.csv", "humidity", "smooth"),
    RealSeries("room_light", "room_occupancy.csv", "light", "noisy"),
    RealSeries("room_co2", "room_occupancy.csv", "co2", "smooth"),
    RealSeries("sf_temp", "sf_temp_hourly.csv", "temperature_f", "smooth"),
    RealSeries("water_flow", "water_flow_hourly.csv", "flow_l_s", "noisy"),
    RealSeries("electricity_demand", "electricity_demand_halfhourly.csv", "demand_mw", "seasonal"),
    RealSeries("brent_crude", "brent_crude_daily.csv", "usd_per_barrel", "noisy", 4.5, True),
    RealSeries("seattle_temp", "seattle_temp_hourly.csv", "temperature_f", "smooth", held_out=True),
    RealSeries("elnino_sst", "elnino_sst_monthly.csv", "sst_c", "seasonal", held_out=True),
)
TUNING = tuple(s for s in SERIES if not s.held_out)
HELD_OUT = tuple(s for s in SERIES if s.held_out)


def by_name(name: str) -> RealSeries:
    return next(s for s in SERIES if s.name == name)
