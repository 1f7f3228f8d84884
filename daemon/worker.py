"""The inference worker: batches ready windows across sensors and publishes forecasts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sensorcast.forecasts import ForecastEncoder
from sensorcast.handoff import Pending, ReadyQueue
from sensorcast.metrics import Metrics
from sensorcast.runner import Forecaster
from sensorcast.topics import TopicTemplate

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], bool]
"""Hands a forecast to the MQTT client; False when it could not be queued."""


@dataclass(frozen=True)
class Model:
    """What the worker serves: swapped as a whole on reload."""

    forecaster: Forecaster
    encoder: ForecastEncoder


class InferenceWorker(threading.Thread):
    """Owns the model runner (LiteRT is not thread-safe); one model call per batch."""

    def __init__(
        self,
        queue: ReadyQueue,
        model: Model,
        publish: Publish,
        output: TopicTemplate,
        metrics: Metrics,
        *,
        max_batch: int = 256,
        max_wait: float = 0.0,
    ) -> None:
        super().__init__(name="sensorcast-inference", daemon=True)
        self.queue = queue
        self.output = output
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.busy_since: float | None = None
        """When the batch in progress started; None while waiting for windows."""
        self._model = model
        self._next_model: Model | None = None
        self._publish = publish
        self._stopped = False

    def swap(self, model: Model) -> None:
        """Serve `model` from the next batch on."""
        self._next_model = model

    def stop(self) -> None:
        """Finish what is queued, then end."""
        self._stopped = True
        self.queue.close()

    def run(self) -> None:
        while True:
            batch = self.queue.take(self.max_batch, self.max_wait)
            if not batch:
                if self._stopped:
                    return
                continue
            if self._next_model is not None:
                self._model, self._next_model = self._next_model, None
            self.busy_since = time.monotonic()
            try:
                self._serve(batch)
            except Exception:  # a model fault must not end the worker
                log.exception("inference failed for a batch of %d windows", len(batch))
                self.metrics.forecasts_dropped.labels("error").inc(len(batch))
            finally:
                self.busy_since = None

    def _serve(self, batch: list[Pending]) -> None:
        model = self._model
        meta = model.forecaster.meta
        shape = (meta.timesteps, len(meta.features))
        batch = [p for p in batch if p.window.values.shape == shape]
        if not batch:
            return
        windows = np.stack([p.window.values for p in batch])
        started = time.perf_counter()
        forecasts = model.forecaster.forecast(windows)
        self.metrics.inference_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(batch))
        for entry, forecast in zip(batch, forecasts, strict=True):
            payload = model.encoder.encode(entry.window, forecast)
            if payload is None:
                self.metrics.forecasts_dropped.labels("not_finite").inc()
                continue
            if self._publish(self.output.format(entry.window.sensor_id), payload):
                self.metrics.forecasts.inc()
                self.metrics.latency_seconds.observe(time.time() - entry.received)
            else:
                self.metrics.forecasts_dropped.labels("queue_full").inc()
