"""Model backends: run normalised windows through a bundle's model.

`LiteRTBackend` (the default) serves `model.tflite` with LiteRT and needs no
TensorFlow. The exported model has one fixed-batch signature per size in
`bundle.tflite.batch_sizes` (LiteRT cannot resize a converted LSTM's batch), so
a batch of any size is split into signature calls by `plan_batches`, padding
the last chunk when that is cheaper than more calls. `KerasBackend` serves
`model.keras` with TensorFlow, for users who have it and for comparison.

A runner is not thread-safe: the inference worker owns it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from sensorcast.models import install_hint
from sensorcast.models.bundle import Bundle, BundleError, BundleMeta
from sensorcast.models.preprocess import ScaleContext, Scaler

CALL_OVERHEAD_WINDOWS = 6.0
"""Cost of one LiteRT call, in windows' worth of compute (measured: ~65 us vs ~11 us)."""


@functools.lru_cache(maxsize=32)
def _plan_table(sizes: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Cheapest chunk list for every batch of 0..2*max(sizes) windows."""
    top = max(sizes)
    best: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
    for n in range(1, 2 * top + 1):
        options = []
        for b in sizes:
            cost, chunks = best[max(0, n - b)]
            options.append((cost + CALL_OVERHEAD_WINDOWS + b, (b, *chunks)))
        best.append(min(options))
    return tuple(chunks for _, chunks in best)


def plan_batches(n: int, sizes: tuple[int, ...]) -> list[int]:
    """Signature batch sizes whose sum covers `n` windows at the least estimated cost."""
    top = max(sizes)
    full, rest = divmod(n, top)
    if full:  # plan the last top..2*top windows together: [48, 48] beats [64, 48]
        full, rest = full - 1, rest + top
    return [top] * full + list(_plan_table(sizes)[rest])


class Backend(Protocol):
    """Runs normalised windows (n, timesteps, features) to outputs (n, horizon, targets)."""

    meta: BundleMeta

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]: ...


class LiteRTBackend:
    """Serves `model.tflite` with LiteRT."""

    def __init__(self, bundle: Bundle, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.meta = bundle.meta
        info = bundle.meta.tflite
        try:
            # from the bytes load_bundle checked, not the file: a model mapped from the file
            # died of SIGBUS when the file was rewritten in place (cp over the bundle)
            content = bundle.tflite or bundle.tflite_path.read_bytes()
            self._content = content  # the interpreter reads it for as long as it serves
            self._interpreter = Interpreter(model_content=content, num_threads=threads)
            signatures = self._interpreter.get_signature_list()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{bundle.tflite_path} is not a usable LiteRT model: {exc}") from None
        self._sizes = tuple(info.batch_sizes)
        self._input = info.input
        self._calls: dict[int, Any] = {}
        t, f = bundle.meta.timesteps, len(bundle.meta.features)
        h, k = bundle.meta.horizon, len(bundle.meta.targets)
        for b in self._sizes:
            name = info.signature_for(b)
            if name not in signatures:
                raise BundleError(f"{bundle.tflite_path} has no signature {name!r}")
            call = self._interpreter.get_signature_runner(name)
            ins = call.get_input_details()
            outs = call.get_output_details()
            if list(ins) != [self._input] or len(outs) != 1:
                raise BundleError(f"{bundle.tflite_path} signature {name!r} has unexpected tensors")
            in_shape = [int(d) for d in ins[self._input]["shape"]]
            out_shape = [int(d) for d in next(iter(outs.values()))["shape"]]
            if in_shape != [b, t, f] or out_shape != [b, h, k]:
                raise BundleError(
                    f"{bundle.tflite_path} signature {name!r} maps {in_shape} to {out_shape}, "
                    f"bundle.json says {[b, t, f]} to {[b, h, k]}"
                )
            self._calls[b] = call
        self._output = next(iter(self._calls[self._sizes[0]].get_output_details()))
        self._pad = np.zeros((max(self._sizes), t, f), dtype=np.float32)

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        n = x.shape[0]
        out = np.empty((n, self.meta.horizon, len(self.meta.targets)), dtype=np.float32)
        start = 0
        for b in plan_batches(n, self._sizes):
            stop = min(start + b, n)
            chunk = x[start:stop]
            if stop - start < b:
                pad = self._pad[:b]
                pad[: stop - start] = chunk
                pad[stop - start :] = 0.0
                chunk = pad
            result = self._calls[b](**{self._input: np.ascontiguousarray(chunk)})
            out[start:stop] = result[self._output][: stop - start]
            start = stop
        return out


class BackendUnavailable(BundleError):
    """The configured backend cannot run on this install (its library is missing): a problem
    of `model.backend`, not of the bundle."""


class KerasBackend:
    """Serves `model.keras` with TensorFlow (needs the `[train]` extra)."""

    def __init__(self, bundle: Bundle) -> None:
        try:
            import keras
        except ImportError:
            raise BackendUnavailable(
                f"the keras backend needs TensorFlow, the [train] extra: {install_hint('train')}"
            ) from None
        if not bundle.keras_path.is_file():
            raise BundleError(f"model bundle {bundle.path} has no model.keras")
        self.meta = bundle.meta
        try:
            self._model = keras.saving.load_model(bundle.keras_path, safe_mode=True, compile=False)
        except Exception as exc:  # keras raises many types for a bad file
            raise BundleError(f"{bundle.keras_path} cannot be loaded safely: {exc}") from None

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        # The compiled predict step (traced once, shapes generalised by Keras), not an eager
        # call: the same numbers, ~1.5 ms instead of ~55 ms per batch for the default LSTM.
        y = np.asarray(self._model.predict_on_batch(x), dtype=np.float32)
        return y.reshape(x.shape[0], self.meta.horizon, len(self.meta.targets))


class Forecaster:
    """Raw windows in sensor units to forecasts in sensor units, as the bundle prescribes."""

    def __init__(self, bundle: Bundle, backend: str = "litert", threads: int = 1) -> None:
        self.meta = bundle.meta
        self.scaler = Scaler(bundle.meta.normalisation, bundle.meta.features, bundle.meta.targets)
        self.backend: Backend = (
            KerasBackend(bundle) if backend == "keras" else LiteRTBackend(bundle, threads=threads)
        )

    def forecast(self, windows: NDArray[np.floating]) -> NDArray[np.float64]:
        """(n, timesteps, features) raw readings to (n, horizon, targets) forecasts."""
        return self.forecast_scaled(windows)[0]

    def forecast_scaled(
        self, windows: NDArray[np.floating]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Forecasts and each window's scale per target, shaped (n, 1, targets): errors
        divided by it are in the normalised units of the bundle's calibration."""
        run = self.run(windows)
        return self.inverse(run.y, run), run.scale

    def run(self, windows: NDArray[np.floating]) -> Run:
        """The model's input and output for raw windows, in normalised units."""
        x, ctx = self.scaler.transform(windows)
        y = self.backend.predict(x)
        shape = (y.shape[0], 1, y.shape[2])
        return Run(x, y, np.broadcast_to(ctx.center, shape), np.broadcast_to(ctx.scale, shape))

    def inverse(self, y: NDArray[np.floating], run: Run) -> NDArray[np.float64]:
        """Normalised outputs (n, horizon, targets) of `run`'s windows in sensor units."""
        return self.scaler.inverse(y, ScaleContext(run.center, run.scale))


@dataclass(frozen=True)
class Run:
    """One model call: input `x` (n, timesteps, features) and output `y` (n, horizon,
    targets), normalised, with each window's `center` and `scale` (n, 1, targets)."""

    x: NDArray[np.float32]
    y: NDArray[np.float32]
    center: NDArray[np.float64]
    scale: NDArray[np.float64]


NATIVE_INFO = re.compile(
    r"I\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|INFO: "
)
"""What TensorFlow's and LiteRT's native code write to stderr at INFO level (oneDNN at
import, XNNPACK at a model's first call), and absl's notice before them. TF_CPP_MIN_LOG_LEVEL
does not silence these: TensorFlow 2.19 and later log them through absl before it is set up."""


@contextlib.contextmanager
def native_info_held() -> Iterator[None]:
    """Hold what native code writes to fd 2 meanwhile, and pass it on afterwards without its
    INFO lines (`NATIVE_INFO`): warnings and errors still show, once the block is done (the
    demo's live view, which they would tear; `train --quiet`)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(ln for ln in lines if not NATIVE_INFO.match(ln)))
