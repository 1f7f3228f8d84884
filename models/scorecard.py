"""Score a univariate bundle per series and per step on the shipped real series.

`python -m sensorcast.models.scorecard [BUNDLE]` prints, for every series in
`realdata.SERIES` and for synthetic random walks, the test tail's MAE of the
bundle's forecasts (through LiteRT, as the daemon serves them), of persistence
and of a seasonal-naive forecast at the same lead, and the coverage of the
bundle's calibrated 90% interval. The README's default-model table is its output.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from sensorcast.models import DEFAULT_BUNDLE, dataset, report
from sensorcast.models.bundle import Bundle, load_bundle
from sensorcast.models.realdata import SERIES
from sensorcast.models.runtime import Forecaster

Float64 = NDArray[np.float64]
TEST_FRAC = 0.15
WALKS, WALK_ROWS, WALK_SEED = 20, 600, 7
"""Synthetic random walks: Gaussian and heavy-tailed (Student t, 3 dof) steps."""


@dataclass(frozen=True)
class Score:
    """Per-step MAE of the model, persistence and seasonal naive, and 90% coverage."""

    name: str
    kind: str
    held_out: bool
    windows: int
    model: Float64
    persistence: Float64
    seasonal: Float64
    season: str
    coverage90: Float64

    @property
    def ratio(self) -> Float64:
        out: Float64 = self.model / self.persistence
        return out


def test_windows(
    times: Float64, values: Float64, t: int, h: int, max_gap: float, season: int | None
) -> tuple[Float64, Float64, Float64]:
    """Windows (n, t), targets (n, h) and seasonal-naive forecasts (n, h, NaN where the
    season reaches before the data) of the last `TEST_FRAC` of a series, gap-free."""
    step = dataset.cadence(times) or 1.0
    runs = dataset.segment_runs(times, ~np.isnan(values), max_gap * step)
    tail = range(round(len(values) * (1 - TEST_FRAC)) - t, len(values))
    starts = [
        i for r in dataset.clip_runs(runs, tail) for i in range(r.start, r.stop - t - h + 1)
    ]  # fmt: skip
    idx = np.asarray(starts, dtype=int)[:, None]
    x, y = values[idx + np.arange(t)], values[idx + t + np.arange(h)]
    lead = np.arange(1, h + 1)
    if season is None:
        return x, y, np.full_like(y, np.nan)
    back = idx + t - 1 + lead - season * np.ceil(lead / season).astype(int)
    seasonal = np.where(back >= 0, values[np.maximum(back, 0)], np.nan)
    return x, y, seasonal


def season_of(cadence_s: float) -> tuple[str, int] | None:
    """The daily (or, for weekly and monthly data, yearly) season in steps."""
    return report.season_steps(cadence_s, 100_000)


def score_series(
    forecaster: Forecaster, name: str, kind: str, held_out: bool,
    times: Float64, values: Float64, max_gap: float,
) -> Score:  # fmt: skip
    meta = forecaster.meta
    season = season_of(dataset.cadence(times) or 0.0)
    x, y, seasonal = test_windows(
        times, values, meta.timesteps, meta.horizon, max_gap, season[1] if season else None
    )
    pred, scale = forecaster.forecast_scaled(x[..., None])
    pred, scale = pred[..., 0], scale[..., 0]
    half = np.asarray(meta.interval_calibration.quantile(0.9))[:, 0] * scale
    return Score(
        name, kind, held_out, len(x),
        np.abs(pred - y).mean(axis=0), np.abs(x[:, -1:] - y).mean(axis=0),
        _mean_where_known(np.abs(seasonal - y)), season[0] if season else "-",
        (np.abs(pred - y) <= half).mean(axis=0),
    )  # fmt: skip


def _mean_where_known(errors: Float64) -> Float64:
    """Per-step mean over the windows where the error is known; NaN where none is."""
    known = ~np.isnan(errors)
    total = np.where(known, errors, 0.0).sum(axis=0)
    count = known.sum(axis=0)
    out: Float64 = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def random_walks(seed: int = WALK_SEED) -> list[tuple[str, Float64, Float64]]:
    """Synthetic random walks, where persistence is the best possible forecast."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(WALKS):
        steps = rng.normal(0, 1, WALK_ROWS) if i % 2 else rng.standard_t(3, WALK_ROWS)
        level = 10 ** rng.uniform(-2, 4)
        walk = np.cumsum(steps) * rng.uniform(0.001, 0.05)
        values: Float64 = level * (rng.uniform(-5, 50) + walk)
        out.append((f"walk_{i:02d}", 60.0 * np.arange(WALK_ROWS, dtype=np.float64), values))
    return out


def scorecard(bundle: Bundle) -> list[Score]:
    """One `Score` per real series and one for all synthetic random walks together."""
    forecaster = Forecaster(bundle)
    scores = []
    for s in SERIES:
        times, values = s.load()
        scores.append(score_series(forecaster, s.name, s.kind, s.held_out, times, values,
                                   s.max_gap))  # fmt: skip
    walks = [score_series(forecaster, n, "walk", True, t, v, 1.5) for n, t, v in random_walks()]
    mean = {k: np.mean([getattr(w, k) for w in walks], axis=0)
            for k in ("model", "persistence", "coverage90")}  # fmt: skip
    scores.append(Score(f"random walks ({WALKS})", "walk", True, sum(w.windows for w in walks),
                        mean["model"], mean["persistence"], np.full(bundle.meta.horizon, np.nan),
                        "-", mean["coverage90"]))  # fmt: skip
    return scores


def markdown(scores: list[Score]) -> str:
    """The README table: per series, model / persistence / seasonal-naive MAE per step."""
    h = len(scores[0].model)
    steps = " | ".join(f"+{i + 1}" for i in range(h))
    lines = [f"| series | kind | held out | windows | measure | {steps} |",
             "|---|---|---|---|---|" + "---|" * h]  # fmt: skip
    for s in scores:
        rows = (
            ("model MAE", s.model, 4),
            ("persistence MAE", s.persistence, 4),
            (f"seasonal naive ({s.season}) MAE", s.seasonal, 4),
            ("model / persistence", s.ratio, 3),
            ("90% interval coverage", s.coverage90, 3),
        )
        for label, values, digits in rows:
            cells = " | ".join("-" if np.isnan(v) else f"{v:.{digits}g}" for v in values)
            head = f"{s.name} | {s.kind} | {'yes' if s.held_out else 'no'} | {s.windows}"
            lines.append(f"| {head} | {label} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", nargs="?", type=Path, default=DEFAULT_BUNDLE)
    opts = p.parse_args(argv)
    print(markdown(scorecard(load_bundle(opts.bundle))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
