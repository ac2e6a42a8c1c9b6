"""The campus's demand level per demand window, decided as the pooled controller decides its own.

A campus file's `demand_target_w` > 0 fixes one target T for every slot of the day. A site's
`demand_target_w = 0` is economic (agent.control.demand's module doc): each demand window gets its
own level (agent.control.levels: PG&E E-20 bills the all-hours maximum AND the 12:00-18:00 peak
window, at different rates), re-decided at every interval from the day profile, the week's envelope
and the energy stored (agent.control.interval.roll). With one T the coordinated campus reached 32.4 %
of the pooled controller's savings on PG&E (BENCHMARKS.md, the suites on merged main): that
controller shaves the peak window far deeper than the rest of the day.

So with `demand_target_w = 0` the coordinator runs the site's own interval rules ONCE, on the campus
(not a copy of them: interval.accumulate and begin.next_interval, what the site's begin_cycle calls), on:
- the campus's readings: the feeders' reports summed (their imports, their net loads), counted only
  where every feeder's report is usable (a sum with one missing is not the campus's), and booked as
  the utility meter bills them (`metered`: the load read a cycle before less the battery read now),
  not as a site books its own readings (the load read now for the cycle before: a site's interval
  reads over its meter by the load's change across it). On its own book the campus's peak-window
  level ratcheted 11 times in the 4-feeder PG&E month on intervals the meter billed 0.9-2.6 MW
  under it (BENCHMARKS.md, issue 16, four feeders); on the meter: 91.5 -> 105.0 % of the pooled
  controller (BENCHMARKS.md, the campus book on the meter);
- the campus tariff's windows (begin.day_rates) and demand rate;
- the pooled battery: the feeders' reported usable energy from full, discharge power and energy
  stored now, summed (FeederState.budget_wh / power_w / energy_wh: what begin.py sizes a site's
  levels on), and what a kWh spent shaving costs (begin.shave_cost of the round trip's value their
  price plans priced, FeederState.spread).
The running slot's level (demand.target_w, at its aim IntervalState.margin) is then the campus
target the bound, the keep and the recharge split into parts (allocate.py); the keep
(tou.shave_keep_wh, less the refills of the later charge slots: tou.recharge_wh, at the pooled
round trip, wear and charge power) and the recharge (tou.demand_charge_now) are counted on the same
levels and envelope, as tou.plan_interval counts a site's.

The shares apply at the agents' next cycle. Where that cycle opens a new interval, the level is the
new interval's: the state closed on what it has seen (the rest of the last reading is booked at the
next cycle, as a site books a reading that straddles the boundary), so the level changes at the
window's edge, not a cycle after it.

Restart: a site reseeds its interval state from its ledger (the month's billed peaks and the last
day's profile: agent.live.runtime); the coordinator keeps its whole campus state in a file instead
(agent/campus/saved.py), reloaded within the same month. Without one (a first start, another month)
its state starts empty: no level until its first interval closes (each agent then decides alone, as
before a coordinator answers), the highest interval seen for half a day, then the levels.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from agent.campus.allocate import NOT_SENT, UNDECIDED, FeederState, usable
from agent.control.begin import metered_w, next_interval
from agent.control.demand import MARGIN, target_w
from agent.control.interval import accumulate
from agent.control.prices import Prices
from agent.control.state import IntervalState
from agent.control.tou import demand_charge_now, recharge_wh, shave_keep_wh
from agent.model.interval import local_slot


@dataclass(frozen=True, slots=True)
class Pool:
    """The campus's batteries as the levels see them (a site's fleet in begin.py)."""

    budget_wh: float  # AC energy the usable windows hold from full
    power_w: float  # discharge power, no window applied
    stored_wh: float  # AC energy above the floors now
    spread: float  # the round trip's value per kWh discharged (NaN: not known)
    # the feeders' round trip and wear per kWh, weighed by their budgets (NaN: not every feeder
    # reported them): the battery a day the all-hours charge bills alone is worked out for (week_level)
    round_trip: float = math.nan
    wear_per_kwh: float = math.nan
    charge_w: float = 0.0  # charge power available now, summed (the keep's refills: tou.recharge_wh)


@dataclass(frozen=True, slots=True)
class Level:
    """The campus's demand decisions for one interval's cycle."""

    target_w: float  # the level of the interval's slot (inf: none, nothing shaved for the campus)
    margin: float  # the fraction under it the campus aims (demand.close_interval's aim)
    keep_wh: float  # AC energy kept back from arbitrage for the levels (NOT_SENT: none)
    recharge: int  # 1 / 0 the campus recharges for its levels now (UNDECIDED: no tariff)


def pool(fs: Sequence[FeederState]) -> Pool:
    """The feeders' batteries summed; the spread their price plans priced, averaged (one tariff: alike)."""
    spreads = [f.spread for f in fs if math.isfinite(f.spread)]
    budget = sum(f.budget_wh for f in fs)
    # a battery of every feeder's, each weighing what it holds (a sum of NaN where one did not report)
    rt = sum(f.round_trip * f.budget_wh for f in fs) / budget if budget > 0.0 else math.nan
    wear = sum(f.wear_per_kwh * f.budget_wh for f in fs) / budget if budget > 0.0 else math.nan
    return Pool(
        budget_wh=budget,
        power_w=sum(f.power_w for f in fs),
        stored_wh=sum(f.energy_wh for f in fs),
        spread=sum(spreads) / len(spreads) if spreads else math.nan,
        round_trip=rt,
        wear_per_kwh=wear,
        charge_w=sum(f.charge_w for f in fs),
    )


def _advance(
    iv: IntervalState,
    t: datetime,
    length_s: float,
    prices: Prices | None,
    p: Pool,
    sample: bool,
    imp: float,
    net: float,
    dt: float,
) -> IntervalState:
    """`iv` at local time `t`: the running interval's sums, or a new interval after closing it."""
    key, slot, into, _ = local_slot(t, length_s)
    if key == iv.key:
        return accumulate(iv, sample, imp, net, dt)
    return next_interval(
        iv,
        t,
        key=key,
        slot=slot,
        into=into,
        length_s=length_s,
        prices=prices,
        sample=sample,
        imp=imp,
        net=net,
        dt=dt,
        budget_wh=p.budget_wh,
        power_w=p.power_w,
        stored_wh=p.stored_wh,
        spread=p.spread,
        fixed_w=0.0,  # economic: the campus's own levels
        round_trip=p.round_trip,  # NaN where a feeder did not report it: no week's level
        wear_per_kwh=p.wear_per_kwh,
    )


def net_loads(fs: Sequence[FeederState], stale_after_s: float = math.inf) -> tuple[tuple[str, ...], float]:
    """The feeders' ids (sorted) and their net loads summed at the reports `fs` (NaN where any is unusable)."""
    whole = bool(fs) and all(usable(f, stale_after_s) for f in fs)
    return tuple(sorted(f.site_id for f in fs)), sum(f.net_load_w for f in fs) if whole else math.nan


def metered(
    fs: Sequence[FeederState], before: tuple[tuple[str, ...], float], ids: tuple[str, ...] | None = None
) -> tuple[float, float]:
    """(import, net load) the utility meter saw over the cycle the reports `fs` close, `before` being
    the same feeders' net loads summed at the reports before (net_loads): a site's rule
    (begin.metered_w) on the campus's sums. Where the reading before is not known for the same
    feeders (the first cycle, after a report was unusable, a feeder added): the reading itself.
    `ids`: the feeders' ids of `fs`, sorted, where the caller has them (net_loads; None: sorted here)."""
    was_ids, was = before
    same = was_ids == (tuple(sorted(f.site_id for f in fs)) if ids is None else ids)
    return metered_w(sum(f.grid_w for f in fs), sum(f.net_load_w for f in fs), was if same else math.nan)


def observe(
    iv: IntervalState,
    fs: Sequence[FeederState],
    t: datetime,
    dt: float,
    length_s: float,
    prices: Prices | None,
    stale_after_s: float = math.inf,
    before: tuple[tuple[str, ...], float] = ((), math.nan),
    ids: tuple[str, ...] | None = None,
) -> IntervalState:
    """The campus's interval state after the feeders' reports of the readings at local time `t`,
    `dt` s after the last, booked for those `dt` s as the meter saw them (`metered`; `before`: the
    feeders' ids and net loads summed at the last reports, net_loads; `ids`: those of `fs`, sorted,
    where the caller has them)."""
    fresh = [f for f in fs if usable(f, stale_after_s)]
    whole = bool(fs) and len(fresh) == len(fs)
    sample = whole and 0.0 < dt <= length_s  # False for NaN
    imp, net = metered(fs, before, ids) if whole else (0.0, math.nan)
    return _advance(iv, t, length_s, prices, pool(fresh), sample, imp if imp > 0.0 else 0.0, net, dt)


def ahead(
    iv: IntervalState,
    fs: Sequence[FeederState],
    t: datetime,
    length_s: float,
    prices: Prices | None,
    stale_after_s: float = math.inf,
) -> IntervalState:
    """The state for the interval of local time `t` (the agents' next cycle, when the shares apply):
    `iv` itself, or `iv` closed on what it has seen and the next interval opened (not kept: the next
    cycle's readings close it for real)."""
    if local_slot(t, length_s)[0] == iv.key:
        return iv
    fresh = [f for f in fs if usable(f, stale_after_s)]
    return _advance(iv, t, length_s, prices, pool(fresh), False, 0.0, 0.0, 0.0)


def refill_wh(
    bat: Pool,
    t: datetime,
    into: float,
    length_s: float,
    prices: Prices,
    env: tuple[float, ...],
    past: tuple[float, ...],
    targets: tuple[float, ...],
    slot: int,
) -> tuple[float, ...]:
    """Per slot of today, the AC energy the pooled batteries `bat` charge back for arbitrage
    (tou.recharge_wh): the feeders report AC energy, so a Wh charged counts the round trip. The
    campus's keep, economic (level) or for a fixed target (keep.campus_keep_wh), less it."""
    rt = bat.round_trip
    return recharge_wh(t, into, length_s, prices, rt, bat.wear_per_kwh, rt, env, past, targets, slot, bat.charge_w)


def level(iv: IntervalState, t: datetime, length_s: float, prices: Prices | None, bat: Pool | None = None) -> Level:
    """The campus's demand decisions at local time `t` in `iv`'s interval (`ahead`'s state); `bat`:
    the fresh feeders' batteries (pool; None: no refill counted in the keep)."""
    _, slot, into, _ = local_slot(t, length_s)
    tgt = target_w(iv.peaks, iv.shave_floor_w, iv.rate, 0.0)
    margin = iv.margin if iv.margin == iv.margin else MARGIN  # NaN: not set (a fresh state)
    targets, env = iv.targets, iv.env
    known = 0 <= slot < len(targets) == len(env)
    keep = NOT_SENT
    if known:
        refill = (
            refill_wh(bat, t, into, length_s, prices, env, iv.past, targets, slot)
            if prices is not None and bat is not None
            else ()
        )
        keep = shave_keep_wh(env, targets, slot, length_s, 1.0, refill)
    recharge = UNDECIDED
    if prices is not None and known:
        recharge = 1 if demand_charge_now(t, into, length_s, prices, env, targets, slot) else 0
    return Level(tgt, margin, keep, recharge)
