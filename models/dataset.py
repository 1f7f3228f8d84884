"""Training windows: cut each series at gaps, split it by time and window it.

Series come from `csvdata`. Segmenting and splitting are plain numpy; only
`window_runs` needs Keras, imported when it is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sensorcast.errors import UserError
from sensorcast.models.csvdata import (
    Series,
    Table,
    load_series,
    numeric_columns,
    read_csv,
    resolve_columns,
)

__all__ = [
    "Prepared",
    "Series",
    "Table",
    "WindowSpec",
    "Windows",
    "cadence",
    "clip_runs",
    "load_series",
    "numeric_columns",
    "prepare",
    "read_csv",
    "resolve_columns",
    "segment_runs",
    "split_bounds",
    "window_runs",
]

Float64 = NDArray[np.float64]


@dataclass(frozen=True)
class WindowSpec:
    """What to window: columns, window and horizon length, gap factor, split fractions."""

    features: list[str]
    targets: list[str]
    timesteps: int
    horizon: int
    max_gap: float = 1.5
    val_frac: float = 0.15
    test_frac: float = 0.15

    @property
    def columns(self) -> list[str]:
        """Features then any targets that are not features: the columns `load_series` reads."""
        return [*self.features, *(t for t in self.targets if t not in self.features)]


def cadence(times: Float64) -> float | None:
    """Median positive time step in seconds, or None with fewer than two readings."""
    steps = np.diff(times)
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else None


def segment_runs(times: Float64, usable: NDArray[np.bool_], max_step: float) -> list[range]:
    """Index ranges of consecutive usable rows with no time step above `max_step`."""
    n = times.size
    jump = np.diff(times) > max_step
    brk_before = np.ones(n, dtype=bool)
    brk_before[1:] = jump | ~usable[:-1]
    brk_after = np.ones(n, dtype=bool)
    brk_after[:-1] = jump | ~usable[1:]
    starts = np.flatnonzero(usable & brk_before)
    stops = np.flatnonzero(usable & brk_after) + 1
    return [range(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def split_bounds(n: int, val_frac: float, test_frac: float) -> tuple[range, range, range]:
    """Train, validation and test row ranges of an n-row series, in time order."""
    a = round(n * (1.0 - val_frac - test_frac))
    b = round(n * (1.0 - test_frac))
    return range(0, a), range(a, b), range(b, n)


def clip_runs(runs: Sequence[range], part: range) -> list[range]:
    """The pieces of `runs` that lie inside `part`, so no run crosses a split boundary."""
    pieces = (range(max(r.start, part.start), min(r.stop, part.stop)) for r in runs)
    return [p for p in pieces if len(p) > 0]


def window_runs(
    data: Float64, runs: Sequence[range], length: int
) -> tuple[Float64, NDArray[np.int64]]:
    """Every `length`-row window inside a run: windows (n, length, C) and their first rows.

    All runs go through one `timeseries_dataset_from_array` call (each call costs
    ~50 ms) with a run-id column; a window is kept when its first and last rows
    share a run id, i.e. it lies inside one run and so never crosses a gap.
    """
    import keras

    runs = [r for r in runs if len(r) >= length]
    if not runs:
        return np.empty((0, length, data.shape[1])), np.empty(0, dtype=np.int64)
    rows = np.concatenate([np.arange(r.start, r.stop) for r in runs])
    run_id = np.repeat(np.arange(len(runs)), [len(r) for r in runs])
    stacked = np.column_stack([run_id, rows, data[rows]])
    ds = keras.utils.timeseries_dataset_from_array(
        stacked, None, sequence_length=length, batch_size=8192
    )
    kept = [w[w[:, 0, 0] == w[:, -1, 0]] for w in (np.asarray(b) for b in ds)]
    out = np.concatenate(kept)
    return out[:, :, 2:], out[:, 0, 1].astype(np.int64)


@dataclass(frozen=True)
class Windows:
    """Windows in sensor units: inputs x (n,T,F), the targets' own past (n,T,K), y (n,H,K)."""

    x: Float64
    history: Float64
    y: Float64
    sensor: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Prepared:
    """The three chronological splits, training-split statistics and data facts."""

    train: Windows
    val: Windows
    test: Windows
    sensors: list[str]
    mean: Float64
    std: Float64
    target_mean: Float64
    target_std: Float64
    step_scale: Float64
    """Per feature: RMS of first differences within the training split's gap-free runs."""
    cadence_s: float | None
    duplicates: int


def prepare(series: Sequence[Series], spec: WindowSpec) -> Prepared:
    """Cut every series at gaps and split boundaries, window the pieces, fit statistics."""
    data = np.concatenate([s.values for s in series])
    offsets = np.cumsum([0, *(len(s.times) for s in series)])
    cadences = [cadence(s.times) for s in series]
    parts: tuple[list[range], ...] = ([], [], [])
    for s, off, step in zip(series, offsets, cadences, strict=False):
        usable = np.asarray(~np.isnan(s.values).any(axis=1), dtype=bool)
        runs = segment_runs(s.times, usable, spec.max_gap * (step or 0.0))
        for k, part in enumerate(split_bounds(len(s.times), spec.val_frac, spec.test_frac)):
            parts[k].extend(range(off + r.start, off + r.stop) for r in clip_runs(runs, part))
    idx = ([spec.columns.index(c) for c in spec.features],
           [spec.columns.index(c) for c in spec.targets])  # fmt: skip
    train, val, test = (
        _windows(data, runs, spec, idx, offsets, split)
        for runs, split in zip(parts, ("training", "validation", "test"), strict=True)
    )
    rows = data[np.concatenate([np.arange(r.start, r.stop) for r in parts[0]])]
    mean, std = rows.mean(axis=0), _safe_std(rows)
    steps = np.concatenate([np.diff(data[r.start : r.stop], axis=0) for r in parts[0]])
    step_rms = np.sqrt((steps**2).mean(axis=0)) if len(steps) else np.ones(data.shape[1])
    step_rms = np.where(np.isfinite(step_rms) & (step_rms > 0), step_rms, 1.0)
    f, t = idx
    return Prepared(
        train, val, test, [s.name for s in series], mean[f], std[f], mean[t], std[t], step_rms[f],
        cadence_s=_common([c for c in cadences if c is not None]),
        duplicates=sum(s.duplicates for s in series),
    )  # fmt: skip


def _windows(
    data: Float64, runs: list[range], spec: WindowSpec,
    idx: tuple[list[int], list[int]], offsets: NDArray[np.int64], split: str,
) -> Windows:  # fmt: skip
    """One split's windows, split into inputs, the targets' history and targets."""
    t, h = spec.timesteps, spec.horizon
    w, first_row = window_runs(data, runs, t + h)
    if not len(w):
        longest = max((len(r) for r in runs), default=0)
        raise UserError(
            f"too few rows for one {split} window: it needs {t + h} consecutive gap-free rows "
            f"(timesteps + horizon), the longest {split} stretch has {longest}"
        )
    sensor = np.searchsorted(offsets, first_row, side="right") - 1
    f, k = idx
    return Windows(w[:, :t][..., f], w[:, :t][..., k], w[:, t:][..., k], sensor)


def _safe_std(rows: Float64) -> Float64:
    std = rows.std(axis=0)
    return np.where(np.isfinite(std) & (std > 0), std, 1.0)


def _common(cadences: list[float]) -> float | None:
    """The shared cadence of all series, or None when they differ by more than 10%."""
    if not cadences or max(cadences) > 1.1 * min(cadences):
        return None
    return float(np.median(cadences))
