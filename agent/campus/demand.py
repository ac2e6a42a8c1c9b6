"""The campus's demand decisions each coordinator cycle: at the campus file's fixed target, or economic.

`demand_target_w` > 0 in CAMPUS.toml: one target T for every slot; the keep and the recharge for it
are decided on the campus's day profile (keep.py, recharge.py). `demand_target_w = 0`: economic, as
a site's 0 is: the campus's level per demand window from the site's own interval rules run once on
the campus (levels.py); without a tariff nothing is billed and the campus has no demand target (as
a site without one). The live coordinator and the campus replay call `step` alike.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agent.campus.allocate import UNDECIDED, FeederState, usable
from agent.campus.keep import CampusDay, new_day
from agent.campus.keep import step as day_step
from agent.campus.levels import Level, ahead, level, net_loads, observe, pool
from agent.campus.recharge import campus_recharge
from agent.control.demand import MARGIN
from agent.control.prices import Prices
from agent.control.state import IntervalState
from agent.model.interval import local_slot


@dataclass(frozen=True, slots=True)
class CampusDemand:
    """What the coordinator remembers for the campus's demand target between cycles."""

    day: CampusDay  # the day profile the fixed target's keep and recharge look at (keep.py)
    iv: IntervalState = field(default_factory=IntervalState)  # the campus's interval state (economic)
    recharge: tuple[int, int] = (-1, UNDECIDED)  # (interval key, the fixed target's recharge decision)
    # the feeders and their net loads summed at the last reports (NaN: not all usable): the load of
    # the cycle the next reports close, which the campus's book counts as its meter does (levels.metered)
    nets: tuple[tuple[str, ...], float] = ((), math.nan)


def start(length_s: float, seed: Sequence[float] = ()) -> CampusDemand:
    """An empty campus state, or one seeded with a day profile (`seed`, one value per slot: the
    replay's first day, as each agent's own is seeded)."""
    day = new_day(length_s, seed)
    return CampusDemand(day, IntervalState(profile=day.profile) if seed else IntervalState())


def step(
    st: CampusDemand,
    fs: Sequence[FeederState],
    seen: datetime,
    at: datetime,
    dt: float,
    length_s: float,
    target_w: float,
    prices: Prices | None,
    stale_after_s: float = math.inf,
) -> tuple[CampusDemand, Level]:
    """One cycle: the reports `fs` of the readings at local time `seen` (`dt` s after the last) in,
    the campus's demand decisions for the agents' cycle at `at` out. `target_w`: the campus file's
    (> 0 fixed, 0 economic)."""
    key = local_slot(at, length_s)[0]
    if target_w > 0.0:
        day, keep = day_step(st.day, fs, seen, dt, length_s, target_w, stale_after_s, prices)
        recharge = st.recharge
        if key != recharge[0]:  # once per interval, for the interval the shares apply in
            recharge = (key, campus_recharge(day, at, length_s, target_w, prices))
        return CampusDemand(day, st.iv, recharge), Level(target_w, MARGIN, keep, recharge[1])
    # these reports' feeders (sorted once) and net loads: metered compares the ids with the last
    # reports', and the next cycle books its meter on them
    nets = net_loads(fs, stale_after_s)
    iv = observe(st.iv, fs, seen, dt, length_s, prices, stale_after_s, st.nets, nets[0])
    bat = pool([f for f in fs if usable(f, stale_after_s)])
    lv = level(ahead(iv, fs, at, length_s, prices, stale_after_s), at, length_s, prices, bat)
    return CampusDemand(st.day, iv, st.recharge, nets), lv
