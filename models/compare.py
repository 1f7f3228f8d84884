"""Compare normalisations with `sensorcast train` on every shipped real series.

`python -m sensorcast.models.compare` trains one bundle per series and
normalisation through the same code as `sensorcast train` and prints a Markdown
table of test MAE over persistence per step (below 1 beats repeating the last
value); `--json FILE` stores the figures. The README quotes its output.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from sensorcast.models import train
from sensorcast.models.bundle import load_bundle
from sensorcast.models.realdata import SERIES, RealSeries

MODES = {"last": ["--normalisation", "last"],
         "last-window": ["--normalisation", "last", "--step-scale", "window"],
         "window": ["--normalisation", "window"]}  # fmt: skip


def train_one(series: RealSeries, mode: str, opts: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Train on one series with one normalisation; return its bundle's metrics."""
    times, values = series.load()
    data = tmp / f"{series.name}.csv"
    with data.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["time", "value"])
        out.writerows(
            [f"{t:.0f}", "" if v != v else repr(float(v))]
            for t, v in zip(times, values, strict=True)
        )
    parser = argparse.ArgumentParser()
    train.configure_parser(parser)
    args = parser.parse_args([
        str(data), "--out", str(tmp / f"{series.name}-{mode}"), "--quiet",
        "--timesteps", str(opts.timesteps), "--horizon", str(opts.horizon),
        "--epochs", str(opts.epochs), "--units", str(opts.units), "--patience", "4",
        "--max-gap", str(series.max_gap), *MODES[mode],
    ])  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        train.run(args)
    return load_bundle(tmp / f"{series.name}-{mode}").meta.metrics


def ratios(metrics: dict[str, Any], split: str = "test") -> list[float]:
    steps = metrics["steps"]["value"][split]
    return [m / p for m, p in zip(steps["model"], steps["persistence"], strict=True)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", type=int, default=24)
    p.add_argument("--horizon", type=int, default=1)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--units", type=int, default=32)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--series", help="comma-separated names (default: all)")
    p.add_argument("--json", type=Path, help="store the figures here")
    opts = p.parse_args(argv)
    modes = opts.modes.split(",")
    chosen = [s for s in SERIES if not opts.series or s.name in opts.series.split(",")]
    results: dict[str, dict[str, Any]] = {}
    print("| series | kind | held out | " + " | ".join(modes) + " |")
    print("|---|---|---|" + "---|" * len(modes))
    with tempfile.TemporaryDirectory(prefix="sensorcast-compare-") as tmp:
        for s in chosen:
            row = {m: train_one(s, m, opts, Path(tmp)) for m in modes}
            results[s.name] = {m: {"test": ratios(v), "validation": ratios(v, "validation"),
                                   "coverage": v["coverage"]} for m, v in row.items()}  # fmt: skip
            cells = [" ".join(f"{r:.2f}" for r in results[s.name][m]["test"]) for m in modes]
            print(
                f"| {s.name} | {s.kind} | {'yes' if s.held_out else 'no'} | "
                + " | ".join(cells)
                + " |",
                flush=True,
            )
    if opts.json:
        opts.json.write_text(json.dumps({"options": vars(opts) | {"json": str(opts.json)},
                                         "results": results}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
