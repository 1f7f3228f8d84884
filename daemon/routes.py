"""Routes (SPEC 3a): which bundle serves which sensor, and each route's per-sensor state.

A route is a glob on the sensor id and a bundle; the first route whose glob matches a
sensor serves it, and `model.path` serves every other sensor (the default route) unless
`model.fallback` is false. Each route has its own tables, sized for its bundle (ring
buffers, scores and guard, adapted heads), and its own lane in the inference queue; all
routes share one MQTT connection, one inference worker and one lock. A sensor's route is
decided at its first reading and cached; a reload that changes the routes re-homes the
sensors it moves.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter, Gauge

from sensorcast.accuracy import OnlineAccuracy
from sensorcast.buffer import SensorTable
from sensorcast.config import InputConfig, Presentation, Settings
from sensorcast.drops import Drop
from sensorcast.errors import ConfigError
from sensorcast.events import SensorEvents
from sensorcast.inference import Lane, ServedBundle
from sensorcast.metrics import Metrics
from sensorcast.models.bundle import Bundle, BundleError, BundleMeta, load_bundle
from sensorcast.models.runtime import BackendUnavailable, Forecaster
from sensorcast.readings import PayloadParser

DEFAULT = "default"
"""The label of the default route (model.path) in metrics and logs."""


@dataclass(frozen=True)
class RouteSpec:
    """A route as configured: `index` in `routes`, or None for the default route."""

    index: int | None
    sensors: str
    path: Path
    look: Presentation

    @property
    def label(self) -> str:
        return DEFAULT if self.index is None else str(self.index)

    @property
    def where(self) -> str:
        """The configuration key that names its bundle, with its environment form."""
        if self.index is None:
            return "model.path (SENSORCAST_MODEL__PATH)"
        return f"routes[{self.index}].model (SENSORCAST_ROUTES)"

    @property
    def key(self) -> str:
        """What a route is across reloads and restarts: its glob (or the default)."""
        return DEFAULT if self.index is None else f"sensors={self.sensors}"

    def state_dir(self, root: Path) -> Path:
        """Where its snapshots live: the state directory itself for the default route (as
        before routes existed), a subdirectory named by its glob's hash for the others."""
        if self.index is None:
            return root
        return root / "routes" / hashlib.sha256(self.sensors.encode()).hexdigest()[:16]

    def describe(self) -> str:
        if self.index is None:
            return f"default route (model.path {self.path})"
        return f"routes[{self.index}] {self.sensors!r} ({self.path})"


def route_specs(settings: Settings) -> list[RouteSpec]:
    """The configured routes in order, then the default route when `model.fallback`."""
    specs = [
        RouteSpec(
            i,
            r.sensors,
            r.model,
            Presentation(
                unit=r.unit,
                device_class=r.device_class,
                name=r.name,
                precision=r.precision,
                targets=r.targets,
            ),
        )
        for i, r in enumerate(settings.routes)
    ]
    if settings.model.fallback:
        specs.append(RouteSpec(None, "*", settings.model.path, Presentation()))
    return specs


ROUTE_INITIAL_SENSORS = 64
"""Sensors a route other than the default makes room for at start (its tables grow by
doubling): ten routes should not cost ten times the default route's start-up memory."""


def make_served(
    bundle: Bundle,
    settings: Settings,
    forecaster: Forecaster | None = None,
    initial_sensors: int | None = None,
) -> ServedBundle:
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
        forecaster=forecaster,
        initial_sensors=initial_sensors,
    )


def make_parser(
    meta: BundleMeta, cfg: InputConfig, fields: dict[str, str] | None = None
) -> PayloadParser:
    try:
        return PayloadParser(
            meta.features,
            fields=cfg.fields if fields is None else fields,
            ts_field=cfg.ts_field,
            max_bytes=cfg.max_payload_bytes,
            max_future=cfg.max_future_s or math.inf,
        )
    except ValueError as exc:
        raise ConfigError(
            f"invalid config input.fields (SENSORCAST_INPUT__FIELDS): {exc}"
        ) from None


@dataclass(frozen=True)
class LoadedModel:
    """A route's bundle, loaded as it is served, and the parser for its features."""

    spec: RouteSpec
    bundle: Bundle
    served: ServedBundle
    parser: PayloadParser


def load_models(settings: Settings) -> list[LoadedModel]:
    """Every route's bundle, validated and loaded (interpreters included) before anything
    is served: a bundle that cannot serve is a ConfigError naming its route, so
    `check-config`, `run` and a reload refuse the same configurations."""
    specs = route_specs(settings)
    shared: dict[tuple[Path, str], Forecaster] = {}
    loaded = []
    for spec in specs:
        try:
            bundle = load_bundle(spec.path)
            same = (spec.path.resolve(), bundle.meta.content_hash)
            room = None if spec.index is None else ROUTE_INITIAL_SENSORS
            served = make_served(bundle, settings, shared.get(same), room)
            shared[same] = served.forecaster
        except BackendUnavailable as exc:
            raise ConfigError(
                f"invalid config model.backend (SENSORCAST_MODEL__BACKEND) = "
                f"{settings.model.backend!r}: {exc}"
            ) from None
        except BundleError as exc:
            raise ConfigError(f"invalid {spec.where}: {exc}") from None
        loaded.append(LoadedModel(spec, bundle, served, _parser(bundle.meta, settings, specs)))
    _check_target_looks(settings, loaded)
    if len(specs) > 1:
        known = {f for m in loaded for f in m.bundle.meta.features}
        unknown = sorted(set(settings.input.fields) - known)
        if unknown:
            raise ConfigError(
                f"invalid config input.fields (SENSORCAST_INPUT__FIELDS): names features "
                f"no routed model has: {', '.join(unknown)}"
            )
    return loaded


def _check_target_looks(settings: Settings, loaded: list[LoadedModel]) -> None:
    """A look set for a target no bundle forecasts (a typo, a target renamed at training)
    would leave that entity without its unit, silently: a ConfigError naming it."""
    for m in loaded:
        unknown = sorted(set(m.spec.look.targets) - set(m.bundle.meta.targets))
        if unknown:
            raise ConfigError(
                f"invalid config routes[{m.spec.index}].targets: {', '.join(unknown)} is no "
                f"target of its bundle (its targets: {', '.join(m.bundle.meta.targets)})"
            )
    served = {t for m in loaded for t in m.bundle.meta.targets}
    for i, rule in enumerate(settings.homeassistant.entities):
        unknown = sorted(set(rule.targets) - served)
        if unknown:
            raise ConfigError(
                f"invalid config homeassistant.entities[{i}].targets: {', '.join(unknown)} is "
                f"no target of a bundle served (targets: {', '.join(sorted(served))})"
            )


def _parser(meta: BundleMeta, settings: Settings, specs: list[RouteSpec]) -> PayloadParser:
    """With several routes, `input.fields` maps the features each bundle has."""
    fields = settings.input.fields
    if len(specs) > 1:
        fields = {k: v for k, v in fields.items() if k in meta.features}
    return make_parser(meta, settings.input, fields)


def describe_routes(models: list[LoadedModel], fallback: bool) -> str:
    """The routes as `check-config` prints them: in order, first match wins."""
    rows = []
    for m in models:
        spec, meta = m.spec, m.bundle.meta
        name = "default" if spec.index is None else f"routes[{spec.index}]"
        look = spec.look
        shown = [f"{k} {v!r}" for k, v in look.model_dump(exclude_defaults=True).items()]
        rows.append(
            (name, spec.sensors, meta.model_id, f"timesteps {meta.timesteps}", ", ".join(shown))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["routes (the first whose sensors glob matches serves a sensor):"]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)]
        lines.append("  " + "  ".join([*cells, row[4]]).rstrip())
    if not fallback:
        lines.append("  sensors that match no route: no forecast (model.fallback = false)")
    return "\n".join(lines)


def make_table(
    meta: BundleMeta, cfg: InputConfig, events: SensorEvents, initial_sensors: int | None = None
) -> SensorTable:
    room = {} if initial_sensors is None else {"initial_capacity": initial_sensors}
    table = SensorTable(
        meta.timesteps,
        len(meta.features),
        max_sensors=cfg.max_sensors,
        max_gap=cfg.max_gap,
        gap_fill=cfg.gap_fill,
        max_fill_steps=cfg.max_fill_steps,
        **room,
    )
    timesteps = meta.timesteps
    table.on_gap_reset = lambda sid, gap, cadence, spread: events.gap_reset(
        sid, gap, cadence, table.max_gap, timesteps, spread
    )
    return table


def same_shape(a: BundleMeta, b: BundleMeta) -> bool:
    """Windows of one fit the other: buffers can be kept across them."""
    return a.timesteps == b.timesteps and a.features == b.features


class Route:
    """One route as served: its bundle (in its lane), parser and per-sensor tables."""

    def __init__(
        self,
        model: LoadedModel,
        table: SensorTable,
        accuracy: OnlineAccuracy,
        metrics: Metrics,
    ) -> None:
        self.spec = model.spec
        self.meta = model.bundle.meta
        self.parser = model.parser
        self.table = table
        self.lane = Lane(model.served, accuracy)
        self.lane.tracks = self.tracks
        self._metrics = metrics
        self.gauge: Gauge
        self._drops: dict[Drop, Counter] = {}
        self.accepted = 0
        """Readings accepted (network thread): counted per model at housekeeping, so the hot
        path takes no counter lock for it."""
        self._counted = 0
        self._label(model.bundle.meta.model_id)

    def _label(self, model_id: str) -> None:
        m = self._metrics
        self.lane.inference = m.model_inference_seconds.labels(model_id)
        self.lane.forecasts = m.model_forecasts.labels(model_id)
        self.readings = m.model_readings.labels(model_id)
        self.sensors = m.model_sensors.labels(model_id)
        self._drops = {}
        self.relabel()

    def relabel(self) -> None:
        """Its `sensorcast_route_sensors` series (again, after the family was cleared)."""
        spec = self.spec
        self.gauge = self._metrics.route_sensors.labels(
            spec.label, spec.sensors, self.meta.model_id
        )

    def tracks(self, sensor_id: str) -> bool:
        """Whether its buffers hold the sensor (the worker asks, without the lock: one dict
        lookup on the table of the moment)."""
        return sensor_id in self.table.slots

    def count(self) -> None:
        """Add the readings accepted since the last call to the per-model counter."""
        n = self.accepted
        self.readings.inc(n - self._counted)
        self._counted = n

    def dropped(self, reason: Drop) -> None:
        counter = self._drops.get(reason)
        if counter is None:
            counter = self._drops[reason] = self._metrics.model_dropped.labels(
                self.meta.model_id, reason.value
            )
        counter.inc()

    def serve(self, model: LoadedModel, accuracy: OnlineAccuracy) -> None:
        """Serve `model` from the next batch on (under the service's lock), keeping the
        per-sensor scores and heads that still apply; the caller resets the table when the
        window shape changed."""
        self.spec = model.spec
        self.lane.served = model.served.keeping_scores(self.lane.served)
        self.lane.accuracy = accuracy
        self.parser = model.parser
        self.count()  # what the old model served is counted as its
        self.meta = model.bundle.meta
        self._label(self.meta.model_id)


class Router:
    """The route of each sensor: the first whose glob matches, decided at the sensor's first
    reading and cached (a dict lookup per reading after that)."""

    def __init__(self, routes: list[Route], max_cached: int) -> None:
        self.routes = routes
        self.max_cached = max_cached
        self._cache: dict[str, Route | None] = {}
        only = routes[0] if len(routes) == 1 else None
        self._only = only if only is not None and only.spec.index is None else None
        """The one route of a daemon without routes: every sensor's, with no cache to keep
        (a dict entry per sensor, 4 MB at 100,000 sensors)."""

    def match(self, sensor_id: str) -> Route | None:
        for route in self.routes:
            if route.spec.index is None or fnmatch.fnmatchcase(sensor_id, route.spec.sensors):
                return route
        return None

    def route(self, sensor_id: str) -> Route | None:
        if self._only is not None:
            return self._only
        try:
            return self._cache[sensor_id]
        except KeyError:
            pass
        route = self.match(sensor_id)
        if len(self._cache) >= self.max_cached:  # ids that come and go: decide them anew
            self._cache.clear()
        self._cache[sensor_id] = route
        return route

    def forget(self, sensor_id: str) -> None:
        self._cache.pop(sensor_id, None)

    def peek(self, sensor_id: str) -> Route | None:
        """The sensor's route without caching it (other threads than the network's)."""
        route = self._cache.get(sensor_id)
        return route if route is not None else self.match(sensor_id)

    @property
    def default(self) -> Route:
        """The default route, else the first: what a single-model caller means."""
        return next((r for r in self.routes if r.spec.index is None), self.routes[0])
