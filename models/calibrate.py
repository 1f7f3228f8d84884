"""Split-conformal interval calibration, measured at training on held-back windows.

Pure numpy. Errors are normalised by each window's `ScaleContext.scale` (the same
unit the daemon divides by), so one bundle's quantiles serve sensors of any
magnitude. `conformal` stores them as the bundle's `Calibration`; `coverage`
checks them on windows they were not measured on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from sensorcast.models.bundle import DEFAULT_LEVELS, Calibration

Float64 = NDArray[np.float64]
REPORT_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)
"""Levels whose test coverage `train` stores and prints."""


def normalised_errors(pred: Float64, truth: Float64, scale: Float64) -> Float64:
    """|truth - forecast| / scale, (n, horizon, targets); `scale` is (n, 1, targets)."""
    out: Float64 = np.abs(np.asarray(truth) - np.asarray(pred)) / np.asarray(scale)
    return out


def conformal(errors: Float64, levels: Sequence[float] = DEFAULT_LEVELS) -> Calibration:
    """Per-step, per-target quantiles of normalised errors (n, horizon, targets).

    Split conformal: the `ceil((n + 1) * level) / n` empirical quantile (no
    interpolation), so at least `level` of new exchangeable windows fall inside.
    Where n is too small for a level, the largest error seen is used.
    """
    errors = np.asarray(errors, dtype=np.float64)
    n = errors.shape[0]
    if n == 0:
        raise ValueError("no held-back windows to calibrate on")
    ordered = np.sort(np.where(np.isfinite(errors), errors, np.nan), axis=0)  # NaN last
    largest = np.nanmax(ordered, axis=0)
    table = []
    for level in levels:
        k = min(int(np.ceil((n + 1) * level)), n)
        table.append(np.fmin(ordered[k - 1], largest).tolist())
    return Calibration(levels=list(levels), abs_error=table, n=int(n))


def coverage(cal: Calibration, errors: Float64, levels: Sequence[float] = REPORT_LEVELS) -> Float64:
    """Share of windows whose normalised error lies within the calibrated interval,
    (levels, horizon, targets)."""
    errors = np.asarray(errors, dtype=np.float64)
    bounds = np.asarray([cal.quantile(level) for level in levels])  # (L, H, K)
    inside: Float64 = (errors[None] <= bounds[:, None]).mean(axis=1)
    return inside
