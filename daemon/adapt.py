"""Per-sensor adaptation: a linear correction of the bundle's forecast, learned online.

Each adapted sensor has a small linear head on top of the shared model, in the
model's normalised units (for `last`: steps relative to the window's last
reading), so one rule serves sensors of any magnitude:

    corrected = model output + W' phi,  phi = [normalised window, model output, 1]

The regressor `phi` is the window the model saw (its last `MAX_LAGS` readings of each
target, where a sensor's own rhythm shows: the same hour yesterday is in a 32-reading
window of hourly readings), the model's own forecast and a bias. W starts at zero, so a
new sensor is forecast exactly as without adaptation.

W is the exponentially weighted ridge regression of the model's residuals on `phi`
(forgetting factor `forgetting`, ridge `ridge`), kept exactly by recursive least squares
in covariance form: P = A^-1 with A = ridge I + sum forgetting^age phi phi'. Plain RLS
with forgetting lets P grow without bound in directions the data do not excite and then
diverges; here the ridge is put back as it is forgotten, one coordinate per update
(a rank-one Sherman-Morrison step each), so A >= ridge I and P <= I / ridge always.
A window's `horizon` steps are all realised `horizon` readings later, by the readings at
the end of the window then served: one update with that window's `phi` and all its
residuals (clipped to `RESIDUAL_CLIP` steps, so a jump does not drag the head along).
The covariance is shared across steps (they share `phi`), the weights are per step.

State lives in preallocated float32 arrays (the covariance as its upper triangle), grown
by doubling up to `max_sensors`; beyond it the least recently seen sensor's head is
recycled once that sensor has been quiet for `idle_s`. A head that diverges (non-finite, or a
correction beyond `CORRECTION_BOUND` steps) is reset and counted.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sensorcast.buffer import Window, grow_rows
from sensorcast.models.bundle import BundleMeta
from sensorcast.scoring import batch_rounds

log = logging.getLogger(__name__)

MAX_LAGS = 32
"""Readings of each target's window in the regressor (the default model's whole window)."""
MAX_REGRESSORS = 64
"""Largest regressor; fewer lags for a bundle with many targets, none beyond this."""
RESIDUAL_CLIP = 10.0
"""Residuals beyond this many normalised units are clipped before they are learned."""
CORRECTION_BOUND = 30.0
"""A head whose correction exceeds this many normalised units has diverged: it is reset."""
FORGETTING = 0.999
RIDGE = 3.0
WORK_ROWS = 64
"""Heads updated at a time: their two (p, p) float64 work matrices are kept between batches
(1.6 MB for the default model; a whole batch of 256 at once kept 6.2 MB)."""
IDLE_S = 3600.0
"""Seconds a sensor must have been quiet before its head may go to another sensor."""


@dataclass(frozen=True)
class Layout:
    """What a head's regressor holds; heads are kept across reloads only for an equal one."""

    lags: int
    targets: int
    horizon: int
    normalisation: str

    @property
    def size(self) -> int:
        return self.lags * self.targets + self.horizon * self.targets + 1

    def key(self) -> str:
        lay = f"lags={self.lags},targets={self.targets},horizon={self.horizon}"
        return f"{lay},{self.normalisation}"


def layout_for(meta: BundleMeta) -> Layout | None:
    """The regressor layout of a bundle, or None if it cannot adapt (its targets are not
    features, so their realised values are never seen, or it forecasts too many values)."""
    if not all(t in meta.features for t in meta.targets):
        return None
    k, h = len(meta.targets), meta.horizon
    lags = min(meta.timesteps, MAX_LAGS, (MAX_REGRESSORS - 1 - h * k) // k)
    if lags < 1:
        return None
    norm = meta.normalisation
    scale = "window" if norm.scale is None else "fixed"
    if norm.step_scale == "trimmed":  # other inputs: heads learned on the RMS do not carry over
        scale = "window-trimmed"
    return Layout(lags, k, h, f"{norm.mode}/{scale}")


class SensorHeads:
    """The adapted heads of every sensor, for one bundle; called by the inference worker."""

    def __init__(
        self,
        meta: BundleMeta,
        layout: Layout,
        *,
        max_sensors: int,
        forgetting: float = FORGETTING,
        ridge: float = RIDGE,
        idle_s: float = IDLE_S,
        initial_capacity: int = 256,
    ) -> None:
        self.layout = layout
        self.max_sensors = max_sensors
        self.forgetting = forgetting
        self.ridge = ridge
        self._target_idx = np.array([meta.features.index(t) for t in meta.targets], np.intp)
        self._h, self._k, self._p = layout.horizon, layout.targets, layout.size
        self._lags = layout.lags
        self.slots: OrderedDict[str, int] = OrderedDict()
        self._free: list[int] = []
        self._lock = threading.Lock()
        self.resets = 0
        """Heads reset because they diverged (taken by `take_resets`)."""
        h, k, p = self._h, self._k, self._p
        self._shapes: dict[str, tuple[tuple[int, ...], type[np.generic]]] = {
            "cov": ((p * (p + 1) // 2,), np.float32),
            "weights": ((p, h * k), np.float32),
            "updates": ((), np.int64),
            "seen": ((), np.float64),
            "pend_seq": ((h,), np.int64),
            "pend_phi": ((h, p), np.float32),
            "pend_center": ((h, k), np.float32),
            "pend_scale": ((h, k), np.float32),
        }
        self._tri = np.triu_indices(p)
        self._packed = self._tri[0] * p + self._tri[1]
        """Flat (p * p) index of each stored value."""
        full = np.zeros((p, p), dtype=np.intp)
        full[self._tri] = full[self._tri[1], self._tri[0]] = np.arange(len(self._packed))
        self._unpacked = full.ravel()
        """Stored index of each value of the full matrix."""
        self._buf = (np.empty((0, p, p)), np.empty((0, p, p)))
        self._cov0 = (np.eye(p) / ridge)[self._tri].astype(np.float32)
        self.idle_s = idle_s
        self._arrays: dict[str, NDArray[Any]] = {}
        self._allocate(min(initial_capacity, max_sensors))

    # --- storage ----------------------------------------------------------
    def _allocate(self, capacity: int) -> None:
        self._free.extend(grow_rows(self._arrays, self._shapes, capacity))

    def _reset(self, slots: NDArray[np.intp] | int) -> None:
        a = self._arrays
        for name in self._shapes:
            a[name][slots] = 0
        a["cov"][slots] = self._cov0
        a["pend_seq"][slots] = -1

    def _slot(self, sensor_id: str, now: float) -> int:
        """The sensor's head, a new one, or -1 when every head is taken by a sensor seen
        within `idle_s` (so at scale the first sensors keep learning instead of every head
        being recycled before its sensor comes back)."""
        slot = self.slots.get(sensor_id)
        if slot is not None:
            self.slots.move_to_end(sensor_id)
            self._arrays["seen"][slot] = now
            return slot
        if len(self.slots) >= self.max_sensors:
            lru = self.slots[next(iter(self.slots))]
            if now - self._arrays["seen"][lru] < self.idle_s:
                return -1
            _, old = self.slots.popitem(last=False)
            self._free.append(old)
        if not self._free:
            self._allocate(min(len(self._arrays["updates"]) * 2, self.max_sensors))
        slot = self._free.pop()
        self._reset(slot)
        self._arrays["seen"][slot] = now
        self.slots[sensor_id] = slot
        return slot

    def __len__(self) -> int:
        return len(self.slots)

    def nbytes(self) -> int:
        """Memory held by the preallocated arrays."""
        return sum(arr.nbytes for arr in self._arrays.values())

    def take_resets(self) -> int:
        with self._lock:
            out, self.resets = self.resets, 0
            return out

    # --- the worker's call --------------------------------------------------
    def correct(
        self,
        windows: list[Window],
        x: NDArray[np.floating],
        y: NDArray[np.floating],
        center: NDArray[np.float64],
        scale: NDArray[np.float64],
        raw: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """Learn from the readings these windows realise, then return the model's normalised
        outputs `y` (n, horizon, targets) corrected by each sensor's head.

        `x` is the model's input (n, timesteps, features), `center` and `scale` (n, 1,
        targets) the windows' normalisation, `raw` the windows in sensor units.
        """
        n = len(windows)
        lay = self._lags
        phi = np.empty((n, self._p), dtype=np.float64)
        phi[:, : lay * self._k] = x[:, -lay:, self._target_idx].reshape(n, -1)
        phi[:, lay * self._k : -1] = y.reshape(n, -1)
        phi[:, -1] = 1.0
        realised = raw[:, -self._h :, self._target_idx]  # (n, h, k): the last h readings
        out = np.asarray(y, dtype=np.float64).copy()
        with self._lock:
            now = time.monotonic()
            slots = np.array([self._slot(w.sensor_id, now) for w in windows], dtype=np.intp)
            seqs = np.array([w.seq for w in windows], dtype=np.int64)
            adapted = np.flatnonzero(slots >= 0)
            for part in batch_rounds(slots[adapted]):
                rows = adapted[part]
                s, q = slots[rows], seqs[rows]
                self._learn(s, q, realised[rows])
                out[rows] += self._predict(s, phi[rows])
                ring = q % self._h
                a = self._arrays
                a["pend_seq"][s, ring] = q
                a["pend_phi"][s, ring] = phi[rows]
                a["pend_center"][s, ring] = center[rows, 0]
                a["pend_scale"][s, ring] = scale[rows, 0]
        return out

    def _predict(self, slots: NDArray[np.intp], phi: NDArray[np.float64]) -> NDArray[np.float64]:
        w = self._arrays["weights"][slots].astype(np.float64)
        c: NDArray[np.float64] = np.einsum("mp,mpj->mj", phi, w)
        c = c.reshape(len(slots), self._h, self._k)
        bad = ~np.isfinite(c).all(axis=(1, 2)) | (np.abs(c).max(axis=(1, 2)) > CORRECTION_BOUND)
        if bad.any():
            self._diverged(slots[bad])
            c[bad] = 0.0
        return c

    def _diverged(self, slots: NDArray[np.intp]) -> None:
        self._reset(slots)
        self.resets += len(slots)
        log.debug("reset %d diverged adapted heads", len(slots))

    def _learn(
        self, slots: NDArray[np.intp], seqs: NDArray[np.int64], realised: NDArray[np.float64]
    ) -> None:
        """One RLS update per sensor whose window `horizon` readings back is pending."""
        a, h = self._arrays, self._h
        made = seqs - h
        ring = made % h
        ok = a["pend_seq"][slots, ring] == made
        if not ok.any():
            return
        s, ring = slots[ok], ring[ok]
        phi = a["pend_phi"][s, ring].astype(np.float64)  # (m, p)
        base = phi[:, self._lags * self._k : -1]  # the model's own forecast, (m, h*k)
        target = (realised[ok] - a["pend_center"][s, ring][:, None, :]) / a["pend_scale"][s, ring][
            :, None, :
        ]
        resid = np.clip(target.reshape(len(s), -1) - base, -RESIDUAL_CLIP, RESIDUAL_CLIP)
        for lo in range(0, len(s), WORK_ROWS):
            hi = lo + WORK_ROWS
            self._update(s[lo:hi], phi[lo:hi], resid[lo:hi])

    def _update(
        self, s: NDArray[np.intp], phi: NDArray[np.float64], resid: NDArray[np.float64]
    ) -> None:
        """The RLS update of the heads in slots `s` (at most WORK_ROWS, each once)."""
        a = self._arrays
        n = len(s)
        cov, tmp = self._work(n)
        self._unpack_into(a["cov"][s], cov)
        cov /= self.forgetting
        w = a["weights"][s].astype(np.float64)
        pf = (cov @ phi[:, :, None])[:, :, 0]
        gain = pf / (1.0 + np.einsum("mi,mi->m", phi, pf))[:, None]
        err = resid - (phi[:, None, :] @ w)[:, 0]
        w += gain[:, :, None] * err[:, None, :]
        cov -= np.multiply(gain[:, :, None], pf[:, None, :], out=tmp)
        # put back the ridge forgetting took away, on one coordinate per update (rank one)
        j = a["updates"][s] % self._p
        m = np.arange(n)
        c = (1.0 - self.forgetting) * self.ridge * self._p
        pj = cov[m, :, j]  # (m, p)
        g = c / (1.0 + c * pj[m, j])
        w -= (g[:, None] * pj)[:, :, None] * w[m, j][:, None, :]
        cov -= np.multiply((g[:, None] * pj)[:, :, None], pj[:, None, :], out=tmp)
        # only the upper triangle is kept, so rounding cannot make it drift from symmetric
        bad = ~(np.isfinite(cov.sum(axis=(1, 2))) & np.isfinite(w.sum(axis=(1, 2))))
        bad |= (np.diagonal(cov, axis1=1, axis2=2) <= 0).any(axis=1)
        a["cov"][s] = np.take(cov.reshape(n, -1), self._packed, axis=1)
        a["weights"][s] = w
        a["updates"][s] += 1
        if bad.any():
            self._diverged(s[bad])

    def _unpack(self, packed: NDArray[np.float32]) -> NDArray[np.float64]:
        """(m, p(p+1)/2) upper triangles to (m, p, p) symmetric matrices."""
        out = np.empty((len(packed), self._p, self._p))
        self._unpack_into(packed, out)
        return out

    def _unpack_into(self, packed: NDArray[np.float32], out: NDArray[np.float64]) -> None:
        out.reshape(len(packed), -1)[:] = np.take(packed, self._unpacked, axis=1)

    def _work(self, n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Two (n, p, p) work arrays, kept between calls: fresh arrays of this size would be
        mapped from the system and faulted in page by page on every batch."""
        if len(self._buf[0]) < n:
            size = (WORK_ROWS, self._p, self._p)
            self._buf = (np.empty(size), np.empty(size))
        return self._buf[0][:n], self._buf[1][:n]

    # --- snapshots ----------------------------------------------------------
    def to_arrays(self) -> dict[str, NDArray[Any]]:
        with self._lock:
            idx = np.fromiter(self.slots.values(), dtype=np.intp, count=len(self.slots))
            out = {name: arr[idx] for name, arr in self._arrays.items() if name != "seen"}
            out["sensor_ids"] = np.array(list(self.slots), dtype=np.str_)
            return out

    def load_arrays(self, arrays: Mapping[str, NDArray[Any]]) -> int:
        """Restore `to_arrays` output; raise ValueError if it does not fit these heads.

        `arrays` may read each array from a file whenever it is asked for (an .npz).
        """
        ids = [sys.intern(str(s)) for s in arrays["sensor_ids"].tolist()]
        m = len(ids)
        if len(set(ids)) != m:
            raise ValueError("duplicate sensor ids")
        for name, (shape, dtype) in self._shapes.items():
            if name == "seen":  # a monotonic clock: of no meaning after a restart
                continue
            got = arrays[name]
            if got.shape != (m, *shape) or got.dtype != dtype:
                raise ValueError(f"{name} has shape {got.shape} {got.dtype}")
        for name in ("cov", "weights", "pend_phi", "pend_center", "pend_scale"):
            if not np.isfinite(arrays[name]).all():
                raise ValueError(f"{name} is not finite")
        diagonal = np.flatnonzero(self._tri[0] == self._tri[1])
        if (arrays["cov"][:, diagonal] <= 0).any():
            raise ValueError("cov is not positive")
        keep = ids[max(0, m - self.max_sensors) :]
        with self._lock:
            self.slots.clear()
            self._free = []
            self._arrays = {}
            self._allocate(min(max(len(keep), 256), self.max_sensors))
            first = m - len(keep)
            now = time.monotonic()
            for sid in keep:
                self._slot(sid, now)
            idx = np.fromiter(self.slots.values(), dtype=np.intp, count=len(keep))
            for name in self._shapes:
                if name != "seen":
                    self._arrays[name][idx] = arrays[name][first:]
        return len(keep)
