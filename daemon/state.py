"""Buffer snapshots: written atomically, restored only when they fit the model.

A snapshot is an uncompressed .npz. The windows (`data`, most of its size) are
read from the file a chunk at a time straight into the table, and the scores'
and heads' arrays one at a time, so restoring 100,000 sensors never holds a
second copy of them in memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from sensorcast.adapt import SensorHeads
from sensorcast.buffer import SensorTable, chunk_rows
from sensorcast.models.bundle import FEATURE_PATTERN, BundleMeta
from sensorcast.scoring import SensorScores
from sensorcast.slots import SlotIndex, same_id
from sensorcast.topics import SENSOR_ID_RE

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "buffers.npz"
SCORES_FILE = "scores.npz"
HEADS_FILE = "heads.npz"
TARGETS_FILE = "discovery.json"
"""The targets of the bundles served, for Home Assistant's entities of a restart's bundles."""
MAX_TARGETS = 1024
FORMAT = 1
UNFINISHED = (".state-", ".npz")
"""Prefix and suffix of the temporary file a snapshot is written to before its rename."""


M_MMAP_THRESHOLD = -3
"""glibc's `mallopt` parameter: the size from which an allocation gets its own mapping."""
LARGE = 128 * 1024
"""glibc's initial threshold, which `map_large_allocations` keeps."""


def map_large_allocations() -> None:
    """Give every allocation of LARGE or more its own mapping for the process's life, so
    what is freed goes back to the system at once (glibc's `mallopt`; elsewhere nothing).
    glibc otherwise raises that threshold to the size of each such block freed, up to 32 MB,
    and later blocks up to that size come from the heap, where a freed block is kept while
    anything above it lives: the tables of 100,000 sensors, grown by doubling, left a flood
    of them peaking at 193 MB, 182 MB with this."""
    mallopt = _glibc("mallopt")
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, LARGE)


def release_freed_memory() -> None:
    """Give the free pages malloc holds back to the system (glibc's `malloc_trim`; elsewhere
    nothing). Restores and snapshots allocate and free arrays of every sensor's state, and
    glibc keeps much of what they freed: 20 MB after restoring 100,000 sensors' scores,
    which counted as the daemon's resident memory for as long as it ran."""
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim(0)


@functools.cache
def _glibc(name: str) -> Callable[..., int] | None:
    """The C library's function `name`, if it has one (glibc's malloc tuning; not musl's)."""
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    return function


def _header(meta: BundleMeta) -> str:
    return json.dumps({"format": FORMAT, "timesteps": meta.timesteps, "features": meta.features})


def save_snapshot(
    directory: Path, table: SensorTable, meta: BundleMeta, staged: Staged | None = None
) -> Path:
    """Write the table to `directory/buffers.npz`: temporary file, fsync, rename."""
    arrays: dict[str, Any] = {"header": np.array(_header(meta)), **table.to_arrays()}
    return _write_npz(directory, SNAPSHOT_FILE, arrays, staged)


def _scores_header(meta: BundleMeta, scores: SensorScores) -> str:
    levels = [scores.level, scores.anomaly_level]
    return json.dumps({"format": FORMAT, "model": meta.model_id, "levels": levels})


def save_scores(
    directory: Path,
    scores: SensorScores,
    meta: BundleMeta,
    order: tuple[list[str], NDArray[np.intp]],
    staged: Staged | None = None,
) -> Path:
    """Write the per-sensor intervals and guard state to `directory/scores.npz`, of the
    sensors in `order` (their table's, `SlotIndex.in_order`)."""
    arrays: dict[str, Any] = {"header": np.array(_scores_header(meta, scores))}
    arrays.update(scores.to_arrays(order))
    return _write_npz(directory, SCORES_FILE, arrays, staged)


def load_scores(directory: Path, scores: SensorScores, meta: BundleMeta, index: SlotIndex) -> int:
    """Restore the per-sensor scores into the slots of the sensors' table, `index` (restored
    first); a missing, corrupt or other model's file is skipped (each sensor then starts
    again from the bundle's calibration)."""
    header = _scores_header(meta, scores)
    path = directory / SCORES_FILE
    # each sensor's pending forecasts whole, the largest array (14 MB at 100,000 sensors),
    # and their reading numbers (5 MB)
    streamed = ("pend_f", "pend_seq")
    restore = functools.partial(scores.load_arrays, index=index)
    return _load_state(path, header, "scores", "model or level", restore, streamed)


def _load_state(
    path: Path,
    header: str,
    what: str,
    other: str,
    restore: Callable[[Mapping[str, NDArray[Any]]], int],
    streamed: tuple[str, ...] = (),
) -> int:
    """`restore` the .npz at `path` if its header is `header`; 0 if the file is
    missing, of another `other` (logged) or unusable (logged: never stops the start).

    Each array is read from the file when it is asked for and dropped after it was copied:
    never the whole file and the restored state in memory at once; those `streamed` are
    handed over as a `RowReader`, read a chunk of rows at a time."""
    if not path.is_file():
        return 0
    try:
        with np.load(path, allow_pickle=False) as npz, zipfile.ZipFile(path) as zf:
            if json.loads(str(npz["header"])) != json.loads(header):
                log.info("%s %s are of another %s; starting afresh", what, path, other)
                return 0
            if not all(SENSOR_ID_RE.fullmatch(str(s)) for s in npz["sensor_ids"].tolist()):
                raise ValueError("invalid sensor id")
            return restore(_Streamed(npz, zf, streamed))
    except Exception as exc:  # untrusted input
        log.warning("%s %s are unusable (%s); starting afresh", what, path, exc or type(exc))
        return 0


def _heads_header(heads: SensorHeads) -> str:
    return json.dumps({"format": FORMAT, "layout": heads.layout.key()})


def save_heads(
    directory: Path, heads: SensorHeads | None, staged: Staged | None = None
) -> Path | None:
    """Write the per-sensor adapted heads to `directory/heads.npz` (none when adaptation is
    off: an older file is left for a later start with it on)."""
    if heads is None:
        return None
    arrays: dict[str, Any] = {"header": np.array(_heads_header(heads))}
    arrays.update(heads.to_arrays())
    return _write_npz(directory, HEADS_FILE, arrays, staged)


def load_heads(
    directory: Path,
    heads: SensorHeads | None,
    canonical: Callable[[str], str] = same_id,
    keep: Callable[[str], bool] | None = None,
) -> int:
    """Restore the adapted heads; a missing, corrupt or other layout's file is skipped (each
    sensor then starts again from the model's own forecast). `canonical`: the string the
    sensors' table keeps for an id (`SlotIndex.canonical`), so both share it; `keep`: which
    sensors' heads to keep (those the table restored: a head of a sensor it did not, its
    snapshot refused or left out, would be kept for good, counted as adapted)."""
    if heads is None:
        return 0
    path = directory / HEADS_FILE
    header = _heads_header(heads)
    streamed = ("cov", "weights", "pend_phi", "ring")  # 6 of the 6.3 kB of a head
    restore = functools.partial(heads.load_arrays, canonical=canonical)
    n = _load_state(path, header, "adapted heads", "regressor layout", restore, streamed)
    if n and keep is not None:
        gone = [(-1, s) for s in list(heads.slots) if not keep(s)]
        heads.forget(gone)
        n -= len(gone)
    if n:
        log.info("restored the adapted heads of %d sensors from %s", n, path)
    return n


class Staged:
    """The files of one snapshot, each written to a temporary file and renamed over its
    target only once every one of them is written (`with Staged() as staged:`; a failure
    inside the block removes them all). The scores and heads keep forecasts pending under
    the reading numbers of the buffers they were written with: renamed one at a time, a
    write that failed half-way (a full disk, a kill) left new scores beside the buffers of
    the snapshot before, and a restart scored the readings it numbered again against
    forecasts of other readings (false anomaly events)."""

    def __init__(self) -> None:
        self._files: list[tuple[Path, Path]] = []

    def add(self, tmp: Path, target: Path) -> None:
        self._files.append((tmp, target))

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self._commit()
        finally:
            for tmp, _target in self._files:  # none are left once committed
                Path(tmp).unlink(missing_ok=True)
            self._files = []

    def _commit(self) -> None:
        for tmp, target in self._files:
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise _about(exc, target) from exc
        for directory in dict.fromkeys(target.parent for _, target in self._files):
            _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_npz(
    directory: Path, name: str, arrays: dict[str, Any], staged: Staged | None = None
) -> Path:
    """Write arrays to `directory/name` atomically: temporary file, fsync, rename (with
    `staged`, the rename waits for the other files of the snapshot: `Staged`)."""
    return _write_file(
        directory, name, UNFINISHED[1], lambda f: np.savez(f, **arrays), staged=staged
    )


def _write_file(
    directory: Path,
    name: str,
    suffix: str,
    write: Callable[[IO[bytes]], object],
    staged: Staged | None = None,
) -> Path:
    """`write` the file `directory/name` atomically: a temporary file, fsync, rename, now or
    with the other files of `staged`.

    An OSError names `directory/name`, not the temporary file (a new random name each
    time): a failure that recurs each interval is then the same problem, logged once."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    try:
        fd, tmp = tempfile.mkstemp(prefix=UNFINISHED[0], suffix=suffix, dir=directory)
    except OSError as exc:
        raise _about(exc, target) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if staged is not None:
            staged.add(Path(tmp), target)
            return target
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _about(exc, target) from exc
        raise
    _sync_directory(directory)
    return target


def save_targets(directory: Path, targets: list[str]) -> Path:
    """Write the targets of the bundles served (discovery.py) to `directory/discovery.json`,
    atomically."""
    text = json.dumps({"format": FORMAT, "targets": targets[:MAX_TARGETS]})
    return _write_file(directory, TARGETS_FILE, ".json", lambda f: f.write(text.encode()))


def load_targets(directory: Path) -> list[str]:
    """The targets `save_targets` kept; none if the file is missing or unusable (logged)."""
    path = directory / TARGETS_FILE
    if not path.is_file():
        return []
    try:
        with path.open("rb") as f:
            raw = json.loads(f.read(1 << 20))
        targets = raw["targets"] if isinstance(raw, dict) and raw.get("format") == FORMAT else None
        if not isinstance(targets, list) or not all(
            isinstance(t, str) and re.fullmatch(FEATURE_PATTERN, t) for t in targets
        ):
            raise ValueError("not a list of target names")
    except (OSError, ValueError, KeyError, RecursionError) as exc:
        log.warning("%s is unusable (%s); ignored", path, exc or type(exc))
        return []
    return targets[:MAX_TARGETS]


def make_writable(directory: Path) -> None:
    """Make `directory` and write a file in it (removed at once); OSError if either fails."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
        pass


def remove_unfinished(directory: Path) -> int:
    """Remove the temporary files of snapshots that a killed process left half-written, and
    return how many: each write has a file of its own, so every crash in the middle of one
    (SIGKILL, the watchdog, power loss) left one behind for good, up to the size of a whole
    snapshot (tens of MB at 100,000 sensors)."""
    removed = 0
    unfinished = [*directory.glob(f"{UNFINISHED[0]}*{UNFINISHED[1]}")]
    for path in [*unfinished, *directory.glob(f"{UNFINISHED[0]}*.json")]:
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def _about(exc: OSError, target: Path) -> OSError:
    """`exc` (of the same class: PermissionError, ...) naming `target` as its file."""
    if exc.errno is None:
        return OSError(f"{target}: {exc}")
    return OSError(exc.errno, exc.strerror, str(target))


class _Streamed(Mapping[str, Any]):
    """An .npz whose arrays named in `streamed` are each read as a `RowReader`."""

    def __init__(self, npz: Mapping[str, Any], zf: zipfile.ZipFile, streamed: tuple[str, ...]):
        self._npz, self._zf = npz, zf
        self._streamed = {name for name in streamed if f"{name}.npy" in zf.namelist()}

    def __getitem__(self, name: str) -> Any:
        if name in self._streamed:
            return RowReader(self._zf.open(f"{name}.npy"))
        return self._npz[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._npz)

    def __len__(self) -> int:
        return len(self._npz)


class RowReader:
    """One array of an .npz, read in forward row ranges as they are asked for."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if fortran or dtype.hasobject or not shape:
            raise ValueError("unexpected array layout")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = dtype
        self._row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._at = 0

    def _read(self, rows: int) -> bytes:
        want = rows * self._row
        data = self._f.read(want)
        if len(data) != want:
            raise ValueError("snapshot is truncated")
        self._at += rows
        return data

    def __getitem__(self, rows: slice) -> NDArray[Any]:
        start, stop, step = rows.indices(self.shape[0])
        if step != 1 or start < self._at:
            raise ValueError("rows are read forward only")
        while self._at < start:  # skip, a bounded chunk at a time
            self._read(min(start - self._at, chunk_rows(self._row)))
        data = self._read(stop - start)
        return np.frombuffer(data, dtype=self.dtype).reshape((stop - start, *self.shape[1:]))


def load_snapshot(
    directory: Path, table: SensorTable, meta: BundleMeta, max_ts: float = math.inf
) -> int:
    """Restore the table from a snapshot; a missing, corrupt or mismatched one is skipped.

    Sensors whose last reading is later than `max_ts` (say, one stamped in the year 9999
    before the daemon refused such readings) are left out and start afresh, as are those
    whose window holds a value no reading may have (`SensorTable.load_arrays`); each kind is
    one log line with its count. The other sensors are restored.
    """
    path = directory / SNAPSHOT_FILE
    if not path.is_file():
        return 0
    try:
        with np.load(path, allow_pickle=False) as npz, zipfile.ZipFile(path) as zf:
            arrays: dict[str, Any] = {k: npz[k] for k in npz.files if k != "data"}
            header = json.loads(str(arrays.pop("header")))
            if header != json.loads(_header(meta)):
                log.warning("snapshot %s was taken for another model shape; starting empty", path)
                table.reset_all()
                return 0
            if not all(SENSOR_ID_RE.fullmatch(str(s)) for s in arrays["sensor_ids"].tolist()):
                raise ValueError("invalid sensor id")
            with zf.open("data.npy") as data:
                arrays["data"] = RowReader(data)
                n: int = table.load_arrays(arrays, max_ts=max_ts)
            future = int(np.count_nonzero(arrays["last_ts"] > max_ts))
            unfit, over_cap = table.unfit, table.over_cap
    except Exception as exc:  # the file is untrusted input: no failure may stop the start
        log.warning("snapshot %s is unusable (%s); starting empty", path, exc or type(exc))
        table.reset_all()
        return 0
    if future:
        log.warning(
            "left out %d sensors of snapshot %s whose last reading is ahead of this clock",
            future,
            path,
        )
    if unfit:
        log.warning(
            "left out %d sensors of snapshot %s whose window holds values no reading may "
            "have (not finite, or beyond float32's range)",
            unfit,
            path,
        )
    if over_cap:  # a restart with a lower input.max_sensors: said as a reload says it
        log.warning(
            "left out %d sensors of snapshot %s, the least recently heard from: "
            "input.max_sensors is %d",
            over_cap,
            path,
            table.max_sensors,
        )
    log.info("restored %d sensors from %s", n, path)
    return n
