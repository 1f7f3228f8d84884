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
from collections.abc import Callable, Iterable
from pathlib import Path

from sensorcast.accuracy import OnlineAccuracy
from sensorcast.buffer import SensorTable, Window
from sensorcast.config import Presentation, Settings
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
from sensorcast.models.bundle import Bundle, BundleMeta
from sensorcast.mqttio import MQTTLink
from sensorcast.overlap import GroupWatch
from sensorcast.readings import MAX_TS, PayloadParser, read_payload
from sensorcast.recurring import RecurringProblem
from sensorcast.routes import (
    ROUTE_INITIAL_SENSORS,
    LoadedModel,
    Route,
    Router,
    load_models,
    make_table,
    same_shape,
)
from sensorcast.state import (
    Staged,
    load_heads,
    load_scores,
    load_snapshot,
    load_targets,
    make_writable,
    release_freed_memory,
    remove_unfinished,
    save_heads,
    save_scores,
    save_snapshot,
    save_targets,
)
from sensorcast.systemd import Notifier
from sensorcast.topics import TopicTemplate, shared_subscription

log = logging.getLogger(__name__)

TICK = 0.5
"""Seconds between housekeeping rounds of the main thread."""
SWITCH_INTERVAL = 0.0005
"""Seconds a busy thread keeps the GIL while another waits (Python's default is 0.005): a
reading waiting for the network thread while the worker computes a batch, or a forecast
waiting for the worker while the network thread reads, waits at most this long."""


def load_model(settings: Settings) -> tuple[Bundle, ServedBundle, PayloadParser]:
    """The default route's bundle (model.path), loaded as it is served, and the parser for
    its features; `load_models` loads every route's."""
    model = settings.model.model_copy(update={"fallback": True})
    alone = settings.model_copy(update={"routes": [], "model": model})
    default = load_models(alone)[0]
    return default.bundle, default.served, default.parser


def _room(model: LoadedModel) -> int | None:
    """Sensors a route's buffers make room for at start (the default route: their default)."""
    return None if model.spec.index is None else ROUTE_INITIAL_SENSORS


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
        models = load_models(settings)
        self.input = TopicTemplate(settings.input.topic, allow_wildcards=True)
        self.output = TopicTemplate(settings.output.topic, allow_wildcards=False)
        anomaly = settings.anomaly
        self.anomaly_topic = (
            TopicTemplate(anomaly.topic, allow_wildcards=False) if anomaly.enabled else None
        )
        first = models[-1].bundle.meta
        self.events = SensorEvents(
            settings.log.event_interval, settings.log.event_burst, first.timesteps
        )
        self.lock = threading.Lock()
        """Guards the routes' tables (network thread, main thread)."""
        self._accuracies: dict[str, OnlineAccuracy] = {}
        self.router = Router(
            [self._new_route(m) for m in models], max_cached=2 * settings.input.max_sensors
        )
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
        self.link.limit_payload(settings.input.max_payload_bytes)
        default = self.router.default
        self.worker = InferenceWorker(
            self.queue,
            default.lane.served,
            self.link.publish,
            self.output,
            self.metrics,
            max_batch=settings.inference.max_batch,
            max_wait=settings.inference.max_wait_ms / 1000,
            anomaly_topic=self.anomaly_topic,
            held=self.link.held,
            fits=self.link.fits,
        )
        self.worker.lane = default.lane
        self.stuck_after = 30.0
        """Seconds a batch may take while windows wait before the watchdog is withheld."""
        self.discovery = self._make_discovery(default.meta)
        self.group = (
            None if share_group is None else GroupWatch(settings.mqtt, share_group, self.metrics)
        )
        """With a share group: notices sensors whose readings the broker splits."""
        self.should_exit = threading.Event()
        self._reload_requested = threading.Event()
        self._drop_log = DropLog(settings.log.drop_interval, settings.input.ts_field)
        self._snapshot_problem = RecurringProblem()
        self._targets_saved: list[str] | None = None
        """The targets discovery.json holds, as this process last wrote them."""
        self._held_seconds = 0.0
        self._set_model_info()

    # --- routes -------------------------------------------------------------
    @property
    def routes(self) -> list[Route]:
        return self.router.routes

    @property
    def table(self) -> SensorTable:
        """The default route's buffers (the only ones without routes)."""
        return self.router.default.table

    @property
    def meta(self) -> BundleMeta:
        """The default route's bundle (the only one without routes)."""
        return self.router.default.meta

    @property
    def accuracy(self) -> OnlineAccuracy | None:
        return self.router.default.lane.accuracy

    def _accuracy(self, meta: BundleMeta) -> OnlineAccuracy:
        """One online accuracy per model id, shared by the routes that serve it."""
        acc = self._accuracies.get(meta.model_id)
        if acc is None:
            acc = self._accuracies[meta.model_id] = OnlineAccuracy(
                self.metrics, meta.features, meta.targets, meta.model_id
            )
        return acc

    def _new_route(self, model: LoadedModel) -> Route:
        meta = model.bundle.meta
        table = make_table(meta, self.settings.input, self.events, _room(model))
        return Route(model, table, self._accuracy(meta), self.metrics)

    def _model_of(self, sensor_id: str) -> BundleMeta | None:
        route = self.router.peek(sensor_id)
        return None if route is None else route.meta

    def _presentation(self) -> Callable[[str], Presentation]:
        """A sensor's look in Home Assistant: the first `homeassistant.entities` rule that
        matches, field by field over its route's unit, device_class and name."""
        rules = presentation_lookup(self.settings.homeassistant.entities)

        def look(sensor_id: str) -> Presentation:
            rule = rules(sensor_id)
            route = self.router.peek(sensor_id)
            if route is None:
                return rule
            return rule.over(route.spec.look)

        return look

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
            presentation=self._presentation(),
            anomaly_topic=anomaly_binary_sensors(self.settings),
            max_gap=self.settings.input.max_gap,
            models=self._model_of,
        )
        self.link.on_connected.append(discovery.refresh)
        return discovery

    def _set_model_info(self) -> None:
        meta = self.meta
        self.metrics.model.info({"name": meta.name, "hash": meta.short_hash, "id": meta.model_id})
        self.metrics.route_sensors.clear()  # routes renumbered or gone: their series too
        for route in self.routes:
            route.relabel()
        with self.lock:
            self._count_sensors()

    # --- network thread -------------------------------------------------
    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Parse one message and buffer it; never raises (the network loop must live)."""
        try:
            self._ingest(topic, payload, time.time(), retained)
        except Exception:
            log.exception("unexpected error handling a message on %r", topic[:200])

    def _ingest(self, topic: str, payload: bytes, received: float, retained: bool = False) -> None:
        sensor_id = self.input.sensor_id(topic)
        if sensor_id is None:
            return self._drop(Drop.BAD_SENSOR_ID, topic)
        routes = self.router
        route = routes.route(sensor_id)
        if route is None:
            return self._drop(Drop.NO_ROUTE, topic)
        message = read_payload(sensor_id, route.parser, payload, received, retained)
        if isinstance(message, Drop):
            route.dropped(message)
            return self._drop(message, topic)
        _, ts, reading = message
        with self.lock:
            moved = self.router is not routes  # a reload swapped the routes while it was read
            if not moved:
                table = route.table
                new = sensor_id not in table.slots
                timed_here = reading.ts is None
                result = table.push(sensor_id, ts, reading.values, received, timed_here=timed_here)
                if not isinstance(result, Drop):  # counted under the lock: a reload that
                    route.accepted += 1  # takes the route away counts it last (reload)
                if result is None and self.anomaly_topic is not None:
                    result = table.refilling(sensor_id)  # checked, not forecast from
                if self.group is not None and not isinstance(result, Drop):
                    # the group's detector keeps every sensor's id: the buffers' string
                    sensor_id = table.slots.canonical(sensor_id)
        if moved:  # read it again for the route that serves the sensor now (its parser)
            return self._ingest(topic, payload, received, retained)
        if isinstance(result, Drop):
            route.dropped(result)
            return self._drop(result, topic)
        self.metrics.readings.inc()
        if self.group is not None:
            self.group.seen(sensor_id, ts)
        if new:
            self.events.first_seen(sensor_id)
        if isinstance(result, Window) and result.refill:
            self.queue.put(result, received, route.lane)  # the route's own scores check it
        elif isinstance(result, Window):
            self.queue.put(result, received, route.lane)
            if result.first:
                self.events.window_ready(sensor_id, route.meta.model_id, route.meta.timesteps)
            if self.discovery is not None:  # the window carries the buffers' string of the id
                self.discovery.announce(result.sensor_id, result.cadence, result.spread)
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
        sys.setswitchinterval(SWITCH_INTERVAL)
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
            try:  # one it cannot write was taken, and every snapshot then failed
                make_writable(state_dir)
            except OSError as exc:
                raise ConfigError(
                    f"state.dir {state_dir} cannot be written: {exc.strerror or exc}"
                ) from None
            self._restore(state_dir)
            if self.discovery is not None:
                self.discovery.remember(load_targets(state_dir))
        self._count_sensors()
        self.worker.start()
        self.link.start()
        if self.group is not None:
            self.group.start()
        for route in self.routes:
            log.info(
                "serving %s (%s, timesteps %d, features %s) for %s",
                route.meta.model_id,
                self.settings.model.backend,
                route.meta.timesteps,
                ",".join(route.meta.features),
                route.spec.describe(),
            )
        if not self.settings.model.fallback:
            log.info("sensors that match no route get no forecast (model.fallback = false)")
        self.notifier.ready(f"serving {self._serving()}")

    def _serving(self) -> str:
        return ", ".join(dict.fromkeys(r.meta.model_id for r in self.routes))

    def _restore(self, state_dir: Path) -> None:
        """Each route's snapshot into its table; then every sensor into the route that serves
        it now (a snapshot from before routes is the default route's)."""
        future = self.settings.input.max_future_s or math.inf
        max_ts = min(time.time() + future, MAX_TS)
        for route in self.routes:
            where = route.spec.state_dir(state_dir)
            served = route.lane.served
            unfinished = remove_unfinished(where)
            if unfinished:
                log.info("removed %d unfinished snapshot files from %s", unfinished, where)
            with self.lock:
                load_snapshot(where, route.table, route.meta, max_ts)
            load_scores(where, served.scores, route.meta, route.table.slots)
            tracked = route.table.slots  # heads only of the sensors the buffers restored
            load_heads(where, served.heads, tracked.canonical, tracked.__contains__)
        with self.lock:
            self._rehome([(r, r.table, r.meta) for r in self.routes])
        release_freed_memory()

    def _rehome(self, tables: Iterable[tuple[Route, SensorTable, BundleMeta]]) -> None:
        """Move every sensor buffered in `tables` (a route, a table of it and that table's
        bundle: a route whose model changed shape on this reload gives its table of before)
        to the route that serves it now: its window goes along when both bundles take the
        same shape, else it starts over (logged, counted). A sensor its own route still
        serves stays (in a table of before, it starts over there). Under the lock."""
        moved = restarted = 0
        for route, table, meta in tables:
            for sensor_id in list(table.slots):
                target = self.router.match(sensor_id)
                if target is route:
                    continue
                self.router.forget(sensor_id)
                if target is not None and same_shape(meta, target.meta):
                    table.move_to(sensor_id, target.table)
                    moved += 1
                else:
                    table.evict(sensor_id)
                    if target is not None:
                        restarted += 1
                    if self.discovery is not None and target is None:
                        self.discovery.remove(sensor_id)
        if moved or restarted:
            self.metrics.window_restarts.inc(restarted)
            log.info(
                "routes: %d sensors moved to another route with their windows, %d started "
                "their windows over (the new route's model takes another shape)",
                moved,
                restarted,
            )

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

    def _count_sensors(self) -> None:
        """The sensors gauges (under the lock or before the threads start)."""
        per_model: dict[str, int] = {}
        for route in self.routes:
            n = len(route.table)
            route.gauge.set(n)
            per_model[route.meta.model_id] = per_model.get(route.meta.model_id, 0) + n
        for route in self.routes:
            route.sensors.set(per_model[route.meta.model_id])
        self.metrics.sensors.set(sum(per_model.values()))

    def _housekeeping(self) -> None:
        if self.discovery is not None and self.link.subscribed.is_set():
            self.discovery.announce_gateway()  # at start, and again after a reconnect
        ttl = self.settings.input.sensor_ttl
        evicted = gaps = fills = 0
        gone: list[tuple[str, str]] = []
        freed: list[tuple[Route, list[tuple[int, str]]]] = []
        with self.lock:
            for route in self.routes:
                table = route.table
                freed.append((route, table.take_freed()))
                if ttl > 0:
                    table.evicted += table.evict_idle(time.time() - ttl)
                evicted += table.evicted
                gaps += table.gap_resets
                fills += table.gap_fills
                table.evicted = table.gap_resets = table.gap_fills = 0
                gone += table.take_evicted()
            self._count_sensors()
        self.metrics.evicted.inc(evicted)
        self.metrics.gap_resets.inc(gaps)
        self.metrics.gap_fills.inc(fills)
        self.metrics.forecasts_dropped.labels("superseded").inc(self.queue.take_superseded())
        for route, slots in freed:
            route.lane.served.forget(slots)
        on_persistence = adapted = periodic = 0
        for route in self.routes:
            route.count()
            served = route.lane.served
            for to, n in served.scores.take_switches().items():
                self.metrics.guard_switches.labels(to).inc(n)
            on_persistence += served.scores.on_persistence
            heads = served.heads
            adapted += len(heads) if heads is not None else 0
            periodic += heads.with_period() if heads is not None else 0
            self.metrics.adapt_resets.inc(heads.take_resets() if heads is not None else 0)
        self.metrics.on_persistence.set(on_persistence)
        self.metrics.adapted_sensors.set(adapted)
        self.metrics.adapted_with_period.set(periodic)
        if self.group is not None:
            self.group.tick()
        held = self.link.paused_seconds
        self.metrics.input_held.inc(max(0.0, held - self._held_seconds))
        self._held_seconds = held
        for sensor_id, why in gone:
            self.router.forget(sensor_id)
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
            for route in self.routes:
                where = route.spec.state_dir(Path(state_dir))
                served = route.lane.served
                # the scores and heads first, the buffers after: the forecasts they keep
                # pending are then of readings the buffers have, each under the number
                # the buffers gave it (scores written after the buffers could hold
                # forecasts of readings a restart numbers again, and score them against
                # the wrong readings); all three are renamed together once written
                # (Staged): a write that fails leaves the snapshot before whole
                with Staged() as staged:
                    with self.lock:
                        order = route.table.slots.in_order()
                    save_scores(where, served.scores, route.meta, order, staged)
                    save_heads(where, served.heads, staged)
                    with self.lock:
                        save_snapshot(where, route.table, route.meta, staged)
            targets = self.discovery.targets() if self.discovery is not None else None
            if targets is not None and targets != self._targets_saved:  # seldom changes
                save_targets(Path(state_dir), targets)
                self._targets_saved = targets
            release_freed_memory()
        except Exception as exc:  # a full disk or a read-only directory must not stop us
            self.metrics.snapshot_failures.inc()
            line = self._snapshot_problem.report(_one_line(exc))
            if line is not None:
                log.error("cannot write snapshot to %s: %s", state_dir, line)
            return
        if self._snapshot_problem.clear() is not None:
            log.info("snapshot written to %s again", state_dir)

    def reload(self) -> bool:
        """Re-read the configuration, the routes and their bundles; apply what can change
        live and name what needs a restart. Keep serving as before if anything about them
        is wrong: every bundle is loaded before anything is swapped."""
        self.notifier.reloading()
        try:
            settings = self._reload_settings() if self._reload_settings else self.settings
            models = load_models(settings)
        except Exception as exc:  # nothing a reload meets may stop the daemon
            log.error("reload failed, still serving %s: %s", self._serving(), _one_line(exc))
            self.notifier.ready(f"serving {self._serving()} (last reload failed)")
            return False
        keys = changed_keys(self.settings, settings)
        live = [k for k in keys if k in LIVE]
        later = [k for k in keys if k not in LIVE]
        old_routes = {r.spec.key: r for r in self.routes}
        old_order = [r.spec.key for r in self.routes]
        old_models = {r.meta.model_id: r.meta.targets for r in self.routes}
        with self.lock:
            apply_keys(self.settings, settings, live)
            routes, notes = [], []
            replaced: list[tuple[Route, SensorTable, BundleMeta]] = []
            for model in models:
                route = old_routes.pop(model.spec.key, None)
                if route is None:
                    route = self._new_route(model)
                    notes.append(f"{model.spec.describe()}: new")
                else:
                    table, meta = route.table, route.meta
                    notes.append(self._reserve(route, model))
                    if route.table is not table:  # its model takes another shape
                        replaced.append((route, table, meta))
                routes.append(route)
            removed = list(old_routes.values())
            for route in removed:
                route.count()  # its readings since the last housekeeping, else never counted
                notes.append(f"{route.spec.describe()}: removed")
            self.router = Router(routes, max_cached=2 * self.settings.input.max_sensors)
            self.worker.lane = self.router.default.lane
            if [r.spec.key for r in routes] != old_order:
                kept = [(r, r.table, r.meta) for r in [*routes, *removed]]
                self._rehome([*kept, *replaced])
            self._apply_live()
            self._count_sensors()
        served_now = {r.meta.model_id for r in routes}
        for model_id, targets in old_models.items():
            if model_id not in served_now:
                self.metrics.forget_model(model_id, targets)
                self._accuracies.pop(model_id, None)
        self._set_model_info()
        if self.discovery is not None:
            self.discovery.configure(
                self.meta, self._presentation(), anomaly_binary_sensors(self.settings)
            )
        applied = [k for k in live if not k.startswith("model.")]
        log.info(
            "reloaded: now serving %s; %s%s",
            self._serving(),
            "; ".join(notes),
            f"; applied {', '.join(applied)}" if applied else "",
        )
        if later:
            log.warning("reload: %s changed; restart sensorcast to apply", ", ".join(later))
        self.notifier.ready(f"serving {self._serving()}")
        return True

    def _reserve(self, route: Route, model: LoadedModel) -> str:
        """Serve a kept route's (possibly new) bundle; its buffers stay when the window shape
        does. Under the lock. Returns what happened, for the log line."""
        old = route.meta
        new = model.bundle.meta
        route.serve(model, self._accuracy(new))
        if old.model_id == new.model_id:
            return f"{model.spec.describe()}: buffers kept"
        if same_shape(old, new):
            return f"{model.spec.describe()}: now {new.model_id}, buffers kept"
        route.table = make_table(new, self.settings.input, self.events, _room(model))
        # its windows waiting for the worker will not be forecast: counted as the worker
        # counts one it meets after a reload (a window of another bundle's shape)
        self.metrics.forecasts_dropped.labels("shape").inc(self.queue.clear(route.lane))
        return (
            f"{model.spec.describe()}: now {new.model_id}, buffers reset "
            "(timesteps or features changed)"
        )

    def _apply_live(self) -> None:
        """Hand the (reloaded) settings to the parts that read them once (under the lock)."""
        cfg = self.settings
        for route in self.routes:
            table = route.table
            table.max_gap, table.gap_fill = cfg.input.max_gap, cfg.input.gap_fill
            table.max_fill_steps = cfg.input.max_fill_steps
            table.limit(cfg.input.max_sensors)
        self.worker.max_batch = cfg.inference.max_batch
        self.worker.max_wait = cfg.inference.max_wait_ms / 1000
        self.link.retain_forecasts = cfg.output.retain
        self.link.limit_payload(cfg.input.max_payload_bytes)
        self._drop_log.interval = cfg.log.drop_interval
        self._drop_log.ts_field = cfg.input.ts_field
        self.events.interval, self.events.burst = cfg.log.event_interval, cfg.log.event_burst
        self.events.timesteps = self.meta.timesteps
        if self.discovery is not None:
            self.discovery.max_gap = cfg.input.max_gap
        for name in ("", "sensorcast"):
            logging.getLogger(name).setLevel(cfg.log.level)

    def shutdown(self) -> None:
        """Drain: stop input, finish queued windows, snapshot, publish offline, disconnect."""
        try:
            self.notifier.stopping()
            self.link.stop_input()
            self.worker.stop()
            self.worker.join(timeout=10)
            self.snapshot()
        finally:  # whatever went wrong, the connections close and the process can exit
            self.link.stop()
            if self.group is not None:
                self.group.stop()
            self.metrics.close()
        log.info("stopped")
