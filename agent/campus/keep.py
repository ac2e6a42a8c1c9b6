"""The energy a campus keeps back from arbitrage for its demand target, decided once for the campus.

Time-of-use discharge (agent.control.tou) keeps back the stored energy the rest of today's load
needs to stay at the aim under the demand target (tou.shave_keep_wh). An agent under a campus share
would compute that on its own feeder's profile against its own share of the target; the shares follow
the feeders' loads cycle by cycle, so most feeders' profiles later in the day sit above their share of
now, and the feeders' keeps add up to far more than the campus's: sum over feeders of max(0, p_i - d_i)
>= max(0, sum of p_i - T), with equality only where every feeder is on the same side at every slot.
Measured on the campus bench (8 feeders, Shanghai, 3 days; BENCHMARKS.md, issue 16 third pass): the
feeders kept 250-370 MWh in all (more than their 214 MWh) where the pooled controller kept none (the
campus's profile stays under T), so in the morning peak they discharged 25-33 MW against its 40.5 MW.

So the coordinator keeps the campus's own day profile (the feeders' net loads summed, per demand
slot of the local day, as each agent keeps its own: demand.close_interval), computes the campus's
keep against the campus target, and splits it over the fresh feeders in proportion to the energy
each can still discharge (as it splits the battery power the campus needs: allocate.split_cap), so
the feeders' discharge for arbitrage adds up to the pooled controller's. It goes in the share
(Share.keep_wh, AC Wh); an agent without it (on its fallback, or no campus demand target) keeps its
own. Until half the day's slots are known the coordinator sends none (agents keep their own: the
conservative side), as the agent's own shave floor waits for half a day of history.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from agent.campus.allocate import NOT_SENT, FeederState, usable
from agent.campus.levels import Pool, pool, refill_wh
from agent.control.demand import MIN_COVERAGE, slot_targets
from agent.control.envelope import envelope, remember
from agent.control.prices import Prices
from agent.control.tou import shave_keep_wh
from agent.model.interval import local_slot, slots_per_day


@dataclass(frozen=True, slots=True)
class CampusDay:
    """The campus's net load per demand slot of the local day (W means; NaN unknown) and the
    running interval's sums."""

    profile: tuple[float, ...]
    key: int = -1  # the running interval (local_slot's key)
    slot: int = -1
    net_ws: float = 0.0
    covered_s: float = 0.0
    # the last days' slot averages (envelope.remember: what the campus's recharge for demand looks
    # ahead on, agent/campus/recharge.py, as an agent's own looks at its envelope)
    past: tuple[float, ...] = ()


def new_day(length_s: float, seed: Sequence[float] = ()) -> CampusDay:
    """An empty profile, or `seed` (one value per slot: the replay's first day, as the agents get)."""
    n = slots_per_day(length_s)
    prof = tuple(float(v) for v in seed) if len(seed) == n else (math.nan,) * n
    return CampusDay(prof)


def observe(day: CampusDay, t: datetime, net_w: float, dt_s: float, length_s: float) -> CampusDay:
    """`day` with the campus net load `net_w` seen at local time `t` for `dt_s`. An interval that
    ended sets its slot of the profile if at least MIN_COVERAGE of it was seen (demand.close_interval);
    a non-finite `net_w` (a feeder's report missing) counts as not seen."""
    key, slot, _, _ = local_slot(t, length_s)
    prof, past = day.profile, day.past
    if key != day.key:
        if day.key >= 0 and day.covered_s >= MIN_COVERAGE * length_s:
            p = list(prof)
            p[day.slot] = avg = day.net_ws / day.covered_s
            prof = tuple(p)
            past = remember(past, day.key, len(prof), avg)
        day = CampusDay(prof, key, slot, past=past)
    if not math.isfinite(net_w) or not dt_s > 0.0:
        return day
    return CampusDay(prof, key, slot, day.net_ws + net_w * dt_s, day.covered_s + dt_s, past)


def campus_keep_wh(
    day: CampusDay,
    slot: int,
    target_w: float,
    length_s: float,
    refill: tuple[datetime, Prices, Pool] | None = None,
) -> float:
    """AC energy the rest of today's campus load needs from the batteries to stay at the aim under
    `target_w` (from `slot` on); NOT_SENT while less than half the day's slots are known. `refill`:
    (local time now, prices, the usable feeders' batteries): less what the later charge slots refill
    before the need (tou.recharge_wh); None: the whole rest of the day's need.

    Counted as a site's time-of-use discharge counts its own (tou.shave_keep_wh, issue 13h): on the
    campus's envelope (its profile and the last days', what its recharge looks ahead on too), at the
    aim (demand.MARGIN under the target, where the campus's demand bound holds it), under the target
    as demand.slot_targets caps it (the campus file fixes one target for every slot). Counted on the
    profile at the target itself, a campus whose load sits at its target kept nothing: on the
    hand-made campus of tests/test_campus_no_harm.py (Shanghai) the morning peak's arbitrage ran every
    feeder to its floor by 11:00 and the rest of the day was held at the target, not its aim, where
    the pooled controller of the same batteries kept 4 % for it."""
    prof = day.profile
    known = sum(1 for v in prof if v == v)
    if 2 * known < len(prof) or not target_w > 0.0:
        return NOT_SENT
    env = envelope(prof, day.past)
    targets = slot_targets((), (), (1.0,) * len(prof), math.nan, target_w, env)
    room: tuple[float, ...] = ()
    if refill is not None:
        t, prices, bat = refill
        room = refill_wh(bat, t, local_slot(t, length_s)[2], length_s, prices, env, day.past, targets, slot)
    return shave_keep_wh(env, targets, slot, length_s, 1.0, room)


def step(
    day: CampusDay,
    feeders: Sequence[FeederState],
    t: datetime,
    dt_s: float,
    length_s: float,
    target_w: float,
    stale_after_s: float = math.inf,
    prices: Prices | None = None,
) -> tuple[CampusDay, float]:
    """One coordinator cycle at local time `t`, `dt_s` after the last: the campus net load (the sum
    of the feeders' reports, counted only when every one is usable: a sum with one missing is not
    the campus's) into the profile, and the campus's keep for `target_w` from the slot of `t` on, less
    what the later charge slots refill first where `prices` are known (tou.recharge_wh, at the usable
    feeders' pooled round trip, wear and charge power)."""
    whole = all(usable(f, stale_after_s) for f in feeders)
    net = sum(f.net_load_w for f in feeders) if whole else math.nan
    day = observe(day, t, net, dt_s, length_s)
    refill = (t, prices, pool([f for f in feeders if usable(f, stale_after_s)])) if prices is not None else None
    return day, campus_keep_wh(day, day.slot, target_w, length_s, refill)
