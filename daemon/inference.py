"""The inference worker: batches ready windows across sensors and publishes forecasts."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from prometheus_client import Counter, Histogram

from sensorcast.accuracy import OnlineAccuracy
from sensorcast.adapt import SensorHeads, layout_for
from sensorcast.config import AdaptConfig
from sensorcast.drops import Quota
from sensorcast.forecasts import ForecastEncoder
from sensorcast.handoff import Pending, ReadyQueue
from sensorcast.metrics import Metrics
from sensorcast.models.bundle import Bundle
from sensorcast.models.runtime import Forecaster
from sensorcast.scoring import Anomaly, SensorScores
from sensorcast.topics import TopicTemplate

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, bool | None], bool]
"""Hands a forecast to the MQTT client, retained or not (None: as `output.retain` says);
False when it could not be queued."""
Held = Callable[[], contextlib.AbstractContextManager[None]]
"""Within it, the forecasts this thread publishes are written together as it leaves."""
NOT_FINITE_LOG_S = 60.0
"""Forecasts dropped as not finite are logged at most once in this many seconds (counted
always)."""


@dataclass(frozen=True)
class ServedBundle:
    """What the worker serves, swapped as a whole on reload: the bundle's forecaster (raw
    windows to forecasts), its payload encoder, its per-sensor scores (intervals, guard)
    and its per-sensor adapted heads (None when adaptation is off or cannot apply)."""

    forecaster: Forecaster
    encoder: ForecastEncoder
    scores: SensorScores
    heads: SensorHeads | None = None

    def forget(self, freed: list[tuple[int, str]]) -> None:
        """The sensors' table let these go, (slot, sensor id): their scores and heads too."""
        self.scores.forget(freed)
        if self.heads is not None:
            self.heads.forget(freed)

    @classmethod
    def load(
        cls,
        bundle: Bundle,
        *,
        backend: str = "litert",
        threads: int = 1,
        level: float = 0.9,
        anomaly_level: float = 0.99,
        max_sensors: int = 100_000,
        guard: bool = True,
        anomalies: bool = True,
        adapt: AdaptConfig | None = None,
        forecaster: Forecaster | None = None,
        initial_sensors: int | None = None,
    ) -> ServedBundle:
        """`forecaster`: one already made for this bundle (routes sharing a bundle share
        its interpreter; the worker calls it from one thread). `initial_sensors`: room made
        at once in the per-sensor tables (they grow by doubling), when not their default."""
        room = {} if initial_sensors is None else {"initial_capacity": initial_sensors}
        meta = bundle.meta
        scores = SensorScores(
            meta,
            level=level,
            anomaly_level=anomaly_level,
            max_sensors=max_sensors,
            guard=guard,
            anomalies=anomalies,
            **room,
        )
        layout = layout_for(meta) if adapt is not None and adapt.enabled else None
        heads = None
        if adapt is not None and layout is not None:
            heads = SensorHeads(
                meta,
                layout,
                max_sensors=adapt.max_sensors,
                forgetting=adapt.forgetting,
                ridge=adapt.ridge,
                idle_s=adapt.idle_s,
                **room,
            )
        return cls(
            forecaster=forecaster or Forecaster(bundle, backend=backend, threads=threads),
            encoder=ForecastEncoder(meta, level),
            scores=scores,
            heads=heads,
        )

    def keeping_scores(self, old: ServedBundle) -> ServedBundle:
        """This bundle with `old`'s per-sensor scores, when both serve the same model id, and
        with `old`'s adapted heads when their regressors have the same layout."""
        same = old.forecaster.meta.model_id == self.forecaster.meta.model_id
        compatible = same and (old.scores.level, old.scores.anomaly_level) == (
            self.scores.level,
            self.scores.anomaly_level,
        )
        out = replace(self, scores=old.scores) if compatible else self
        new, kept = self.heads, old.heads
        if new is None or kept is None or not len(kept):
            return out
        if kept.layout != new.layout:
            log.info(
                "reload: the adapted heads of %d sensors are reset (regressors %s, now %s)",
                len(kept),
                kept.layout.key(),
                new.layout.key(),
            )
            return out
        kept.max_sensors = new.max_sensors
        kept.forgetting, kept.ridge, kept.idle_s = new.forgetting, new.ridge, new.idle_s
        return replace(out, heads=kept)


class Lane:
    """One route as the worker sees it: the bundle it serves (swapped whole on reload), its
    online accuracy and its per-model metrics. Windows queue per lane (handoff.py)."""

    __slots__ = ("accuracy", "forecasts", "inference", "served", "tracks")

    def __init__(
        self,
        served: ServedBundle,
        accuracy: OnlineAccuracy | None = None,
        inference: Histogram | None = None,
        forecasts: Counter | None = None,
    ) -> None:
        self.served = served
        self.accuracy = accuracy
        self.inference = inference
        """sensorcast_model_inference_seconds{model=...}"""
        self.forecasts = forecasts
        """sensorcast_model_forecasts_total{model=...}"""
        self.tracks: Callable[[str], bool] = lambda sensor_id: True
        """Whether the route's buffers still hold the sensor: the forecast of a window that
        waited while its sensor was evicted is not retained (the eviction took the retained
        forecast away, and it would have stayed at the broker for good)."""


class InferenceWorker(threading.Thread):
    """Owns the model runners (LiteRT is not thread-safe); one model call per batch, the
    batches of several routes' lanes taken in turn."""

    def __init__(
        self,
        queue: ReadyQueue,
        served: ServedBundle,
        publish: Publish,
        output: TopicTemplate,
        metrics: Metrics,
        *,
        max_batch: int = 256,
        max_wait: float = 0.0,
        accuracy: OnlineAccuracy | None = None,
        anomaly_topic: TopicTemplate | None = None,
        held: Held = contextlib.nullcontext,
        fits: Callable[[str, bytes], bool] = lambda topic, payload: True,
    ) -> None:
        """`fits`: whether the broker takes a publish that large (`MQTTLink.fits`): a forecast
        `publish` refused is counted as `too_large` if not, else as `queue_full`."""
        super().__init__(name="sensorcast-inference", daemon=True)
        self.queue = queue
        self.output = output
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.anomaly_topic = anomaly_topic
        self.busy_since: float | None = None
        """When the batch in progress started; None while waiting for windows."""
        self.lane = Lane(served, accuracy)
        """The lane of windows queued without one (a daemon without routes has only it)."""
        self._publish = publish
        self._held = held
        self._fits = fits
        self._stopped = False
        self._not_finite_log = Quota(NOT_FINITE_LOG_S)

    @property
    def served(self) -> ServedBundle:
        """The default lane's bundle (served from the next batch on, after a swap)."""
        return self.lane.served

    _served = served

    @property
    def accuracy(self) -> OnlineAccuracy | None:
        return self.lane.accuracy

    def stop(self) -> None:
        """Finish what is queued, then end."""
        self._stopped = True
        self.queue.close()

    def run(self) -> None:
        while True:
            # A window is served as soon as the worker is free, with whatever else waits
            # (plus `max_wait`, 0 by default). Under load the windows that arrive while a
            # batch is served make the next batch: batches grow with the load by themselves.
            batch = self.queue.take(self.max_batch, self.max_wait)
            if not batch:
                if self._stopped:
                    return
                continue
            self.busy_since = time.monotonic()
            try:
                self._serve(batch)
            except Exception:  # a model fault must not end the worker
                log.exception("inference failed for a batch of %d windows", len(batch))
                self._lost(self._lane_of(batch), "error", len(batch))
            finally:
                self.busy_since = None

    def _lane_of(self, batch: list[Pending]) -> Lane:
        lane = batch[0].lane
        return lane if isinstance(lane, Lane) else self.lane

    def _lost(self, lane: Lane, reason: str, n: int = 1) -> None:
        """Forecasts not published, by reason, in all and for the lane's model."""
        self.metrics.forecasts_dropped.labels(reason).inc(n)
        if lane.forecasts is not None:  # the daemon labels its lanes per model
            model = lane.served.forecaster.meta.model_id
            self.metrics.model_forecasts_dropped.labels(model, reason).inc(n)

    def _refused(self, topic: str, payload: bytes) -> str:
        """Why `publish` refused a message: larger than the broker takes, or a full queue."""
        return "queue_full" if self._fits(topic, payload) else "too_large"

    def _serve(self, batch: list[Pending]) -> None:
        lane = self._lane_of(batch)
        served = lane.served  # read once: a reload swaps it between two batches
        meta = served.forecaster.meta
        shape = (meta.timesteps, len(meta.features))
        refills = [p.window for p in batch if p.window.refill]
        if refills:  # windows refilling after a gap: only their newest reading is checked
            batch = [p for p in batch if not p.window.refill]
            fit = [w for w in refills if w.values.shape == shape]
            found = served.scores.check_refills(fit)
            if found and self.anomaly_topic is not None:
                self._publish_anomalies(lane, served, found)
        fits = [p for p in batch if p.window.values.shape == shape]
        if len(fits) < len(batch):  # made before a reload changed the window shape
            self._lost(lane, "shape", len(batch) - len(fits))
            batch = fits
        if not batch:
            return
        windows = [p.window for p in batch]
        started = time.perf_counter()
        raw = np.stack([w.values for w in windows])
        run = served.forecaster.run(raw)
        took = time.perf_counter() - started
        self.metrics.inference_seconds.observe(took)
        if lane.inference is not None:
            lane.inference.observe(took)
        y: NDArray[np.floating] = run.y
        adapted = None
        if served.heads is not None:
            got = served.heads.correct(windows, run.x, y, run.center, run.scale, raw)
            y, adapted = got.y, got.adapted
        forecasts, scales = served.forecaster.inverse(y, run), run.scale
        self.metrics.batch_size.observe(len(batch))
        scored = served.scores.score(windows, forecasts, scales, raw, lane.accuracy, adapted)
        sent: list[float] = []  # when each published forecast's reading arrived
        gone: list[tuple[int, str]] = []  # (slot, id) of sensors evicted while they waited
        payloads = served.encoder.encode_each(
            windows, scored.forecast, scored.lower, scored.upper, scored.persistence
        )
        try:
            with self._held():  # the batch's forecasts go out in one write
                for entry, payload in zip(batch, payloads, strict=True):
                    sensor_id = entry.window.sensor_id
                    tracked = lane.tracks(sensor_id)
                    if not tracked:
                        gone.append((entry.window.slot, sensor_id))
                    if payload is None:
                        self._lost(lane, "not_finite")
                        self._not_finite(sensor_id)
                        continue
                    retain = None if tracked else False
                    topic = self.output.format(sensor_id)
                    if self._publish(topic, payload, retain):
                        sent.append(entry.received)
                    else:
                        self._lost(lane, self._refused(topic, payload))
                if scored.anomalies and self.anomaly_topic is not None:
                    self._publish_anomalies(lane, served, scored.anomalies)
        finally:
            self.metrics.forecasts.inc(len(sent))  # once per batch: the counter takes a lock
            if lane.forecasts is not None:
                lane.forecasts.inc(len(sent))
        if gone:  # their windows took state again for sensors no longer tracked: let it go
            served.forget(gone)
        now = time.time()  # written (or handed to the network loop) by now
        for received in sent:
            self.metrics.latency_seconds.observe(now - received)

    def _not_finite(self, sensor_id: str) -> None:
        """Log a forecast not published for being not finite, at most once a minute."""
        held = self._not_finite_log.take("not_finite")
        if held is None:
            return
        log.warning(
            "forecast for %r not published: not_finite (the forecast or its interval is NaN "
            "or infinite)%s",
            sensor_id[:200],
            f" (and {held} more since)" if held else "",
        )

    def _publish_anomalies(
        self, lane: Lane, served: ServedBundle, anomalies: list[Anomaly]
    ) -> None:
        assert self.anomaly_topic is not None
        level = served.scores.anomaly_level
        for a in anomalies:
            payload = served.encoder.anomaly(
                a.window, a.value, a.expected, a.lower, a.upper, level, a.score
            )
            if payload is None:
                continue
            # an event, never retained (`output.retain` is of forecasts): a retained one was
            # replayed to every new subscriber, Home Assistant's anomaly sensor turned on again
            topic = self.anomaly_topic.format(a.window.sensor_id)
            if self._publish(topic, payload, False):
                self.metrics.anomalies.inc()
            else:
                self._lost(lane, self._refused(topic, payload))
