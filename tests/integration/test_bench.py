"""`sensorcast bench` end to end on a few sensors: it runs and reports forecasts (no timing)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from sensorcast.bench import command as bench
from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle


def bench_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.configure_parser(parser)
    return parser.parse_args(list(argv))


def test_bench_runs_and_reports_forecasts(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "bench.json"
    args = bench_args(
        "--sensors", "3", "--duration", "1", "--rate", "200",
        "--bundle", str(DEFAULT_BUNDLE), "--json", str(out),
    )  # fmt: skip
    assert bench.run(args) == 0
    result = json.loads(out.read_text())
    assert result["readings_per_s"] > 0
    assert result["p50_ms"] > 0 and result["p99_ms"] >= result["p50_ms"]
    assert result["latency_missing"] == 0
    assert result["startup_s"] > 0 and result["rss_peak_mb"] > 0
    daemon = result["daemon"]
    assert daemon["sensorcast_forecasts_total"] > 0
    assert daemon["sensorcast_readings_total"] >= daemon["sensorcast_forecasts_total"]
    printed = capsys.readouterr().out
    assert "sustained readings/s" in printed and "forecasts published" in printed


@pytest.mark.parametrize("cadence", ["60", "1800"])
def test_bench_with_prefilled_windows_needs_no_warm_up(tmp_path: Path, cadence: str):
    """Whatever the readings' cadence: the snapshot's windows end a cadence before them."""
    out = tmp_path / "bench.json"
    args = bench_args(
        "--sensors", "50", "--duration", "1", "--prefill", "--no-latency", "--cadence", cadence,
        "--bundle", str(DEFAULT_BUNDLE), "--json", str(out),
    )  # fmt: skip
    assert bench.run(args) == 0
    daemon = json.loads(out.read_text())["daemon"]
    # every reading answered: the windows were full from the snapshot on
    assert daemon["sensorcast_forecasts_total"] == daemon["sensorcast_readings_total"] > 0


def test_bench_reports_a_bad_setting_in_one_line(capsys: pytest.CaptureFixture[str]):
    args = bench_args("--duration", "1", "--set", "no-equals-sign")
    assert bench.run(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "KEY=VALUE" in err


@pytest.mark.parametrize("where", ["missing/bench.json", "."])
def test_bench_refuses_a_json_file_it_could_not_write_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
):
    """A --json path in a missing directory, or a directory, is one line at once (it was a
    traceback, after the whole run)."""
    args = bench_args("--sensors", "3", "--duration", "1", "--json", str(tmp_path / where))
    assert bench.run(args) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "--json" in captured.err, captured.err
    assert "bench:" not in captured.err.replace("sensorcast bench: error:", "")  # nothing ran
    assert not captured.out


@pytest.mark.parametrize("key", ["nosuch", "input.max_sensor", "mqtt.tls.cafile", "log..level"])
def test_bench_refuses_a_set_key_that_is_no_setting(capsys: pytest.CaptureFixture[str], key: str):
    """The daemon takes --set as environment variables, which ignore a name that is no
    setting: a misspelt key measured the defaults and said nothing."""
    assert bench.run(bench_args("--duration", "1", "--set", f"{key}=1")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{key} is not a setting" in err, err


def test_bench_set_takes_nested_keys_and_mapping_entries() -> None:
    assert bench._overrides(["mqtt.tls.ca_file=/x", "input.fields.value=a.b", "routes=[]"]) == {
        "SENSORCAST_MQTT__TLS__CA_FILE": "/x",
        "SENSORCAST_INPUT__FIELDS__VALUE": "a.b",
        "SENSORCAST_ROUTES": "[]",
    }


def test_bench_with_nothing_to_measure_says_so(capsys: pytest.CaptureFixture[str]):
    """--no-throughput --no-latency and no open-loop run: it printed nothing, exit 0."""
    assert bench.run(bench_args("--no-throughput", "--no-latency")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing to measure" in err, err


@pytest.mark.parametrize(
    "bad", [["--duration", "nan"], ["--rate", "nan"], ["--duration", "inf"], ["--cadence", "inf"]]
)
def test_bench_refuses_a_duration_or_rate_that_is_no_positive_number(
    capsys: pytest.CaptureFixture[str], bad: list[str]
):
    assert bench.run(bench_args(*bad)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be positive numbers" in err


@pytest.mark.parametrize(
    "bad", [["--queue-ms", "nan"], ["--queue-ms", "-5"], ["--max-wait-ms", "inf"]]
)
def test_bench_refuses_work_in_flight_or_a_wait_that_is_no_number(
    capsys: pytest.CaptureFixture[str], bad: list[str]
):
    assert bench.run(bench_args(*bad)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and bad[0] in err, err


def test_bench_backlog_mode_drains_everything_on_one_connection(tmp_path: Path):
    out = tmp_path / "bench.json"
    args = bench_args(
        "--sensors", "40", "--backlog", "45", "--flood", "40", "--no-throughput",
        "--no-latency", "--bundle", str(DEFAULT_BUNDLE), "--json", str(out),
    )  # fmt: skip
    assert bench.run(args) == 0
    runs = {r["mode"]: r for r in json.loads(out.read_text())["open_loop"]}
    backlog, flood = runs["backlog"], runs["flood"]
    t = load_bundle(DEFAULT_BUNDLE).meta.timesteps
    assert backlog["expected"] == 40 * (45 - t + 1) == backlog["delivered"]
    assert backlog["duplicates"] == 0 and backlog["connections"] == 1
    assert backlog["readings_per_s"] > 0
    assert backlog["daemon"]["sensorcast_readings_total"] == 40 * 45  # all queued ones came
    assert flood["expected"] == 40 * (40 - t + 1) == flood["delivered"]
