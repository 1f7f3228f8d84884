"""Model bundles crafted the way the probes of issue 15 crafted them: each is a copy of the
shipped default bundle with one thing wrong, checksums and content hash made to match
wherever that lets the defect get past the file checks."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import content_hash, load_bundle, sha256_file, write_bundle_meta


def copy_default(dst: Path) -> Path:
    shutil.copytree(DEFAULT_BUNDLE, dst)
    return dst


def _fields(root: Path) -> dict[str, Any]:
    meta = load_bundle(root).meta.model_dump(mode="json")
    for key in ("schema_version", "files", "content_hash"):
        meta.pop(key)
    return meta


def rewritten(dst: Path, **changes: Any) -> Path:
    """A copy whose bundle.json is rewritten with `changes`, checksums and hash matching."""
    root = copy_default(dst)
    write_bundle_meta(root, {**_fields(root), **changes})
    return root


def _raw_meta(root: Path, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """bundle.json edited without validation, files' checksums and content hash recomputed."""
    meta = json.loads((root / "bundle.json").read_text())
    edit(meta)
    meta["files"] = {n: sha256_file(root / n) for n in ("model.tflite", "model.keras")}
    meta["content_hash"] = content_hash(meta["files"]["model.tflite"], meta)
    (root / "bundle.json").write_text(json.dumps(meta))
    return meta


# --- D1/D2: bundles that made load_bundle raise something other than BundleError ----------


def huge_integer(dst: Path) -> Path:
    root = copy_default(dst)
    text = (root / "bundle.json").read_text()
    (root / "bundle.json").write_text(text.replace("{", '{"n": ' + "9" * 5000 + ", ", 1))
    return root


def deep_nesting(dst: Path) -> Path:
    root = copy_default(dst)
    (root / "bundle.json").write_text("[" * 100_000 + "]" * 100_000)
    return root


def long_file_name(dst: Path) -> Path:
    root = copy_default(dst)
    meta = json.loads((root / "bundle.json").read_text())
    meta["files"]["x" * 300] = "0" * 64
    (root / "bundle.json").write_text(json.dumps(meta))
    return root


def model_links_to_proc_mem(dst: Path) -> Path:
    root = copy_default(dst)
    (root / "model.tflite").unlink()
    (root / "model.tflite").symlink_to("/proc/self/mem")
    return root


def meta_links_to_proc_mem(dst: Path) -> Path:
    root = copy_default(dst)
    (root / "bundle.json").unlink()
    (root / "bundle.json").symlink_to("/proc/self/mem")
    return root


def model_is_a_fifo(dst: Path) -> Path:
    root = copy_default(dst)
    (root / "model.tflite").unlink()
    os.mkfifo(root / "model.tflite")
    return root


def symlink_loop(dst: Path) -> Path:
    root = copy_default(dst)
    (root / "model.tflite").unlink()
    (root / "model.tflite").symlink_to("model.tflite")
    return root


LOAD_FAILURES: dict[str, Callable[[Path], Path]] = {
    "huge_integer": huge_integer,
    "deep_nesting": deep_nesting,
    "long_file_name": long_file_name,
    "model_links_to_proc_mem": model_links_to_proc_mem,
    "meta_links_to_proc_mem": meta_links_to_proc_mem,
    "model_is_a_fifo": model_is_a_fifo,
    "symlink_loop": symlink_loop,
}
"""Name -> builder of a bundle `load_bundle` must refuse with one line."""


# --- D8: bundles that passed load_bundle (and check-config) but cannot serve ---------------


def random_model(dst: Path) -> Path:
    root = copy_default(dst)
    fields = _fields(root)
    (root / "model.tflite").write_bytes(os.urandom(146_048))
    write_bundle_meta(root, fields)
    return root


def model_links_to_keras(dst: Path) -> Path:
    root = copy_default(dst)
    fields = _fields(root)
    (root / "model.tflite").unlink()
    (root / "model.tflite").symlink_to("model.keras")
    write_bundle_meta(root, fields)
    return root


def horizon_10000(dst: Path) -> Path:
    root = copy_default(dst)

    def edit(meta: dict[str, Any]) -> None:
        meta["horizon"] = 10_000
        meta["calibration"] = {"levels": [0.9], "abs_error": [[[1.0]] * 10_000], "n": 1}

    _raw_meta(root, edit)
    return root


def batch_4096(dst: Path) -> Path:
    root = copy_default(dst)
    _raw_meta(root, lambda m: m["tflite"].update(batch_sizes=[1, 4, 16, 64, 256, 4096]))
    return root


def batch_without_signature(dst: Path) -> Path:
    """Within every bound, but the model has no signature for batch 512."""
    root = copy_default(dst)
    _raw_meta(root, lambda m: m["tflite"].update(batch_sizes=[1, 4, 16, 64, 256, 512]))
    return root


SERVE_FAILURES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "random_model": (random_model, "is not a usable LiteRT model"),
    "model_links_to_keras": (model_links_to_keras, "is not a usable LiteRT model"),
    "horizon_10000": (horizon_10000, "horizon"),
    "batch_4096": (batch_4096, "tflite.batch_sizes must not exceed 1024"),
    "batch_without_signature": (batch_without_signature, "has no signature 'b512'"),
}
"""Name -> (builder, what the one-line error says) for bundles `run` cannot serve."""
