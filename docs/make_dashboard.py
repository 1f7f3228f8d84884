"""Writes deploy/grafana-dashboard.json (run it after editing the panels here).

A dev script: the dashboard is data, but writing it as code keeps the panels
readable and every query in one list that tests/unit/test_deploy.py checks.
"""

from __future__ import annotations

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"


def target(ref: str, expr: str, legend: str) -> dict:
    return {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend}


def panel(pid: int, title: str, pos: tuple[int, int, int, int], targets: list[dict], *,
          unit: str = "short", description: str = "", overrides: list | None = None,
          kind: str = "timeseries", thresholds: list | None = None) -> dict:
    x, y, w, h = pos
    defaults: dict = {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 0}}
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
        defaults["custom"]["thresholdsStyle"] = {"mode": "line"}
    if kind == "stat":
        defaults = {"unit": unit}
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}} if kind == "timeseries" else {},
    }


def override(name: str, **props: object) -> dict:
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()]}


SENSOR = 'sensor_id="$sensor"'
panels = [
    panel(1, "Forecast and interval against readings: $sensor", (0, 0, 24, 10), [
        target("A", f"sensorcast_reading_value{{{SENSOR}}}", "reading"),
        target("B", f"sensorcast_forecast_value{{{SENSOR}}} offset $cadence", "forecast"),
        target("C", f"sensorcast_forecast_lower{{{SENSOR}}} offset $cadence", "lower"),
        target("D", f"sensorcast_forecast_upper{{{SENSOR}}} offset $cadence", "upper"),
    ], description="Readings (from Telegraf) and the forecast made one cadence earlier for "
       "them: each forecast is drawn at the time it was for (offset $cadence). The band is "
       "the prediction interval (lower..upper at the forecast's level).",
       overrides=[
        override("reading", color={"mode": "fixed", "fixedColor": "text"}, custom__lineWidth=2),
        override("forecast", color={"mode": "fixed", "fixedColor": "blue"}, custom__lineWidth=2),
        override("lower", color={"mode": "fixed", "fixedColor": "blue"}, custom__lineWidth=0),
        override("upper", color={"mode": "fixed", "fixedColor": "blue"}, custom__lineWidth=0,
                 custom__fillBelowTo="lower", custom__fillOpacity=20),
    ]),
    panel(2, "Throughput", (0, 10, 8, 8), [
        target("A", f"sum(rate(sensorcast_readings_total[{RATE}]))", "readings/s"),
        target("B", f"sum(rate(sensorcast_forecasts_total[{RATE}]))", "forecasts/s"),
    ], unit="reqps"),
    panel(3, "Dropped input and forecasts not published, by reason", (8, 10, 8, 8), [
        target("A", f"sum by (reason) (rate(sensorcast_dropped_total[{RATE}])) > 0",
               "input {{reason}}"),
        target("B", f"sum by (reason) (rate(sensorcast_forecasts_dropped_total[{RATE}])) > 0",
               "forecast {{reason}}"),
    ], unit="reqps", description="Only reasons with drops in the range are drawn."),
    panel(4, "Accuracy against persistence (scale-free)", (16, 10, 8, 8), [
        target("A", "sensorcast_online_relative_error", "{{model}} {{target}}"),
    ], description="Scaled error of the model divided by that of repeating the last reading, "
       "over about the last 100 forecasts. Below 1 (the line) the model helps.",
       thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
    panel(5, "Reading to forecast latency", (0, 18, 8, 8), [
        target("A", "histogram_quantile(0.5, sum by (le) "
               f"(rate(sensorcast_reading_to_forecast_seconds_bucket[{RATE}])))", "p50"),
        target("B", "histogram_quantile(0.99, sum by (le) "
               f"(rate(sensorcast_reading_to_forecast_seconds_bucket[{RATE}])))", "p99"),
    ], unit="s"),
    panel(6, "Process", (8, 18, 8, 8), [
        target("A", 'process_resident_memory_bytes{job="sensorcast"}', "resident memory"),
        target("B", f'rate(process_cpu_seconds_total{{job="sensorcast"}}[{RATE}])', "CPU cores"),
    ], unit="bytes", overrides=[override("CPU cores", unit="percentunit")]),
    panel(7, "Sensors tracked", (16, 18, 4, 4), [
        target("A", "sensorcast_sensors", "sensors"),
    ], kind="stat"),
    panel(8, "Broker connected", (20, 18, 4, 4), [
        target("A", "sensorcast_broker_connected", "connected"),
    ], kind="stat"),
    panel(9, "Model", (16, 22, 8, 4), [
        target("A", "sensorcast_model_info", "{{id}}"),
    ], kind="stat", description="The bundle being served (name@hash)."),
]

dashboard = {
    "title": "sensorcast",
    "uid": "sensorcast",
    "description": "Forecasts and intervals against readings, throughput, drops, accuracy. "
                   "Wiring: deploy/prometheus.yml and deploy/telegraf.conf.",
    "tags": ["sensorcast", "mqtt", "forecast"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "label": "Prometheus", "type": "datasource",
         "query": "prometheus", "current": {}, "hide": 0},
        {"name": "sensor", "label": "Sensor", "type": "query", "datasource": DS,
         "query": {"query": "label_values(sensorcast_forecast_value, sensor_id)",
                   "refId": "sensor"},
         "definition": "label_values(sensorcast_forecast_value, sensor_id)",
         "refresh": 2, "sort": 1, "multi": False, "includeAll": False, "current": {}},
        {"name": "cadence", "label": "Sensor cadence", "type": "custom",
         "query": "10s,30s,1m,5m,15m,1h", "current": {"text": "1m", "value": "1m"},
         "options": [{"text": v, "value": v, "selected": v == "1m"}
                     for v in ("10s", "30s", "1m", "5m", "15m", "1h")],
         "description": "How often the sensor reports: forecasts are shifted by it onto the "
                        "time they were for."},
    ]},
    "panels": panels,
}

out = Path(__file__).resolve().parents[1] / "deploy" / "grafana-dashboard.json"
out.write_text(json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n")
print(f"wrote {out}")
