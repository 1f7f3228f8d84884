"""Normalisation shared by training and serving, so the two cannot drift.

Windows are float arrays shaped (batch, timesteps, features); model outputs are
shaped (batch, horizon, targets). `Scaler.transform` maps raw windows to model
inputs and returns the per-window context that `Scaler.inverse` needs to map
model outputs back to sensor units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sensorcast.models.bundle import Normalisation

WINDOW_STD_FLOOR = 1e-6
"""Relative floor for a window's scale: a flat window maps to zeros, not to NaN."""

FloatArray = NDArray[np.floating]


@dataclass(frozen=True)
class ScaleContext:
    """Per-window centre and scale of each target, shaped (batch, 1, targets)."""

    center: NDArray[np.float64]
    scale: NDArray[np.float64]


class Scaler:
    """Applies a bundle's normalisation to windows and inverts it on forecasts."""

    def __init__(self, norm: Normalisation, features: list[str], targets: list[str]) -> None:
        self.mode = norm.mode
        self._target_idx = [features.index(t) for t in targets if t in features]
        if norm.mode == "global":
            self._mean = np.asarray(norm.mean, dtype=np.float64)
            self._std = np.asarray(norm.std, dtype=np.float64)
            self._tmean = np.asarray(norm.target_mean, dtype=np.float64)
            self._tstd = np.asarray(norm.target_std, dtype=np.float64)
        elif len(self._target_idx) != len(targets):
            raise ValueError("window normalisation needs every target to be a feature")

    def transform(self, windows: FloatArray) -> tuple[NDArray[np.float32], ScaleContext]:
        """Normalise raw windows (batch, timesteps, features) for the model."""
        w = np.asarray(windows, dtype=np.float64)
        if self.mode == "global":
            x = (w - self._mean) / self._std
            n = w.shape[0]
            ctx = ScaleContext(
                center=np.broadcast_to(self._tmean, (n, 1, self._tmean.size)),
                scale=np.broadcast_to(self._tstd, (n, 1, self._tstd.size)),
            )
            return x.astype(np.float32), ctx
        mean = w.mean(axis=1, keepdims=True)
        std = w.std(axis=1, keepdims=True)
        scale = np.maximum(std, WINDOW_STD_FLOOR * np.maximum(np.abs(mean), 1.0))
        x = (w - mean) / scale
        idx = self._target_idx
        return x.astype(np.float32), ScaleContext(center=mean[:, :, idx], scale=scale[:, :, idx])

    def transform_targets(self, y: FloatArray, ctx: ScaleContext) -> NDArray[np.float32]:
        """Normalise training targets (batch, horizon, targets) with their windows' context."""
        out = (np.asarray(y, dtype=np.float64) - ctx.center) / ctx.scale
        return out.astype(np.float32)

    def inverse(self, y: FloatArray, ctx: ScaleContext) -> NDArray[np.float64]:
        """Map model outputs (batch, horizon, targets) back to sensor units."""
        out: NDArray[np.float64] = np.asarray(y, dtype=np.float64) * ctx.scale + ctx.center
        return out
