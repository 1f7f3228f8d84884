"""Draws docs/forecast.png from a real run: the README's forecast-against-readings chart.

A dev script (matplotlib is not a dependency of sensorcast: `pip install matplotlib`).
It starts a private mosquitto and `sensorcast run` with the shipped model as a user
would, replays the shipped office sensor series (models/data/room_occupancy.csv,
with their own timestamps), collects the forecasts off MQTT, and plots each
forecast at the time it was for against the reading that then arrived.

    python docs/make_chart.py [--out docs/forecast.png]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sensorcast.models import DATA_DIR
from sensorcast.sandbox import Mosquitto

SERIES = (("temperature", "office temperature", "°C"), ("co2", "office CO2", "ppm"))
SHOWN = (1423465200.0, 1423551600.0)
"""2015-02-09 07:00 to 2015-02-10 07:00 UTC: one working day of the replay, drawn."""


def errors(readings: list[tuple[float, float]], forecasts: list[dict]) -> tuple[float, float]:
    """MAE of the one-step forecasts and of persistence, on the readings they were for."""
    index = {t: i for i, (t, _) in enumerate(readings)}
    model, last = [], []
    for doc in forecasts:
        i = index.get(doc["ts"])
        if i is None or i + 1 >= len(readings):
            continue
        actual = readings[i + 1][1]
        model.append(abs(doc["forecast"][0] - actual))
        last.append(abs(readings[i][1] - actual))
    return sum(model) / len(model), sum(last) / len(last)


def replay(port: int) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[dict]]]:
    """Publish every reading with its timestamp; return readings and forecasts by sensor."""
    with (DATA_DIR / "room_occupancy.csv").open() as f:
        rows = list(csv.DictReader(f))
    forecasts: dict[str, list[dict]] = {name: [] for name, _, _ in SERIES}
    readings: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in SERIES}
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        with lock:
            forecasts[doc["sensor_id"]].append(doc)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="chart")
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("forecasts/+", qos=1)
    client.loop_start()
    time.sleep(0.5)
    for row in rows:
        ts = datetime.fromisoformat(row["time"]).replace(tzinfo=UTC).timestamp()
        for name, _, _ in SERIES:
            value = float(row[name])
            readings[name].append((ts, value))
            payload = json.dumps({"value": value, "ts": ts})
            client.publish(f"sensors/{name}/reading", payload, qos=1).wait_for_publish(5)
        time.sleep(0.002)
    expected = sum(len(v) for v in readings.values()) - 2 * 19
    deadline = time.monotonic() + 30
    while sum(len(v) for v in forecasts.values()) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    client.loop_stop()
    client.disconnect()
    return readings, forecasts


def plot(readings: dict, forecasts: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(SERIES), 1, figsize=(9, 5.2), sharex=True, dpi=90)
    for ax, (name, title, unit) in zip(axes, SERIES, strict=True):
        model_mae, last_mae = errors(readings[name], forecasts[name])
        shown = [(t, v) for t, v in readings[name] if SHOWN[0] <= t <= SHOWN[1]]
        times = [datetime.fromtimestamp(t, UTC) for t, _ in shown]
        ax.plot(times, [v for _, v in shown], color="0.2", lw=1.4, marker=".", ms=3,
                label="reading")  # fmt: skip
        docs = [d for d in forecasts[name] if d.get("at") and SHOWN[0] <= d["at"][0] <= SHOWN[1]]
        at = [datetime.fromtimestamp(d["at"][0], UTC) for d in docs]
        first = [d["forecast"][0] for d in docs]
        ax.plot(at, first, color="tab:blue", lw=1.2, label="forecast one step ahead")
        if docs and "lower" in docs[0]:
            level = docs[0].get("level", 0.9)
            ax.fill_between(at, [d["lower"][0] for d in docs], [d["upper"][0] for d in docs],
                            color="tab:blue", alpha=0.18, lw=0,
                            label=f"{level:.0%} interval")  # fmt: skip
        ax.set_title(f"{title}: MAE over the whole replay {model_mae:.3g} {unit}, repeating "
                     f"the last reading {last_mae:.3g} {unit}", fontsize=9, loc="left")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    axes[-1].xaxis.set_major_locator(mdates.HourLocator(byhour=range(0, 24, 3)))
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    axes[-1].set_xlabel("9 to 10 February 2015, UTC (one day of the five replayed)")
    model = forecasts[SERIES[0][0]][0]["model"] if forecasts[SERIES[0][0]] else "?"
    fig.suptitle(f"sensorcast run, shipped model {model}: real office sensors, 16-minute "
                 "readings", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(out)
    from PIL import Image  # comes with matplotlib; a 64-colour palette keeps the PNG small

    Image.open(out).convert("RGB").quantize(64).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("forecast.png"))
    args = parser.parse_args()
    broker = Mosquitto().start()
    env = {
        **os.environ,
        "SENSORCAST_MQTT__HOST": "127.0.0.1",
        "SENSORCAST_MQTT__PORT": str(broker.port),
        "SENSORCAST_MQTT__CLIENT_ID": "chart-run",
    }
    daemon = subprocess.Popen([Path(sys.executable).with_name("sensorcast"), "run"], env=env)
    try:
        time.sleep(3)
        readings, forecasts = replay(broker.port)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        broker.close()
    plot(readings, forecasts, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
