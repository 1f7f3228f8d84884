"""Per-sensor scoring: prediction intervals, the persistence guard and anomalies.

Every window the worker serves carries the sensor's newest reading, which
realises step `k` of the forecast made `k` readings earlier. `SensorScores`
keeps, per sensor, the last `horizon` forecasts (with the persistence forecast
and the window's scale), and scores them as readings arrive, in the
normalised units of the bundle's calibration (error / window scale):

- Intervals: per sensor, step and target, the `level` quantile of absolute
  normalised errors, tracked online (quantile tracking: multiply by
  exp(rate * (miss - (1 - level))) per scored reading; RATE, or RATE_ADAPTED
  for an adapted forecast's own interval), starting from the
  bundle's calibration, so the first forecast has an interval and every
  sensor converges to its own coverage. A miss is a reading outside the
  interval that was published for it, k readings earlier for step k (kept
  with the forecast, `PUBLISHED`), not outside the one the tracker has
  since moved to: the share of published intervals that miss is then
  what the tracker drives to 1 - level.
- Guard: per sensor and per step, rolling errors of the model and of
  persistence, in the sensor's own units (one sensor, one unit: this is its
  MAE), one reading moving them at most GUARD_CLIP times the larger; a step
  where the model has recently done no better is served persistence, and is
  served the model again only once it does clearly better (GUARD_LEAVE; a
  forecast adapted to the sensor, by less: GUARD_LEAVE_ADAPTED), while the
  model keeps being scored. A new sensor starts on persistence: the model
  has to win on it first, over at least GUARD_MIN_SCORED readings, as a model
  that lost has to win again (a generic model can lose badly on a sensor's
  first windows, and those are the forecasts a user sees first). A step
  served the model is served it whole only where it wins clearly
  (GUARD_WHOLE); where it wins by less, a mix of it and the last value, by
  its margin.
- Anomalies: a reading outside the one-step interval at `anomaly_level` of
  the forecast served for it. A tracker at that level itself would learn to
  let anomalies in (at 0.99 it widens until 1% of readings fall outside, the
  spikes included), so each sensor tracks the `ANOMALY_BASE` quantile, which a
  few spikes barely move, and the interval is that times the bundle's ratio of
  the two quantiles (the shape of the error tail, measured at training). It is
  measured in a scale of its own, robust to the spikes it looks for (the
  median absolute step of the window the forecast was made from, at least
  MOVE_SHARE of the sensor's typical move), so one spike does not blind the
  detector to the next for a whole window, nor a flat window make the first
  move off it an outlier by millions. A spike the check
  let through is reported one reading late if the sensor came straight back
  (REVERSAL).
- Online accuracy: each realised first step, the model's error and the last
  value's, is handed to the model's `OnlineAccuracy` (accuracy.py), with the
  scale of the window it was made from (kept here, one float per target).

State lives in preallocated arrays (float32 for what is per step), in the slots of
the sensors' table (`Window.slot`): the table's index is the scores' too, and a
slot the table gives to another sensor starts again from the bundle's
calibration when that sensor's first window is scored. Of each
forecast, only the steps still to be realised are kept (`step_cells`). Only
targets that are also features can be scored; a bundle with another target
gets the bundle's calibration as its fixed interval, and no guard.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sensorcast.accuracy import OnlineAccuracy, window_scale
from sensorcast.buffer import LOAD_CHUNK, STORED_MAX, Window, grow_rows, row_chunks
from sensorcast.models.bundle import BundleMeta
from sensorcast.slots import SlotIndex

RATE = 0.05
"""Step of the multiplicative quantile tracker (larger adapts faster, noisier)."""
RATE_ADAPTED = 0.1
"""The same for the interval of a forecast adapted to its sensor (adapt.py), whose errors
shrink as its head learns the sensor, and change size when a step changes hands between the
corrected model and the sensor's own regression: at RATE its interval lagged behind (water
flow: 0.93 to 0.95 coverage at steps 3 to 6 of the 90% interval; 0.90 to 0.93 at this
rate). Not for the anomaly interval, which a few spikes must barely move."""
WARM_RATE = 0.5
"""A sensor's first readings take larger steps, WARM_RATE / sqrt(readings scored), until that
falls to RATE (after 100): its own errors replace the bundle's calibration quickly."""
GUARD_WEIGHTS = (0.05, 0.01)
"""Weights of the newest reading in the guard's two rolling errors per step: a short memory
(about the last 20 readings) that notices quickly when the model starts to lose, and a long
one (about the last 100) that a model must win over, by GUARD_LEAVE, to be served again."""
GUARD_MIN_SCORED = 20
"""Readings scored before the guard may switch a sensor."""
GUARD_ENTER = 1.0
"""Model error / persistence error above which a step is served persistence: where the
model is no better, the last value is served (never worse than persistence)."""
GUARD_WHOLE = 0.95
"""Model error / persistence error (the larger of the short and the long ratio) at or below
which a step the guard serves the model is served the model whole. Between it and
GUARD_ENTER the model's share falls linearly to 0 and the rest is the last value (served =
last + share * (model - last)), its interval the same mix of the two intervals' half-widths.
A model the guard has just let back has won by a margin over a stretch, and a stretch won
by a little is often luck that turns (near a random walk the model's errors and the last
value's differ by little, and by chance): served whole, it then lost, up to 1.1% at a step
in the replays where the guard let it back most (sunspots month to month, PM2.5 hourly,
Seattle's maximum temperature). Mixed by its margin, a near tie is served mostly the last
value. At 0.9 the worst such loss was 0.2%, but the room's CO2, which an adapted forecast
wins by 5 to 10% at its second step, kept less than half its gain over the default model
(README, "The guard")."""
GUARD_CLIP = 4.0
"""A reading's errors enter the guard's rolling errors at most this times the larger of them."""
GUARD_LEAVE = 0.9
"""... and below which it is served the model again: the model must win by a margin, as a
model that wins by less often wins a short stretch and then loses the next."""
GUARD_LEAVE_ADAPTED = 0.95
"""The same for a forecast adapted to its sensor (adapt.py: it learns the sensor, and serves
each step by whichever of the corrected model and the sensor's own regression has done better
on it lately). Measured on the replays of the series not held out (README, "Adaptation"):
at 0.9 an adapted forecast that wins by 5 to 10% (the room's temperature) was never served
again once it had lost; at 0.95 every series is served as well or better with adaptation,
while a fixed model held to 0.95 wins a stretch and loses the next (room humidity: 1.008,
worst step 1.039, against 0.996 and 1.003 at 0.9)."""
Q_FLOOR, Q_CEIL = 1e-6, 1e6
ANOMALY_BASE = 0.9
"""The quantile each sensor tracks for its anomaly interval (see the module's docstring)."""
ROBUST_FLOOR = 0.25
"""The anomaly scale is at least this share of the RMS of the window's steps (a sensor that
mostly repeats its value has a median step of zero); a flat window takes the model's scale.
The RMS, not the model's own scale, so the detector is the same whatever the bundle's
normalisation (a trimmed step scale is near zero on a window of a few steps)."""
MOVE_SHARE = 0.5
"""The anomaly scale is at least this share of the sensor's typical move (`MOVE_WEIGHT`): a
window that is flat, or flat for half of it (a light off, an inverter at night, a pump at
rest), has a median step of zero and an RMS step near it, and the first reading that moved
off it was an anomaly of a score in the millions, each morning, each time the pump starts."""
MOVE_WEIGHT = 0.01
"""Weight of the newest move in a sensor's typical move: a rolling mean of the absolute steps
of its readings that moved (about its last 100), so a flat stretch does not shrink it."""
RING_STATE = ("pend_newest", "pend_fresh")
"""Which of the last `horizon` readings have their forecast in the ring: the newest one's
number, and per ring place whether it holds the forecast of the reading before it that
shares the place (a snapshot holds the number of each place's forecast instead)."""
OPTIONAL = ("acc_scale", "pend_anchor", "move")
"""Arrays a snapshot written by an earlier version may lack (they start at zero; one without
`pend_anchor` holds its forecasts and last values whole, see `_anchor_legacy`)."""
PUBLISHED = ("pend_q_model", "pend_q_pers")
"""Per pending step, the interval's quantile published with it, of the model and of the last
value: a reading is a miss when it falls outside the interval its user was given. Tracked
against the quantile of the moment instead, which has moved k readings on by the time step k
is realised, the published intervals missed more than 1 - level wherever misses come in runs
(they grow the quantile during the run; at step 6 of the 90% interval: 0.879 to 0.889 covered
on El Nino, electricity demand and Seattle, 0.893 to 0.897 so). float16, clipped to its
largest finite value (65,504 window scales): a published quantile beyond that counts every
error beyond it as a miss. Not in snapshots: a restored sensor's pending steps take its
quantiles as they were saved."""
F16_MAX = float(np.finfo(np.float16).max)
REVERSAL = 0.6
"""A reading the anomaly check let through is reported one reading late (with its own
timestamp) when the sensor came straight back: its steps in and out, in opposite directions,
both beyond this share of persistence's anomaly half-width (in the robust scale of the window
before it), and the reading after it within RETURN of the smaller step of where it was before.
Such a spike is rare in clean readings (two large steps, opposite, back to the same place),
so this narrower interval flags few of them; the check alone missed spikes where the sensor
is moving a lot (replays with spikes of 8 times the first-difference standard deviation:
Brent 76.9% caught, 98.7% with it; wind at Sand Point 76.2%, 95.2%; clean readings flagged
0.72% both, 0.88% and 1.07%). Its event's interval is this one: `lower` and `upper` the
reading before the spike +- REVERSAL times the half-width, `score` the step in over it. Needs a
horizon of two steps or more (the reading before the spike is kept with the forecast made from
it, two readings back)."""
RETURN = 0.5
PERS_STEPS = 2
"""Steps of a served forecast whose source (model or last value) is kept: the anomaly check
reads back the first, and the second right after an anomaly."""


@dataclass
class Scored:
    """The outcome for one batch: what to publish, and anomalies found."""

    forecast: NDArray[np.float64]
    """(n, horizon, targets): the model's forecast, or the last value where the guard serves
    persistence."""
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    persistence: NDArray[np.bool_]
    """(n,): True where every step is the last value (`source: persistence`)."""
    persistence_steps: NDArray[np.bool_]
    """(n, horizon): True for each step served the last value."""
    anomalies: list[Anomaly]


@dataclass(frozen=True)
class Anomaly:
    window: Window
    expected: NDArray[np.float64]
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    value: NDArray[np.float64]
    score: float


class SensorScores:
    """Online calibration, guard and anomaly state of every sensor, for one bundle."""

    def __init__(
        self,
        meta: BundleMeta,
        *,
        level: float,
        anomaly_level: float,
        max_sensors: int,
        guard: bool = True,
        anomalies: bool = True,
        initial_capacity: int = 1024,
    ) -> None:
        self.horizon = h = meta.horizon
        self.timesteps = meta.timesteps
        self.level = level
        self.anomaly_level = anomaly_level
        self.max_sensors = max_sensors
        self.model_id = meta.model_id
        targets, features = meta.targets, meta.features
        self.scored = all(t in features for t in targets)
        self.guard = guard and self.scored
        self.anomalies = anomalies and self.scored
        self._target_idx = np.array(
            [features.index(t) for t in targets] if self.scored else [], dtype=np.intp
        )
        cal = meta.interval_calibration
        self._q0 = np.maximum(np.asarray(cal.quantile(level), dtype=np.float32), Q_FLOOR)
        base = np.maximum(np.asarray(cal.quantile(ANOMALY_BASE)[0], dtype=np.float32), Q_FLOOR)
        top = np.asarray(cal.quantile(anomaly_level)[0], dtype=np.float32)
        self._qa0 = base
        self._tail = np.maximum(top / base, 1.0)
        """Anomaly interval / ANOMALY_BASE interval, per target, from the bundle."""
        self._k = k = len(targets)
        self._lags = np.arange(1, h + 1)
        self._owner: list[str | None] = []
        """Per slot, the sensor whose state it holds (None: none yet). A slot is the one its
        table keeps the sensor's window in (`Window.slot`): an index of their own (a dict
        from id to slot, and each slot's id and use) took the scores 2 MB more at 100,000
        sensors, restored (48 MB now), and a flood of them 1 to 5 MB."""
        self._kept = 0
        self._lock = threading.Lock()
        self.switches = {"persistence": 0, "model": 0}
        self.on_persistence = 0
        """Sensors the guard serves the last value at every step now."""
        self._pers_steps = min(h, PERS_STEPS)
        cells, pers_cells = h * (h + 1) // 2, self._pers_steps * (self._pers_steps + 1) // 2
        self._shapes: dict[str, tuple[tuple[int, ...], type[np.generic]]] = {
            "pend_newest": ((), np.int64),
            "pend_fresh": ((h,), np.bool_),
            "pend_anchor": ((k,), np.float64),
            "pend_f": ((cells, k), np.float32),
            "pend_last": ((h, k), np.float32),
            "pend_scale": ((h, k), np.float32),
            "pend_rscale": ((h, k), np.float32),
            "pend_pers": ((pers_cells,), np.bool_),
            "pend_q_model": ((cells, k), np.float16),
            "pend_q_pers": ((cells, k), np.float16),
            "acc_scale": ((k,), np.float32),
            "move": ((k,), np.float32),
            "q_model": ((h, k), np.float32),
            "q_pers": ((h, k), np.float32),
            "qa_model": ((k,), np.float32),
            "qa_pers": ((k,), np.float32),
            "err_model": ((h, 2), np.float32),
            "err_pers": ((h, 2), np.float32),
            "n_scored": ((), np.int32),
            "flagged_seq": ((), np.int64),
            "use_pers": ((h,), np.bool_),
        }
        self._saved = {
            "pend_seq": ((h,), np.int64),
            **{
                name: got
                for name, got in self._shapes.items()
                if name not in RING_STATE and name not in PUBLISHED
            },
            "pend_f": ((h, h, k), np.float32),
            "pend_pers": ((h, h), np.bool_),
        }
        """The shapes in a snapshot, as earlier versions kept them: the reading number of the
        forecast in each ring place (-1: none), each forecast whole."""
        self._ring = np.arange(h)
        self._cell_step = np.repeat(np.arange(h), np.arange(1, h + 1))
        """The step (0 for the next reading) of each cell (`step_cells`)."""
        self._arrays: dict[str, NDArray[Any]] = {}
        self._allocate(min(initial_capacity, max_sensors))

    # --- storage ----------------------------------------------------------
    def _allocate(self, capacity: int) -> None:
        grow_rows(self._arrays, self._shapes, capacity)
        self._owner.extend([None] * (capacity - len(self._owner)))

    def _reset(self, slot: int) -> None:
        a = self._arrays
        for name in self._shapes:
            a[name][slot] = 0
        a["pend_newest"][slot] = -1
        a["q_model"][slot] = self._q0
        a["q_pers"][slot] = self._q0
        a["qa_model"][slot] = self._qa0
        a["qa_pers"][slot] = self._qa0
        if self.guard:  # the model is served once it has beaten the last value on this sensor
            a["use_pers"][slot] = True
            self.on_persistence += 1

    def _slot(self, window: Window) -> int:
        """The window's slot, whose state is made this sensor's if it held another's (the
        table gave the slot to a new sensor)."""
        slot = window.slot
        if slot < 0:
            raise ValueError(f"window of {window.sensor_id!r} has no table slot")
        owner = self._owner
        if slot >= len(owner):
            self._allocate(max(2 * len(owner), slot + 1))
        if owner[slot] != window.sensor_id:
            self._take(slot, window.sensor_id)
        return slot

    def _take(self, slot: int, sensor_id: str) -> None:
        if self._owner[slot] is None:
            self._kept += 1
        elif self.guard:
            self.on_persistence -= int(self._arrays["use_pers"][slot].all())
        self._reset(slot)
        self._owner[slot] = sensor_id

    def forget(self, freed: list[tuple[int, str]]) -> None:
        """The sensors' table freed these slots, (slot, sensor id): their state is no one's
        (unless another sensor has taken the slot since)."""
        with self._lock:
            owner, use = self._owner, self._arrays["use_pers"]
            for slot, sensor_id in freed:
                if slot < len(owner) and owner[slot] == sensor_id:
                    owner[slot] = None
                    self._kept -= 1
                    if self.guard:
                        self.on_persistence -= int(use[slot].all())

    def __len__(self) -> int:
        """Sensors whose state is kept."""
        return self._kept

    def take_switches(self) -> dict[str, int]:
        """Guard switches (of one step of one sensor) since the last call, by what that step
        is served now."""
        with self._lock:
            out, self.switches = self.switches, {"persistence": 0, "model": 0}
            return out

    # --- the worker's call --------------------------------------------------
    def score(
        self,
        windows: list[Window],
        forecast: NDArray[np.float64],
        scale: NDArray[np.float64],
        raw: NDArray[np.float64] | None = None,
        accuracy: OnlineAccuracy | None = None,
        adapted: NDArray[np.bool_] | None = None,
    ) -> Scored:
        """Score each window's newest reading, then record and calibrate its forecast.

        `forecast` is (n, horizon, targets) in sensor units; `scale` (n, 1, targets); `raw`
        the windows' values stacked (n, timesteps, features), if the caller has them.
        Windows of one sensor are handled in order, even within one batch. Each first step
        realised is also folded into `accuracy`, the model's online accuracy. `adapted` (n,):
        which forecasts an adapted head made (GUARD_LEAVE_ADAPTED, RATE_ADAPTED).
        """
        n = len(windows)
        if not self.scored:
            half = self._q0[None] * scale
            none = np.zeros((n, self.horizon), bool)
            return Scored(forecast, forecast - half, forecast + half, none[:, 0], none, [])
        with self._lock:
            slots = np.array([self._slot(w) for w in windows], dtype=np.intp)
            seqs = np.array([w.seq for w in windows], dtype=np.int64)
            if raw is None:
                raw = np.stack([w.values for w in windows])
            values = raw[:, :, self._target_idx]
            last = values[:, -1]
            rscale = _robust_scale(values, scale[:, 0, :])
            mase = window_scale(values)
            out = forecast.copy()
            lower = np.empty_like(forecast)
            upper = np.empty_like(forecast)
            pers = np.zeros((n, self.horizon), dtype=np.bool_)
            anomalies: list[Anomaly] = []
            for rows in batch_rounds(slots):
                self._score_round(
                    rows,
                    slots[rows],
                    seqs[rows],
                    last[rows],
                    windows,
                    anomalies,
                    accuracy,
                    None if adapted is None else adapted[rows],
                )
                r_slots = slots[rows]
                move = self._moved(r_slots, np.abs(last[rows] - values[rows, -2]))
                share = self._shares(r_slots)[:, :, None]  # (m, h, 1)
                q = share * self._arrays["q_model"][r_slots]
                q += (1.0 - share) * self._arrays["q_pers"][r_slots]
                lasts = last[rows][:, None, :]
                served = lasts + share * (forecast[rows] - lasts)
                half = q * scale[rows]
                out[rows] = served
                lower[rows] = served - half
                upper[rows] = served + half
                use = share[:, :, 0] == 0.0
                pers[rows] = use
                self._store(
                    r_slots,
                    seqs[rows],
                    forecast[rows],
                    last[rows],
                    scale[rows],
                    np.maximum(rscale[rows], MOVE_SHARE * move),
                    mase[rows],
                    use,
                )
        every: NDArray[np.bool_] = np.all(pers, axis=1)
        return Scored(out, lower, upper, every, pers, anomalies)

    def _moved(self, slots: NDArray[np.intp], step: NDArray[np.float64]) -> NDArray[np.float64]:
        """Fold each sensor's newest step (m, targets) into its typical move, where it moved;
        the typical moves after it."""
        a = self._arrays
        old = a["move"][slots].astype(np.float64)
        new = np.where(old > 0, old + MOVE_WEIGHT * (step - old), step)
        new = np.where((step > 0) & np.isfinite(step), new, old)
        a["move"][slots] = stored(new)
        return new

    def check_refills(self, windows: list[Window]) -> list[Anomaly]:
        """Check the newest reading of windows refilling after a gap (`Window.refill`).

        No forecast is made for it (the gap reset the window), so it is checked against the
        reading before it, with persistence's anomaly interval, in the robust scale of the
        readings before it (across the gap: the median step is not moved by it; the scale
        before the gap if they are flat); right after an anomaly, against the reading before that,
        with persistence's two-step interval. The first reading after the gap is not
        checked: how far it may move depends on how long the gap was. A sensor these scores
        have never seen is not checked (nothing is known of it) and gets no state."""
        if not self.anomalies:
            return []
        found: list[Anomaly] = []
        a = self._arrays
        with self._lock:
            for w in windows:
                slot = w.slot
                if not 0 <= slot < len(self._owner) or self._owner[slot] != w.sensor_id:
                    continue
                if w.refill < 2:
                    continue
                values = w.values[:, self._target_idx].astype(np.float64)
                y = values[-1]
                after = a["flagged_seq"][slot] == w.seq - 1
                if after and (w.refill < 3 or self.horizon < 2):
                    continue
                expected = values[-3] if after else values[-2]
                newest = max(0, int(a["pend_newest"][slot])) % self.horizon  # before the gap
                rscale = _robust_scale(values[None, :-1], a["pend_rscale"][slot, newest][None])[0]
                rscale = np.maximum(rscale, MOVE_SHARE * a["move"][slot])
                qa = a["qa_pers"][slot] * self._tail
                if after:
                    q = a["q_pers"][slot]
                    qa = qa * q[1] / q[0]
                half = qa.astype(np.float64) * np.maximum(rscale, np.finfo(np.float32).tiny)
                score = float((np.abs(y - expected) / half).max())
                if score > 1.0:
                    a["flagged_seq"][slot] = w.seq
                    found.append(Anomaly(w, expected, expected - half, expected + half, y, score))
        return found

    def _score_round(
        self,
        rows: NDArray[np.intp],
        slots: NDArray[np.intp],
        seqs: NDArray[np.int64],
        y: NDArray[np.float64],
        windows: list[Window],
        anomalies: list[Anomaly],
        accuracy: OnlineAccuracy | None,
        adapted: NDArray[np.bool_] | None,
    ) -> None:
        a, h = self._arrays, self.horizon
        made = seqs[:, None] - self._lags[None, :]  # (m, h): seq of the window for each lag
        ring = made % h
        s2 = slots[:, None]
        newest = a["pend_newest"][s2]
        valid = (made <= newest) & (made > newest - h) & a["pend_fresh"][s2, ring]  # (m, h)
        if not valid.any():
            return
        cells = step_cells(made, self._lags[None, :])
        # whole numbers from the anchor and the offsets kept in float32 (see `_store`)
        p = a["pend_anchor"][slots][:, None, :] + a["pend_last"][s2, ring]  # (m, h, k)
        f = p + a["pend_f"][s2, cells]
        # slots never written hold scale 0; they are masked out below, but must not divide
        sc = np.where(valid[:, :, None], a["pend_scale"][s2, ring], 1.0).astype(np.float64)
        sc = np.maximum(sc, np.finfo(np.float32).tiny)
        rsc = np.where(valid[:, :, None], a["pend_rscale"][s2, ring], 1.0).astype(np.float64)
        rsc = np.maximum(rsc, np.finfo(np.float32).tiny)
        r_model = np.abs(y[:, None, :] - f) / sc
        r_pers = np.abs(y[:, None, :] - p) / sc
        if accuracy is not None:  # the first step of the forecast made one reading back
            one = valid[:, 0]
            mase = a["acc_scale"][slots[one]].astype(np.float64)
            accuracy.fold(np.abs(y[one] - f[one, 0]), np.abs(y[one] - p[one, 0]), mase)
        n_scored = a["n_scored"][slots]
        warm = WARM_RATE / np.sqrt(n_scored + 1.0)
        rate = np.maximum(RATE, warm)[:, None, None]
        model_rate = rate
        if adapted is not None:
            model_rate = np.maximum(np.where(adapted, RATE_ADAPTED, RATE), warm)[:, None, None]
        v3 = valid[:, :, None]
        alpha = 1.0 - self.level
        for q_name, r, by in (("q_model", r_model, model_rate), ("q_pers", r_pers, rate)):
            q = a[q_name][slots]
            published = a["pend_" + q_name][s2, cells]
            step = np.exp(by * ((r > published) - alpha))
            a[q_name][slots] = bounded(np.where(v3, q * step, q), Q_FLOOR, Q_CEIL)
        if self.anomalies:
            scored = _Round(slots, seqs, cells, valid, y, f, p, rsc, rate[:, :, 0], windows, rows)
            for i, expected, half, value, score, ts in self._anomalies(scored):
                window = windows[int(rows[i])]
                if ts is not None:  # the reading before the window's newest
                    window = replace(window, ts=ts)
                anomalies.append(
                    Anomaly(window, expected, expected - half, expected + half, value, score)
                )
        if self.guard:
            # in the sensor's own units: what its users see as MAE (a normalised error would
            # hide the misses of windows whose scale a jump has inflated)
            leave = (
                GUARD_LEAVE
                if adapted is None
                else np.where(adapted, GUARD_LEAVE_ADAPTED, GUARD_LEAVE)
            )
            self._guard(slots, valid, r_model * sc, r_pers * sc, leave)
        a["n_scored"][slots] = n_scored + valid.any(axis=1)

    def _anomalies(self, r: _Round) -> list[_Found]:
        """Readings outside the one-step interval served for them (`_Found`); then calibrate
        that interval with them.

        A reading right after an anomaly is checked against the forecast made before the
        anomaly (two steps ahead, its interval widened by the step's own calibration), as the
        forecast made from the anomalous reading would flag it too; with a horizon of one
        step it is not checked. It is not reported when it stays with the anomaly (a level
        shift) or carries on the way it went (a climb): that is the same event, and a reading
        that carries it on is checked as the anomaly's latest reading. Later, while the
        anomaly is still in the window a forecast was made from, that forecast is not trusted
        (the model reacts to the outlier in its input for as long as the window holds it):
        the reading is checked against the last value, with persistence's own interval. Only
        clean one-step comparisons (from windows that hold no anomaly) calibrate the interval."""
        a, rows, h = self._arrays, np.arange(len(r.slots)), self.horizon
        late, found = self._reversals(r)
        since = r.seqs - a["flagged_seq"][r.slots]
        after = since == 1
        held = (since >= 2) & (since <= self.timesteps)  # the anomaly is in the window
        two = h > 1
        step = np.where(after & two, 1, 0)
        usable = np.where(after, r.valid[:, 1] if two else False, r.valid[:, 0])
        was_pers = a["pend_pers"][r.slots, r.cells[rows, step]] | held
        expected = np.where(was_pers[:, None], r.p[rows, step], r.f[rows, step])
        qa = np.where(was_pers[:, None], a["qa_pers"][r.slots], a["qa_model"][r.slots])
        qa = qa * self._tail
        if h > 1:
            q_served = np.where(
                was_pers[:, None, None], a["q_pers"][r.slots], a["q_model"][r.slots]
            )
            widen = np.where(after[:, None], q_served[:, 1] / q_served[:, 0], 1.0)
            qa = qa * widen
        half = qa.astype(np.float64) * r.sc[rows, step]
        worst = (np.abs(r.y - expected) / half).max(axis=1)
        # a reading right after an anomaly that stays with it (within persistence's one-step
        # anomaly interval of the anomalous reading) is a level shift, which the anomaly
        # already reported: a light switched on is one event, not two
        held_level = np.abs(r.y - r.p[:, 0]) <= (a["qa_pers"][r.slots] * self._tail) * r.sc[:, 0]
        shift = after & r.valid[:, 0] & held_level.all(axis=1)
        # one that carries on the way the anomaly went (beyond what was expected, on the side
        # the anomaly went: the sunrise of an irradiance sensor, a pump ramping up) is the
        # same event too, which goes on: the reading after it is checked as the one after an
        # anomaly
        same_side = ((r.y - expected) * (r.p[:, 0] - expected) > 0).all(axis=1)
        carried = after & usable & r.valid[:, 0] & (worst > 1.0) & same_side & ~shift
        a["flagged_seq"][r.slots[carried]] = r.seqs[carried]
        # the reading after a spike found late came back to where the sensor was: not checked
        hit = np.flatnonzero(usable & (worst > 1.0) & ~shift & ~carried & ~late)
        a["flagged_seq"][r.slots[hit]] = r.seqs[hit]
        found += [(int(i), expected[i], half[i], r.y[i], float(worst[i]), None) for i in hit]
        clean_pers = r.valid[:, 0] & ~after
        alpha = 1.0 - ANOMALY_BASE
        for name, forecast, clean in (
            ("qa_model", r.f[:, 0], (clean_pers & ~held)[:, None]),
            ("qa_pers", r.p[:, 0], clean_pers[:, None]),
        ):
            q = a[name][r.slots]
            miss = np.abs(r.y - forecast) / r.sc[:, 0] > q
            grown = q * np.exp(r.rate * (miss - alpha))
            a[name][r.slots] = bounded(np.where(clean, grown, q), Q_FLOOR, Q_CEIL)
        return found

    def _reversals(self, r: _Round) -> tuple[NDArray[np.bool_], list[_Found]]:
        """Rows whose reading before the newest was a spike the check let through (REVERSAL),
        each reported (against the reading before it, with its own timestamp) and flagged."""
        none = np.zeros(len(r.slots), dtype=np.bool_)
        if self.horizon < 2:
            return none, []
        before, spike, now = r.p[:, 1], r.p[:, 0], r.y  # (m, k): the last three readings
        into, out = spike - before, now - spike
        smaller = np.minimum(np.abs(into), np.abs(out))
        back = np.abs(now - before) <= RETURN * smaller  # (so the steps go opposite ways)
        if not back.any():  # most readings: no more work
            return none, []
        a = self._arrays
        qa = a["qa_pers"][r.slots] * self._tail  # persistence's anomaly half-width, in ...
        half = REVERSAL * qa.astype(np.float64) * r.sc[:, 1]  # ... the scale before the spike
        prev_ts = np.array([r.windows[i].prev_ts for i in r.rows.tolist()], dtype=np.float64)
        late = (
            (back & (smaller > half)).any(axis=1)
            & r.valid[:, 0]
            & r.valid[:, 1]
            & np.isfinite(prev_ts)
            & (a["flagged_seq"][r.slots] < r.seqs - 2)  # neither it nor the one before it
        )
        rows = np.flatnonzero(late)
        a["flagged_seq"][r.slots[rows]] = r.seqs[rows] - 1
        score = (np.abs(into) / half).max(axis=1)
        return late, [
            (int(i), before[i], half[i], spike[i], float(score[i]), float(prev_ts[i])) for i in rows
        ]

    def _guard(
        self,
        slots: NDArray[np.intp],
        valid: NDArray[np.bool_],
        r_model: NDArray[np.float64],
        r_pers: NDArray[np.float64],
        margin: float | NDArray[np.float64],
    ) -> None:
        """Per step (the reading realises step k of the forecast made k readings back), a
        short and a long rolling error of the model and of persistence. A step goes to
        persistence when either says the model is no better at it (or the short one says
        so at the first step), and back to the model when both say it is better, the long
        one by the `margin` (per sensor), counted from when it last lost."""
        a = self._arrays
        em = r_model.sum(axis=2)[:, :, None]  # (m, h, 1): over targets
        ep = r_pers.sum(axis=2)[:, :, None]
        n = a["n_scored"][slots] + valid.any(axis=1)  # counted after the guard, by the caller
        old_m = a["err_model"][slots].astype(np.float64)  # (m, h, 2)
        old_p = a["err_pers"][slots].astype(np.float64)
        fresh = (old_m == 0) & (old_p == 0)
        # one reading moves the rolling errors at most GUARD_CLIP times the larger of them:
        # a jump both fail on (a pump starting) must not hide, for the next hundred readings,
        # a model that then does worse than the last value
        cap = np.where(fresh, np.inf, GUARD_CLIP * np.maximum(old_m, old_p))
        em, ep = np.minimum(em, cap), np.minimum(ep, cap)
        w = np.asarray(GUARD_WEIGHTS)
        v = valid[:, :, None]
        err_m = np.where(v, np.where(fresh, em, old_m + w * (em - old_m)), old_m)
        err_p = np.where(v, np.where(fresh, ep, old_p + w * (ep - old_p)), old_p)
        use = a["use_pers"][slots]
        ready = (n >= GUARD_MIN_SCORED)[:, None] & valid
        loses = (err_m > GUARD_ENTER * err_p).any(axis=2)
        # the first step is realised first: when the model starts to lose, its one-step
        # error is the earliest sign, while the errors of step k arrive k readings late
        loses |= err_m[:, :1, 0] > GUARD_ENTER * err_p[:, :1, 0]
        by = np.reshape(margin, (-1, 1))
        wins = (err_m[..., 0] < err_p[..., 0]) & (err_m[..., 1] < by * err_p[..., 1])
        enter = ready & ~use & loses
        leave = ready & use & wins
        # a model that has just lost starts its long record afresh, level with persistence:
        # its wins before it lost do not bring it back; it must win again for a while
        slow = err_m[..., 1]
        err_m[..., 1] = np.where(enter, np.maximum(slow, err_p[..., 1]), slow)
        a["err_model"][slots] = stored(err_m)
        a["err_pers"][slots] = stored(err_p)
        new = (use | enter) & ~leave
        a["use_pers"][slots] = new
        self.switches["persistence"] += int(enter.sum())
        self.switches["model"] += int(leave.sum())
        self.on_persistence += int(new.all(axis=1).sum()) - int(use.all(axis=1).sum())

    def _shares(self, slots: NDArray[np.intp]) -> NDArray[np.float64]:
        """(m, h): each step's share of the model in what is served (the rest is the last
        value): 0 where the guard serves persistence; elsewhere 1 where the model's rolling
        errors, short and long, are both at most GUARD_WHOLE times persistence's, falling
        linearly to 0 as the larger of the two ratios rises to GUARD_ENTER."""
        a = self._arrays
        if not self.guard:
            return np.ones((len(slots), self.horizon))
        err_m = a["err_model"][slots].astype(np.float64)  # (m, h, 2)
        err_p = a["err_pers"][slots].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.nan_to_num((err_m / err_p).max(axis=2), nan=0.0, posinf=np.inf)
        share = np.clip((GUARD_ENTER - ratio) / (GUARD_ENTER - GUARD_WHOLE), 0.0, 1.0)
        return np.where(a["use_pers"][slots], 0.0, share)

    def _store(
        self,
        slots: NDArray[np.intp],
        seqs: NDArray[np.int64],
        forecast: NDArray[np.float64],
        last: NDArray[np.float64],
        scale: NDArray[np.float64],
        rscale: NDArray[np.float64],
        mase: NDArray[np.float64],
        served_pers: NDArray[np.bool_],
    ) -> None:
        a = self._arrays
        ring = seqs % self.horizon
        cells = step_cells(seqs[:, None], self._lags[None, :])
        newest = a["pend_newest"][slots]
        gap = (seqs - newest)[:, None]
        # the ring places of the readings skipped since the newest forecast hold none of theirs
        skipped = ((self._ring[None, :] - newest[:, None] - 1) % self.horizon < gap - 1) | (gap < 1)
        fresh = a["pend_fresh"][slots] & ~skipped
        fresh[np.arange(len(slots)), ring] = True
        a["pend_fresh"][slots] = fresh
        a["pend_newest"][slots] = seqs
        # In float32 a reading of 12,345,678 is rounded to the unit, one of 1e9 to 64, more
        # than such a sensor moves in a reading: each window's last reading is kept as its
        # offset from the newest one (the anchor, float64), moved on each forecast, and each
        # forecast as its offset from its own window's last reading; both are a few of the
        # sensor's steps, which float32 holds to seven digits whatever the level.
        moved = a["pend_last"][slots] + (a["pend_anchor"][slots] - last)[:, None, :]
        moved[np.arange(len(slots)), ring] = 0.0  # in the copy: one write to the table
        a["pend_last"][slots] = stored(moved)
        a["pend_anchor"][slots] = last
        a["pend_f"][slots[:, None], cells] = stored(forecast - last[:, None, :])
        for name in ("q_model", "q_pers"):  # the quantiles just published with it
            a["pend_" + name][slots[:, None], cells] = kept_as_published(a[name][slots])
        a["pend_scale"][slots, ring] = stored(scale[:, 0, :])
        a["pend_rscale"][slots, ring] = stored(rscale)
        a["acc_scale"][slots] = stored(mase)  # read back one reading later (online accuracy)
        ps = self._pers_steps
        a["pend_pers"][slots[:, None], cells[:, :ps]] = served_pers[:, :ps]

    # --- snapshots ----------------------------------------------------------
    def to_arrays(self, order: tuple[list[str], NDArray[np.intp]]) -> dict[str, NDArray[Any]]:
        """The state of the sensors in `order` (their table's ids and slots, least recently
        seen first: `SlotIndex.in_order`) that have any, in the snapshot's layout: each
        pending forecast whole (its steps already realised as 0, their source as False)."""
        with self._lock:
            ids, idx = self._owned(*order)
            out: dict[str, NDArray[Any]] = {"sensor_ids": np.array(ids, dtype=np.str_)}
            out["pend_seq"] = self._ring_seqs(idx)
            for name in self._saved:
                if name in ("pend_f", "pend_pers"):  # made whole a chunk at a time
                    shape, dtype = self._saved[name]
                    whole: NDArray[Any] = np.zeros((len(idx), *shape), dtype=dtype)
                    out[name] = whole
                    for slots, part, at, cells in self._live_cells(name, idx):
                        whole[part][at] = self._arrays[name][slots, cells]
                elif name != "pend_seq":
                    out[name] = self._arrays[name][idx]
            return out

    def _owned(self, ids: list[str], slots: NDArray[np.intp]) -> tuple[list[str], NDArray[np.intp]]:
        """Those of `ids` (in `slots`) whose slot holds their state."""
        owner, n = self._owner, len(self._owner)
        pairs = zip(ids, map(int, slots), strict=True)  # one at a time: no list of them all
        owned = np.fromiter(
            (slot < n and owner[slot] == sid for sid, slot in pairs), dtype=np.bool_, count=len(ids)
        )
        if owned.all():
            return ids, slots
        return [sid for sid, keep in zip(ids, owned.tolist(), strict=True) if keep], slots[owned]

    def _live_cells(
        self, name: str, idx: NDArray[np.intp]
    ) -> Iterator[tuple[NDArray[np.intp], slice, tuple[NDArray[np.intp], ...], NDArray[np.int64]]]:
        """For `pend_f` or `pend_pers` of the sensors in slots `idx`, a chunk of sensors at a
        time: the steps still to be realised, as their sensors' slots, the chunk (a slice of
        `idx`), their index (sensor, ring place, step) in the chunk's whole forecasts, as a
        snapshot holds them, and their cells."""
        for lo in range(0, len(idx), LOAD_CHUNK):
            part = slice(lo, lo + LOAD_CHUNK)
            rows, ring, step, cells = self._live_steps(name, idx[part])
            yield idx[part][rows], part, (rows, ring, step), cells

    def _live_steps(
        self, name: str, slots: NDArray[np.intp]
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.int64]]:
        """The steps still to be realised of `name` (`pend_f` or `pend_pers`) of the sensors in
        `slots`: (sensor, ring place, step) of each in their whole forecasts, and its cell."""
        steps = self.horizon if name == "pend_f" else self._pers_steps
        cells, live = self._pending(self._ring_seqs(slots))
        rows, ring, step = np.nonzero(live[:, :, :steps])
        return rows, ring, step, cells[rows, ring, step]

    def _ring_made(self, newest: NDArray[np.int64]) -> NDArray[np.int64]:
        """(n, h): the reading number whose forecast belongs in each ring place, given each
        sensor's newest forecast's (n,)."""
        out: NDArray[np.int64] = newest[:, None] - (newest[:, None] - self._ring) % self.horizon
        return out

    def _ring_seqs(self, idx: NDArray[np.intp]) -> NDArray[np.int64]:
        """The reading number of the forecast in each ring place (n, h), -1 where none."""
        made = self._ring_made(self._arrays["pend_newest"][idx])
        out: NDArray[np.int64] = np.where(self._arrays["pend_fresh"][idx], made, -1)
        return out

    def _pending(self, seq: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """For the forecasts in each ring place (n, h), the cell of each of their steps and
        whether that step is still to be realised, (n, h, h) each: it is, if it lies beyond
        the sensor's newest forecast (realised steps are never read again)."""
        made = seq[:, :, None]
        cells = step_cells(made, self._lags[None, None, :])
        newest = seq.max(axis=1, initial=-1)[:, None, None]
        return cells, (made >= 0) & (made + self._lags > newest)

    def load_arrays(self, arrays: Mapping[str, NDArray[Any]], index: SlotIndex) -> int:
        """Restore `to_arrays` output into the slots `index` (the sensors' table, restored
        first) keeps the sensors in; sensors it does not keep are left out. Raise ValueError
        if it does not fit this bundle. Output saved before the guard was per step is taken
        over (`_per_step_guard`).

        Values no sensor's scoring makes (not finite; a negative count, error or scale)
        refuse the whole file, so every sensor starts again from the bundle's calibration;
        interval quantiles are brought within the tracker's bounds (Q_FLOOR, Q_CEIL).

        `arrays` may read each array from a file whenever it is asked for (an .npz).
        """
        ids = np.asarray(arrays["sensor_ids"])  # not a list of them: read one at a time below
        m = len(ids)
        if np.unique(ids).size != m:
            raise ValueError("duplicate sensor ids")
        arrays = _per_step_guard(arrays, m, self.horizon)
        for name, (shape, dtype) in self._saved.items():
            if name in OPTIONAL and name not in arrays:
                continue
            got = arrays[name]
            if got.shape != (m, *shape) or got.dtype != dtype:
                raise ValueError(f"{name} has shape {got.shape} {got.dtype}")
        finite = ["q_model", "q_pers", "qa_model", "qa_pers", "err_model", "err_pers"]
        finite += ["pend_f", "pend_last", "pend_scale", "pend_rscale", *OPTIONAL]
        for name in finite:  # a chunk of sensors at a time: `arrays` may read rows as asked
            if name in arrays and not all(
                np.isfinite(r).all() for _, r in row_chunks(arrays[name], 0, m)
            ):
                raise ValueError(f"{name} is not finite")
        for name in ("n_scored", "err_model", "err_pers", "pend_scale", "pend_rscale", "acc_scale"):
            if name in arrays and (arrays[name] < 0).any():  # counts, errors, scales
                raise ValueError(f"{name} is negative")
        got = np.fromiter(
            (-1 if (slot := index.get(str(sid))) is None else slot for sid in ids), np.intp, count=m
        )
        rows = np.flatnonzero(got >= 0)
        """The file's rows of the sensors `index` keeps, in order ..."""
        idx = got[rows]
        """... and their slots."""
        with self._lock:
            self._arrays = {}
            self._owner = []
            self._kept = len(idx)
            self._allocate(max(int(idx.max(initial=-1)) + 1, 1024))
            for slot in idx.tolist():
                self._owner[slot] = index.id_of(slot)
            for name in self._saved:
                if name in OPTIONAL and name not in arrays:
                    continue
                if name not in ("pend_seq", "pend_f", "pend_pers"):
                    self._arrays[name][idx] = arrays[name][rows]
            for slots, seq in self._row_chunks(arrays["pend_seq"], rows, idx):
                newest = seq.max(axis=1, initial=-1)
                self._arrays["pend_newest"][slots] = newest
                self._arrays["pend_fresh"][slots] = (seq >= 0) & (seq == self._ring_made(newest))
            legacy = "pend_anchor" not in arrays
            if legacy:
                self._anchor_legacy(idx)
            for name in ("pend_f", "pend_pers"):
                self._load_steps(name, arrays[name], rows, idx, legacy)
            for name in ("q_model", "q_pers", "qa_model", "qa_pers"):
                np.clip(self._arrays[name], Q_FLOOR, Q_CEIL, out=self._arrays[name])
            for lo in range(0, len(idx), LOAD_CHUNK):
                part = idx[lo : lo + LOAD_CHUNK]
                for name in ("q_model", "q_pers"):
                    q = kept_as_published(self._arrays[name][part])
                    self._arrays["pend_" + name][part] = q[:, self._cell_step]
            self.on_persistence = int(self._arrays["use_pers"][idx].all(axis=1).sum())
        return len(idx)

    @staticmethod
    def _row_chunks(
        whole: NDArray[Any], rows: NDArray[np.intp], idx: NDArray[np.intp]
    ) -> Iterator[tuple[NDArray[np.intp], NDArray[Any]]]:
        """The file's `rows` of `whole` (read forward, LOAD_CHUNK rows of the file at a time:
        `whole` may be a reader of the file's rows, state.RowReader), with their slots `idx`."""
        n = whole.shape[0]
        for lo in range(0, n, LOAD_CHUNK):
            at = slice(*np.searchsorted(rows, (lo, lo + LOAD_CHUNK)).tolist())
            if at.start < at.stop:
                chunk = np.asarray(whole[lo : min(lo + LOAD_CHUNK, n)])
                yield idx[at], chunk[rows[at] - lo]

    def _anchor_legacy(self, idx: NDArray[np.intp]) -> None:
        """A snapshot without anchors held each window's last reading whole: keep the
        newest one's as the anchor and the others as offsets from it (see `_store`)."""
        a = self._arrays
        for lo in range(0, len(idx), LOAD_CHUNK):
            part = idx[lo : lo + LOAD_CHUNK]
            whole = a["pend_last"][part].astype(np.float64)
            newest = np.maximum(a["pend_newest"][part], 0) % self.horizon
            anchor = whole[np.arange(len(part)), newest]
            a["pend_anchor"][part] = anchor
            a["pend_last"][part] = whole - anchor[:, None, :]

    def _load_steps(
        self,
        name: str,
        whole: NDArray[Any],
        rows: NDArray[np.intp],
        idx: NDArray[np.intp],
        legacy: bool = False,
    ) -> None:
        """Put the steps still to be realised of whole forecasts (n, h, h, ...), the file's
        `rows` of `whole` for the sensors in slots `idx`, in their cells (`_row_chunks`). A
        `legacy` snapshot's forecasts are whole numbers: kept as offsets from their last."""
        a = self._arrays
        for slots, chunk in self._row_chunks(whole, rows, idx):
            r, ring, step, cells = self._live_steps(name, slots)
            got = chunk[r, ring, step]
            if legacy and name == "pend_f":
                got = got - (a["pend_anchor"][slots[r]] + a["pend_last"][slots[r], ring])
            a[name][slots[r], cells] = got


@dataclass(frozen=True)
class _Round:
    """What one scoring round computed, per window (m) and lag (h)."""

    slots: NDArray[np.intp]
    seqs: NDArray[np.int64]
    cells: NDArray[np.int64]
    """Where the pending step of each lag is kept (`step_cells`)."""
    valid: NDArray[np.bool_]
    y: NDArray[np.float64]
    f: NDArray[np.float64]
    p: NDArray[np.float64]
    sc: NDArray[np.float64]
    """The robust (anomaly) scale."""
    rate: NDArray[np.float64]
    windows: list[Window]
    rows: NDArray[np.intp]
    """The round's windows: `windows[rows[i]]` for each row i."""


_Found = tuple[
    int, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float, float | None
]
"""An anomaly: (row, expected, half-width, value, score, ts), `ts` None for the row's newest
reading, else that of the reading before it (a spike found one reading late, `_reversals`)."""


class _Overlay(Mapping[str, NDArray[Any]]):
    """`base` with some of its arrays made by `top` from it whenever asked for: like `base`
    (an .npz), it holds no array between two reads."""

    def __init__(
        self, top: dict[str, Callable[[], NDArray[Any]]], base: Mapping[str, NDArray[Any]]
    ) -> None:
        self._top, self._base = top, base

    def __getitem__(self, name: str) -> NDArray[Any]:
        return self._top[name]() if name in self._top else self._base[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._top
        yield from (name for name in self._base if name not in self._top)

    def __len__(self) -> int:
        return len(self._top) + sum(1 for name in self._base if name not in self._top)


def _per_step_guard(
    arrays: Mapping[str, NDArray[Any]], m: int, h: int
) -> Mapping[str, NDArray[Any]]:
    """Scores saved before the guard was per step (one state per sensor), in today's layout.

    The guard then kept one rolling error per sensor of the model and one of persistence,
    each the sum over the forecast's steps of that step's error, and served a sensor the
    last value at every step or at none. Each step gets the mean over steps of those errors
    (the same ratio of model to persistence at every step, so every step starts where the
    sensor was) in both its short and its long memory, and the sensor's choice, as do the
    steps of the forecasts still waiting to be scored. Other arrays are unchanged (and
    still read from `arrays` only when asked for). Arrays of any other shape are left for
    `load_arrays` to refuse."""
    old = {
        "err_model": ((m,), np.float32),
        "err_pers": ((m,), np.float32),
        "use_pers": ((m,), np.bool_),
        "pend_pers": ((m, h), np.bool_),
    }
    for name, (shape, dtype) in old.items():
        if name not in arrays:
            return arrays
        got = arrays[name]  # (from a file, each read reads it again)
        if got.shape != shape or got.dtype != dtype:
            return arrays

    def per_step(name: str, shape: tuple[int, ...]) -> Callable[[], NDArray[Any]]:
        def make() -> NDArray[Any]:
            value = arrays[name]
            if value.dtype == np.float32:  # a sum over the steps: their mean
                value = value / np.float32(h)
            index = (slice(None),) * value.ndim + (None,) * (len(shape) - value.ndim)
            return np.ascontiguousarray(np.broadcast_to(value[index], shape))

        return make

    return _Overlay(
        {
            "err_model": per_step("err_model", (m, h, 2)),
            "err_pers": per_step("err_pers", (m, h, 2)),
            "use_pers": per_step("use_pers", (m, h)),
            "pend_pers": per_step("pend_pers", (m, h, h)),
        },
        arrays,
    )


def _robust_scale(values: NDArray[np.float64], fallback: NDArray[Any]) -> NDArray[np.float64]:
    """The anomaly scale of windows (n, timesteps, targets): (n, targets), the median absolute
    step (as a standard deviation), at least ROBUST_FLOOR of the RMS step; `fallback` (n,
    targets) where both are zero (a flat window)."""
    diffs = np.diff(values, axis=1)
    if not diffs.shape[1]:
        return np.asarray(fallback, dtype=np.float64)
    steps = _median(np.abs(diffs)) * 1.4826
    rms = np.sqrt(np.mean(diffs * diffs, axis=1))
    out = np.maximum(steps, ROBUST_FLOOR * rms)
    return np.where(out > 0, out, fallback).astype(np.float64)


def _median(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """`np.median(x, axis=1)` of finite values, the same numbers in a third of the time (its
    checks and dispatch cost more than the partition itself on a window)."""
    m = x.shape[1]
    lo, hi = (m - 1) // 2, m // 2
    part = np.partition(x, (lo, hi), axis=1)
    if lo == hi:
        return part[:, lo]
    out: NDArray[np.float64] = (part[:, lo] + part[:, hi]) / 2.0
    return out


def bounded(x: NDArray[Any], lo: float, hi: float) -> NDArray[Any]:
    """`np.clip(x, lo, hi)` without its wrappers (a third of its time on a batch's arrays)."""
    out: NDArray[Any] = np.minimum(np.maximum(x, lo), hi)
    return out


def stored(x: NDArray[Any]) -> NDArray[Any]:
    """`x` as a float32 array may keep it: within float32's finite range. Readings near
    float32's own limit (which are taken in) differ, and are missed, by more; such
    differences are kept as its largest value."""
    return bounded(x, -STORED_MAX, STORED_MAX)


def kept_as_published(q: NDArray[Any]) -> NDArray[Any]:
    """Interval quantiles as the float16 `PUBLISHED` arrays may keep them."""
    out: NDArray[Any] = np.minimum(q, F16_MAX)
    return out


def step_cells(made: NDArray[np.int64], steps: NDArray[Any]) -> NDArray[np.int64]:
    """Where step `steps` (1 for the next reading) of the forecast made at reading `made` is
    kept: step j in a ring of j cells, j (j - 1) / 2 + made % j. A forecast's step j is
    read once, j readings after it was made, so the ring holds the step j of the last j
    forecasts: h (h + 1) / 2 cells keep every step still to be realised (keeping each
    forecast whole took h * h, most of it realised already)."""
    out: NDArray[np.int64] = steps * (steps - 1) // 2 + made % steps
    return out


def batch_rounds(slots: NDArray[np.intp]) -> list[NDArray[np.intp]]:
    """Row indices split so no slot appears twice in a round, in order of appearance."""
    order = slots.tolist()
    if len(set(order)) == len(order):  # 0.3 us for a few windows, 3.5 at 256 (np.unique: 1.6, 14.5)
        return [np.arange(len(order))]
    seen: dict[int, int] = {}
    rounds: list[list[int]] = []
    for i, s in enumerate(order):
        r = seen.get(s, -1) + 1
        seen[s] = r
        if r == len(rounds):
            rounds.append([])
        rounds[r].append(i)
    return [np.array(r, dtype=np.intp) for r in rounds]
