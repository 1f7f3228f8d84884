"""The model bundle: the directory `sensorcast train` writes and the daemon serves.

A bundle holds `model.keras` (for retraining and inspection), `model.tflite`
(what the daemon runs) and `bundle.json` (this module's `BundleMeta`). Loading
validates everything that can be checked without running the model: the JSON
schema, the file checksums, the content hash and the internal consistency of
shapes and statistics. No code from a bundle is ever executed here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sensorcast.errors import UserError

SCHEMA_VERSION = 2
"""Written by this sensorcast. Version 1 (no interval calibration) is still read."""
READABLE_SCHEMAS = (1, 2)
META_FILE = "bundle.json"
TFLITE_FILE = "model.tflite"
KERAS_FILE = "model.keras"
MAX_META_BYTES = 1 << 20
MAX_MODEL_BYTES = 256 << 20
MAX_BATCH = 1024
"""Largest batch signature a bundle may declare (the exporter writes up to 256)."""
MAX_TIMESTEPS = 4096
MAX_HORIZON = 1024
MAX_SIGNATURE_VALUES = 1 << 24
"""Cap on the values in the largest signature's input or output tensor (64 MB of float32),
so a bundle cannot make the interpreter allocate more than a gateway has."""
MAX_COLUMNS = 64
"""Most features, and most targets, a bundle may have."""
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
FEATURE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$"


class BundleError(UserError):
    """A bundle that cannot be used; the message is one line naming the problem."""


class Normalisation(BaseModel):
    """How raw windows are scaled for the model and forecasts scaled back.

    `global`: fixed per-feature mean/std from the training split (and per-target
    statistics for the outputs). `window`: every window is scaled by its own
    mean/std per feature, so one model serves sensors of any magnitude. `last`:
    every window is taken relative to its last reading and divided by a step
    scale: `scale` (one per feature, the training split's RMS of first
    differences) when stored, else the window's own step scale, per `step_scale`:
    `rms` (or absent, as in bundles written before it existed), the RMS of the
    window's first differences; `trimmed`, the same without the window's largest
    differences (robust to a jump, see `preprocess.trimmed_step_scale`). An output
    of zero is persistence, and one model serves any magnitude.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["global", "window", "last"]
    mean: list[float] | None = None
    std: list[float] | None = None
    target_mean: list[float] | None = None
    target_std: list[float] | None = None
    scale: list[float] | None = None
    step_scale: Literal["rms", "trimmed"] | None = None

    @model_validator(mode="after")
    def _check_stats(self) -> Normalisation:
        stats = (self.mean, self.std, self.target_mean, self.target_std)
        if self.mode == "global":
            if any(s is None for s in stats):
                raise ValueError("global normalisation needs mean, std, target_mean, target_std")
            for s in stats:
                assert s is not None
                if not all(math.isfinite(v) for v in s):
                    raise ValueError("normalisation statistics must be finite")
            for s in (self.std, self.target_std):
                assert s is not None
                if not all(v > 0 for v in s):
                    raise ValueError("normalisation std must be positive")
        elif any(s is not None for s in stats):
            raise ValueError(f"{self.mode} normalisation takes no mean or std")
        if self.scale is not None:
            if self.mode != "last":
                raise ValueError("only last normalisation takes a scale")
            if not all(math.isfinite(v) and v > 0 for v in self.scale):
                raise ValueError("normalisation scale must be finite and positive")
        if self.step_scale is not None and (self.mode != "last" or self.scale is not None):
            raise ValueError("step_scale is for last normalisation with each window's own scale")
        return self


class Architecture(BaseModel):
    """The seed shape the model was built from, for inspection and retraining."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["many_to_one", "stacked", "seq2seq"]
    layers: int = Field(ge=1)
    units: int = Field(ge=1)
    dropout: float = Field(ge=0.0, lt=1.0)


class TFLiteInfo(BaseModel):
    """The fixed-batch signatures of `model.tflite` (one subgraph per batch size)."""

    model_config = ConfigDict(extra="forbid")

    batch_sizes: list[int] = Field(min_length=1, max_length=32)
    signature: str = Field(default="b{batch}", pattern=r"^[A-Za-z0-9_]*\{batch\}[A-Za-z0-9_]*$")
    input: str = "window"

    @model_validator(mode="after")
    def _check_sizes(self) -> TFLiteInfo:
        sizes = self.batch_sizes
        if sizes[0] != 1 or sorted(set(sizes)) != sizes:  # so every size is at least 1
            raise ValueError("tflite.batch_sizes must be ascending, unique and start at 1")
        if sizes[-1] > MAX_BATCH:
            raise ValueError(f"tflite.batch_sizes must not exceed {MAX_BATCH}")
        return self

    def signature_for(self, batch: int) -> str:
        return self.signature.format(batch=batch)


class Calibration(BaseModel):
    """Interval calibration: quantiles of absolute forecast errors in normalised units.

    `abs_error[i][s][t]` is the `levels[i]` quantile of |y - forecast| / scale for
    step `s` and target `t`, where `scale` is the window's scale from the shared
    `Scaler`, measured on windows held back from training (split conformal). The
    central interval at probability `level` is then forecast +- quantile * scale.
    """

    model_config = ConfigDict(extra="forbid")

    levels: list[float] = Field(min_length=1, max_length=64)
    abs_error: list[list[list[float]]]
    n: int = Field(ge=0, description="held-back windows the quantiles were measured on")

    @model_validator(mode="after")
    def _check(self) -> Calibration:
        if not all(0 < v < 1 for v in self.levels) or sorted(set(self.levels)) != self.levels:
            raise ValueError("calibration.levels must be ascending, unique and within (0, 1)")
        if len(self.abs_error) != len(self.levels):
            raise ValueError("calibration.abs_error needs one entry per level")
        shapes = {(len(steps), len(steps[0]) if steps else 0) for steps in self.abs_error}
        if len(shapes) != 1 or any(
            len(row) != len(steps[0]) for steps in self.abs_error for row in steps
        ):
            raise ValueError("calibration.abs_error must be shaped (levels, horizon, targets)")
        flat = [v for steps in self.abs_error for row in steps for v in row]
        if not all(math.isfinite(v) and v >= 0 for v in flat):
            raise ValueError("calibration.abs_error must be finite and not negative")
        return self

    @property
    def shape(self) -> tuple[int, int]:
        """(horizon, targets)."""
        return len(self.abs_error[0]), len(self.abs_error[0][0])

    def quantile(self, level: float) -> list[list[float]]:
        """The (horizon, targets) error quantile at `level`, interpolated linearly between the
        stored levels and held at the nearest one outside them."""
        levels = self.levels
        if level <= levels[0]:
            return self.abs_error[0]
        if level >= levels[-1]:
            return self.abs_error[-1]
        hi = next(i for i, v in enumerate(levels) if v >= level)
        lo = hi - 1
        w = (level - levels[lo]) / (levels[hi] - levels[lo])
        return [
            [a + w * (b - a) for a, b in zip(ra, rb, strict=True)]
            for ra, rb in zip(self.abs_error[lo], self.abs_error[hi], strict=True)
        ]


DEFAULT_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995)
_NORMAL_ABS_QUANTILES = (0.674, 1.282, 1.645, 1.960, 2.326, 2.576, 2.807)


def default_calibration(horizon: int, targets: int) -> Calibration:
    """For bundles of schema 1, which carry none: errors as if normal with one normalised
    unit at the first step, growing with the square root of the step. A rough start that
    the daemon's online calibration replaces with each sensor's own errors."""
    return Calibration(
        levels=list(DEFAULT_LEVELS),
        abs_error=[
            [[z * math.sqrt(step + 1)] * targets for step in range(horizon)]
            for z in _NORMAL_ABS_QUANTILES
        ],
        n=0,
    )


class BundleMeta(BaseModel):
    """Contents of `bundle.json`."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int
    name: str = Field(pattern=NAME_PATTERN)
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    created: str
    timesteps: int = Field(ge=1, le=MAX_TIMESTEPS)
    features: list[str] = Field(min_length=1, max_length=MAX_COLUMNS)
    targets: list[str] = Field(min_length=1, max_length=MAX_COLUMNS)
    horizon: int = Field(ge=1, le=MAX_HORIZON)
    cadence_s: float | None = Field(default=None, gt=0)
    normalisation: Normalisation
    calibration: Calibration | None = None
    """Required from schema 2; `interval_calibration` supplies the default for schema 1."""
    architecture: Architecture
    tflite: TFLiteInfo
    files: dict[str, str] = Field(max_length=16)
    metrics: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_consistency(self) -> BundleMeta:
        import re

        if self.schema_version not in READABLE_SCHEMAS:
            raise ValueError(
                f"schema_version {self.schema_version} is not supported (this sensorcast reads "
                f"{', '.join(map(str, READABLE_SCHEMAS))})"
            )
        if self.schema_version >= 2 and self.calibration is None:
            raise ValueError("calibration is required from schema_version 2 (retrain the bundle)")
        if self.calibration is not None and self.calibration.shape != (
            self.horizon,
            len(self.targets),
        ):
            raise ValueError("calibration.abs_error must be shaped (levels, horizon, targets)")
        for group in (self.features, self.targets):
            if len(set(group)) != len(group):
                raise ValueError("feature and target names must be unique")
            for n in group:
                if not re.match(FEATURE_PATTERN, n):
                    raise ValueError(f"invalid feature or target name {n!r}")
        norm = self.normalisation
        if norm.mode == "global":
            assert norm.mean is not None and norm.target_mean is not None
            if len(norm.mean) != len(self.features) or len(norm.std or []) != len(self.features):
                raise ValueError("normalisation mean/std must have one value per feature")
            if len(norm.target_mean) != len(self.targets) or len(norm.target_std or []) != len(
                self.targets
            ):
                raise ValueError("normalisation target_mean/target_std need one value per target")
        elif not set(self.targets) <= set(self.features):
            raise ValueError(f"{norm.mode} normalisation needs every target to be a feature")
        if norm.scale is not None and len(norm.scale) != len(self.features):
            raise ValueError("normalisation scale must have one value per feature")
        if self.architecture.kind == "seq2seq" and self.horizon != self.timesteps:
            raise ValueError("a seq2seq bundle has horizon equal to timesteps")
        if TFLITE_FILE not in self.files:
            raise ValueError(f"files must list {TFLITE_FILE}")
        batch = self.tflite.batch_sizes[-1]
        shape = (self.timesteps, len(self.features), self.horizon, len(self.targets))
        if signature_values(*shape, batch) > MAX_SIGNATURE_VALUES:
            raise ValueError(
                f"tflite.batch_sizes up to {batch} with timesteps {self.timesteps} and horizon "
                f"{self.horizon} make tensors of more than {MAX_SIGNATURE_VALUES} values"
            )
        return self

    @property
    def interval_calibration(self) -> Calibration:
        """The bundle's calibration, or the documented default for schema 1 bundles."""
        if self.calibration is not None:
            return self.calibration
        return default_calibration(self.horizon, len(self.targets))

    @property
    def short_hash(self) -> str:
        return self.content_hash[:8]

    @property
    def model_id(self) -> str:
        """`name@shorthash`, the `model` field of every forecast."""
        return f"{self.name}@{self.short_hash}"


def signature_values(timesteps: int, features: int, horizon: int, targets: int, batch: int) -> int:
    """Values in a batch-`batch` signature's larger tensor, input or output: what
    `MAX_SIGNATURE_VALUES` bounds."""
    return max(timesteps * features, horizon * targets) * batch


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hash(tflite_sha256: str, meta: dict[str, Any]) -> str:
    """Hash of everything that decides a forecast: the served model and its preprocessing."""
    keys = (
        "timesteps",
        "features",
        "targets",
        "horizon",
        "cadence_s",
        "normalisation",
        "architecture",
    )
    core = {k: meta[k] for k in keys}
    norm = core["normalisation"]
    if isinstance(norm, dict) and norm.get("step_scale") is None:  # as before it existed
        core["normalisation"] = {k: v for k, v in norm.items() if k != "step_scale"}
    if meta.get("calibration") is not None:  # schema 2 on; schema 1 hashes stay as they were
        core["calibration"] = meta["calibration"]
    blob = json.dumps({"tflite": tflite_sha256, **core}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A validated bundle on disk, with the bytes of its `model.tflite` as validated: the
    daemon serves these, not the file, which may be rewritten in place while it runs (a
    `cp` over the bundle directory; a model mapped from the file died of SIGBUS then)."""

    path: Path
    meta: BundleMeta
    tflite: bytes = field(default=b"", repr=False)

    @property
    def tflite_path(self) -> Path:
        return self.path / TFLITE_FILE

    @property
    def keras_path(self) -> Path:
        return self.path / KERAS_FILE


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "bundle.json"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}"


def load_bundle(path: str | Path) -> Bundle:
    """Read and fully validate a bundle directory; raise `BundleError` on any problem.

    The bundle is untrusted input: every file is a regular file inside the bundle (a
    symbolic link may point to another file of the bundle, never out of it or at a device),
    read up to a size cap, and any failure (an unreadable file, JSON nested too deep or an
    integer too long to parse) is a `BundleError` of one line.
    """
    root = Path(path)
    try:
        return _load(root)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        what = getattr(exc, "strerror", None) or _one_line(exc)
        where = _short(str(getattr(exc, "filename", None) or root))
        raise BundleError(
            f"model bundle {_short(str(root))}: {where} cannot be read: {what}"
        ) from None


def _load(root: Path) -> Bundle:
    if not root.is_dir():
        raise BundleError(f"model bundle {root} is not a directory")
    files = _BundleFiles(root)
    meta_path = root / META_FILE
    if not os.path.lexists(meta_path):
        raise BundleError(f"model bundle {root} has no {META_FILE}")
    text = files.read(META_FILE, MAX_META_BYTES)
    try:
        raw = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_path} is not valid JSON: {_one_line(exc)}") from None
    except ValueError:  # Python's limit on the digits of an integer
        raise BundleError(f"{meta_path} is not valid JSON: it holds a number too long") from None
    except RecursionError:
        raise BundleError(f"{meta_path} is not valid JSON: nested too deeply") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{meta_path} must hold a JSON object")
    try:
        meta = BundleMeta.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{meta_path} is invalid: {_first_error(exc)}") from None
    tflite = b""
    for name, expected in meta.files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise BundleError(f"{meta_path} lists a file outside the bundle: {_short(name)!r}")
        if name == TFLITE_FILE:  # kept: what is served is what was checked
            tflite = files.read(name, MAX_MODEL_BYTES)
            digest = hashlib.sha256(tflite).hexdigest()
        else:
            digest = files.sha256(name, MAX_MODEL_BYTES)
        if digest != expected:
            raise BundleError(
                f"{root / name} does not match its checksum in {META_FILE} (corrupt?)"
            )
    expected_hash = content_hash(meta.files[TFLITE_FILE], meta.model_dump(mode="json"))
    if expected_hash != meta.content_hash:
        raise BundleError(f"{meta_path}: content_hash does not match the model and its settings")
    return Bundle(path=root, meta=meta, tflite=tflite)


class _BundleFiles:
    """Reads the files of one bundle directory, refusing what a bundle file must not be."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real = root.resolve(strict=True)

    def _open(self, name: str, limit: int) -> BinaryIO:
        shown = self.root / name
        if not (self.real / name).exists():
            if (self.real / name).is_symlink():
                raise BundleError(f"{shown} is a link that leads nowhere (or in a loop)")
            raise BundleError(f"model bundle {self.root} is missing {_short(name)}")
        real = (self.real / name).resolve(strict=True)
        if self.real not in real.parents:
            target = os.readlink(self.real / name) if (self.real / name).is_symlink() else real
            raise BundleError(f"{shown} is a link that leads out of the bundle (to {target})")
        st = real.stat()
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{shown} is not a regular file")
        if st.st_size > limit:
            raise BundleError(f"{shown} is larger than {limit} bytes")
        return real.open("rb")

    def read(self, name: str, limit: int) -> bytes:
        with self._open(name, limit) as f:
            data = f.read(limit + 1)
        if len(data) > limit:  # it grew after the size check
            raise BundleError(f"{self.root / name} is larger than {limit} bytes")
        return data

    def sha256(self, name: str, limit: int) -> str:
        h = hashlib.sha256()
        size = 0
        with self._open(name, limit) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                size += len(chunk)
                if size > limit:
                    raise BundleError(f"{self.root / name} is larger than {limit} bytes")
                h.update(chunk)
        return h.hexdigest()


def _one_line(exc: BaseException) -> str:
    return _short(" ".join(str(exc).split()), 200)


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_bundle_meta(root: Path, fields: dict[str, Any]) -> BundleMeta:
    """Fill in checksums and the content hash, validate, and write `bundle.json`.

    `fields` holds every `BundleMeta` field except `files`, `content_hash` and
    `schema_version`; the model files must already be in `root`.
    """
    files = {n: sha256_file(root / n) for n in (TFLITE_FILE, KERAS_FILE) if (root / n).is_file()}
    data = {"schema_version": SCHEMA_VERSION, **fields, "files": files, "content_hash": "0" * 64}
    try:
        meta = BundleMeta.model_validate(data)
    except ValidationError as exc:
        raise BundleError(f"cannot write bundle: {_first_error(exc)}") from None
    digest = content_hash(files[TFLITE_FILE], meta.model_dump(mode="json"))
    meta = meta.model_copy(update={"content_hash": digest})
    tmp = root / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    tmp.replace(root / META_FILE)
    return meta
