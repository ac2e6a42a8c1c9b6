"""Per-cluster health indicators computed live from BMS data, one day at a time (pure).

Each cycle's ClusterSnapshot is folded into a DayAccumulator; at the end of a day it yields one
DailyIndicators row per cluster. Indicators are taken only where they are comparable between
clusters and days:

- cell voltage spread (max - min) only at rest-like states (small current, mid SoC), where
  imbalance is not masked by IR drop or the steep ends of the LFP curve;
- internal resistance from -dV/dI across load steps: two consecutive samples at most
  `STEP_MAX_DT_S` apart whose currents differ by at least `STEP_MIN_DA` (so the open-circuit
  voltage has not moved in between);
- capacity from energy counted (V x I) between two SoC readings at least `CAPACITY_MIN_DSOC`
  apart within one direction of current. A discharge estimate sees the stored energy times the
  discharge efficiency and a charge estimate divided by the charge efficiency, so the daily
  figure is the mean of the two directions' medians: the round-trip loss cancels to first order
  and the result is comparable with the nameplate, in % (an independent check of reported SoH).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from agent.model.snapshot import ClusterSnapshot, ClusterStatus

REST_CURRENT_A = 15.0  # |I| below this counts as rest for the spread indicator
REST_SOC = (30.0, 80.0)  # SoC band where cell spread is comparable (flat part of the LFP curve)
STEP_MIN_DA = 40.0  # current step that gives a usable dV/dI (V noise ~0.05 V -> ~2 mOhm per step)
STEP_MAX_DT_S = 5.0  # consecutive samples further apart than this are not one load step
CAPACITY_MIN_DSOC = 20.0  # % SoC swing needed for a capacity estimate
# SunSpec 802 Evt1 bits 13-16: SoC below min / above max (alarm and warning). They say where the
# cluster is in its cycle, set by operation (and by a failed neighbour's share landing on it),
# not how healthy it is, so the alarm-rate indicator leaves them out.
SOC_STATE_ALARMS = (1 << 13) | (1 << 14) | (1 << 15) | (1 << 16)
DIR_MIN_A = 2.0  # |I| above this has a direction for charge counting (below: rest, no re-anchor)


@dataclass(frozen=True, slots=True)
class DailyIndicators:
    cluster_id: str
    day: int  # day index (calendar ordinal live, simulated day in accelerated runs)
    cell_spread_mv: float  # median rest spread, NaN if no rest sample
    temp_max_c: float  # hottest reading of the day
    temp_spread_c: float  # median (max - min) module temperature
    soh_pct: float  # as the BMS reports it (last of the day)
    capacity_pct: float  # energy-counted capacity, % of nameplate; NaN without both directions
    resistance_mohm: float  # median dV/dI over load steps, NaN if no step
    alarm_rate: float  # share of samples with a health alarm bit set (SoC-state bits excluded)
    comm_error_rate: float  # share of samples the cluster was offline
    throughput_kwh: float  # |energy| through the cluster today (charge + discharge)
    efc: float  # equivalent full cycles today: discharged energy / nameplate
    samples: int


@dataclass(slots=True)
class _ClusterDay:
    spreads: list[float] = field(default_factory=list)
    temp_max: float = -math.inf
    temp_spreads: list[float] = field(default_factory=list)
    soh: float = math.nan
    resist: list[float] = field(default_factory=list)
    cap_dis: list[float] = field(default_factory=list)
    cap_chg: list[float] = field(default_factory=list)
    alarms: int = 0
    offline: int = 0
    samples: int = 0
    charged_wh: float = 0.0
    discharged_wh: float = 0.0
    capacity_wh: float = math.nan
    # carried across midnight
    last_i: float = math.nan
    last_v: float = math.nan
    anchor_soc: float = math.nan  # charge counting: Wh counted since this SoC, in direction `sign`
    wh: float = 0.0
    sign: int = 0


class DayAccumulator:
    """Folds cycle snapshots of many clusters into daily indicator rows."""

    def __init__(self) -> None:
        self._d: dict[str, _ClusterDay] = {}

    def add(self, c: ClusterSnapshot, dt_s: float) -> None:
        """Fold one cluster's snapshot; `dt_s` is the time since the previous snapshot."""
        d = self._d.get(c.id)
        if d is None:
            d = self._d[c.id] = _ClusterDay()
        d.samples += 1
        d.capacity_wh = c.capacity_wh
        if c.status is ClusterStatus.OFFLINE:
            d.offline += 1
            _break(d)  # a gap in the data: no step, no counting across it
            return
        if c.alarms & ~SOC_STATE_ALARMS:
            d.alarms += 1
        if c.soh_pct.ok:
            d.soh = c.soh_pct.value
        tmax, tmin = c.temp_max_c, c.temp_min_c
        if tmax.ok:
            if tmax.value > d.temp_max:
                d.temp_max = tmax.value
            if tmin.ok:
                d.temp_spreads.append(tmax.value - tmin.value)
        if not (c.current_a.ok and c.voltage_v.ok and c.soc_pct.ok):
            _break(d)
            return
        i, v, soc = c.current_a.value, c.voltage_v.value, c.soc_pct.value
        if abs(i) < REST_CURRENT_A and REST_SOC[0] <= soc <= REST_SOC[1] and c.cell_v_max.ok and c.cell_v_min.ok:
            d.spreads.append((c.cell_v_max.value - c.cell_v_min.value) * 1000.0)
        if d.last_i == d.last_i and dt_s <= STEP_MAX_DT_S and abs(i - d.last_i) >= STEP_MIN_DA:
            # Discharge current positive: more current -> lower voltage; R = -dV/dI.
            r = -(v - d.last_v) / (i - d.last_i)
            if r > 0:
                d.resist.append(r * 1000.0)
        d.last_i, d.last_v = i, v
        # Energy over the interval ending now, at the current measured now: the agent samples at
        # its cycle period, so the right end point is as good as any.
        e_wh = v * i * dt_s / 3600.0
        if e_wh >= 0:
            d.discharged_wh += e_wh
        else:
            d.charged_wh -= e_wh
        _count(d, i, soc, e_wh)

    def close(self, day: int) -> list[DailyIndicators]:
        rows = []
        for cid, d in sorted(self._d.items()):
            n = max(d.samples, 1)
            cap = d.capacity_wh
            if d.cap_dis and d.cap_chg and cap > 0:
                capacity_pct = 50.0 * (_median(d.cap_dis) + _median(d.cap_chg)) / cap
            else:
                capacity_pct = math.nan
            rows.append(
                DailyIndicators(
                    cluster_id=cid,
                    day=day,
                    cell_spread_mv=_median(d.spreads),
                    temp_max_c=d.temp_max if math.isfinite(d.temp_max) else math.nan,
                    temp_spread_c=_median(d.temp_spreads),
                    soh_pct=d.soh,
                    capacity_pct=capacity_pct,
                    resistance_mohm=_median(d.resist),
                    alarm_rate=d.alarms / n,
                    comm_error_rate=d.offline / n,
                    throughput_kwh=(d.charged_wh + d.discharged_wh) / 1000.0,
                    efc=d.discharged_wh / cap if cap > 0 else math.nan,
                    samples=d.samples,
                )
            )
            # Carry the step and charge-counting state across midnight; reset the rest.
            self._d[cid] = _ClusterDay(last_i=d.last_i, last_v=d.last_v, anchor_soc=d.anchor_soc, wh=d.wh, sign=d.sign)
        return rows


def _break(d: _ClusterDay) -> None:
    d.last_i = math.nan
    d.anchor_soc = math.nan
    d.sign = 0


def _count(d: _ClusterDay, i: float, soc: float, e_wh: float) -> None:
    """Charge counting between SoC readings, restarted whenever the current changes direction
    (mixing directions would fold the round-trip loss into the estimate)."""
    sign = 1 if i > DIR_MIN_A else -1 if i < -DIR_MIN_A else 0
    if sign and sign != d.sign:
        # New direction: anchor here; this interval's energy belongs to the old direction.
        d.anchor_soc, d.wh, d.sign = soc, 0.0, sign
        return
    if d.anchor_soc != d.anchor_soc:  # NaN: no anchor yet (start, or after a gap)
        d.anchor_soc, d.wh = soc, 0.0
        return
    d.wh += e_wh
    dsoc = d.anchor_soc - soc  # discharging lowers SoC: positive with positive energy
    if abs(dsoc) >= CAPACITY_MIN_DSOC and d.sign:
        est = d.wh / dsoc * 100.0  # Wh per 100 % SoC
        if est > 0:
            (d.cap_dis if d.sign > 0 else d.cap_chg).append(est)
        d.anchor_soc, d.wh = soc, 0.0


def _median(xs: list[float]) -> float:
    return float(np.median(xs)) if xs else math.nan
