"""The inference worker: batches ready windows across sensors and publishes forecasts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sensorcast.accuracy import OnlineAccuracy
from sensorcast.forecasts import ForecastEncoder
from sensorcast.handoff import Pending, ReadyQueue
from sensorcast.metrics import Metrics
from sensorcast.models.bundle import Bundle
from sensorcast.models.runtime import Forecaster
from sensorcast.topics import TopicTemplate

log = logging.getLogger(__name__)

LINGER_CAP = 0.002
"""Longest the worker lingers, beyond `max_wait`, for a batch to fill (seconds)."""

Publish = Callable[[str, bytes], bool]
"""Hands a forecast to the MQTT client; False when it could not be queued."""


@dataclass(frozen=True)
class ServedBundle:
    """What the worker serves, swapped as a whole on reload: the bundle's forecaster
    (raw windows to forecasts) and its payload encoder."""

    forecaster: Forecaster
    encoder: ForecastEncoder

    @classmethod
    def load(cls, bundle: Bundle, backend: str = "litert", threads: int = 1) -> ServedBundle:
        forecaster = Forecaster(bundle, backend=backend, threads=threads)
        return cls(forecaster=forecaster, encoder=ForecastEncoder(bundle.meta))


class InferenceWorker(threading.Thread):
    """Owns the model runner (LiteRT is not thread-safe); one model call per batch."""

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
    ) -> None:
        super().__init__(name="sensorcast-inference", daemon=True)
        self.queue = queue
        self.output = output
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.accuracy = accuracy
        self.busy_since: float | None = None
        """When the batch in progress started; None while waiting for windows."""
        self._served = served
        self._next: ServedBundle | None = None
        self._publish = publish
        self._stopped = False

    def swap(self, served: ServedBundle) -> None:
        """Serve `served` from the next batch on."""
        self._next = served

    def stop(self) -> None:
        """Finish what is queued, then end."""
        self._stopped = True
        self.queue.close()

    def run(self) -> None:
        served = 0.0  # seconds the last batch took
        while True:
            # Besides max_wait, wait for more windows up to as long as the last batch took
            # (at most LINGER_CAP): under load that grows batches, which amortises the
            # per-call cost that otherwise starves the network thread of the GIL; at low
            # load the last batch was quick, so the wait is too.
            batch = self.queue.take(self.max_batch, max(self.max_wait, min(served, LINGER_CAP)))
            started = time.perf_counter()
            if not batch:
                if self._stopped:
                    return
                continue
            if self._next is not None:
                self._served, self._next = self._next, None
            self.busy_since = time.monotonic()
            try:
                self._serve(batch)
            except Exception:  # a model fault must not end the worker
                log.exception("inference failed for a batch of %d windows", len(batch))
                self.metrics.forecasts_dropped.labels("error").inc(len(batch))
            finally:
                self.busy_since = None
                served = time.perf_counter() - started

    def _serve(self, batch: list[Pending]) -> None:
        served = self._served
        meta = served.forecaster.meta
        shape = (meta.timesteps, len(meta.features))
        fits = [p for p in batch if p.window.values.shape == shape]
        if len(fits) < len(batch):  # made before a reload changed the window shape
            self.metrics.forecasts_dropped.labels("shape").inc(len(batch) - len(fits))
            batch = fits
        if not batch:
            return
        windows = np.stack([p.window.values for p in batch])
        started = time.perf_counter()
        forecasts = served.forecaster.forecast(windows)
        self.metrics.inference_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(batch))
        published = 0
        try:
            payloads = served.encoder.encode_each([p.window for p in batch], forecasts)
            for entry, payload in zip(batch, payloads, strict=True):
                if payload is None:
                    self.metrics.forecasts_dropped.labels("not_finite").inc()
                    continue
                if self._publish(self.output.format(entry.window.sensor_id), payload):
                    published += 1
                    self.metrics.latency_seconds.observe(time.time() - entry.received)
                else:
                    self.metrics.forecasts_dropped.labels("queue_full").inc()
        finally:
            self.metrics.forecasts.inc(published)  # once per batch: the counter takes a lock
        if self.accuracy is not None:
            for entry, forecast in zip(batch, forecasts, strict=True):
                w = entry.window
                self.accuracy.expect(w.sensor_id, w.ts, forecast, w.values)
