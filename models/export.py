"""Write a trained model as a bundle: model.keras, model.tflite and bundle.json, verified.

The bundle is built in a temporary directory next to the destination, checked
(the LiteRT model must reproduce the Keras model) and only then renamed into
place, so a failed run never leaves half a bundle.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from sensorcast.errors import UserError
from sensorcast.models.bundle import KERAS_FILE, META_FILE, TFLITE_FILE, BundleMeta, load_bundle

if TYPE_CHECKING:
    import keras

BATCH_SIZES = (1, 4, 16, 64, 256)
"""One fixed-batch signature each: LiteRT cannot resize a converted Keras 3 LSTM's batch."""
SIGNATURE = "b{batch}"
INPUT_NAME = "window"
PARITY_TOLERANCE = 1e-4
"""Largest LiteRT-vs-Keras difference accepted, relative to each target's scale."""
BUNDLE_FILES = frozenset({META_FILE, KERAS_FILE, TFLITE_FILE})


class ExportError(UserError):
    """The exported bundle failed its own verification; nothing was written."""


def check_out_dir(out: Path) -> None:
    """Refuse an output path that is a file or a directory holding more than a bundle."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    # said now, not after the whole training run: what would refuse the bundle's directory
    above = next(p for p in (out, *out.absolute().parents) if os.path.lexists(p))
    if above != out and not above.is_dir():
        raise UserError(f"--out {out} cannot be made: {above} is not a directory")
    if above != out and not os.access(above, os.W_OK | os.X_OK):
        raise UserError(f"--out {out} cannot be made: {above} is not writable")
    if out.is_dir():
        unrelated = sorted(p.name for p in out.iterdir() if p.name not in BUNDLE_FILES)
        if unrelated:
            raise UserError(
                f"--out {out} holds files that are not part of a bundle "
                f"({', '.join(unrelated[:5])}); choose an empty or new directory"
            )


def tflite_info() -> dict[str, Any]:
    """The bundle.json `tflite` entry matching what `convert_tflite` writes."""
    return {"batch_sizes": list(BATCH_SIZES), "signature": SIGNATURE, "input": INPUT_NAME}


def convert_tflite(model: keras.Model) -> bytes:
    """Convert to LiteRT with one `b{B}` signature per batch size, input `window`."""
    import keras
    import tensorflow as tf

    _, timesteps, features = model.input_shape
    archive = keras.export.ExportArchive()
    archive.track(model)
    names = [SIGNATURE.format(batch=b) for b in BATCH_SIZES]
    for name, b in zip(names, BATCH_SIZES, strict=True):
        spec = tf.TensorSpec([b, timesteps, features], tf.float32, name=INPUT_NAME)
        archive.add_endpoint(name, model.call, input_signature=[spec])
    with tempfile.TemporaryDirectory(prefix="sensorcast-savedmodel-") as saved:
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=names)
        return bytes(converter.convert())


def export_bundle(
    model: keras.Model,
    out: Path,
    fields: dict[str, Any],
    check_windows: NDArray[np.float64],
    check_targets: NDArray[np.float64],
) -> BundleMeta:
    """Write and verify the bundle in a temporary directory, then move it to `out`.

    `fields` are the bundle.json fields (see `write_bundle_meta`); the check
    windows are raw test windows and their true targets, which set the scale
    the parity tolerance is relative to.
    """
    from sensorcast.models.bundle import write_bundle_meta

    out = out.resolve()
    check_out_dir(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; a bundle is read by the service user
    except OSError as exc:
        raise UserError(f"cannot write the bundle next to {out}: {exc.strerror}") from None
    try:
        model.save(staging / KERAS_FILE)
        (staging / TFLITE_FILE).write_bytes(convert_tflite(model))
        meta = write_bundle_meta(staging, {**fields, "tflite": tflite_info()})
        verify_parity(staging, check_windows, check_targets)
        _replace_dir(staging, out)
    except OSError as exc:
        raise UserError(f"cannot write the bundle to {out}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return meta


def verify_parity(path: Path, windows: NDArray[np.float64], targets: NDArray[np.float64]) -> float:
    """Load the bundle as the daemon does; LiteRT must match `model.keras` on the windows."""
    from sensorcast.models.runtime import Forecaster

    bundle = load_bundle(path)
    reference = Forecaster(bundle, backend="keras").forecast(windows)
    served = Forecaster(bundle).forecast(windows)
    scale = target_scale(targets)
    worst = float(np.max(np.abs(served - reference) / scale)) if len(windows) else 0.0
    if not worst <= PARITY_TOLERANCE:
        raise ExportError(
            f"model.tflite disagrees with model.keras by {worst:.2e} of the target scale "
            f"(allowed {PARITY_TOLERANCE:g}); the bundle was not written"
        )
    return worst


def target_scale(targets: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-target spread of (n, horizon, targets) values, never zero."""
    spread = targets.std(axis=(0, 1))
    level = np.abs(targets).max(axis=(0, 1), initial=1.0)
    out: NDArray[np.float64] = np.maximum(spread, 1e-6 * level)
    return out


def _replace_dir(staging: Path, out: Path) -> None:
    """Move the finished bundle into place, swapping out any previous bundle."""
    if not out.exists():
        staging.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
