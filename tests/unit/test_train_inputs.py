"""`sensorcast train` on awkward but valid data, and refusals made before any training."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import pytest

from sensorcast.errors import UserError
from sensorcast.models import report, train
from sensorcast.models.bundle import (
    MAX_COLUMNS,
    MAX_HORIZON,
    MAX_SIGNATURE_VALUES,
    MAX_TIMESTEPS,
    META_FILE,
    load_bundle,
)

TINY = ["--timesteps", "8", "--epochs", "1", "--units", "4", "--batch-size", "64", "--quiet"]


def run_train(data: Path, out: Path, *extra: str) -> str:
    """Run `train` in-process on `data` with a tiny network; return what it printed."""
    parser = argparse.ArgumentParser()
    train.configure_parser(parser)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert train.run(parser.parse_args([str(data), "--out", str(out), *TINY, *extra])) == 0
    return printed.getvalue()


def minute_csv(tmp_path: Path, values: list[str]) -> Path:
    """`time,value` with ISO-8601 times a minute apart."""
    rows = [f"2024-01-01T{i // 60:02d}:{i % 60:02d}:00,{v}" for i, v in enumerate(values)]
    path = tmp_path / "data.csv"
    path.write_text("time,value\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.train
@pytest.mark.parametrize(
    ("stuck_from", "extra"),
    [(0, ()), (420, ("--seq2seq", "--normalisation", "window"))],
)
def test_a_flat_series_trains_into_a_strict_json_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stuck_from: int, extra: tuple[str, ...]
) -> None:
    """All flat, or a sensor stuck for the last 30%: persistence is exact there."""
    pytest.importorskip("tensorflow")
    values = [f"{5.0 + (i % 7) * 0.1 if i < stuck_from else 5.0}" for i in range(600)]
    out = tmp_path / "flat"
    printed = run_train(minute_csv(tmp_path, values), out, *extra)
    assert "n/a: persistence is exact (error 0)" in printed

    def refuse(constant: str) -> None:
        raise AssertionError(f"bundle.json holds {constant}")

    json.loads((out / META_FILE).read_text(), parse_constant=refuse)
    assert report.run_inspect(out) == 0
    assert report.format_metrics(load_bundle(out).meta.metrics) in capsys.readouterr().out


def wide_csv(tmp_path: Path, columns: int) -> Path:
    path = tmp_path / "wide.csv"
    names = ",".join(f"c{i}" for i in range(columns))
    path.write_text(
        f"time,{names}\n" + "".join(f"{t * 60},{'1,' * (columns - 1)}1\n" for t in range(3))
    )
    return path


@pytest.mark.train
@pytest.mark.parametrize(
    ("columns", "extra", "message"),
    [
        (1, ["--horizon", str(MAX_HORIZON + 1)], f"--horizon must be at most {MAX_HORIZON}"),
        (1, ["--seq2seq", "--timesteps", str(MAX_HORIZON + 1)], "--timesteps \\(the horizon\\)"),
        (
            1,
            ["--timesteps", str(MAX_TIMESTEPS + 1)],
            f"--timesteps must be at most {MAX_TIMESTEPS}",
        ),
        (1, ["--features", "c0,c0"], "--features names 'c0' twice"),
        (2, ["--targets", "c1,c0,c1"], "--targets names 'c1' twice"),
        (MAX_COLUMNS + 1, [], f"{MAX_COLUMNS + 1} features: a bundle takes at most {MAX_COLUMNS}"),
        (
            17,
            ["--timesteps", str(MAX_TIMESTEPS)],
            f"exceed a bundle's {MAX_SIGNATURE_VALUES} values",
        ),
    ],
)
def test_what_the_bundle_cannot_hold_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, columns: int, extra: list[str], message: str
) -> None:
    pytest.importorskip("tensorflow")

    def no_training(*_: object) -> None:
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(train, "fit", no_training)
    with pytest.raises(UserError, match=message) as caught:
        run_train(wide_csv(tmp_path, columns), tmp_path / "x", *extra)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "x").exists()


@pytest.mark.train
def test_an_out_directory_that_cannot_be_made_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--out notes.txt/bundle` used to be found out only when the bundle was written, after
    the whole training run."""
    pytest.importorskip("tensorflow")
    monkeypatch.setattr(train, "fit", lambda *_: pytest.fail("trained before refusing"))
    (notes := tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=f"cannot be made: {notes} is not a directory$"):
        run_train(minute_csv(tmp_path, [str(i % 7) for i in range(300)]), notes / "sub" / "b")


@pytest.mark.train
def test_millisecond_times_are_converted_with_a_notice(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    rows = "".join(f"{1_700_000_000_000 + i * 60_000},{i % 7}\n" for i in range(300))
    (data := tmp_path / "ms.csv").write_text("time,value\n" + rows)
    printed = run_train(data, tmp_path / "ms")  # --quiet, yet the notice is shown
    notice = "ms.csv: the times are epoch milliseconds (too large for seconds); converted"
    assert printed.splitlines()[0].startswith(notice)
    assert load_bundle(tmp_path / "ms").meta.cadence_s == 60.0


class Trained(Exception):
    """Raised in place of training, once the data has been read and windowed."""


@pytest.mark.train
def test_rows_left_out_for_a_repeated_time_are_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sensors in a file without a sensor_id column: half the rows used to be dropped as
    repeated times of one series, said nowhere but in bundle.json."""
    pytest.importorskip("tensorflow")
    rows = "".join(f"{i // 2 * 60},{'ab'[i % 2]},{i % 7}\n" for i in range(600))
    (data := tmp_path / "two.csv").write_text("time,device,value\n" + rows)

    def no_training(*_: object) -> None:
        raise Trained

    monkeypatch.setattr(train, "fit", no_training)
    parser = argparse.ArgumentParser()
    train.configure_parser(parser)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(Trained):
        train.run(parser.parse_args([str(data), "--out", str(tmp_path / "x"), *TINY]))
    assert printed.getvalue().splitlines()[0] == (  # --quiet, yet the notice is shown
        "two.csv: left out 300 of 600 rows, whose time repeats an earlier row's of the same "
        "series; a file of several sensors needs a sensor_id column"
    )


@pytest.mark.parametrize("step", ["nan", "inf", "-60"])
def test_a_resample_step_that_is_no_positive_number_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """It used to reach numpy's arange: a traceback (cannot compute length) for nan and inf."""
    pytest.importorskip("tensorflow")
    monkeypatch.setattr(train, "fit", lambda *_: pytest.fail("trained before refusing"))
    history = Path(__file__).parents[1] / "data" / "homeassistant_history.csv"
    with pytest.raises(UserError, match="--resample must be a positive number of seconds"):
        run_train(history, tmp_path / "x", "--resample", step)
    assert not (tmp_path / "x").exists()


@pytest.mark.train
def test_a_column_without_any_value_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feature column left empty throughout (an export whose sensor never reported) was
    refused as 'too few rows for one training window: ... the longest training stretch
    has 0', which named neither the column nor why."""
    pytest.importorskip("tensorflow")
    monkeypatch.setattr(train, "fit", lambda *_: pytest.fail("trained before refusing"))
    rows = [f"{1_700_000_000 + 60 * i},{20 + i % 7},{'' if i % 2 else 'n/a'}" for i in range(300)]
    (data := tmp_path / "data.csv").write_text("time,temperature,humidity\n" + "\n".join(rows))
    with pytest.raises(UserError, match=r"^data\.csv: column 'humidity' has no value in any row$"):
        run_train(data, tmp_path / "x", "--features", "temperature,humidity")
