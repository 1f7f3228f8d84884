"""The demo's two faces: a live rich table for a terminal, plain lines for logs and pipes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from sensorcast.demo.fleet import SimulatedSensor
from sensorcast.demo.scoreboard import Scoreboard, SensorScore

WIDE = 140
"""From this many columns on, the table shows the extra columns."""
SCREEN_LINES = 12
"""Lines of the live view that are not sensor rows (title, header, totals, help, margin)."""


@dataclass(frozen=True)
class DemoInfo:
    """What the header and footer say about the running demo."""

    broker: str
    port: int
    model: str
    sensors: list[SimulatedSensor]
    interval: float
    timesteps: int
    started: float

    @property
    def watch_command(self) -> str:
        return f"mosquitto_sub -h 127.0.0.1 -p {self.port} -t 'forecasts/#' -v"

    def intro(self) -> list[str]:
        """What plain mode prints first: what runs where, how to watch and stop it."""
        return [
            f"sensorcast demo: {self.broker} broker on 127.0.0.1:{self.port}, model {self.model}, "
            f"{len(self.sensors)} sensors every {self.interval:g} s",
            f"watch the forecasts: {self.watch_command}",
            "stop with Ctrl-C",
        ]


def _num(value: float | None, decimals: int) -> str:
    return "-" if value is None else f"{value:.{decimals}f}"


def _uptime(started: float) -> str:
    s = int(time.monotonic() - started)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _mae_cells(s: SensorScore, decimals: int) -> tuple[Text, Text]:
    model, last = s.mae_model, s.mae_last
    if model is None or last is None:
        return Text("-", style="dim"), Text("-", style="dim")
    style = "green" if model < last else "red"
    return Text(_num(model, decimals + 1), style=style), Text(_num(last, decimals + 1))


ANOMALY_SHOWN_S = 10.0
"""Seconds a sensor's row stays marked after an anomaly event."""


def _learned(s: SensorScore) -> Text:
    """Model / last-value error at first -> recently: green as the sensor is learned."""
    learned = s.learned
    if learned is None:
        return Text("-", style="dim")
    first, now = learned
    return Text(f"{first:.2f}→{now:.2f}", style="green" if now < first else "")


def _band(s: SensorScore, d: int) -> str:
    if s.next_lower is None or s.next_upper is None:
        return ""
    return f" ±{(s.next_upper - s.next_lower) / 2:.{d}f}"


def _flag(s: SensorScore) -> Text:
    """The anomaly count, bold red while the last one is recent."""
    if not s.anomalies:
        return Text("-", style="dim")
    recent = s.last_anomaly is not None and time.time() - s.last_anomaly < ANOMALY_SHOWN_S
    return Text(f"{'! ' if recent else ''}{s.anomalies}", style="bold red" if recent else "")


def _row(sensor: SimulatedSensor, s: SensorScore, info: DemoInfo, wide: bool) -> list[str | Text]:
    d = sensor.spec.decimals
    if s.forecasts:
        style = "yellow" if s.persistence else ""
        nxt: str | Text = Text(_num(s.next_value, d) + _band(s, d), style=style)
    else:
        nxt = Text(f"{min(s.readings, info.timesteps)}/{info.timesteps}", style="dim")
    predicted = Text(_num(s.predicted, d), style="cyan" if s.predicted is not None else "dim")
    model, last = _mae_cells(s, d)
    cells: list[str | Text] = [
        sensor.sensor_id,
        Text(sensor.spec.unit, style="dim"),
        Text(_num(s.value, d), style="bold"),
        predicted,
        nxt,
        model,
        last,
        _learned(s),
        Text(_num(None if s.coverage is None else 100 * s.coverage, 0)),
        _flag(s),
    ]
    if wide:
        err = None if s.predicted is None or s.value is None else s.value - s.predicted
        ratio = s.mae_model / s.mae_last if s.mae_model is not None and s.mae_last else None
        cells[4:4] = [_num(err, d) if err is None else f"{err:+.{d}f}"]
        cells += [_num(None, 0) if ratio is None else f"{ratio - 1:+.0%}"]
        cells += [str(s.readings), str(s.forecasts)]
    return cells


def _table(wide: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    table.add_column("sensor", no_wrap=True, overflow="ellipsis", max_width=20)
    table.add_column("unit", no_wrap=True)
    numbers = ["reading", "forecast", "next ± 90%", "MAE model", "MAE last", "learned"]
    numbers += ["in %", "anom"]
    if wide:
        numbers[2:2] = ["error"]
        numbers += ["vs last", "readings", "forecasts"]
    for name in numbers:
        table.add_column(name, justify="right", no_wrap=True)
    return table


def live_view(board: Scoreboard, info: DemoInfo, width: int, height: int) -> RenderableType:
    """The whole screen: title, one row per sensor, totals and how to look and stop."""
    wide = width >= WIDE
    table = _table(wide)
    shown = info.sensors[: max(1, height - SCREEN_LINES)]
    with board.lock:
        for sensor in shown:
            table.add_row(*_row(sensor, board.scores[sensor.sensor_id], info, wide))
    if len(shown) < len(info.sensors):
        table.add_row(Text(f"… {len(info.sensors) - len(shown)} more", style="dim"))
    readings, forecasts = board.totals()
    better, scored = board.beats_persistence()
    title = Text.assemble(
        ("sensorcast demo", "bold"),
        f"  model {info.model}  ·  {len(info.sensors)} sensors every {info.interval:g} s",
        f"  ·  up {_uptime(info.started)}",
    )
    totals = Text(f"{readings} readings, {forecasts} forecasts")
    if scored:
        served = board.served_model()
        totals.append(f"  ·  model served on {served} of {scored} sensors, better on {better}")
    coverage = board.coverage()
    if coverage is not None:
        totals.append(f"  ·  {coverage:.0%} of readings inside their interval")
    explain = Text(
        "forecast: predicted one step ago for this reading  ·  next: for the coming one, "
        "± half its interval (yellow: the last value, where the model has not beaten it)\n"
        "MAE last: the error of taking the last value as the forecast (persistence)  ·  "
        "learned: model / last-value error over a sensor's first 30 readings → the last 30 "
        "(the daemon adapts to each sensor)\n"
        "in %: readings inside their interval  ·  anom: anomaly events (! just now)",
        style="dim",
    )
    footer = Text.assemble(
        ("broker ", "dim"),
        f"{info.broker} 127.0.0.1:{info.port}",
        ("  ·  ", "dim"),
        ("Ctrl-C", "bold"),
        " stops the demo\n",
        ("watch: ", "dim"),
        info.watch_command,
    )
    return Group(title, table, totals, explain, footer)


def plain_report(board: Scoreboard, info: DemoInfo, print_line: Callable[[str], None]) -> None:
    """One line per sensor, then the totals: for a pipe, a log file or `--no-live`."""
    up = time.monotonic() - info.started
    with board.lock:
        for sensor in info.sensors:
            s, d, unit = board.scores[sensor.sensor_id], sensor.spec.decimals, sensor.spec.unit
            mae = (
                f"MAE {_num(s.mae_model, d + 1)} vs last value {_num(s.mae_last, d + 1)}"
                if s.scored
                else "MAE -"
            )
            inside = "" if s.coverage is None else f", {s.coverage:.0%} inside interval"
            learned = s.learned
            if learned is not None:
                mae += f" (vs last value {learned[0]:.2f} at first, {learned[1]:.2f} lately)"
            print_line(
                f"[{up:5.0f}s] {sensor.sensor_id:<18} {_num(s.value, d):>9} {unit:<4}"
                f" forecast {_num(s.predicted, d):>9}  next {_num(s.next_value, d):>9}"
                f"{_band(s, d)}  {mae}  ({s.readings} readings, {s.forecasts} forecasts"
                f"{inside}, {s.anomalies} anomalies)"
            )
    readings, forecasts = board.totals()
    print_line(f"[{up:5.0f}s] total: {readings} readings, {forecasts} forecasts")


def summary(board: Scoreboard, info: DemoInfo) -> list[str]:
    """The last lines: how long it ran, what it did, how the model fared."""
    readings, forecasts = board.totals()
    better, scored = board.beats_persistence()
    seconds = time.monotonic() - info.started
    lines = [f"demo stopped after {seconds:.0f} s: {readings} readings, {forecasts} forecasts"]
    if scored:
        lines.append(
            f"the model was served on {board.served_model()} of {scored} sensors (the others "
            f"got the last value: the model had not beaten it there) and beat the last value "
            f"on {better} (MAE of what was published)"
        )
    coverage = board.coverage()
    if coverage is not None:
        lines.append(f"{coverage:.0%} of readings fell inside their forecast's 90% interval")
    with board.lock:
        anomalies = sum(s.anomalies for s in board.scores.values())
    faults = sum(1 for sensor in info.sensors for _, kind in sensor.faults if kind == "spike")
    lines.append(f"{anomalies} anomaly events; the fleet injected {faults} spikes")
    return lines
