"""Trends, peer comparison and maintenance recommendations from daily indicators (pure).

A site has many identical clusters. A cluster is flagged when one of its indicators both
trends the wrong way (robust Theil-Sen slope over the trailing window, faster than the fleet's
by a robust margin) and has drifted away from the median of its peers (same PCS model and
site: the caller groups them) by more than both an absolute margin and a robust z-score
(median absolute deviation), even while every absolute BMS limit is still fine. The verdict
must hold on `CONFIRM_DAYS` consecutive days, so one odd day never raises a recommendation.

A recommendation says which indicator, how fast it moves compared with the fleet, how many
days remain until the limit at that pace, and proposes an action the operator confirms:
derating, or isolation (the existing `maintenance` command) when the limit is close.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.health.indicators import DailyIndicators


@dataclass(frozen=True, slots=True)
class IndicatorRule:
    name: str  # attribute of DailyIndicators
    label: str  # what an operator reads
    unit: str
    worse: int  # +1: rising is bad, -1: falling is bad
    limit: float  # the BMS / warranty limit the lead time counts toward
    min_slope: float  # per day, in the bad direction, below which nothing is flagged
    min_gap: float  # absolute distance from the fleet median needed as well
    action: str  # what to propose
    derate_pct: float | None  # proposed power limit (% of rating) while the cause is found; None: no derating
    isolate: bool  # propose isolation when the limit is near (a safety matter, not just wear)


# Limits are the cluster datasheet's (see simulators/aging.py for the simulated BMS's): imbalance
# warning at 100 mV, end of life at 80 % capacity or 150 mOhm pack resistance, max cell temperature
# warning at 50 degC. Margins sit well above healthy day-to-day noise (see tests/test_health_*).
RULES: tuple[IndicatorRule, ...] = (
    IndicatorRule(
        "cell_spread_mv", "cell spread", "mV", +1, 100.0, 0.5, 8.0,
        "rebalance the cluster and check the drifting module", None, True,
    ),
    IndicatorRule(
        "resistance_mohm", "internal resistance", "mΩ", +1, 150.0, 0.3, 8.0,
        "inspect busbar and module connections", 70.0, True,
    ),
    IndicatorRule(
        "capacity_pct", "capacity (counted)", "%", -1, 80.0, 0.1, 2.5,
        "plan a capacity test and module replacement", 80.0, False,
    ),
    IndicatorRule(
        "soh_pct", "SoH (BMS)", "%", -1, 80.0, 0.1, 2.5,
        "plan a capacity test and module replacement", 80.0, False,
    ),
    IndicatorRule(
        "temp_max_c", "max temperature", "°C", +1, 50.0, 0.1, 2.5,
        "inspect the cooling loop (flow, pump, coolant)", 50.0, True,
    ),
    IndicatorRule(
        "comm_error_rate", "BMS comm errors", "share", +1, 0.5, 0.005, 0.05,
        "check the BMS communication link", None, False,
    ),
    IndicatorRule(
        "alarm_rate", "BMS alarm rate", "share", +1, 0.5, 0.005, 0.05,
        "review the BMS alarm log", None, False,
    ),
)  # fmt: skip

MAD_K = 4.0  # robust z-score a cluster must exceed against its peers (value and slope)
MIN_DAYS = 5  # days of history before any verdict
MIN_PEERS = 3  # fewer comparable clusters: no peer verdict
CONFIRM_DAYS = 2  # consecutive days a verdict must hold
ISOLATE_DAYS = 3.0  # propose isolation when the limit is this close (or crossed)
WINDOW_DAYS = 14  # trailing window for trends
RECENT_DAYS = 7  # shorter window used, when steeper, for the days-to-limit estimate


@dataclass(frozen=True, slots=True)
class Recommendation:
    cluster_id: str
    indicator: str
    label: str
    unit: str
    value: float
    fleet_median: float
    slope_per_day: float
    fleet_slope_per_day: float
    days_to_limit: float  # 0 when already at/over the limit
    limit: float
    action: str
    proposal: dict[str, Any]  # {"kind": "derate"|"isolate"|"inspect", ...}; the operator confirms
    text: str


def theil_sen(days: np.ndarray, values: np.ndarray) -> float:
    """Median of pairwise slopes: robust to a few bad days (NaN days are skipped)."""
    ok = np.isfinite(values)
    x, y = days[ok], values[ok]
    if len(x) < 2:
        return math.nan
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    keep = dx != 0
    if not keep.any():
        return math.nan
    return float(np.median((y[j] - y[i])[keep] / dx[keep]))


@dataclass(frozen=True, slots=True)
class _Flag:
    value: float
    median: float
    slope: float
    fleet_slope: float
    recent_slope: float  # over the last RECENT_DAYS: an accelerating fault shows here first


def _flags(history: Mapping[str, Sequence[DailyIndicators]], rule: IndicatorRule, end: int) -> dict[str, _Flag]:
    """Clusters flagged for `rule`, looking only at each cluster's rows before index `end` (<= 0: from the back)."""
    slopes: dict[str, float] = {}
    recent_slopes: dict[str, float] = {}
    latest: dict[str, float] = {}
    for cid, rows in history.items():
        tail = rows[: len(rows) + end] if end < 0 else rows
        if len(tail) < MIN_DAYS:
            continue
        tail = tail[-WINDOW_DAYS:]
        d = np.array([r.day for r in tail], dtype=float)
        v = np.array([getattr(r, rule.name) for r in tail], dtype=float)
        s = theil_sen(d, v)
        recent = v[np.isfinite(v)][-3:]
        if len(recent) and math.isfinite(s):
            slopes[cid] = s
            recent_slopes[cid] = theil_sen(d[-RECENT_DAYS:], v[-RECENT_DAYS:])
            latest[cid] = float(np.median(recent))  # a 3-day median: one odd day does not move it
    if len(latest) < MIN_PEERS:
        return {}
    vals = np.array(list(latest.values()))
    sl = np.array(list(slopes.values()))
    med = float(np.median(vals))
    mad = float(np.median(np.abs(vals - med))) * 1.4826
    fleet_slope = float(np.median(sl))
    slope_mad = float(np.median(np.abs(sl - fleet_slope))) * 1.4826
    out: dict[str, _Flag] = {}
    for cid, v_now in latest.items():
        s = slopes[cid]
        bad_slope = rule.worse * s
        gap = rule.worse * (v_now - med)
        moving = bad_slope >= rule.min_slope and bad_slope > rule.worse * fleet_slope + MAD_K * slope_mad
        apart = gap >= rule.min_gap and gap > MAD_K * mad
        if moving and apart:
            out[cid] = _Flag(v_now, med, s, fleet_slope, recent_slopes[cid])
    return out


def assess(
    history: Mapping[str, Sequence[DailyIndicators]], rules: Sequence[IndicatorRule] = RULES
) -> list[Recommendation]:
    """Recommendations for one peer group, given each cluster's daily rows (oldest first).

    Most urgent first (fewest days to the limit)."""
    recs: list[Recommendation] = []
    for rule in rules:
        now = _flags(history, rule, 0)
        confirmed = set(now)
        for back in range(1, CONFIRM_DAYS):
            confirmed &= set(_flags(history, rule, -back))
        for cid in sorted(confirmed):
            recs.append(_recommend(cid, rule, now[cid]))
    recs.sort(key=lambda r: (r.days_to_limit, r.cluster_id, r.indicator))
    return recs


def _recommend(cid: str, rule: IndicatorRule, f: _Flag) -> Recommendation:
    # Lead time at the steeper of the window's and the last week's pace: faults accelerate
    # (a cooling loop losing conductance heats ever faster), so the longer fit alone is late.
    bad_slope = rule.worse * f.slope
    if math.isfinite(f.recent_slope):
        bad_slope = max(bad_slope, rule.worse * f.recent_slope)
    remaining = rule.worse * (rule.limit - f.value)
    days = remaining / bad_slope if remaining > 0 else 0.0
    proposal: dict[str, Any]
    if rule.isolate and days <= ISOLATE_DAYS:
        proposal = {"kind": "isolate", "command": {"command": "maintenance", "cluster_id": cid, "on": True}}
    elif rule.derate_pct is not None:
        cmd = {"command": "derate", "cluster_id": cid, "max_power_pct": rule.derate_pct}
        proposal = {"kind": "derate", "max_power_pct": rule.derate_pct, "command": cmd}
    else:
        proposal = {"kind": "inspect", "command": None}
    fleet = abs(f.fleet_slope)
    ratio = f"{abs(f.slope) / fleet:.0f}x fleet median" if fleet > 1e-9 else "fleet median is flat"
    direction = "rising" if f.slope > 0 else "falling"
    if days > 0:
        when = f"expected to reach the limit ({rule.limit:g} {rule.unit}) in about {days:.0f} days"
    else:
        when = f"at or past the limit ({rule.limit:g} {rule.unit})"
    text = (
        f"cluster {cid}: {rule.label} {direction} {abs(f.slope):.2g} {rule.unit}/day ({ratio}); "
        f"now {f.value:.4g} {rule.unit} vs fleet {f.median:.4g}; {when}: {rule.action}"
    )
    return Recommendation(
        cid, rule.name, rule.label, rule.unit, f.value, f.median, f.slope, f.fleet_slope, days, rule.limit,
        rule.action, proposal, text,
    )  # fmt: skip
