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

Wear indicators with an end-of-life limit (capacity, SoH, resistance) also get a forecast
(agent/health/forecast.py) that sees knees and gives an interval (said in the text). A
replacement is recommended inside the owner's window (no later than the replacement's lead
time `PLAN_MIN_DAYS`, no earlier than `PLAN_MAX_DAYS`, beyond which good cells are scrapped)
when the central figure has reached the middle of the window and either the forecast is sure
(the interval's late end is within `PLAN_SURE_DAYS`, well inside the window) or it is the last
responsible moment (the interval's early end, the soonest the end can plausibly come, is within
`PLAN_EARLY_DAYS`, a little more than the lead time). The central figure alone is not enough:
a real cell's fade pace wanders by a factor of two over weeks, so a central figure inside the
window on a fast week was, on the 28-cell set, followed by a slower fade and a recommendation
up to 116 cycles early (noise seeds 0-9); an unsure forecast waits until the soonest plausible end nears the
lead time, which keeps the order in time without buying on one fast week. This needs no peer:
a fleet that ages together reaches its end together.

Resistance and capacity disagree on real cells (agent/health/corroborate.py): a resistance
rise the cluster's capacity does not echo is not its cells wearing, so it is neither peer drift
nor a replacement plan but the connection finding (basis "connection", CONNECTION_ACTION), with
the resistance rule's derating and isolation near the limit: a loosening joint heats.

Peer comparison is robust to what real fleets do. Outlier days: slopes are Theil-Sen (a
median of pairwise slopes, unmoved by up to ~29 % bad days), levels a 3-day median, fleet
figures median and MAD, and a verdict must hold CONFIRM_DAYS days running. (A Hampel filter on
the 14-day window was tried: at the window's end it takes the first days of a fast fault for
outliers; the cooling fault's lead on bench/health_bench.py seed 1 fell from 17 to 14 days. The
end-of-life forecast, on 100-day windows, does filter.) Steps: a wear estimate whose level
jumps and then holds (a recalibration, a capacity test, a contact) is not drifting, however far
from its peers it lands (`is_step`, for the rules that say so). Shrinking groups: a cluster whose record
stopped (replaced, removed, data lost) leaves the peer group instead of pinning the median to
its last, stale value, or being recommended for ever on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.health.corroborate import Evidence, against_paces, against_peers
from agent.health.forecast import FIT_DAYS, HAMPEL_HALF, EolForecast, forecast
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
    # A step in the level is no drift (see STEP_SHARE): true for the estimated wear figures,
    # which jump with recalibrations, capacity tests and contacts; false where a jump is itself
    # the fault (a cooling loop heats in bursts: on tests/test_health_detect.py's fleet, telling
    # its jumps apart cut the cooling fault's lead from 10 days to 2), where a link goes bad at
    # once, and for the BMS's SoH register, whose whole-percent resolution makes a fade a staircase
    steps_not_drift: bool = False


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
        "plan a capacity test and module replacement", 70.0, True, True,
    ),
    IndicatorRule(
        "capacity_pct", "capacity (counted)", "%", -1, 80.0, 0.1, 2.5,
        "plan a capacity test and module replacement", 80.0, False, True,
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

_CAPACITY = next(r for r in RULES if r.name == "capacity_pct")  # what a resistance rise must show in

MAD_K = 4.0  # robust z-score a cluster must exceed against its peers (value and slope)
MIN_DAYS = 5  # days of history before any verdict
MIN_PEERS = 3  # fewer comparable clusters: no peer verdict
CONFIRM_DAYS = 2  # consecutive days a verdict must hold
# Drift is a trend, not a step. A step in a cluster's level (a recalibrated sensor, a contact
# that loosened once, a BMS firmware update) tilts the 14-day Theil-Sen slope for as long as it
# sits inside the window. So a window whose wrong-way rise is mostly one jump (the largest
# change between the 3-day medians before and after any day is over STEP_SHARE of the rise from
# its first three days to its last three) after which the level, seen STEP_AFTER days, has not
# gone on rising, is no trend (`is_step`). A steady drift's largest such change is about 3/11
# of its rise. (Asking the trend to hold 7 days running and over the last week alone
# was measured first: it cost the simulator's cooling fault 22 of its 28 days of lead.)
STEP_SHARE = 0.6
STEP_SPAN = 3  # days in each median either side of a candidate jump
STEP_AFTER = 5  # days after a jump before its level can be told flat (a step) or rising (a fault)
ISOLATE_DAYS = 3.0  # propose isolation when the limit is this close (or crossed)
WINDOW_DAYS = 14  # trailing window for trends
RECENT_DAYS = 7  # shorter window used, when steeper, for the days-to-limit estimate
STALE_DAYS = 2  # a cluster without a row this many days before the group's newest is no peer
# The owner's replacement window: early enough for the order, delivery and installation
# (PLAN_MIN_DAYS), not so early that good cells are scrapped (PLAN_MAX_DAYS).
PLAN_MAX_DAYS = 100.0
PLAN_MIN_DAYS = 30.0  # the replacement's lead time (order, deliver, fit)
# Aim at the middle of that window: a forecast off by up to half its width (35 days) either way
# still lands in it. (Deciding on the interval's late end instead was measured on the 28-cell
# set: with the curvature bound in the late end, 1-5 cells per noise seed came under 30 days.)
PLAN_AIM_DAYS = (PLAN_MIN_DAYS + PLAN_MAX_DAYS) / 2.0
# ... and, unless the forecast is sure, wait until the interval's early end is this close:
# later and a knee sharper than the fit leaves less than the lead time; sooner and a fade that
# slows makes it premature. Measured on the 28-cell set over 20 noise seeds
# (bench/health_bench.py --real --sweep-early): 36-41 all give 0 misses and 0 recommendations
# > 100 days early (35: one lead of 18 days; 42: one of 102); 38 is the middle of that range.
PLAN_EARLY_DAYS = PLAN_MIN_DAYS + 8.0
# Sure enough to act on at once: the interval's late end a lead time inside the window's far
# end. It lets a clean knee be planned in the middle of the window rather than at its near end
# (offline on the same 20 seeds' forecasts, 60-80 days change nothing there; 90 gives four
# recommendations > 100 days early).
PLAN_SURE_DAYS = PLAN_MAX_DAYS - PLAN_MIN_DAYS
FORECAST_ROWS = FIT_DAYS + HAMPEL_HALF  # rows a forecast looks at (peer trends need fewer)
EOL_INDICATORS = ("capacity_pct", "soh_pct", "resistance_mohm")  # wear with an end-of-life limit
# A resistance rise the capacity does not echo (agent/health/corroborate.py) is this finding,
# basis "connection", not wear: no peer drift, no replacement plan. Its proposal stays the
# resistance rule's (derate, isolate near the limit): a loosening joint heats where it is.
CONNECTION_ACTION = "inspect the cluster's connections (busbars, module links) or the BMS's resistance estimate"


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
    # "peers": wearing apart from the fleet; "forecast": end of life within the horizon;
    # "connection": a resistance rise its capacity does not echo (connections or the estimate)
    basis: str = "peers"
    days_early: float = math.nan  # forecast only: the interval (days to the limit), early end ...
    days_late: float = math.nan  # ... and late end
    accelerating: bool = False  # forecast only: knee onset (the indicator accelerates)


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


def is_step(v: np.ndarray) -> bool:
    """Whether the rise of `v` (oldest first, rising is bad) is a step: one day's jump (between
    the STEP_SPAN-day medians before and after it) holds over STEP_SHARE of the rise from the
    first STEP_SPAN days to the last, and the level after the jump, seen STEP_AFTER days or more,
    has not gone on rising (by less than 1 - STEP_SHARE of the jump). A drift that starts or
    accelerates keeps rising after any jump; a jump too recent to tell, no rise, or too few
    days: False."""
    n, k = len(v), STEP_SPAN
    if n < k + STEP_AFTER:
        return False
    rise = float(np.median(v[-k:]) - np.median(v[:k]))
    if rise <= 0:
        return False
    tail = float(np.median(v[-k:]))
    for i in range(k, n - STEP_AFTER + 1):
        after = float(np.median(v[i : i + k]))
        jump = after - float(np.median(v[i - k : i]))
        if jump > STEP_SHARE * rise and tail - after < (1 - STEP_SHARE) * jump:
            return True
    return False


@dataclass(frozen=True, slots=True)
class _Flag:
    value: float
    median: float
    slope: float
    fleet_slope: float
    recent_slope: float  # over the last RECENT_DAYS: an accelerating fault shows here first


def _peer_rows(
    history: Mapping[str, Sequence[DailyIndicators]], back: int, keep: int
) -> dict[str, Sequence[DailyIndicators]]:
    """Each current peer's last `keep` rows up to `back` days before the group's newest day.

    A cluster with no row in the last STALE_DAYS before that day has stopped reporting
    (replaced, removed, records lost): it is not a peer any more, whatever it said last."""
    newest = max((rows[-1].day for rows in history.values() if rows), default=None)
    if newest is None:
        return {}
    upto = newest - back
    out: dict[str, Sequence[DailyIndicators]] = {}
    for cid, rows in history.items():
        end = len(rows)
        while end and rows[end - 1].day > upto:  # rows are oldest first: only the newest few go
            end -= 1
        if end and rows[end - 1].day >= upto - STALE_DAYS:
            out[cid] = rows[max(0, end - keep) : end]
    return out


def _flags(peers: Mapping[str, Sequence[DailyIndicators]], rule: IndicatorRule) -> dict[str, _Flag]:
    """Clusters flagged for `rule` among `peers` (each one's rows up to the day assessed)."""
    slopes: dict[str, float] = {}
    recent_slopes: dict[str, float] = {}
    latest: dict[str, float] = {}
    steps: dict[str, bool] = {}
    for cid, rows in peers.items():
        if len(rows) < MIN_DAYS:
            continue
        tail = rows[-WINDOW_DAYS:]
        d = np.array([r.day for r in tail], dtype=float)
        v = np.array([getattr(r, rule.name) for r in tail], dtype=float)
        s = theil_sen(d, v)
        recent = v[np.isfinite(v)][-3:]
        if len(recent) and math.isfinite(s):
            slopes[cid] = s
            recent_slopes[cid] = theil_sen(d[-RECENT_DAYS:], v[-RECENT_DAYS:])
            latest[cid] = float(np.median(recent))  # a 3-day median: one odd day does not move it
            steps[cid] = rule.steps_not_drift and is_step(rule.worse * v[np.isfinite(v)])
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
        moving = moving and not steps[cid]
        apart = gap >= rule.min_gap and gap > MAD_K * mad
        if moving and apart:
            out[cid] = _Flag(v_now, med, s, fleet_slope, recent_slopes[cid])
    return out


def _forecasts(peers: Mapping[str, Sequence[DailyIndicators]], rule: IndicatorRule) -> dict[str, EolForecast]:
    """End-of-life forecast of `rule`'s indicator for every peer with enough days."""
    out: dict[str, EolForecast] = {}
    for cid, rows in peers.items():
        d = np.array([r.day for r in rows], dtype=float)
        v = np.array([getattr(r, rule.name) for r in rows], dtype=float)
        f = forecast(d, v, rule.limit, rule.worse)
        if f is not None:
            out[cid] = f
    return out


def replacement_due(f: EolForecast, early_days: float = PLAN_EARLY_DAYS) -> bool:
    """The central end-of-life figure has reached the middle of the owner's window and the
    forecast is sure (late end within PLAN_SURE_DAYS) or the soonest plausible end of life is
    within `early_days`. One day's verdict: `assess` wants it on CONFIRM_DAYS days running."""
    return f.mid_days <= PLAN_AIM_DAYS and (f.late_days <= PLAN_SURE_DAYS or f.early_days <= early_days)


def _due(fcs: Mapping[str, EolForecast]) -> set[str]:
    return {cid for cid, f in fcs.items() if replacement_due(f)}


def assess(
    history: Mapping[str, Sequence[DailyIndicators]], rules: Sequence[IndicatorRule] = RULES
) -> list[Recommendation]:
    """Recommendations for one peer group, given each cluster's daily rows (oldest first).

    Most urgent first (fewest days to the limit)."""
    recs: list[Recommendation] = []
    # the group as it was today and on the CONFIRM_DAYS - 1 days before
    peers = [_peer_rows(history, back, FORECAST_ROWS) for back in range(CONFIRM_DAYS)]
    eol_rules = [r for r in rules if r.name in EOL_INDICATORS]
    today = {r.name: _forecasts(peers[0], r) for r in eol_rules}
    # resistance usually bends up before capacity bends down: its knee is said on capacity plans
    r_knee = {cid for cid, f in today.get("resistance_mohm", {}).items() if f.accelerating}
    capacity = next((r for r in rules if r.name == "capacity_pct"), _CAPACITY)
    for rule in rules:
        now = _flags(peers[0], rule)
        confirmed = set(now)
        for past in peers[1:]:
            confirmed &= set(_flags(past, rule))
        due: set[str] = set()
        if rule.name in today:
            due = _due(today[rule.name])
            for past in peers[1:]:
                due &= _due(_forecasts(past, rule))
        for cid in sorted(due | confirmed):
            resistance = rule.name == "resistance_mohm"
            level = against_peers(peers[0], cid, rule, capacity, MIN_PEERS) if resistance else None
            if cid in due:  # one recommendation per cluster and indicator: the forecast's
                f = today[rule.name][cid]
                pace = against_paces(f, today.get(capacity.name, {}).get(cid), rule, capacity) if resistance else None
                found = _uncorroborated(pace, level)
                # A rise neither the capacity nor a level apart from the peers bears out is the
                # fit's, not the cluster's (CS2_38 from cycle ~217: the quadratic reads the
                # excursion's end, inside its 100-day window, as a new rise): no finding from it.
                if found is None or level is None or level.apart:
                    knee = not resistance and cid in r_knee
                    recs.append(_recommend_eol(cid, rule, f, now.get(cid), knee, found))
                    continue
            if cid in confirmed:
                recs.append(_recommend(cid, rule, now[cid], _uncorroborated(level)))
    recs.sort(key=lambda r: (r.days_to_limit, r.cluster_id, r.indicator))
    return recs


def _recommend(cid: str, rule: IndicatorRule, f: _Flag, connection: Evidence | None = None) -> Recommendation:
    """Drift from the peers: wear, or (`connection` given) the connection finding."""
    # Lead time at the steeper of the window's and the last week's pace: faults accelerate
    # (a cooling loop losing conductance heats ever faster), so the longer fit alone is late.
    bad_slope = rule.worse * f.slope
    if math.isfinite(f.recent_slope):
        bad_slope = max(bad_slope, rule.worse * f.recent_slope)
    remaining = rule.worse * (rule.limit - f.value)
    days = remaining / bad_slope if remaining > 0 else 0.0
    proposal = _proposal(cid, rule, rule.isolate and days <= ISOLATE_DAYS)
    # Both paces, not their ratio: against a nearly flat fleet a ratio reads "6683x" and says less.
    ratio = f"fleet median {f.fleet_slope:+.2g} {rule.unit}/day"
    direction = "rising" if f.slope > 0 else "falling"
    if days > 0:
        when = f"expected to reach the limit ({rule.limit:g} {rule.unit}) in about {days:.0f} days"
    else:
        when = f"at or past the limit ({rule.limit:g} {rule.unit})"
    head = f"cluster {cid}: {rule.label} {direction} {abs(f.slope):.2g} {rule.unit}/day ({ratio}); "
    action, basis, tail = _says(
        rule, connection, "peers", f"now {f.value:.4g} {rule.unit} vs fleet {f.median:.4g}", when
    )
    text = head + tail
    return Recommendation(
        cid, rule.name, rule.label, rule.unit, f.value, f.median, f.slope, f.fleet_slope, days, rule.limit,
        action, proposal, text, basis=basis,
    )  # fmt: skip


def _uncorroborated(*evs: Evidence | None) -> Evidence | None:
    """The first evidence the capacity does not corroborate (the connection finding's), or None:
    wear (or not a resistance verdict)."""
    return next((ev for ev in evs if ev is not None and not ev.corroborated), None)


def _says(rule: IndicatorRule, connection: Evidence | None, basis: str, now: str, when: str) -> tuple[str, str, str]:
    """(action, basis, the text after the recommendation's head): wear on `basis`, where the
    cluster is `now` and `when` it reaches the limit, or the connection finding."""
    if connection is None:
        return rule.action, basis, f"{now}; {when}: {rule.action}"
    why = f"{connection.says}: the capacity does not show the rise, so it is not the cells wearing"
    return CONNECTION_ACTION, "connection", f"{why}; {when}: {CONNECTION_ACTION}"


def _proposal(cid: str, rule: IndicatorRule, isolate: bool) -> dict[str, Any]:
    if isolate:
        return {"kind": "isolate", "command": {"command": "maintenance", "cluster_id": cid, "on": True}}
    if rule.derate_pct is not None:
        cmd = {"command": "derate", "cluster_id": cid, "max_power_pct": rule.derate_pct}
        return {"kind": "derate", "max_power_pct": rule.derate_pct, "command": cmd}
    return {"kind": "inspect", "command": None}


def _recommend_eol(
    cid: str,
    rule: IndicatorRule,
    f: EolForecast,
    peer: _Flag | None,
    resistance_knee: bool,
    connection: Evidence | None = None,
) -> Recommendation:
    """A replacement plan: the end of life is inside the planning horizon even at the late end.
    With `connection` given, the connection finding instead: the limit near, but not from wear."""
    # wear is not a safety matter: plan, do not isolate; a joint near the limit heats: isolate
    proposal = _proposal(cid, rule, connection is not None and rule.isolate and f.mid_days <= ISOLATE_DAYS)
    direction = "rising" if f.slope_per_day > 0 else "falling"
    knee = ", accelerating (knee)" if f.accelerating else ""
    if resistance_knee:
        knee += ", resistance accelerating (knee onset)"
    limit = f"{'the limit' if connection is not None else 'end of life'} ({rule.limit:g} {rule.unit})"
    if f.mid_days > 0:
        when = f"{limit} in {f.early_days:.0f}-{f.late_days:.0f} days (central {f.mid_days:.0f})"
    else:
        when = f"at or past {limit}"
    vs = f" vs fleet {peer.median:.4g}" if peer is not None else ""
    head = f"cluster {cid}: {rule.label} {direction} {abs(f.slope_per_day):.2g} {rule.unit}/day{knee}; "
    action, basis, tail = _says(rule, connection, "forecast", f"now {f.value:.4g} {rule.unit}{vs}", when)
    text = head + tail
    return Recommendation(
        cid, rule.name, rule.label, rule.unit, f.value, peer.median if peer is not None else math.nan,
        f.slope_per_day, peer.fleet_slope if peer is not None else math.nan, f.mid_days, rule.limit,
        action, proposal, text, basis=basis, days_early=f.early_days, days_late=f.late_days,
        accelerating=f.accelerating,
    )  # fmt: skip
