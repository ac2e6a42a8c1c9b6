"""Split a campus's grid limits into one share per feeder (agent), so the campus holds if each holds its own.

A campus is several feeders (each with its own battery, PCS and agent) behind one utility meter:
campus import = the sum of the feeders' imports. The campus has three limits (0 = off): an import
cap (connection limit, W), a ramp limit (W/s) and a demand target (the interval-average import, W).
Each feeder gets a Share of each, and the agent feeds it to its existing controllers (grid limit,
ramp, demand shaving: agent/control/campus_share.py), so every local safety priority stays above it.

Right by construction:
- the shares of each limit SUM to the campus limit, so if every feeder holds its share the campus
  holds its limit: caps and interval averages add (sum of imports <= sum of caps = limit); ramps
  obey the triangle inequality (|sum of steps| <= sum of |steps| <= sum of budgets = limit);
- a feeder whose report is stale or missing gets its conservative fallback share (the one its own
  site file holds, which it applies by itself when it stops hearing the coordinator), and the
  others share what is left: whether or not that feeder still hears us, it holds the same share;
- where the campus needs battery power (the sum of net loads above the cap), that power is split
  over the fresh feeders by available discharge power (a cap) and energy above reserve (the weight),
  with the same progressive filling that dispatches a site setpoint over clusters
  (agent.control.dispatch.fill); so no feeder is asked to discharge more than it can, i.e. its cap
  is never below (net load - available discharge) while the campus total can be carried;
- headroom (the cap above the sum of net loads) and the ramp budget go mostly to the feeders whose
  load their own battery cannot carry (net load above available discharge): a swing there has only
  the grid to go to, while a feeder with battery to spare absorbs its own. The demand target's
  headroom is weighted by charge power too (split_demand): under the target the room is worth most
  to the batteries that can charge into it, as the pooled controller charges wherever there is room
  (measured: 66.5 -> 75.8 % of the ideal's savings, BENCHMARKS.md issue 16 second pass).
- a limit that is on never gives a feeder a 0 share (0 means "off" to the agent's controllers):
  every feeder first gets MIN_SHARE and the rest of the limit is split as above; the sum still holds.

Agents apply a new share at their own next cycle, not all together, so what the coordinator sends
(`to_send`) must hold for any mix of the shares sent in consecutive cycles:
- import cap and ramp are instantaneous: `hold_down` sends each feeder its least share over the
  last SHARE_WINDOW allocations, so any mix of the shares sent in those cycles sums to at most the
  limit (every one is at most that feeder's allocation in the oldest of them);
- the demand target is an interval AVERAGE, and holding it down is wrong for it: the least of three
  allocations that follow the feeders' moving loads is below the allocation most of the time, so the
  held-down shares summed to ~91 % of the campus target (BENCHMARKS.md, issue 16) and the agents
  defended a level far below it. Splitting the target as a LEVEL each cycle is wrong too, for the
  same reason the agent's demand controller plans energy: an agent settles its interval against the
  target it holds (allowed_grid_w: import allowed now = (target x interval - energy so far) / time
  left), so a level share that moves by d late in the interval moves that agent's allowance by
  d x interval / time left (a share 100 kW lower a minute before the end: 1.5 MW less allowed), and
  splitting the level once per interval leaves each feeder the headroom of the interval's first
  cycle, wherever the load then goes (measured: billed peak 17 MW over the ideal on 3 days).
  So `split_demand` splits the campus's interval ENERGY: the campus may still import
  E_left = T x L - (sum of the feeders' imports so far this interval) over the time left t, i.e. at
  the rate E_left / t; that rate is split like the import cap (split_cap: by battery power and
  energy where the campus needs them, headroom where the batteries cannot carry the load), r_i, and
  feeder i is sent the level d_i = (E_i + r_i x t) / L, with E_i its own import so far. Then its
  controller's allowance is exactly r_i (the pooled controller's allowance, split: the agent, told
  its target is a campus share by ControlConfig.campus, spends the credit in d_i over the
  time left, where a site alone spreads a credit over at least half an interval), and the d_i sum
  to T by construction (sum E_i + sum r_i t = sum E_i + E_left = T x L). Consecutive cycles' d_i differ
  only by what feeder i imported in one cycle less what it was allotted, times cycle / L: a mix of
  consecutive allocations (an agent a cycle late) misses T by about one cycle's deviation from
  plan over the whole interval, so the demand target is not held down. (Where a feeder is already past
  its part, d_i is kept at MIN_SHARE: the campus is then already over its target's energy.)
  The split is made on each feeder's own demand forecast where it reports one (as_forecast), and
  where every fresh feeder does, the campus's demand bound is decided once on their sum and sent as
  each feeder's part (agent/campus/bound.py, Share.demand_w): that, not its level, is then what the
  agent's demand controller discharges and charges by; the level stays its share of the target.

The share also carries the feeder's part of the campus's KEEP (Share.keep_wh): the energy time-of-use
discharge keeps back for the demand target, decided once for the campus on its own day profile
(agent/campus/keep.py) and split by energy (split_keep), as the battery power the campus needs is.
It is not a limit: the newest is sent, not held down.

Pure: no I/O, no clock. Non-finite or negative report values make a feeder stale (bad input never
becomes a share).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from agent.campus.bound import NO_BOUND, as_forecast, bound_and_room_w, split_bound
from agent.control.demand import MARGIN
from agent.control.dispatch import fill

# allocations an import cap or ramp share is the least of (hold_down): any mix of the shares sent in
# this many consecutive cycles sums to at most the limit, so an agent a cycle late or one message
# short holds it
SHARE_WINDOW = 3
MIN_SHARE = 1.0  # W (or W/s): the least share of a limit that is on (see the module doc)
NOT_SENT = -1.0  # Share.keep_wh below 0: no campus keep in the share, the agent keeps its own
UNDECIDED = -1  # Share.recharge: the coordinator did not decide it (no campus tariff), the agent does
_FLOOR_FRACTION = 0.1  # of a feeder's net load: its weight for headroom and ramp however big its battery
_FLOOR_W = 1.0  # and at least this (W): a feeder at zero load still gets a part
_ENERGY_FLOOR_WH = 1.0  # a feeder with discharge power but ~no energy still gets a (tiny) weight


@dataclass(frozen=True, slots=True)
class CampusLimits:
    """The campus's limits at its utility meter (0 = off)."""

    import_limit_w: float = 0.0  # grid connection limit: import at or below it every cycle
    ramp_limit_w_per_s: float = 0.0  # grid import ramp limit, up and down
    demand_target_w: float = 0.0  # demand-interval average import target


@dataclass(frozen=True, slots=True)
class FeederState:
    """One agent's campus report (signs as everywhere: grid positive = import, battery positive = discharge)."""

    site_id: str
    net_load_w: float  # load - PV: what the feeder would import with no battery
    grid_w: float  # what it imports now
    discharge_w: float  # battery discharge power available now (device limits, reserve window), >= 0
    charge_w: float  # battery charge power available now, >= 0
    energy_wh: float  # energy it can still discharge above its reserve, >= 0
    fresh: bool = True  # the report verified, its measurements good (False: use the fallback share)
    age_s: float = 0.0  # how old the report is when allocated
    # how long the feeder had gone without a valid share when it reported: past stale_after_s it is
    # treated as stale (fallback) before it falls back by itself (its own stale_after_s is longer)
    share_age_s: float = 0.0
    interval_wh: float = 0.0  # what it imported so far in the running demand interval (its own count)
    # its demand controller's forecast of its net load over the rest of the interval (W; NaN: not
    # reported, net_load_w stands for it): the demand target is split on it (split_demand)
    forecast_w: float = math.nan
    # the charge raise its time-of-use plan priced (W, tou.plan_interval: charging here is worth a
    # higher peak; 0: none): where any feeder's is, the campus's charge drops its margin (bound.py)
    raise_w: float = 0.0
    # what the campus's economic levels are sized on (agent/campus/levels.py), as a site sizes its own
    # (begin.py): the energy its usable window holds from full (AC Wh), its discharge power with no
    # window applied (W), and the round trip's value its time-of-use plan priced per kWh (tou.plan_slot
    # .spread; NaN: not known)
    budget_wh: float = 0.0
    power_w: float = 0.0
    spread: float = math.nan
    # the battery power (W, discharge positive) the cycle it reports commanded: in flight while the
    # coordinator answers, its import already decided (in_flight); NaN: not reported
    battery_w: float = math.nan
    # what the campus's all-hours level of a day that bills it alone is worked out with (begin.week_level,
    # as a site's): the round trip (charge x discharge efficiency) and the wear per kWh discharged
    # of its battery (NaN: not reported, an agent before they were; the campus then has no such level)
    round_trip: float = math.nan
    wear_per_kwh: float = math.nan


@dataclass(frozen=True, slots=True)
class Share:
    """One feeder's part of the campus limits (0 = that limit is off at the campus)."""

    import_cap_w: float = 0.0
    ramp_w_per_s: float = 0.0
    demand_target_w: float = 0.0
    # AC energy (Wh) kept back from time-of-use discharge for the campus's demand target: this
    # feeder's part of the campus's keep (agent/campus/keep.py); NOT_SENT: the agent keeps its own
    keep_wh: float = NOT_SENT
    # the campus recharges for its demand target now (agent/campus/keep.py: 1 yes, 0 no, UNDECIDED:
    # the agent's own rule)
    recharge: int = UNDECIDED
    # its part of the campus's demand bound (agent/campus/bound.py: W, > 0 discharge at least, < 0
    # charge at most); NaN: none sent, the agent bounds itself against its share
    demand_w: float = math.nan
    # the feeder's net load its report read, which that part was made on (NaN: none): the agent
    # charges its part less what its own load rose since (config.CampusPart.at_net_w)
    at_net_w: float = math.nan
    # how far the campus was under needing a discharge when that part was made (W, >= 0; NaN: not
    # sent): where its part is not a discharge, the agent discharges what its own step up beyond the
    # reading takes past it (agent/campus/bound.py campus_need_w, config.CampusPart.room_w)
    room_w: float = math.nan


def usable(f: FeederState, stale_after_s: float) -> bool:
    """The report counts: fresh, no older than `stale_after_s`, every value finite and in range."""
    vals = (f.net_load_w, f.grid_w, f.discharge_w, f.charge_w, f.energy_wh, f.age_s, f.share_age_s, f.interval_wh)
    return (
        not math.isinf(f.forecast_w)  # NaN: not reported
        and f.fresh
        and all(math.isfinite(v) for v in vals)
        and f.discharge_w >= 0.0
        and f.charge_w >= 0.0
        and f.energy_wh >= 0.0
        and 0.0 <= f.age_s <= stale_after_s
        and 0.0 <= f.share_age_s <= stale_after_s
    )


def _spread(total: float, weights: list[float]) -> list[float]:
    """`total` in proportion to `weights` (each > 0)."""
    s = sum(weights)
    return [total * w / s for w in weights]


def _without_battery(fs: Sequence[FeederState]) -> list[float]:
    """Per feeder: the weight for headroom and ramp budget (the load its own battery cannot carry,
    plus a floor so every feeder gets a part)."""
    out = []
    for f in fs:
        n = max(f.net_load_w, 0.0)
        out.append(max(n - f.discharge_w, 0.0) + _FLOOR_FRACTION * n + _FLOOR_W)
    return out


def split_cap(limit_w: float, fs: Sequence[FeederState], room: Sequence[float] = ()) -> list[float]:
    """`limit_w` (> 0) split into caps summing to it exactly, one per feeder in `fs` (all fresh).

    Below the limit (sum of net loads <= limit): each feeder's net load plus a part of the headroom.
    Above it: the battery power the campus needs is split by available power (cap) and energy
    (weight) over the feeders, and each cap is its net load less its part. If the batteries cannot
    carry it all, each one gives all it has and the rest (the part that cannot be held) is spread by
    load, so the caps still sum to the limit.
    """
    n = len(fs)
    if n == 0:
        return []
    rest = limit_w - MIN_SHARE * n
    if rest <= 0.0:  # a limit too small for n feeders (a campus file refuses this): the least for each
        return [limit_w / n] * n
    loads = [max(f.net_load_w, 0.0) for f in fs]
    need = sum(loads) - rest  # battery power the campus needs, W (negative: headroom)
    if need <= 0.0:
        weights = _without_battery(fs)
        if room:  # and toward the feeders that can use it (split_demand: charging room)
            weights = [w + r for w, r in zip(weights, room, strict=True)]
        parts = _spread(-need, weights)
        return [MIN_SHARE + ld + h for ld, h in zip(loads, parts, strict=True)]
    caps = [f.discharge_w if f.discharge_w < ld else ld for f, ld in zip(fs, loads, strict=True)]
    weights = [max(f.energy_wh, _ENERGY_FLOOR_WH) for f in fs]
    give = fill(need, caps, weights)
    short = need - sum(give)
    out = [ld - g for ld, g in zip(loads, give, strict=True)]
    if short > 1e-9:  # infeasible: what is left over the batteries, taken from the loads in proportion
        left = sum(out)
        out = [x - short * x / left for x in out] if left > 0.0 else [0.0] * n
    # the sum is `rest` up to rounding: put the rounding on the largest part, never below 0
    k = max(range(n), key=lambda i: out[i])
    out[k] = max(0.0, out[k] + rest - sum(out))
    return [MIN_SHARE + x for x in out]


def split_ramp(limit_w_per_s: float, fs: Sequence[FeederState]) -> list[float]:
    """`limit_w_per_s` (> 0) split into ramp budgets summing to it, weighted toward the load a
    feeder's own battery cannot smooth."""
    n = len(fs)
    if n == 0:
        return []
    rest = limit_w_per_s - MIN_SHARE * n
    if rest <= 0.0:
        return [limit_w_per_s / n] * n
    return [MIN_SHARE + r for r in _spread(rest, _without_battery(fs))]


def to_send(recent: Sequence[Mapping[str, Share]]) -> dict[str, Share]:
    """What the coordinator sends: import cap and ramp held down over `recent` allocations, the
    demand target from the newest (an energy split: see the module doc for why they differ), and
    the campus's demand decisions from the newest (the keep, the recharge and the bound: not limits)."""
    held = hold_down(recent)
    newest = recent[-1]
    out = {}
    for site, sh in held.items():
        new = newest.get(site)
        if new is None:
            new = Share(keep_wh=NOT_SENT)  # absent from the newest: no campus demand decisions
        out[site] = replace(new, import_cap_w=sh.import_cap_w, ramp_w_per_s=sh.ramp_w_per_s)
    return out


def split_keep(keep_wh: float, fs: Sequence[FeederState]) -> list[float]:
    """The campus's keep (AC Wh, agent/campus/keep.py) split over `fs` (all fresh) by the energy
    each can still discharge, so their arbitrage adds up to the pooled controller's (NOT_SENT: none)."""
    if keep_wh < 0.0:
        return [NOT_SENT] * len(fs)
    total = sum(f.energy_wh for f in fs)
    if total <= 0.0:
        return [0.0] * len(fs)
    return [keep_wh * f.energy_wh / total for f in fs]


def split_demand(target_w: float, fs: Sequence[FeederState], left_s: float, length_s: float) -> list[float]:
    """`target_w` (> 0, an interval average) split into level shares summing to it, one per feeder
    in `fs` (all fresh), `left_s` of the `length_s` interval still to run: the campus energy left
    split as a rate (see the module doc)."""
    n = len(fs)
    if n == 0:
        return []
    left = min(max(left_s, 1.0), length_s)
    used = [f.interval_wh * 3600.0 for f in fs]  # W s
    rate = _rate_left(target_w, fs, left, length_s)
    fs = as_forecast(fs)
    # headroom also by charge power: where the campus is under its target, the room is worth most
    # to the batteries that can charge into it (the pooled controller charges wherever there is room)
    rates = split_cap(rate, fs, [f.charge_w for f in fs]) if rate > 0.0 else [rate / n] * n
    return [max(MIN_SHARE, (u + r * left) / length_s) for u, r in zip(used, rates, strict=True)]


def _rate_left(target_w: float, fs: Sequence[FeederState], left: float, length_s: float) -> float:
    """The campus's import rate (W) over the `left` s still to run at which its interval ends at `target_w`."""
    return (target_w * length_s - sum(f.interval_wh * 3600.0 for f in fs)) / left


def hold_down(recent: Sequence[Mapping[str, Share]]) -> dict[str, Share]:
    """Per feeder, the least of each limit over `recent` allocations (each of which sums to the limit).

    Agents apply a new share at their own next cycle, not all at once, and one may miss a message:
    for a while some hold cycle n's share and others cycle n+1's, and a mix of two allocations that
    each sum to the limit can sum to more (a moved to 2 MW, b still at 2 MW of a 3 MW limit). Sending
    each feeder the least of its last K allocations makes any mix of the shares sent in K consecutive
    cycles sum to at most the limit: every one of them is at most that feeder's allocation in the
    oldest of those cycles. A share falls at once and rises K - 1 cycles late (the safe direction).
    A feeder absent from some allocation gets its share from those it is in."""
    out: dict[str, Share] = {}
    for alloc in recent:
        for site, sh in alloc.items():
            prev = out.get(site)
            out[site] = (
                sh
                if prev is None
                else Share(
                    min(prev.import_cap_w, sh.import_cap_w),
                    min(prev.ramp_w_per_s, sh.ramp_w_per_s),
                    min(prev.demand_target_w, sh.demand_target_w),
                    sh.keep_wh,  # not limits: the newest
                    sh.recharge,
                    sh.demand_w,
                    sh.at_net_w,
                    sh.room_w,
                )
            )
    return out


def in_flight(fs: Sequence[FeederState], left_s: float, flight_s: float) -> tuple[list[FeederState], float]:
    """`fs` (all fresh) and `left_s` as of when the shares apply: the agents apply them a cycle after
    the readings they are made on, and the cycle in flight (`flight_s` of the interval still running;
    0: none, it ends in the next one) was commanded on the shares before. The campus books it as the
    pooled controller books a reading, at what it imports then: each feeder's net load less the
    battery power it commanded (FeederState.battery_w), and its demand target, bound and room are
    decided on the time left after it. With the site's and the campus's books on the meter (begin
    .metered_w, levels.metered) that is what the meter bills for that cycle: the load read at its
    start less the battery over it. Counted as if the parts applied at once, they spread what the
    campus is over its aim across the cycle in flight too, and in an interval's last cycle only half
    of it was asked of the one cycle that could still answer: in the 4-feeder PG&E month the campus's
    shaved peak-window intervals ended 293 kW over its aim on average (max 1,376 kW; the pooled
    controller's at its aim, every one), five above the level, and the level ratcheted 808 kW over the
    pooled controller's (BENCHMARKS.md, issue 16, the campus against a metered pooled controller;
    first built and measured by issue-16z against a pooled controller that booked its own readings,
    when it cost the 8-feeder months). Unchanged where a feeder did not report its battery power, or
    no time would be left after the cycle in flight."""
    if not (flight_s > 0.0 and left_s > flight_s and all(math.isfinite(f.battery_w) for f in fs)):
        return list(fs), left_s
    wh = flight_s / 3600.0
    return [replace(f, interval_wh=f.interval_wh + max(0.0, f.net_load_w - f.battery_w) * wh) for f in fs], (
        left_s - flight_s
    )


def allocate(
    limits: CampusLimits,
    feeders: Sequence[FeederState],
    *,
    fallback: Mapping[str, Share] | None = None,
    stale_after_s: float = math.inf,
    interval_left_s: float = 900.0,
    interval_s: float = 900.0,
    keep_wh: float = NOT_SENT,
    recharge: int = UNDECIDED,
    margin: float = MARGIN,
    in_flight_s: float = 0.0,
) -> dict[str, Share]:
    """Each feeder's share of `limits`, by site id.

    A feeder that is not fresh (FeederState.fresh False, a report older than `stale_after_s`, or a
    non-finite or negative value in it) gets `fallback[site_id]`, and the fresh ones share the rest
    of each limit. A stale feeder with no fallback raises ValueError naming it (the coordinator's
    campus file gives every feeder one). The demand target is split as the interval's energy left
    (`interval_left_s` of the `interval_s` demand interval still to run, each fresh feeder's
    `interval_wh` so far: split_demand); a feeder on its fallback holds its fallback level for the
    interval, so the fresh share the rest of the target. `keep_wh`: the campus's keep for its demand
    target (agent/campus/keep.py), split over the fresh feeders by energy (split_keep); the campus's
    demand bound (agent/campus/bound.py) by power, where every fresh feeder reported its demand
    forecast (else none: each agent bounds itself against its share, not chasing the readings);
    `recharge` (agent/campus/recharge.py) goes to every fresh feeder as it is; `margin`: the fraction
    under the target the campus's bound aims (agent/campus/levels.py: its economic level's own aim);
    `in_flight_s`: the part of the agents' cycle in flight that falls in this interval (in_flight).
    """
    fb = fallback or {}
    ids = [f.site_id for f in feeders]
    if len(set(ids)) != len(ids):
        raise ValueError(f"feeders: a site id is reported twice ({sorted(i for i in ids if ids.count(i) > 1)[0]!r})")
    fresh = [f for f in feeders if usable(f, stale_after_s)]
    fresh_ids = {f.site_id for f in fresh}
    out: dict[str, Share] = {}
    for f in feeders:
        if f.site_id in fresh_ids:
            continue
        if f.site_id not in fb:
            raise ValueError(f"feeder {f.site_id!r}: its report is stale and it has no fallback share")
        out[f.site_id] = fb[f.site_id]
    held = list(out.values())

    def rest(limit: float, taken: float) -> float:
        return max(0.0, limit - taken)

    cap = ramp = demand = [0.0] * len(fresh)
    bound = [NO_BOUND] * len(fresh)
    room = NO_BOUND
    if limits.import_limit_w > 0.0:
        cap = split_cap(rest(limits.import_limit_w, sum(s.import_cap_w for s in held)), fresh)
    if limits.ramp_limit_w_per_s > 0.0:
        ramp = split_ramp(rest(limits.ramp_limit_w_per_s, sum(s.ramp_w_per_s for s in held)), fresh)
    if limits.demand_target_w > 0.0:
        left_w = rest(limits.demand_target_w, sum(s.demand_target_w for s in held))
        booked, left = in_flight(fresh, interval_left_s, in_flight_s)
        demand = split_demand(left_w, booked, left, interval_s)
        if all(math.isfinite(f.forecast_w) for f in fresh):  # the campus's forecast is known (bound.py)
            campus_w, room = bound_and_room_w(left_w, booked, left, interval_s, margin)
            bound = split_bound(campus_w, booked)
    else:
        recharge = UNDECIDED
    keep = split_keep(keep_wh if limits.demand_target_w > 0.0 else NOT_SENT, fresh)
    for i, f in enumerate(fresh):
        at = f.net_load_w if math.isfinite(bound[i]) else math.nan
        out[f.site_id] = Share(cap[i], ramp[i], demand[i], keep[i], recharge, bound[i], at, room)
    return out
