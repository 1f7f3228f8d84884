"""The daemon: wiring, signals and lifecycle of `sensorcast run`.

Threads: paho's network thread parses readings and fills the buffers (and
does nothing else); the inference worker batches ready windows through the
model and publishes forecasts; the main thread handles signals, reloads,
snapshots, idle eviction and the systemd watchdog. SIGTERM/SIGINT drain and
exit 0; SIGHUP reloads the model bundle.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sensorcast.accuracy import OnlineAccuracy
from sensorcast.buffer import SensorTable, Window
from sensorcast.config import Settings
from sensorcast.discovery import HomeAssistantDiscovery
from sensorcast.drops import Drop, DropLog
from sensorcast.errors import UserError
from sensorcast.handoff import ReadyQueue
from sensorcast.inference import InferenceWorker, ServedBundle
from sensorcast.metrics import Metrics
from sensorcast.models.bundle import Bundle, BundleMeta, load_bundle
from sensorcast.mqttio import MQTTLink
from sensorcast.readings import PayloadParser, read_message
from sensorcast.state import load_scores, load_snapshot, save_scores, save_snapshot
from sensorcast.systemd import Notifier
from sensorcast.topics import TopicTemplate

log = logging.getLogger(__name__)

TICK = 0.5
"""Seconds between housekeeping rounds of the main thread."""


def _served(bundle: Bundle, settings: Settings) -> ServedBundle:
    return ServedBundle.load(
        bundle,
        backend=settings.model.backend,
        threads=settings.model.threads,
        level=settings.output.level,
        anomaly_level=settings.anomaly.level,
        max_sensors=settings.input.max_sensors,
        guard=settings.output.guard,
        anomalies=settings.anomaly.enabled,
    )


class Service:
    """One running daemon, built from validated settings."""

    def __init__(self, settings: Settings, reload_settings: Callable[[], Settings] | None = None):
        self.settings = settings
        self._reload_settings = reload_settings
        self.metrics = Metrics()
        self.notifier = Notifier()
        bundle = load_bundle(settings.model.path)
        self.meta: BundleMeta = bundle.meta
        served = _served(bundle, settings)
        self.input = TopicTemplate(settings.input.topic, allow_wildcards=True)
        self.output = TopicTemplate(settings.output.topic, allow_wildcards=False)
        anomaly = settings.anomaly
        self.anomaly_topic = (
            TopicTemplate(anomaly.topic, allow_wildcards=False) if anomaly.enabled else None
        )
        self.parser = self._make_parser(bundle.meta)
        self.table = self._make_table(bundle.meta)
        self.lock = threading.Lock()
        self.queue = ReadyQueue(settings.inference.max_pending)
        self.link = MQTTLink(
            settings.mqtt,
            self.input.subscription,
            self.on_message,
            self.metrics,
            max_queue=settings.output.max_queue,
            retain_forecasts=settings.output.retain,
        )
        self.accuracy = OnlineAccuracy(
            self.metrics,
            bundle.meta.features,
            bundle.meta.targets,
            bundle.meta.model_id,
            settings.input.max_sensors,
        )
        self.worker = InferenceWorker(
            self.queue,
            served,
            self.link.publish,
            self.output,
            self.metrics,
            max_batch=settings.inference.max_batch,
            max_wait=settings.inference.max_wait_ms / 1000,
            accuracy=self.accuracy,
            anomaly_topic=self.anomaly_topic,
        )
        self.stuck_after = 30.0
        """Seconds a batch may take while windows wait before the watchdog is withheld."""
        self.discovery = self._make_discovery(bundle.meta)
        self.should_exit = threading.Event()
        self._reload_requested = threading.Event()
        self._drop_log = DropLog(settings.log.drop_interval)
        self._set_model_info(bundle.meta)

    def _make_parser(self, meta: BundleMeta) -> PayloadParser:
        cfg = self.settings.input
        try:
            return PayloadParser(
                meta.features,
                fields=cfg.fields,
                ts_field=cfg.ts_field,
                max_bytes=cfg.max_payload_bytes,
            )
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def _make_table(self, meta: BundleMeta) -> SensorTable:
        cfg = self.settings.input
        return SensorTable(
            meta.timesteps,
            len(meta.features),
            max_sensors=cfg.max_sensors,
            max_gap=cfg.max_gap,
            gap_fill=cfg.gap_fill,
            max_fill_steps=cfg.max_fill_steps,
        )

    def _make_discovery(self, meta: BundleMeta) -> HomeAssistantDiscovery | None:
        ha = self.settings.homeassistant
        if not ha.discovery:
            return None
        discovery = HomeAssistantDiscovery(
            ha.prefix,
            self.settings.mqtt.client_id,
            self.link.status_topic,
            self.output,
            meta,
            self.link.publish,
        )
        self.link.on_connected.append(discovery.forget)
        return discovery

    def _set_model_info(self, meta: BundleMeta) -> None:
        self.metrics.model.info({"name": meta.name, "hash": meta.short_hash, "id": meta.model_id})

    # --- network thread -------------------------------------------------
    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Parse one message and buffer it; never raises (the network loop must live)."""
        try:
            self._ingest(topic, payload, time.time(), retained)
        except Exception:
            log.exception("unexpected error handling a message on %r", topic[:200])

    def _ingest(self, topic: str, payload: bytes, received: float, retained: bool = False) -> None:
        message = read_message(self.input, self.parser, topic, payload, received, retained)
        if isinstance(message, Drop):
            return self._drop(message, topic)
        sensor_id, ts, reading = message
        with self.lock:
            previous = self.table.last_ts(sensor_id)
            result = self.table.push(sensor_id, ts, reading.values, received)
        if isinstance(result, Drop):
            return self._drop(result, topic)
        self.metrics.readings.inc()
        if previous is not None:
            self.accuracy.observe(sensor_id, previous, reading.values)
        if isinstance(result, Window):
            self.queue.put(result, received)
            if self.discovery is not None:
                self.discovery.announce(sensor_id)
        return None

    def _drop(self, reason: Drop, topic: str) -> None:
        self.metrics.drop(reason)
        self._drop_log(reason, topic)

    # --- main thread ------------------------------------------------------
    def request_exit(self, *_: object) -> None:
        self.should_exit.set()

    def request_reload(self, *_: object) -> None:
        self._reload_requested.set()

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    """What `sensorcast run` handles: stop on the first two, reload on SIGHUP."""

    def on_signal(self, sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            self.request_reload()
        else:
            log.info("received %s, stopping", sig.name)
            self.should_exit.set()

    def start(self) -> None:
        """Restore state and start the worker and the connection (non-blocking)."""
        state_dir = self.settings.state.dir
        if state_dir is not None:
            with self.lock:
                load_snapshot(state_dir, self.table, self.meta)
            load_scores(state_dir, self.worker.served.scores, self.meta)
        self.metrics.sensors.set(len(self.table))
        if self.settings.metrics.port is not None:
            self.metrics.serve(self.settings.metrics.host, self.settings.metrics.port)
        self.worker.start()
        self.link.start()
        log.info(
            "serving %s (%s, timesteps %d, features %s) from %s",
            self.meta.model_id,
            self.settings.model.backend,
            self.meta.timesteps,
            ",".join(self.meta.features),
            self.settings.model.path,
        )
        self.notifier.ready(f"serving {self.meta.model_id}")

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the exit code."""
        self.start()
        last_snapshot = time.monotonic()
        last_ping = 0.0
        while not self.should_exit.wait(TICK):
            now = time.monotonic()
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload()
            if self.settings.state.dir and now - last_snapshot >= self.settings.state.interval:
                self.snapshot()
                last_snapshot = now
            self._housekeeping()
            interval = self.notifier.watchdog_interval
            if interval is not None and now - last_ping >= interval and self.healthy():
                self.notifier.watchdog()
                last_ping = now
        self.shutdown()
        return 0

    def healthy(self) -> bool:
        """The network thread is alive and the worker is not stuck on a batch."""
        net_ok = self.link.alive()
        busy_since = self.worker.busy_since
        stuck = busy_since is not None and time.monotonic() - busy_since > self.stuck_after
        return net_ok and self.worker.is_alive() and not stuck

    def _housekeeping(self) -> None:
        ttl = self.settings.input.sensor_ttl
        with self.lock:
            if ttl > 0:
                self.table.evicted += self.table.evict_idle(time.time() - ttl)
            evicted, self.table.evicted = self.table.evicted, 0
            gaps, self.table.gap_resets = self.table.gap_resets, 0
            fills, self.table.gap_fills = self.table.gap_fills, 0
            self.metrics.sensors.set(len(self.table))
        self.metrics.evicted.inc(evicted)
        self.metrics.gap_resets.inc(gaps)
        self.metrics.gap_fills.inc(fills)
        self.metrics.forecasts_dropped.labels("superseded").inc(self.queue.take_superseded())
        scores = self.worker.served.scores
        for to, n in scores.take_switches().items():
            self.metrics.guard_switches.labels(to).inc(n)
        self.metrics.on_persistence.set(scores.on_persistence)

    def snapshot(self) -> None:
        state_dir = self.settings.state.dir
        if state_dir is None:
            return
        try:
            with self.lock:
                save_snapshot(Path(state_dir), self.table, self.meta)
            save_scores(Path(state_dir), self.worker.served.scores, self.meta)
        except OSError as exc:
            log.error("cannot write snapshot to %s: %s", state_dir, exc)

    def reload(self) -> bool:
        """Load the configured bundle again; keep serving the old one if it is invalid."""
        self.notifier.reloading()
        try:
            settings = self._reload_settings() if self._reload_settings else self.settings
            bundle = load_bundle(settings.model.path)
            served = _served(bundle, settings)
            parser = self._make_parser(bundle.meta)
        except UserError as exc:
            log.error("reload failed, still serving %s: %s", self.meta.model_id, exc)
            self.notifier.ready(f"serving {self.meta.model_id} (last reload failed)")
            return False
        old = self.meta
        same_shape = old.timesteps == bundle.meta.timesteps and old.features == bundle.meta.features
        with self.lock:
            self.worker.swap(served.keeping_scores(self.worker.served))
            self.parser = parser
            self.meta = bundle.meta
            self.settings.model = settings.model
            if not same_shape:
                self.table = self._make_table(bundle.meta)
                self.queue.clear()
        self._set_model_info(bundle.meta)
        self.accuracy.configure(bundle.meta.features, bundle.meta.targets, bundle.meta.model_id)
        if self.discovery is not None:
            self.discovery.meta = bundle.meta
            self.discovery.forget()
        kept = "kept" if same_shape else "reset (timesteps or features changed)"
        log.info("reloaded: now serving %s, buffers %s", bundle.meta.model_id, kept)
        self.notifier.ready(f"serving {bundle.meta.model_id}")
        return True

    def shutdown(self) -> None:
        """Drain: stop input, finish queued windows, snapshot, publish offline, disconnect."""
        self.notifier.stopping()
        self.link.stop_input()
        self.worker.stop()
        self.worker.join(timeout=10)
        self.snapshot()
        self.link.stop()
        log.info("stopped")
