"""Prometheus metrics of one daemon instance, on a registry of its own.

Besides the daemon's own series: process metrics (resident memory, CPU seconds,
open files: `process_*`), the Python platform (`python_info`) and garbage
collector, and `sensorcast_build_info` (versions of sensorcast and the libraries
that serve).
"""

from __future__ import annotations

import contextlib
import platform
import socket
import threading
from importlib.metadata import PackageNotFoundError, version
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    make_wsgi_app,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from sensorcast import __version__
from sensorcast.drops import Drop

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MAX_SCRAPES = 8
"""Connections to /metrics served at once; one more is closed as soon as it is accepted. Each
holds a thread and a file descriptor: without a bound, a client that opens connections and
sends nothing took the daemon to its limit of open files (1024 under systemd), where its
snapshots and broker reconnects failed and the accept loop spun a core."""
SCRAPE_TIMEOUT = 10.0
"""Seconds a connection to /metrics may stay silent before it is closed (wsgiref waits for
ever); a scrape sends its request at once."""
FORECAST_DROPS = ("superseded", "queue_full", "error", "not_finite", "shape", "too_large")
"""Why a forecast was not published: coalesced away under overload, the outbound queue was
full, the model call failed, a non-finite value, a window of another bundle's shape, larger
than the broker's Maximum Packet Size."""


class Metrics:
    """Counters, gauges and histograms the daemon updates; served only when configured."""

    def __init__(self) -> None:
        self._server: WSGIServer | None = None
        """The /metrics endpoint, once served."""
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("sensorcast_build", "sensorcast and the libraries it serves with", registry=r).info(
            build_info()
        )
        self.readings = Counter(
            "sensorcast_readings", "Readings accepted into a buffer", registry=r
        )
        self.dropped = Counter(
            "sensorcast_dropped", "Incoming messages dropped, by reason", ["reason"], registry=r
        )
        self.forecasts = Counter("sensorcast_forecasts", "Forecasts published", registry=r)
        self.forecasts_dropped = Counter(
            "sensorcast_forecasts_dropped",
            "Forecasts not published, by reason",
            ["reason"],
            registry=r,
        )
        self.sensors = Gauge("sensorcast_sensors", "Sensors tracked", registry=r)
        self.evicted = Counter("sensorcast_sensors_evicted", "Sensors evicted", registry=r)
        self.gap_resets = Counter("sensorcast_gap_resets", "Windows reset by a gap", registry=r)
        self.gap_fills = Counter(
            "sensorcast_gap_fills",
            "Gaps filled linearly up to the new reading (input.gap_fill = interpolate)",
            registry=r,
        )
        self.connected = Gauge("sensorcast_broker_connected", "1 while connected", registry=r)
        self.publishes_refused = Counter(
            "sensorcast_publishes_refused",
            "Publishes (forecasts, anomaly events, status, discovery) the broker refused, by "
            "its MQTT 5 reason",
            ["reason"],
            registry=r,
        )
        self.snapshot_failures = Counter(
            "sensorcast_snapshot_failures", "Buffer snapshots that could not be written", registry=r
        )
        self.connects = Counter(
            "sensorcast_broker_connects", "Connections made for readings", registry=r
        )
        self.input_held = Counter(
            "sensorcast_input_held_seconds",
            "Time reading was paused because windows waited for inference (backpressure)",
            registry=r,
        )
        self.batch_size = Histogram(
            "sensorcast_batch_size", "Windows per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.inference_seconds = Histogram(
            "sensorcast_inference_seconds",
            "Model time per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.latency_seconds = Histogram(
            "sensorcast_reading_to_forecast_seconds",
            "From a reading's arrival to its forecast being handed to the MQTT client",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.anomalies = Counter(
            "sensorcast_anomalies", "Anomaly events published (SPEC section 5a)", registry=r
        )
        self.on_persistence = Gauge(
            "sensorcast_sensors_on_persistence",
            "Sensors the guard serves the last value, as the model did worse there recently",
            registry=r,
        )
        self.guard_switches = Counter(
            "sensorcast_guard_switches",
            "Times the guard switched a sensor, by what it serves now",
            ["to"],
            registry=r,
        )
        for to in ("persistence", "model"):
            self.guard_switches.labels(to)
        self.adapted_sensors = Gauge(
            "sensorcast_adapted_sensors",
            "Sensors with an adapted head (at most adapt.max_sensors)",
            registry=r,
        )
        self.adapted_with_period = Gauge(
            "sensorcast_adapted_sensors_with_period",
            "Adapted sensors whose day (or year) is longer than the window, learned from the "
            "readings one period back",
            registry=r,
        )
        self.adapt_resets = Counter(
            "sensorcast_adapt_resets",
            "Adapted heads reset because they diverged (not finite, or a correction too large)",
            registry=r,
        )
        self.group_split_sensors = Gauge(
            "sensorcast_group_split_sensors",
            "Sensors whose readings also reach another member of the share group, "
            "interleaved in time: the broker splits them (README, 'Many daemons')",
            registry=r,
        )
        self.group_members = Gauge(
            "sensorcast_group_members",
            "Members of the share group heard from lately, this one included",
            registry=r,
        )
        self.model = Info("sensorcast_model", "The bundle being served", registry=r)
        self.online_mae = Gauge(
            "sensorcast_online_mae",
            "Rolling MAE of the first forecast step against the realised reading",
            ["model", "target"],
            registry=r,
        )
        self.online_persistence_mae = Gauge(
            "sensorcast_online_persistence_mae",
            "Rolling MAE of repeating the last reading, on the same readings",
            ["model", "target"],
            registry=r,
        )
        self.online_mase = Gauge(
            "sensorcast_online_mase",
            "Rolling mean of the first step's error scaled by its window's mean absolute "
            "change: every sensor counts alike, whatever its unit",
            ["model", "target"],
            registry=r,
        )
        self.online_persistence_mase = Gauge(
            "sensorcast_online_persistence_mase",
            "The same scaled error for repeating the last reading, on the same readings",
            ["model", "target"],
            registry=r,
        )
        self.online_relative_error = Gauge(
            "sensorcast_online_relative_error",
            "sensorcast_online_mase / sensorcast_online_persistence_mase: below 1 the model "
            "beats repeating the last value",
            ["model", "target"],
            registry=r,
        )
        self.online_scored = Counter(
            "sensorcast_online_scored",
            "Forecasts scored against their realised reading",
            ["model"],
            registry=r,
        )
        # Per model (SPEC 3a): one label value per bundle served, at most one per route; a
        # reload removes the series of a model no longer served (forget_model).
        self.model_readings = Counter(
            "sensorcast_model_readings",
            "Readings accepted into a buffer, by the model serving the sensor",
            ["model"],
            registry=r,
        )
        self.model_dropped = Counter(
            "sensorcast_model_dropped",
            "Readings of a routed sensor dropped (payload or time rules), by model and reason",
            ["model", "reason"],
            registry=r,
        )
        self.model_forecasts = Counter(
            "sensorcast_model_forecasts", "Forecasts published, by model", ["model"], registry=r
        )
        self.model_forecasts_dropped = Counter(
            "sensorcast_model_forecasts_dropped",
            "Forecasts not published, by model and reason",
            ["model", "reason"],
            registry=r,
        )
        self.model_inference_seconds = Histogram(
            "sensorcast_model_inference_seconds",
            "Model time per batch, by model",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_sensors = Gauge(
            "sensorcast_model_sensors", "Sensors tracked, by model", ["model"], registry=r
        )
        self.route_sensors = Gauge(
            "sensorcast_route_sensors",
            "Sensors tracked per route (route: its index in routes, or default for model.path)",
            ["route", "sensors", "model"],
            registry=r,
        )
        self.window_restarts = Counter(
            "sensorcast_route_window_restarts",
            "Windows started over because a reload moved their sensor to a route whose model "
            "takes another window shape",
            registry=r,
        )
        self._drop = {reason: self.dropped.labels(reason.value) for reason in Drop}
        for reason in FORECAST_DROPS:  # every label from the start, so rates work at once
            self.forecasts_dropped.labels(reason)

    def forget_model(self, model_id: str, targets: list[str]) -> None:
        """Remove a model's accuracy series (after a reload replaced it), so they do not
        stay frozen at their last values."""
        for gauge in (
            self.online_mae,
            self.online_persistence_mae,
            self.online_mase,
            self.online_persistence_mase,
            self.online_relative_error,
        ):
            for target in targets:
                with contextlib.suppress(KeyError):
                    gauge.remove(model_id, target)
        with contextlib.suppress(KeyError):
            self.online_scored.remove(model_id)
        for family in (
            self.model_readings,
            self.model_forecasts,
            self.model_inference_seconds,
            self.model_sensors,
        ):
            with contextlib.suppress(KeyError):
                family.remove(model_id)
        for reason in Drop:
            with contextlib.suppress(KeyError):
                self.model_dropped.remove(model_id, reason.value)
        for why in FORECAST_DROPS:
            with contextlib.suppress(KeyError):
                self.model_forecasts_dropped.remove(model_id, why)

    def drop(self, reason: Drop) -> None:
        self._drop[reason].inc()

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics on `host`:`port` from a thread of its own (see MAX_SCRAPES)."""
        self._server = serve_wsgi(host, port, make_wsgi_app(self.registry))

    def close(self) -> None:
        """Stop serving /metrics (if it was served)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (for status output and tests)."""
        v = self.registry.get_sample_value(name, labels or None)
        return 0.0 if v is None else v


class _ScrapeHandler(WSGIRequestHandler):
    """One connection to /metrics: silent (no access log), closed after SCRAPE_TIMEOUT of
    silence."""

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(SCRAPE_TIMEOUT)  # read here, so a test may lower it

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ScrapeServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most MAX_SCRAPES at once."""

    daemon_threads = True

    def server_activate(self) -> None:
        self._slots = threading.BoundedSemaphore(MAX_SCRAPES)
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # closed at once: the scraper retries later
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread took it (one could not be started)
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve_wsgi(host: str, port: int, app: Any) -> WSGIServer:
    """`app` served on `host`:`port` (IPv4 or IPv6, as `host` resolves) from a daemon thread."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server_class = type("_Server", (_ScrapeServer,), {"address_family": family})
    server: WSGIServer = make_server(
        str(address[0]), port, app, server_class, handler_class=_ScrapeHandler
    )
    threading.Thread(target=server.serve_forever, name="sensorcast-metrics", daemon=True).start()
    return server


def build_info() -> dict[str, str]:
    """Versions for `sensorcast_build_info`."""
    info = {"version": __version__, "python": platform.python_version()}
    libraries = (("paho_mqtt", "paho-mqtt"), ("numpy", "numpy"), ("litert", "ai-edge-litert"))
    for label, dist in libraries:
        try:
            info[label] = version(dist)
        except PackageNotFoundError:
            info[label] = "none"
    return info
