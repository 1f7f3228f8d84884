"""Per-sensor adaptation: a linear correction of the bundle's forecast, learned online.

Each adapted sensor has a small linear head on top of the shared model, in the
model's normalised units (for `last`: steps relative to the window's last
reading), so one rule serves sensors of any magnitude:

    corrected = model output + W' phi,  phi = [normalised window, model output, 1]

The regressor `phi` is the window the model saw (its last `MAX_LAGS` readings of each
target, where a sensor's own rhythm shows: the same hour yesterday is in a 32-reading
window of hourly readings), the model's own forecast and a bias. W starts at zero, so a
new sensor is forecast exactly as without adaptation.

A sensor's day (or, for readings a week or more apart, its year) is often longer than the
window: 48 half-hourly readings, 96 of a quarter of an hour. For such a sensor (a period of
more than `MAX_LAGS` and at most `MAX_PERIOD` readings, from its cadence) the head keeps a
ring of its last `MAX_PERIOD` readings, and the oldest `horizon + 1` lags of `phi` are
replaced by the readings one period back from the window's last reading and from each step
forecast: what the same time yesterday did next. They are zero until the ring holds a
whole period. Other sensors' `phi` is the window alone.

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

Beside it each head keeps the sensor's own regression: its next `horizon` steps from its
last `AR_LAGS` steps (first differences) and a bias, in units of its step size (a rolling
mean of its absolute steps), learned by the same ridge RLS from the same realised windows.
It knows nothing of the model: it is the sensor's momentum in its own units, which a generic
model misses on a sensor unlike those it was trained on (on the room of the README's table
the model and its correction lose to the last value, this wins by 6 to 11%). Each step is
served by whichever of the two has the smaller rolling error on this sensor
(`CHOICE_WEIGHT`), the corrected model until both have been scored; the guard (scoring.py)
then holds either to the last value where it does no better.

State lives in preallocated float32 arrays (the covariance as its upper triangle), grown
by doubling up to `max_sensors`; beyond it the least recently seen sensor's head is
recycled once that sensor has been quiet for `idle_s`. A head that diverges (non-finite, or a
correction beyond `CORRECTION_BOUND` steps) is reset and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sensorcast.buffer import Window, grow_rows, row_chunks
from sensorcast.models.bundle import BundleMeta
from sensorcast.scoring import batch_rounds, bounded, stored
from sensorcast.slots import SlotIndex, same_id

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
STEP_FLOOR = 1e-6
"""A sensor's step size is at least this share of its reading (a sensor that has not moved)."""
WORK_ROWS = 64
"""Heads updated at a time: their two (p, p) float64 work matrices are kept between batches
(1.6 MB for the default model; a whole batch of 256 at once kept 6.2 MB)."""
IDLE_S = 3600.0
"""Seconds a sensor must have been quiet before its head may go to another sensor."""
MAX_PERIOD = 288
"""Longest period a head keeps readings for (a day of 5-minute readings): 1.2 kB a head."""
CYCLES = (86_400.0, 7 * 86_400.0, 365.25 * 86_400.0)
"""A day, a week, a year: a sensor's period is the first of them longer than its horizon."""
SEASON_STATE = ("period", "period_cadence", "ring", "ring_base", "ring_newest", "ring_count")
"""A head's period and ring: absent from snapshots of earlier versions."""
WIDENED = ("pend_center",)
"""float64 now, float32 in snapshots of earlier versions (which load). A window's last reading
is kept whole: in float32 a reading of 12,345,678 is rounded to the unit, one of 1e9 to 64,
and every residual a head learned from carried that rounding."""
AR_LAGS = 4
"""Steps (first differences) of each target in a head's own regression of the sensor on its
recent steps: its momentum, which a generic model may miss on a sensor it was not trained on."""
AR_STEP_WEIGHT = 0.01
"""Weight of the newest step in a sensor's step size (a rolling mean of its absolute steps),
the unit its own regression works in."""
CHOICE_WEIGHT = 0.02
"""Weight of the newest realised forecast in the rolling errors, per step, of the corrected
model and of the sensor's own regression; each step is served by the one with the smaller
(the corrected model until both have been scored)."""
AR_STATE = (
    "ar_cov",
    "ar_weights",
    "ar_step",
    "pend_ar_phi",
    "pend_step",
    "pend_last",
    "pend_fc",
    "choice_err",
)
"""The sensor's own regression and the choice: absent from snapshots of earlier versions
(those heads start them afresh)."""
CADENCE_MOVE = 1.5
"""A head's period is decided from its sensor's cadence when the head starts, and again when
that cadence has moved by more than this factor (a new reporting interval, not the jitter of
an irregular sensor, nor a weekend's gap in trading days); the head starts again only if its
period changed by more than this factor, or to or from none (the window alone)."""


@dataclass(frozen=True)
class Corrected:
    """The heads' forecasts for a batch of windows."""

    y: NDArray[np.float64]
    """(n, horizon, targets): the model's normalised outputs, corrected."""
    adapted: NDArray[np.bool_]
    """(n,): which windows have a head (beyond `max_sensors`, a sensor may have none)."""


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

    @property
    def ar_lags(self) -> int:
        """Steps of each target in the sensor's own regression (0: none, too short a window)."""
        return min(AR_LAGS, self.lags - 1)

    @property
    def seasonal(self) -> int:
        """Lags of each target given to the readings one period back (0: none)."""
        n = self.horizon + 1
        return n if self.lags >= 2 * n else 0

    def period(self, cadence: NDArray[np.float64]) -> NDArray[np.int64]:
        """Each cadence's period in readings, where it is longer than the window's lags and
        the ring holds it; else 0 (the window alone)."""
        out = np.zeros(len(cadence), dtype=np.int64)
        if not self.seasonal:
            return out
        ok = np.isfinite(cadence) & (cadence > 0)
        per_reading = np.where(ok, cadence, 1.0)
        undecided = ok.copy()
        for span in CYCLES:
            p = np.rint(span / per_reading).astype(np.int64)
            pick = undecided & (p > self.horizon)
            out[pick] = np.where((p[pick] > self.lags) & (p[pick] <= MAX_PERIOD), p[pick], 0)
            undecided &= ~pick
        return out

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


class _Packing:
    """(p, p) symmetric matrices kept as their upper triangles (or whole: `whole`, for a
    matrix small enough that packing costs more time than it saves memory), with two work
    arrays."""

    def __init__(self, p: int, ridge: float, whole: bool = False) -> None:
        self.p = p
        self.whole = whole
        tri = np.diag_indices(p) if whole else np.triu_indices(p)
        flat = np.arange(p * p).reshape(p, p)
        self.packed = flat.ravel() if whole else tri[0] * p + tri[1]
        """Flat (p * p) index of each stored value."""
        full = flat.copy()
        if not whole:
            full[tri] = full[tri[1], tri[0]] = np.arange(len(self.packed))
        self.unpacked = full.ravel()
        """Stored index of each value of the full matrix."""
        self.diagonal = flat.diagonal() if whole else np.flatnonzero(tri[0] == tri[1])
        self.initial = (np.eye(p) / ridge).ravel()[self.packed].astype(np.float32)
        self.size = len(self.packed)
        self._buf = (np.empty((0, p, p)), np.empty((0, p, p)))

    def unpack_into(self, packed: NDArray[np.float32], out: NDArray[np.float64]) -> None:
        if self.whole:
            out.reshape(len(packed), -1)[:] = packed
        else:
            out.reshape(len(packed), -1)[:] = np.take(packed, self.unpacked, axis=1)

    def pack(self, full: NDArray[np.float64]) -> NDArray[np.float64]:
        """What is kept of (m, p, p) matrices: the upper triangle, so rounding cannot make them
        drift from symmetric; or, kept whole, their symmetric part."""
        if self.whole:
            return ((full + full.transpose(0, 2, 1)) * 0.5).reshape(len(full), -1)
        return np.take(full.reshape(len(full), -1), self.packed, axis=1)

    def work(self, n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Two (n, p, p) work arrays, kept between calls: fresh arrays of this size would be
        mapped from the system and faulted in page by page on every batch."""
        if len(self._buf[0]) < n:
            size = (WORK_ROWS, self.p, self.p)
            self._buf = (np.empty(size), np.empty(size))
        return self._buf[0][:n], self._buf[1][:n]


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
        self.slots = SlotIndex()
        self._free: list[int] = []
        self._lock = threading.Lock()
        self.resets = 0
        """Heads reset because they diverged (taken by `take_resets`)."""
        h, k, p = self._h, self._k, self._p
        self._ar_lags = layout.ar_lags
        r = self._r = self._ar_lags * k + 1 if self._ar_lags > 0 else 0
        """Regressors of the sensor's own regression: its last steps and a bias (0: none)."""
        self._shapes: dict[str, tuple[tuple[int, ...], type[np.generic]]] = {
            "cov": ((p * (p + 1) // 2,), np.float32),
            "weights": ((p, h * k), np.float32),
            "updates": ((), np.int64),
            "seen": ((), np.float64),
            "pend_seq": ((h,), np.int64),
            "pend_phi": ((h, p), np.float32),
            "pend_center": ((h, k), np.float64),
            "pend_scale": ((h, k), np.float32),
            "period": ((), np.int32),
            "period_cadence": ((), np.float32),
            "ring": ((MAX_PERIOD, k), np.float32),
            "ring_base": ((k,), np.float64),
            "ring_newest": ((), np.int64),
            "ring_count": ((), np.int32),
        }
        if r:
            self._shapes.update({
                "ar_cov": ((r * r,), np.float32),
                "ar_weights": ((r, h * k), np.float32),
                "ar_step": ((k,), np.float32),
                "pend_ar_phi": ((h, r), np.float32),
                "pend_step": ((h, k), np.float32),
                "pend_last": ((h, k), np.float32),
                "pend_fc": ((h, 2, h, k), np.float32),
                "choice_err": ((h, 2), np.float32),
            })  # fmt: skip
        self._season = layout.seasonal
        self._pack = _Packing(p, ridge)
        self._ar_pack = _Packing(r, ridge, whole=True) if r else None
        self.idle_s = idle_s
        self._arrays: dict[str, NDArray[Any]] = {}
        self._allocate(min(initial_capacity, max_sensors))

    # --- storage ----------------------------------------------------------
    def _allocate(self, capacity: int) -> None:
        """Room for `capacity` heads. The rings are made anew, zero pages the system maps
        only once written, and only the rings in use are copied over: a head without a
        period never writes its ring (1.2 kB of its 6.3), nor is it zeroed when a head
        starts (a ring is read only where `ring_count` says it was written), so the rings
        of sensors whose day fits in the window take no memory."""
        rest = {name: got for name, got in self._shapes.items() if name != "ring"}
        old = self._arrays.pop("ring", None)
        self._free.extend(grow_rows(self._arrays, rest, capacity))
        shape, dtype = self._shapes["ring"]
        ring = np.zeros((capacity, *shape), dtype=dtype)
        if old is not None:
            used = np.flatnonzero(self._arrays["period"][: len(old)] > 0)
            ring[used] = old[used]
        self._arrays["ring"] = ring

    def _reset(self, slots: NDArray[np.intp] | int) -> None:
        a = self._arrays
        for name in self._shapes:
            if name != "ring":
                a[name][slots] = 0
        a["cov"][slots] = self._pack.initial
        if self._ar_pack is not None:
            a["ar_cov"][slots] = self._ar_pack.initial
        a["pend_seq"][slots] = -1
        a["ring_newest"][slots] = -1

    def _slot(self, sensor_id: str, now: float) -> int:
        """The sensor's head, a new one, or -1 when every head is taken by a sensor seen
        within `idle_s` (so at scale the first sensors keep learning instead of every head
        being recycled before its sensor comes back)."""
        slot = self.slots.get(sensor_id)
        if slot is not None:
            self.slots.touch(slot)
            self._arrays["seen"][slot] = now
            return slot
        if len(self.slots) >= self.max_sensors:
            lru, old = self.slots.oldest()
            if now - self._arrays["seen"][old] < self.idle_s:
                return -1
            self.slots.pop(lru)
            self._free.append(old)
        if not self._free:
            self._allocate(min(len(self._arrays["updates"]) * 2, self.max_sensors))
        slot = self._free.pop()
        self._reset(slot)
        self._arrays["seen"][slot] = now
        self.slots.add(sensor_id, slot)
        return slot

    def __len__(self) -> int:
        return len(self.slots)

    def forget(self, freed: list[tuple[int, str]]) -> None:
        """The sensors' table freed these (slot, sensor id): their heads are free again (one
        that comes back starts a new head, as its scores start again). Kept until another
        sensor needed the room, they were counted as adapted sensors no longer tracked."""
        with self._lock:
            for _, sensor_id in freed:
                slot = self.slots.pop(sensor_id)
                if slot is not None:
                    self._free.append(slot)

    def with_period(self) -> int:
        """Heads that learn from the readings one period back (see the module's docstring)."""
        with self._lock:
            return int(np.count_nonzero(self._arrays["period"][self.slots.slots()]))

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
    ) -> Corrected:
        """Learn from the readings these windows realise, then return the model's normalised
        outputs `y` (n, horizon, targets) corrected by each sensor's head.

        `x` is the model's input (n, timesteps, features), `center` and `scale` (n, 1,
        targets) the windows' normalisation, `raw` the windows in sensor units.
        """
        n, k = len(windows), self._k
        lay = self._lags
        phi = np.empty((n, self._p), dtype=np.float64)
        phi[:, : lay * k] = x[:, -lay:, self._target_idx].reshape(n, -1)
        phi[:, lay * k : -1] = y.reshape(n, -1)
        phi[:, -1] = 1.0
        values = raw[:, :, self._target_idx]
        realised = values[:, -self._h :]  # (n, h, k): the last h readings
        out = np.asarray(y, dtype=np.float64).copy()
        with self._lock:
            now = time.monotonic()
            slots = np.array([self._slot(w.sensor_id, now) for w in windows], dtype=np.intp)
            seqs = np.array([w.seq for w in windows], dtype=np.int64)
            adapted = np.flatnonzero(slots >= 0)
            if self._season:
                cadence = np.array([w.cadence or np.nan for w in windows], dtype=np.float64)
            for part in batch_rounds(slots[adapted]):
                rows = adapted[part]
                s, q = slots[rows], seqs[rows]
                p = phi[rows]
                if self._season:
                    self._seasons(s, q, cadence[rows], values[rows], center[rows], scale[rows], p)
                self._learn(s, q, realised[rows])
                fc = out[rows] + self._predict(s, p)
                ring = q % self._h
                if self._ar_pack is not None:
                    fc = self._choose(s, ring, fc, values[rows], center[rows], scale[rows])
                out[rows] = fc
                a = self._arrays
                a["pend_seq"][s, ring] = q
                a["pend_phi"][s, ring] = p
                a["pend_center"][s, ring] = center[rows, 0]
                a["pend_scale"][s, ring] = stored(scale[rows, 0])
        return Corrected(out, slots >= 0)

    def _seasons(
        self,
        s: NDArray[np.intp],
        q: NDArray[np.int64],
        cadence: NDArray[np.float64],
        values: NDArray[np.float64],
        center: NDArray[np.float64],
        scale: NDArray[np.float64],
        phi: NDArray[np.float64],
    ) -> None:
        """Keep the period and the ring of the heads in slots `s` (each once) up to date with
        their windows (`values`: (m, timesteps, targets), the last reading's number `q`), and
        write into `phi` (m, p), for heads with a period, the readings one period back from
        the window's last and from each step, normalised as the window (`center`, `scale`:
        (m, 1, targets)); zero until the ring holds them."""
        a = self._arrays
        have = a["period_cadence"][s].astype(np.float64)  # 0: not decided, -1: no cadence
        known = np.isfinite(cadence) & (cadence > 0)
        with np.errstate(invalid="ignore"):
            near = (cadence <= CADENCE_MOVE * have) & (have <= CADENCE_MOVE * cadence)
        moved = np.flatnonzero((have == 0) | (known != (have > 0)) | (known & ~near))
        if len(moved):  # decide again; a head whose period changes starts again
            sm = s[moved]
            want, now = self.layout.period(cadence[moved]), a["period"][sm]
            other = ((want == 0) != (now == 0)) | (want > CADENCE_MOVE * now)
            other |= now > CADENCE_MOVE * want
            started = int(np.count_nonzero(other & (a["updates"][sm] > 0)))
            if started:
                log.debug("%d adapted heads start again: their sensor's period changed", started)
            self._reset(sm[other])
            a["period"][sm] = want
            a["period_cadence"][sm] = np.nan_to_num(cadence[moved], nan=-1.0)
        on = np.flatnonzero(a["period"][s] > 0)  # only a head with a period keeps a ring
        if not len(on):
            return
        back, ready = self._ring(s[on], q[on], values[on])
        # a reading a day back may be far from this window in its scale (a room empty then,
        # full now): beyond the size of any correction, it is a bound, not a measure
        norm = np.clip((back - center[on]) / scale[on], -CORRECTION_BOUND, CORRECTION_BOUND)
        n = self._season * self._k
        phi[on, :n] = np.where(ready[:, None, None], norm, 0.0).reshape(len(on), n)

    def _ring(
        self, s: NDArray[np.intp], q: NDArray[np.int64], values: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Store the windows' readings the rings of heads `s` do not hold yet; return the
        readings one period back from the window's last and from each step, (m, horizon + 1,
        targets), and where the ring holds them (elsewhere they are the window's last)."""
        a, m, n_back = self._arrays, len(s), self._season
        t = values.shape[1]
        newest, count = a["ring_newest"][s], a["ring_count"][s].astype(np.int64)
        gap = q - newest
        restart = (newest < 0) | (gap > t) | (gap < 0)  # a gap reset, a new sensor, a restore
        fresh = np.minimum(np.where(restart, t, gap), MAX_PERIOD)  # the window's readings to store
        count = np.where(restart, 0, count)
        last = values[:, -1]
        # offsets from a base that moves to the newest reading once per turn of the ring
        turned = restart | (q // MAX_PERIOD != newest // MAX_PERIOD)
        if turned.any():
            rb = s[turned]
            shift = last[turned] - a["ring_base"][rb]
            a["ring"][rb] = stored(a["ring"][rb] - shift[:, None, :])
            a["ring_base"][rb] = last[turned]
        base = a["ring_base"][s]
        seqs = q[:, None] - np.arange(t - 1, -1, -1)[None, :]  # (m, t)
        store = np.arange(t)[None, :] >= (t - fresh)[:, None]
        rows = np.broadcast_to(s[:, None], (m, t))[store]
        a["ring"][rows, seqs[store] % MAX_PERIOD] = stored(values - base[:, None, :])[store]
        a["ring_newest"][s] = q
        a["ring_count"][s] = np.minimum(count + fresh, MAX_PERIOD)
        period = a["period"][s].astype(np.int64)  # every one > 0: only such heads keep a ring
        ready = a["ring_count"][s] > period
        back = np.broadcast_to(last[:, None, :], (m, n_back, last.shape[1])).copy()
        if ready.any():
            at = (q[ready, None] - period[ready, None] + np.arange(n_back)[None, :]) % MAX_PERIOD
            back[ready] = a["ring"][s[ready, None], at] + base[ready, None, :]
        return back, ready

    def _choose(
        self,
        s: NDArray[np.intp],
        ring: NDArray[np.int64],
        fc: NDArray[np.float64],
        values: NDArray[np.float64],
        center: NDArray[np.float64],
        scale: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """Per step, the corrected model's forecast `fc` (m, horizon, targets, normalised as
        the window: `center`, `scale`) or the sensor's own regression's on its last steps,
        whichever has done better on this sensor lately; keep both to score them once
        realised. `values`: the windows (m, timesteps, targets) of heads `s` (each once)."""
        a, m, lags = self._arrays, len(s), self._ar_lags
        last = values[:, -1]
        steps = values[:, -lags:] - values[:, -lags - 1 : -1]  # (m, lags, k)
        step = a["ar_step"][s].astype(np.float64)
        if not step.all():  # a new head starts from its window's mean step
            step = np.where(step > 0, step, np.abs(np.diff(values, axis=1)).mean(axis=1))
        step += AR_STEP_WEIGHT * (np.abs(steps[:, -1]) - step)
        a["ar_step"][s] = stored(step)
        unit = np.maximum(step, STEP_FLOOR * np.abs(last) + np.finfo(np.float32).tiny)
        phi = np.empty((m, self._r))
        phi[:, :-1] = (steps / unit[:, None, :]).reshape(m, self._r - 1)
        phi[:, :-1] = bounded(phi[:, :-1], -RESIDUAL_CLIP, RESIDUAL_CLIP)
        phi[:, -1] = 1.0
        own = self._bounded_output(s, phi, "ar_weights") * unit[:, None, :]  # from the last
        a["pend_ar_phi"][s, ring] = phi
        a["pend_step"][s, ring] = stored(unit)
        a["pend_last"][s, ring] = stored(last - center[:, 0])
        a["pend_fc"][s, ring, 0] = stored(fc * scale)  # both from the center
        a["pend_fc"][s, ring, 1] = stored(own + (last[:, None, :] - center))
        err = a["choice_err"][s]
        use_own = (err[..., 1] < err[..., 0])[:, :, None]  # (m, h, 1); a new head: the model
        return np.where(use_own, (last[:, None, :] + own - center) / scale, fc)

    def _predict(self, slots: NDArray[np.intp], phi: NDArray[np.float64]) -> NDArray[np.float64]:
        return self._bounded_output(slots, phi, "weights")

    def _bounded_output(
        self, slots: NDArray[np.intp], phi: NDArray[np.float64], weights: str
    ) -> NDArray[np.float64]:
        """phi' W of the heads in `slots` (m, horizon, targets); a head whose output is not
        finite or beyond CORRECTION_BOUND has diverged: it is reset, its output zero."""
        w = self._arrays[weights][slots].astype(np.float64)
        c: NDArray[np.float64] = np.einsum("mp,mpj->mj", phi, w)
        c = c.reshape(len(slots), self._h, self._k)
        bad = ~(np.abs(c).max(axis=(1, 2)) <= CORRECTION_BOUND)  # NaN too
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
        real = realised[ok] - a["pend_center"][s, ring][:, None, :]  # from the center then
        target = real / a["pend_scale"][s, ring][:, None, :]
        resid = bounded(target.reshape(len(s), -1) - base, -RESIDUAL_CLIP, RESIDUAL_CLIP)
        updates = a["updates"][s]
        for lo in range(0, len(s), WORK_ROWS):
            hi = lo + WORK_ROWS
            self._update(s[lo:hi], phi[lo:hi], resid[lo:hi], updates[lo:hi], "", self._pack)
        if self._ar_pack is not None:
            own = self._score_own(s, ring, real)
            if own is not None:
                o, ar_phi, ar_resid = own
                for lo in range(0, len(o), WORK_ROWS):
                    hi = lo + WORK_ROWS
                    part = (ar_phi[lo:hi], ar_resid[lo:hi], updates[o[lo:hi]])
                    self._update(s[o[lo:hi]], *part, "ar_", self._ar_pack)
        a["updates"][s] += 1

    def _score_own(
        self, s: NDArray[np.intp], ring: NDArray[np.int64], real: NDArray[np.float64]
    ) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]] | None:
        """Score the corrected model and the sensor's own regression on the forecasts of heads
        `s` made `horizon` readings back (ring places `ring`), now realised (`real`: (m,
        horizon, targets), from the window's center then); return the rows that hold both,
        with the regression's regressors and its targets (the realised steps from the last
        reading then, in its unit then)."""
        a = self._arrays
        unit = a["pend_step"][s, ring].astype(np.float64)  # (m, k); 0: kept before it existed
        kept = unit[:, 0] > 0  # (a step is never 0 once kept)
        o = np.arange(len(s))
        if not kept.all():
            o = np.flatnonzero(kept)
            if not len(o):
                return None
            s, ring, unit, real = s[o], ring[o], unit[o], real[o]
        m = len(s)
        fc = a["pend_fc"][s, ring]  # (m, 2, h, k), both from the center
        err = np.abs(real[:, None] - fc).sum(axis=3).transpose(0, 2, 1)  # (m, h, 2)
        old = a["choice_err"][s]
        fresh = ~np.any(old.reshape(m, -1), axis=1)[:, None, None]
        a["choice_err"][s] = stored(np.where(fresh, err, old + CHOICE_WEIGHT * (err - old)))
        moved = real - a["pend_last"][s, ring][:, None, :]  # from the last reading then
        target = bounded(moved / unit[:, None, :], -RESIDUAL_CLIP, RESIDUAL_CLIP)
        return o, a["pend_ar_phi"][s, ring].astype(np.float64), target.reshape(m, -1)

    def _update(
        self,
        s: NDArray[np.intp],
        phi: NDArray[np.float64],
        resid: NDArray[np.float64],
        updates: NDArray[np.int64],
        prefix: str,
        pack: _Packing,
    ) -> None:
        """The RLS update of the heads in slots `s` (at most WORK_ROWS, each once), of the
        regression whose arrays are `{prefix}cov` and `{prefix}weights`; `updates`: how many
        each head has had."""
        a = self._arrays
        n, p = len(s), pack.p
        cov, tmp = pack.work(n)
        pack.unpack_into(a[prefix + "cov"][s], cov)
        cov /= self.forgetting
        w = a[prefix + "weights"][s].astype(np.float64)
        pf = (cov @ phi[:, :, None])[:, :, 0]
        gain = pf / (1.0 + np.einsum("mi,mi->m", phi, pf))[:, None]
        err = resid - (phi[:, None, :] @ w)[:, 0]
        w += gain[:, :, None] * err[:, None, :]
        cov -= np.multiply(gain[:, :, None], pf[:, None, :], out=tmp)
        # put back the ridge forgetting took away, on one coordinate per update (rank one)
        j = updates % p
        m = np.arange(n)
        c = (1.0 - self.forgetting) * self.ridge * p
        pj = cov[m, :, j]  # (m, p)
        g = c / (1.0 + c * pj[m, j])
        w -= (g[:, None] * pj)[:, :, None] * w[m, j][:, None, :]
        cov -= np.multiply((g[:, None] * pj)[:, :, None], pj[:, None, :], out=tmp)
        total = cov.sum(axis=(1, 2)) + w.sum(axis=(1, 2))
        bad = ~(np.isfinite(total) & (np.diagonal(cov, axis1=1, axis2=2).min(axis=1) > 0))
        a[prefix + "cov"][s] = pack.pack(cov)
        a[prefix + "weights"][s] = w
        if bad.any():
            self._diverged(s[bad])

    def _unpack(self, packed: NDArray[np.float32]) -> NDArray[np.float64]:
        """(m, p(p+1)/2) upper triangles to (m, p, p) symmetric matrices."""
        out = np.empty((len(packed), self._p, self._p))
        self._pack.unpack_into(packed, out)
        return out

    # --- snapshots ----------------------------------------------------------
    def to_arrays(self) -> dict[str, NDArray[Any]]:
        with self._lock:
            ids, idx = self.slots.in_order()
            out = {name: arr[idx] for name, arr in self._arrays.items() if name != "seen"}
            out["sensor_ids"] = np.array(ids, dtype=np.str_)
            return out

    def load_arrays(
        self, arrays: Mapping[str, NDArray[Any]], canonical: Callable[[str], str] = same_id
    ) -> int:
        """Restore `to_arrays` output; raise ValueError if it does not fit these heads: any
        value no head makes (not finite, out of range, negative) refuses the whole file, so
        every sensor starts again from the model's own forecast.

        `arrays` may read each array from a file whenever it is asked for (an .npz).
        """
        ids = [canonical(str(s)) for s in arrays["sensor_ids"].tolist()]
        m = len(ids)
        if len(set(ids)) != m:
            raise ValueError("duplicate sensor ids")
        names = [n for n in self._shapes if n != "seen"]  # seen: a monotonic clock
        if not all(n in arrays for n in SEASON_STATE):  # written before heads had periods
            names = [n for n in names if n not in SEASON_STATE]  # decided at the next window
        if not all(n in arrays for n in AR_STATE):  # before the sensor's own regression
            names = [n for n in names if n not in AR_STATE]  # it starts afresh
        for name in names:
            shape, dtype = self._shapes[name]
            got = arrays[name]
            widened = name in WIDENED and got.dtype == np.float32
            if got.shape != (m, *shape) or (got.dtype != dtype and not widened):
                raise ValueError(f"{name} has shape {got.shape} {got.dtype}")
        finite = ["cov", "weights", "pend_phi", "pend_center", "pend_scale"]
        finite += [*SEASON_STATE, *AR_STATE]
        for name in finite:  # a chunk of heads at a time: `arrays` may read rows as asked
            if name in names and not all(
                np.isfinite(r).all() for _, r in row_chunks(arrays[name], 0, m)
            ):
                raise ValueError(f"{name} is not finite")
        for name, pack in (("cov", self._pack), ("ar_cov", self._ar_pack)):
            if name in names and pack is not None:
                for _, r in row_chunks(arrays[name], 0, m):
                    if (r[:, pack.diagonal] <= 0).any():
                        raise ValueError(f"{name} is not positive")
        for name in ("period", "ring_count"):
            if name in names and not ((arrays[name] >= 0) & (arrays[name] <= MAX_PERIOD)).all():
                raise ValueError(f"{name} is out of range")
        for name in ("updates", "pend_scale", "ar_step", "pend_step", "choice_err"):
            if name in names and (arrays[name] < 0).any():  # counts, scales, steps, errors
                raise ValueError(f"{name} is negative")
        if "period_cadence" in names and (arrays["period_cadence"] < -1).any():  # -1: none
            raise ValueError("period_cadence is out of range")
        keep = ids[max(0, m - self.max_sensors) :]
        with self._lock:
            self.slots.clear()
            self._free = []
            self._arrays = {}
            self._allocate(min(max(len(keep), 256), self.max_sensors))
            first = m - len(keep)
            now = time.monotonic()
            idx = np.array([self._slot(sid, now) for sid in keep], dtype=np.intp)
            used = np.asarray(arrays["period"][first:]) > 0 if "ring" in names else None
            for name in names:
                into = self._arrays[name]
                for at, rows in row_chunks(arrays[name], first, m):
                    part = slice(at, at + len(rows))
                    if used is None or name != "ring":
                        into[idx[part]] = rows
                    else:  # only the rings in use (see `_allocate`)
                        into[idx[part][used[part]]] = rows[used[part]]
        return len(keep)
