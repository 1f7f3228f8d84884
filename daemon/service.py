"""The daemon: wiring, signals and lifecycle of `sensorcast run`.

Threads: paho's network thread parses readings and fills the buffers (and
does nothing else); the inference worker batches ready windows through the
model and publishes forecasts; the main thread handles signals, reloads,
snapshots, idle eviction and the systemd watchdog. SIGTERM/SIGINT drain and
exit 0; SIGHUP reloads the configuration and the model bundle, and nothing a
reload meets (a bundle that cannot be read, a config that does not validate)
stops the daemon: it keeps serving what it served.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sensorcast.accuracy import OnlineAccuracy
from sensorcast.buffer import SensorTable, Window
from sensorcast.config import InputConfig, Settings
from sensorcast.discovery import (
    HomeAssistantDiscovery,
    anomaly_binary_sensors,
    presentation_lookup,
)
from sensorcast.drops import Drop, DropLog
from sensorcast.errors import ConfigError, UserError
from sensorcast.events import SensorEvents
from sensorcast.handoff import ReadyQueue
from sensorcast.inference import InferenceWorker, ServedBundle
from sensorcast.live import LIVE, apply_keys, changed_keys
from sensorcast.metrics import Metrics
from sensorcast.models.bundle import Bundle, BundleError, BundleMeta, load_bundle
from sensorcast.mqttio import MQTTLink
from sensorcast.overlap import GroupWatch
from sensorcast.readings import MAX_TS, PayloadParser, read_message
from sensorcast.recurring import RecurringProblem
from sensorcast.state import (
    load_heads,
    load_scores,
    load_snapshot,
    save_heads,
    save_scores,
    save_snapshot,
)
from sensorcast.systemd import Notifier
from sensorcast.topics import TopicTemplate, shared_subscription

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
        adapt=settings.adapt,
    )


def load_model(settings: Settings) -> tuple[Bundle, ServedBundle, PayloadParser]:
    """The configured bundle, loaded as it is served, and the parser for its features.

    A bundle that cannot serve is a configuration error (exit 78): the configuration points
    at it. `check-config` calls this too, so it fails exactly when `run` would.
    """
    try:
        bundle = load_bundle(settings.model.path)
        served = _served(bundle, settings)
    except BundleError as exc:
        raise ConfigError(f"invalid model.path (SENSORCAST_MODEL__PATH): {exc}") from None
    return bundle, served, make_parser(bundle.meta, settings.input)


def make_parser(meta: BundleMeta, cfg: InputConfig) -> PayloadParser:
    try:
        return PayloadParser(
            meta.features,
            fields=cfg.fields,
            ts_field=cfg.ts_field,
            max_bytes=cfg.max_payload_bytes,
            max_future=cfg.max_future_s or math.inf,
        )
    except ValueError as exc:
        raise ConfigError(
            f"invalid config input.fields (SENSORCAST_INPUT__FIELDS): {exc}"
        ) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]


class Service:
    """One running daemon, built from validated settings."""

    def __init__(self, settings: Settings, reload_settings: Callable[[], Settings] | None = None):
        self.settings = settings
        self._reload_settings = reload_settings
        self.metrics = Metrics()
        self.notifier = Notifier()
        bundle, served, self.parser = load_model(settings)
        self.meta: BundleMeta = bundle.meta
        self.input = TopicTemplate(settings.input.topic, allow_wildcards=True)
        self.output = TopicTemplate(settings.output.topic, allow_wildcards=False)
        anomaly = settings.anomaly
        self.anomaly_topic = (
            TopicTemplate(anomaly.topic, allow_wildcards=False) if anomaly.enabled else None
        )
        self.events = SensorEvents(
            settings.log.event_interval, settings.log.event_burst, bundle.meta.timesteps
        )
        self.table = self._make_table(bundle.meta)
        self.lock = threading.Lock()
        self.queue = ReadyQueue(settings.inference.max_pending, settings.inference.overload)
        share_group = settings.input.share_group
        self.link = MQTTLink(
            settings.mqtt,
            shared_subscription(self.input.subscription, share_group),
            self.on_message,
            self.metrics,
            max_queue=settings.output.max_queue,
            retain_forecasts=settings.output.retain,
            qos=settings.output.qos,
            may_read=self.queue.accepting,
        )
        self.queue.on_room = self.link.wake
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
        self.group = (
            None if share_group is None else GroupWatch(settings.mqtt, share_group, self.metrics)
        )
        """With a share group: notices sensors whose readings the broker splits."""
        self.should_exit = threading.Event()
        self._reload_requested = threading.Event()
        self._drop_log = DropLog(settings.log.drop_interval)
        self._snapshot_problem = RecurringProblem()
        self._held_seconds = 0.0
        self._set_model_info(bundle.meta)

    def _make_table(self, meta: BundleMeta) -> SensorTable:
        cfg = self.settings.input
        table = SensorTable(
            meta.timesteps,
            len(meta.features),
            max_sensors=cfg.max_sensors,
            max_gap=cfg.max_gap,
            gap_fill=cfg.gap_fill,
            max_fill_steps=cfg.max_fill_steps,
        )
        table.on_gap_reset = lambda sid, gap, cadence: self.events.gap_reset(
            sid, gap, cadence, table.max_gap
        )
        return table

    def _make_discovery(self, meta: BundleMeta) -> HomeAssistantDiscovery | None:
        ha = self.settings.homeassistant
        if not ha.discovery:
            return None
        discovery = HomeAssistantDiscovery(
            ha.prefix,
            ha.node_id,
            self.settings.mqtt.client_id,
            self.link.status_topic,
            self.output,
            meta,
            self.link.publish,
            presentation=presentation_lookup(ha.entities),
            anomaly_topic=anomaly_binary_sensors(self.settings),
            max_gap=self.settings.input.max_gap,
        )
        self.link.on_connected.append(discovery.refresh)
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
        # one string object per sensor, however many tables and queues key on it
        sensor_id = sys.intern(sensor_id)
        with self.lock:
            previous = self.table.last_ts(sensor_id)
            result = self.table.push(sensor_id, ts, reading.values, received)
        if isinstance(result, Drop):
            return self._drop(result, topic)
        self.metrics.readings.inc()
        if self.group is not None:
            self.group.seen(sensor_id, ts)
        if previous is not None:
            self.accuracy.observe(sensor_id, previous, reading.values)
        else:
            self.events.first_seen(sensor_id)
        if isinstance(result, Window):
            self.queue.put(result, received)
            self.events.window_ready(sensor_id, self.meta.model_id)
            if self.discovery is not None:
                self.discovery.announce(sensor_id, result.cadence)
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
        m = self.settings.metrics
        if m.port is not None:
            try:
                self.metrics.serve(m.host, m.port)
            except OSError as exc:
                raise UserError(
                    f"metrics.port {m.port} on {m.host} cannot be opened: {exc.strerror or exc}"
                ) from None
        state_dir = self.settings.state.dir
        if state_dir is not None:
            future = self.settings.input.max_future_s or math.inf
            with self.lock:
                load_snapshot(state_dir, self.table, self.meta, min(time.time() + future, MAX_TS))
            load_scores(state_dir, self.worker.served.scores, self.meta)
            load_heads(state_dir, self.worker.served.heads)
        self.metrics.sensors.set(len(self.table))
        self.worker.start()
        self.link.start()
        if self.group is not None:
            self.group.start()
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
            gone = self.table.take_evicted()
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
        heads = self.worker.served.heads
        self.metrics.adapted_sensors.set(len(heads) if heads is not None else 0)
        self.metrics.adapt_resets.inc(heads.take_resets() if heads is not None else 0)
        if self.group is not None:
            self.group.tick()
        held = self.link.paused_seconds
        self.metrics.input_held.inc(max(0.0, held - self._held_seconds))
        self._held_seconds = held
        for sensor_id, why in gone:
            self._forget_sensor(sensor_id, why)
        self.events.flush()

    def _forget_sensor(self, sensor_id: str, why: str) -> None:
        """An evicted sensor: say so, and take its entities and retained forecast away, unless
        another member of a group may serve it now (they are that member's then)."""
        self.events.evicted(sensor_id, why)
        cfg = self.settings.input
        if cfg.group or cfg.share_group is not None:
            return
        if self.discovery is not None:
            self.discovery.remove(sensor_id)
        if self.settings.output.retain:
            self.link.publish(self.output.format(sensor_id), b"", True)

    def snapshot(self) -> None:
        state_dir = self.settings.state.dir
        if state_dir is None:
            return
        try:
            with self.lock:
                save_snapshot(Path(state_dir), self.table, self.meta)
            save_scores(Path(state_dir), self.worker.served.scores, self.meta)
            save_heads(Path(state_dir), self.worker.served.heads)
        except Exception as exc:  # a full disk or a read-only directory must not stop us
            self.metrics.snapshot_failures.inc()
            line = self._snapshot_problem.report(_one_line(exc))
            if line is not None:
                log.error("cannot write snapshot to %s: %s", state_dir, line)
            return
        if self._snapshot_problem.clear() is not None:
            log.info("snapshot written to %s again", state_dir)

    def reload(self) -> bool:
        """Re-read the configuration and the bundle; apply what can change live and name what
        needs a restart. Keep serving as before if anything about them is wrong."""
        self.notifier.reloading()
        try:
            settings = self._reload_settings() if self._reload_settings else self.settings
            bundle, served, parser = load_model(settings)
        except Exception as exc:  # nothing a reload meets may stop the daemon
            log.error("reload failed, still serving %s: %s", self.meta.model_id, _one_line(exc))
            self.notifier.ready(f"serving {self.meta.model_id} (last reload failed)")
            return False
        keys = changed_keys(self.settings, settings)
        live = [k for k in keys if k in LIVE]
        later = [k for k in keys if k not in LIVE]
        old = self.meta
        same_shape = old.timesteps == bundle.meta.timesteps and old.features == bundle.meta.features
        with self.lock:
            apply_keys(self.settings, settings, live)
            self.worker.swap(served.keeping_scores(self.worker.served))
            self.parser = parser
            self.meta = bundle.meta
            if not same_shape:
                self.table = self._make_table(bundle.meta)
                self.queue.clear()
                self.events.forget_all()
            self.events.timesteps = bundle.meta.timesteps
            self._apply_live()
        self._set_model_info(bundle.meta)
        self.accuracy.configure(bundle.meta.features, bundle.meta.targets, bundle.meta.model_id)
        if self.discovery is not None:
            self.discovery.configure(
                bundle.meta,
                presentation_lookup(self.settings.homeassistant.entities),
                anomaly_binary_sensors(self.settings),
            )
        kept = "kept" if same_shape else "reset (timesteps or features changed)"
        applied = [k for k in live if not k.startswith("model.")]
        log.info(
            "reloaded: now serving %s, buffers %s%s",
            bundle.meta.model_id,
            kept,
            f"; applied {', '.join(applied)}" if applied else "",
        )
        if later:
            log.warning("reload: %s changed; restart sensorcast to apply", ", ".join(later))
        self.notifier.ready(f"serving {bundle.meta.model_id}")
        return True

    def _apply_live(self) -> None:
        """Hand the (reloaded) settings to the parts that read them once (under the lock)."""
        cfg = self.settings
        table = self.table
        table.max_gap, table.gap_fill = cfg.input.max_gap, cfg.input.gap_fill
        table.max_fill_steps = cfg.input.max_fill_steps
        table.limit(cfg.input.max_sensors)
        self.worker.max_batch = cfg.inference.max_batch
        self.worker.max_wait = cfg.inference.max_wait_ms / 1000
        self.link.retain_forecasts = cfg.output.retain
        self._drop_log.interval = cfg.log.drop_interval
        self.events.interval, self.events.burst = cfg.log.event_interval, cfg.log.event_burst
        if self.discovery is not None:
            self.discovery.max_gap = cfg.input.max_gap
        for name in ("", "sensorcast"):
            logging.getLogger(name).setLevel(cfg.log.level)

    def shutdown(self) -> None:
        """Drain: stop input, finish queued windows, snapshot, publish offline, disconnect."""
        self.notifier.stopping()
        self.link.stop_input()
        self.worker.stop()
        self.worker.join(timeout=10)
        self.snapshot()
        self.link.stop()
        if self.group is not None:
            self.group.stop()
        log.info("stopped")
