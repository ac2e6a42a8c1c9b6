"""The energy the grid connection limit needs (issue 14, item 4): measured, kept, recharged.

The measure is an ideal battery run beside the real one, on the same readings: it gives exactly the
net load's excess over grid_import_limit_w every cycle (up to the fleet's discharge power) and takes
back what the agent's own charging rule would let it: the room under the recharge level (the limit,
or the demand target less the charging margin where that is lower, so recharging for the limit
never makes a new demand peak) below the higher of the reading and the demand interval's running
average, as demand.py charges (a GPU load swinging over the limit and back leaves instants of room
far below the interval's average, but charging into them would raise the average that is billed).
Its deficit, what it has given and not yet got back (storage side, Wh), is what a run of excess
takes out of store. The excess counts every cycle, at the agent's resolution: the swings inside a
demand interval count in full, where a 15-minute day profile averages them away (the first
grid-limit version kept for the limit what the 15-minute averages above it needed and ran empty:
BENCHMARKS.md, "Issue 14 (items 3 and 4)").

The reserve for the limit is the deepest deficit of the last WINDOW_DAYS days (kept per demand
interval in a ring) or the deficit now, whichever is larger; and at least what the day
profile's 15-minute averages above the limit add up to over the rest of the day (`ahead_wh`, worked
out once per interval: the part of the load that comes back at the same hours, an evening peak).
Until a day of readings has been counted (a fresh start) the deepest run is not known yet, and the
reserve is all the fleet holds between the floor and the ceiling: the connection is a hard limit,
so the agent starts from the safe side, as demand shaving does not aim below the highest load seen
before it has half a day of profile (a day of arbitrage and shaving is what that costs).
Mostly a causal bound rather than a profile by time of day: training jobs start and fail at
different hours every day, so a reserve placed by yesterday's hours would sit in the wrong ones;
what carries over from one day to the next is how deep a run of excess goes. The ideal battery
needs no state of the real one, so the reserve does not depend on what the controllers did with
the energy.

This module is the bookkeeping begin_cycle runs every cycle. The reserve is kept out of arbitrage
(tou.py) and demand shaving (demand.py), though not out of the energy the demand levels are sized
on (begin.py: sized without it, the levels held train200 / PG&E E-20 under the limit but put the
savings month 1,610 s over it instead of 233: BENCHMARKS.md, issue-14g); below it, the economic
controllers' target gives way to recharging (grid_limit.limit_recharge, after them), which the grid
limit's own bound (import at most the limit) and demand shaving's (the interval under the demand
target) hold where they must.
"""

from __future__ import annotations

import math
from typing import Final

from agent.control.cycle import Cycle
from agent.control.state import LimitState
from agent.control.stored import stored_above_floor_wh
from agent.model.config import ControlConfig
from agent.model.interval import DAY_S

S_PER_H: Final = 3600.0
# How far back the deepest run counts. One day is not enough: on the savings bench's month (the limit
# 20 % under the peak) a day's deepest run passed the previous 24 h's on 6 days and put 4,139 s over
# the limit; a week covers a weekly rhythm of jobs and most of the day-to-day spread.
WINDOW_DAYS: Final = 7


def advance(
    ls: LimitState,
    *,
    limit_w: float,
    sample: bool,
    net_w: float,
    mean_w: float,
    dt: float,
    key: int,
    spd: int,
    level_w: float,
    dis_w: float,
    chg_w: float,
    usable_wh: float,
    eta_c: float,
    eta_d: float,
    ahead_wh: float,
) -> LimitState:
    """The ideal battery `dt` s later (the reading `net_w` W standing for them when `sample`; `mean_w`
    the running demand interval's average net load, NaN for none), and
    the interval maxima rolled when the demand interval `key` (`spd` a day) is a new one.

    `level_w`: the recharge level (W import); `dis_w`, `chg_w`: the fleet's power limits;
    `usable_wh`: its energy between the reserve floor and the SoC ceiling (the deepest deficit);
    `ahead_wh`: the day profile's need for the rest of the day, taken when the interval is new."""
    if limit_w <= 0.0:
        return ls
    d = ls.deficit_wh
    seen = ls.seen_s
    if sample:
        if seen < DAY_S:
            seen += dt
        excess = net_w - limit_w
        if excess > 0.0:
            d += (excess if excess < dis_w else dis_w) * dt / S_PER_H / eta_d
            if d > usable_wh:
                d = usable_wh
        elif d > 0.0:
            room = level_w - (mean_w if mean_w > net_w else net_w)  # NaN compares False: the reading
            if room > 0.0:
                d -= (room if room < chg_w else chg_w) * dt / S_PER_H * eta_c
                if d < 0.0:
                    d = 0.0
    if key == ls.key:
        if d == ls.deficit_wh and seen == ls.seen_s:
            return ls
        return LimitState(
            deficit_wh=d,
            key=key,
            slot_max_wh=d if d > ls.slot_max_wh else ls.slot_max_wh,
            past_wh=ls.past_wh,
            past_max_wh=ls.past_max_wh,
            ahead_wh=ls.ahead_wh,
            seen_s=seen,
        )
    n = spd * WINDOW_DAYS
    past = list(ls.past_wh) if len(ls.past_wh) == n else [0.0] * n
    if ls.key >= 0:
        past[ls.key % n] = ls.slot_max_wh  # overwrites the same interval WINDOW_DAYS ago
    return LimitState(
        deficit_wh=d,
        key=key,
        slot_max_wh=d,
        past_wh=tuple(past),
        past_max_wh=max(past),
        ahead_wh=ahead_wh if ahead_wh < usable_wh else usable_wh,
        seen_s=seen,
    )


def reserve_wh(ls: LimitState, usable_wh: float) -> float:
    """Stored energy (Wh above the reserve floor) to keep for the limit: the deepest deficit of the
    last WINDOW_DAYS days, the one running now, or the day profile's need for the rest of the day; all of the
    fleet's `usable_wh` before a day of readings."""
    if ls.seen_s < DAY_S:
        return usable_wh
    r = ls.past_max_wh if ls.past_max_wh > ls.ahead_wh else ls.ahead_wh
    if ls.slot_max_wh > r:
        r = ls.slot_max_wh
    return r if r > ls.deficit_wh else ls.deficit_wh


def short_of_reserve(c: Cycle) -> bool:
    """The fleet holds no more than the limit's reserve above the floor (never with no reserve)."""
    return c.limit_wh > 0.0 and stored_above_floor_wh(c) <= c.limit_wh


def import_cap_w(cfg: ControlConfig) -> float:
    """The grid import the connection limit allows (W): [control] grid_import_limit_w, or none (inf).
    The demand interval's book holds the load at it (IntervalState.capped_ws), and demand shaving
    forecasts the interval's import from that book."""
    limit = cfg.grid_import_limit_w
    return limit if limit > 0.0 else math.inf


def usable_wh(floor_pct: float, ceil_pct: float, capacity_wh: float) -> float:
    """The fleet's energy between the reserve floor and the SoC ceiling (storage side, Wh): the most
    the ideal battery's deficit counts (advance's `usable_wh`) and the levels' energy budget."""
    return max(0.0, ceil_pct - floor_pct) * 0.01 * capacity_wh


def drawn_down(c: Cycle) -> bool:
    """The fleet holds no more above the floor than the limit has given and not yet got back (the
    ideal battery's deficit, LimitState.deficit_wh): the run of excess now is taking the energy it
    keeps, not just a week's deepest run that may not come again."""
    d = c.limit.deficit_wh if c.cfg.grid_import_limit_w > 0.0 else 0.0
    return d > 0.0 and stored_above_floor_wh(c) <= d
