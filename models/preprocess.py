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

WINDOW_STD_FLOOR = 1e-9
"""Relative floor for a window's scale (of its mean): a flat window maps to zeros, not to NaN."""
STEP_SCALE_FLOOR = 1e-9
"""Relative floor for `last`'s per-window step scale (of the last value): a flat window maps
to zeros and its forecast to its level, never NaN. Far below any sensor's resolution and far
above float64's (2.2e-16): a floor of 1e-6 squashed the windows of an energy meter at
12,345,678 Wh counting 3 Wh a reading to a quarter of their shape, served the last value."""
ZERO_FLOOR = float(np.finfo(np.float32).tiny)
"""The floor of a window flat at zero. Relative floors only: an absolute one (1e-6) made every
window of readings below about 1e-6 a flat one (a dose rate in Sv/h, a particle mass in
kg/m3), served the last value whatever its shape. A window whose readings differ at all
is scaled by those differences (`step_scale`), so its inputs stay within a few hundred."""
TRIM_DROP = 1
"""`trimmed` step scale: the window's largest first differences left out (in absolute value),
so that one jump does not set the scale."""
TRIM_FLOOR = 0.5
"""... and it is at least this share of the plain RMS, so a flat window with one jump (whose
trimmed RMS is zero) maps that jump to about 11 units, not to millions."""

FloatArray = NDArray[np.floating]


@dataclass(frozen=True)
class ScaleContext:
    """Per-window centre and scale of each target, shaped (batch, 1, targets).

    `scale` is also the unit of the bundle's interval calibration: forecast errors
    divided by it are what `Calibration.abs_error` holds quantiles of.
    """

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
            raise ValueError(f"{norm.mode} normalisation needs every target to be a feature")
        self._scale = None if norm.scale is None else np.asarray(norm.scale, dtype=np.float64)
        self._step = step_scale if norm.step_scale in (None, "rms") else trimmed_step_scale

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
        if self.mode == "last":
            return self._relative_to_last(w)
        mean = w.mean(axis=1, keepdims=True)
        std = w.std(axis=1, keepdims=True)
        scale = np.maximum(std, _floor(WINDOW_STD_FLOOR, mean))
        x = (w - mean) / scale
        idx = self._target_idx
        return x.astype(np.float32), ScaleContext(center=mean[:, :, idx], scale=scale[:, :, idx])

    def _relative_to_last(self, w: NDArray[np.float64]) -> tuple[NDArray[np.float32], ScaleContext]:
        """`last`: (window - last reading) / step scale, per feature."""
        last = w[:, -1:, :]
        if self._scale is not None:
            scale = np.broadcast_to(self._scale, last.shape)
        else:
            scale = np.maximum(self._step(w), _floor(STEP_SCALE_FLOOR, last))
        x = (w - last) / scale
        idx = self._target_idx
        return x.astype(np.float32), ScaleContext(center=last[:, :, idx], scale=scale[:, :, idx])

    def transform_targets(self, y: FloatArray, ctx: ScaleContext) -> NDArray[np.float32]:
        """Normalise training targets (batch, horizon, targets) with their windows' context."""
        out = (np.asarray(y, dtype=np.float64) - ctx.center) / ctx.scale
        return out.astype(np.float32)

    def inverse(self, y: FloatArray, ctx: ScaleContext) -> NDArray[np.float64]:
        """Map model outputs (batch, horizon, targets) back to sensor units."""
        out: NDArray[np.float64] = np.asarray(y, dtype=np.float64) * ctx.scale + ctx.center
        return out


def _floor(share: float, level: NDArray[np.float64]) -> NDArray[np.float64]:
    """The least scale of windows at `level`: `share` of it, ZERO_FLOOR at zero."""
    out: NDArray[np.float64] = np.maximum(share * np.abs(level), ZERO_FLOOR)
    return out


def step_scale(w: NDArray[np.float64]) -> NDArray[np.float64]:
    """Root mean square of first differences along axis 1, keeping it: (batch, 1, features).

    Chosen over the standard deviation of the differences (zero on a steady ramp)
    and their mean or median absolute value (measured in the README: the RMS
    makes one-step errors the most alike across real sensors). Zero for one step.
    """
    if w.shape[1] < 2:
        return np.zeros((w.shape[0], 1, w.shape[2]))
    d = np.diff(w, axis=1)
    out: NDArray[np.float64] = np.sqrt(np.mean(d * d, axis=1, keepdims=True))
    return out


def trimmed_step_scale(w: NDArray[np.float64]) -> NDArray[np.float64]:
    """Like `step_scale`, but robust to a jump: (batch, 1, features).

    The RMS of the first differences without the largest `TRIM_DROP` of them (in absolute
    value), at least `TRIM_FLOOR` of the plain RMS. A single jump in a window inflates the
    plain RMS for as long as the jump stays in the window (a jump of 20 noise steps makes it
    3.7 times the noise's over 31 differences), and a forecast, multiplied back by that
    scale, then misses by as much; trimmed, the scale stays near the noise's.
    """
    if w.shape[1] < 2:
        return np.zeros((w.shape[0], 1, w.shape[2]))
    d = np.abs(np.diff(w, axis=1))
    n = d.shape[1]
    kept = np.sort(d, axis=1)[:, : max(n - TRIM_DROP, 1)]
    trimmed = np.sqrt(np.mean(kept * kept, axis=1, keepdims=True))
    out: NDArray[np.float64] = np.maximum(trimmed, TRIM_FLOOR * step_scale(w))
    return out
