"""Net-load forecast for the planner: the next 24-48 h at the demand interval, with a spread.

Causal by construction: only demand intervals that ended at or before `now_s` are read, so
changing the future of a trace cannot change a forecast made before it.

The model (simple on purpose, and measured against the perfect-foresight optimum in bench/):
- a seasonal profile, the median of the last `days` days at the same local slot of the day, taken
  over the same day type (weekday / weekend) when it has at least two days there, else over all days;
- a level correction, the mean error of that profile over the last `level_s`, decaying with the
  lead time (time constant `level_tau_s`): a load that runs above its usual shape today stays
  above it for a few hours, not for two days;
- quantiles from the profile's errors over the history (the spread the planner keeps as a margin
  on the peak);
- scenarios: each of the last `scenario_days` days as it went, laid on the horizon slot by slot
  of the day. They are the ways the coming days have actually gone lately (a job restart at noon,
  a long training run through the afternoon): the planner keeps enough energy to hold its peak
  level in every one of them (planner.py), which a single quantile cannot say. (Built as the
  profile plus a past day's errors, with the level correction, or a weekday's profile plus a
  weekend day's errors, they rose on a swinging load above anything ever seen, and the plan's
  peak level with them.) Their first slot, the running interval, whose power the planner decides
  once for all of them, is the best linear prediction of it from that day (_running_interval).

Bad history never reaches the solver as NaN: non-finite readings are dropped, samples that step
back in time (a clock step) are dropped and missing intervals leave their profile slot to the
other days; each gives a named warning. Too little history (less than a day) gives None: the
heuristic controllers stay in charge (cold start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from agent.model.interval import DAY_S, interval_starts, utc_offsets

FloatArray = npt.NDArray[np.float64]

# warnings (Forecast.warnings): what was wrong with the history and how it was handled
W_NAN: Final = "forecast_history_nan"  # non-finite readings dropped
W_CLOCK: Final = "forecast_history_clock_step"  # samples out of time order or in the future dropped
W_GAP: Final = "forecast_history_gap"  # intervals missing in the window read
W_PROFILE: Final = "forecast_profile_gap"  # a slot of the day had no data on any day: recent mean used

QUANTILES: Final = (0.1, 0.5, 0.9)
MIN_SAME_TYPE_DAYS: Final = 2
GAP_SHARE: Final = 0.02  # more than this share of the window missing is worth a warning


@dataclass(frozen=True, slots=True)
class Forecast:
    start_s: float  # start of the first slot: the demand interval holding `now_s` (Unix s)
    step_s: float  # the demand interval
    p10_w: FloatArray  # net load (load - PV), W, per slot
    p50_w: FloatArray
    p90_w: FloatArray
    warnings: tuple[str, ...]
    # (S, slots): each of the last S days as it went; (0, slots) when not asked for
    scenarios_w: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def timestamps(self) -> FloatArray:
        out: FloatArray = self.start_s + self.step_s * np.arange(len(self.p50_w), dtype=np.float64)
        return out


def _clean(
    ts: FloatArray, v: FloatArray, now_s: float, step_s: float, tz: ZoneInfo
) -> tuple[FloatArray, FloatArray, list[str]]:
    """Finite, complete intervals before `now_s`, one per interval start, in time order."""
    warns: list[str] = []
    ok = np.isfinite(v) & np.isfinite(ts)
    if not ok.all():
        warns.append(W_NAN)
    ts, v = ts[ok], v[ok]
    # a clock step back shows as a timestamp at or before one already seen: keep the first, in
    # arrival order, of each run that goes forward (what was recorded before the step stands)
    forward = ts > np.concatenate(([-math.inf], np.maximum.accumulate(ts)[:-1]))
    done = ts + step_s <= now_s + 1e-6  # complete intervals only: causality
    if not forward.all() or (ts > now_s).any():
        warns.append(W_CLOCK)
    keep = forward & done
    ts, v = ts[keep], v[keep]
    if len(ts):
        ts = interval_starts(ts, tz, step_s)
        # two readings in one interval (a short step): the later wins
        last = np.concatenate((ts[1:] != ts[:-1], [True]))
        ts, v = ts[last], v[last]
    return ts, v, warns


def forecast(
    timestamps: npt.ArrayLike,
    net_w: npt.ArrayLike,
    now_s: float,
    tz: ZoneInfo,
    step_s: float,
    horizon_s: float = 2 * DAY_S,
    *,
    days: int = 14,
    level_s: float = 7200.0,
    level_tau_s: float = 3 * 3600.0,
    scenario_days: int = 0,
    decided_slots: int = 1,
) -> Forecast | None:
    """Forecast of the net load for `horizon_s` from the interval holding `now_s` (None: cold start).

    `timestamps`/`net_w`: the history, one average per demand interval (interval starts, Unix s).
    `decided_slots`: the first slots whose power the planner decides once for every scenario
    (_running_interval).
    """
    if step_s <= 0 or DAY_S % step_s:
        raise ValueError(f"forecast: step_s {step_s:g} s must divide a day")
    spd = int(DAY_S // step_s)
    ts_all = np.asarray(timestamps, dtype=np.float64)
    v_all = np.asarray(net_w, dtype=np.float64)
    if ts_all.shape != v_all.shape:
        raise ValueError(f"forecast: timestamps {ts_all.shape} and net_w {v_all.shape} differ")
    start = float(interval_starts(np.array([now_s]), tz, step_s)[0])
    ts, v, warns = _clean(ts_all, v_all, now_s, step_s, tz)
    sel = ts >= start - days * DAY_S
    ts, v = ts[sel], v[sel]
    if len(ts) < spd:
        return None
    expected = (start - max(ts[0], start - days * DAY_S)) / step_s
    if expected - len(ts) > GAP_SHARE * expected:
        warns.append(W_GAP)

    local = ts + utc_offsets(ts, tz)
    slot = ((local % DAY_S) // step_s).astype(np.int64)
    weekend = ((np.floor(local / DAY_S).astype(np.int64) + 3) % 7) >= 5  # 1970-01-01 was a Thursday
    n = math.ceil(horizon_s / step_s)
    fts = start + step_s * np.arange(n, dtype=np.float64)
    flocal = fts + utc_offsets(fts, tz)
    fslot = ((flocal % DAY_S) // step_s).astype(np.int64)
    fweekend = ((np.floor(flocal / DAY_S).astype(np.int64) + 3) % 7) >= 5

    # profile[type, slot]: type 0 weekday, 1 weekend; NaN where a slot has no data at all
    by_type, n_type = _group_medians(v, weekend.astype(np.int64) * spd + slot, 2 * spd)
    by_slot, _ = _group_medians(v, slot, spd)
    prof = np.where(n_type >= MIN_SAME_TYPE_DAYS, by_type, np.tile(by_slot, 2)).reshape(2, spd)
    if np.isnan(prof).any():
        warns.append(W_PROFILE)
        recent = float(np.mean(v[-spd:]))
        prof = np.where(np.isnan(prof), recent, prof)

    fitted = prof[weekend.astype(np.int64), slot]
    resid = v - fitted
    recent_err = resid[ts >= start - level_s]
    level = float(np.mean(recent_err)) if len(recent_err) else 0.0
    lead = fts - start
    shape = prof[fweekend.astype(np.int64), fslot]
    base = shape + level * np.exp(-lead / level_tau_s)
    q = np.quantile(resid, QUANTILES)
    return Forecast(
        start_s=start,
        step_s=step_s,
        p10_w=base + q[0] - q[1],
        p50_w=base,
        p90_w=base + q[2] - q[1],
        warnings=tuple(warns),
        scenarios_w=_running_interval(
            _scenarios(shape, fslot, ts, slot, v, start, spd, scenario_days), base, ts, v, step_s, decided_slots
        ),
    )


def _group_medians(v: FloatArray, key: npt.NDArray[np.int64], n_keys: int) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """(median of `v` over each key 0..n_keys-1, NaN where it has none; the count per key), in one
    sort: the profile re-built at every re-plan took 192 np.median calls (~60 % of the forecast's time)."""
    order = np.lexsort((v, key))
    sv = v[order]
    counts = np.bincount(key, minlength=n_keys).astype(np.int64)
    starts = np.cumsum(counts) - counts
    has = counts > 0
    lo = np.where(has, starts + (counts - 1) // 2, 0)
    hi = np.where(has, starts + counts // 2, 0)
    if not len(sv):
        return np.full(n_keys, math.nan), counts
    med: FloatArray = np.where(has, (sv[lo] + sv[hi]) / 2.0, math.nan)  # np.median's: mean of the middle two
    return med, counts


def day_to_day_correlation(ts: FloatArray, v: FloatArray, step_s: float) -> float:
    """Correlation of each interval with the same interval a day before, over the history; in [0, 1]
    (0 with fewer than two such pairs or no spread: a past day then says nothing of today)."""
    lag = round(DAY_S / step_s)
    k = np.round((ts - ts[0]) / step_s).astype(np.int64) if len(ts) else np.zeros(0, dtype=np.int64)
    j = np.searchsorted(k, k - lag)
    ok = (j < len(k)) & (k[np.minimum(j, len(k) - 1)] == k - lag) if len(k) else np.zeros(0, dtype=bool)
    if int(np.count_nonzero(ok)) < 2:
        return 0.0
    a, b = v[ok], v[j[ok]]
    sa, sb = float(np.std(a)), float(np.std(b))
    if not (sa > 0.0 and sb > 0.0):
        return 0.0
    r = float(np.mean((a - a.mean()) * (b - b.mean()))) / (sa * sb)
    return min(max(r, 0.0), 1.0)


def _running_interval(
    scen: FloatArray, base: FloatArray, ts: FloatArray, v: FloatArray, step_s: float, decided: int = 1
) -> FloatArray:
    """The scenarios with their first `decided` slots (the running interval, and those done before
    the next plan) on what is known now.

    The planner decides those slots' power once for every scenario, so each scenario's value there
    must be what that day says about THESE intervals: the best linear predictor from the past day's
    value at this hour, the median (with its level correction, `base`) plus rho x the past day's
    departure from it, rho the load's day-to-day correlation over the history. A load with a daily
    shape (rho ~1) keeps the past days as they went; one with no daily phase (the Frontier HPL loop,
    period 2.25 h: rho 0) has a past day's peak at any hour, and the shared decision served the
    worst of them: no charge in the valley where one day had peaked, discharge where one had (0.4 %
    of the optimum on the 14-day loop).
    """
    if not len(scen):
        return scen
    rho = day_to_day_correlation(ts, v, step_s)
    out = scen.copy()
    j = max(1, min(decided, scen.shape[1]))
    out[:, :j] = base[:j] + rho * (scen[:, :j] - base[:j])
    return out


def _scenarios(
    shape: FloatArray,
    fslot: npt.NDArray[np.int64],
    ts: FloatArray,
    slot: npt.NDArray[np.int64],
    v: FloatArray,
    start: float,
    spd: int,
    days: int,
) -> FloatArray:
    """Each of the last `days` 24 h windows before `start` as it went, laid on the horizon by slot of
    the day; a slot the window has no reading for keeps the profile `shape`. A window with less than
    half a day of readings is no scenario (a gap is not a way the day went)."""
    rows = []
    for i in range(days):
        sel = (ts >= start - (i + 1) * DAY_S) & (ts < start - i * DAY_S)
        if 2 * int(np.count_nonzero(sel)) < spd:
            continue
        day = np.full(spd, math.nan)
        day[slot[sel]] = v[sel]
        row = day[fslot]
        rows.append(np.where(np.isnan(row), shape, row))
    out: FloatArray = np.array(rows, dtype=np.float64) if rows else np.zeros((0, len(shape)))
    return out
