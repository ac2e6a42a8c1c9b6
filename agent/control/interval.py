"""Demand-interval bookkeeping: the running interval's sums, and what closing it leaves behind.

The interval is the one agent.model.interval aligns (local midnight + k x length). A reading
stands for the time since the previous one, up to one interval (slow replays too); readings that
are not good, or taken during an outage, add nothing but the interval still runs. When the
interval changes, the part of the last reading that fell before the boundary is booked to the old
one, which then closes into the month's peaks, the day profile and the shave floor (demand.py),
and into the last days' averages (envelope.py).
"""

from __future__ import annotations

import math
from dataclasses import replace

from agent.control.demand import MARGIN, MIN_COVERAGE, PERSIST_S, close_interval
from agent.control.envelope import remember
from agent.control.levels import base_rate, within_energy
from agent.control.state import IntervalState, top_peak


def moving_avg_w(avg: float, net: float, dt: float) -> float:
    """The baseline's moving average (IntervalState.net_avg_w) after a reading `net` W that stands
    for `dt` s: exponential over PERSIST_S; the reading itself where none is known yet (NaN)."""
    if avg != avg:
        return net
    if not dt > 0.0:
        return avg
    return avg + (net - avg) * (1.0 - math.exp(-dt / PERSIST_S))


def _moved_avg_w(iv: IntervalState, net: float, now_w: float, dt: float) -> float:
    """IntervalState.net_avg_w after this reading: the baseline read now (`now_w`; NaN: the metered
    `net`) standing for `dt` s."""
    return moving_avg_w(iv.net_avg_w, now_w if now_w == now_w else net, dt)


def accumulate(
    iv: IntervalState,
    sample: bool,
    imp: float,
    net: float,
    dt: float,
    cap: float = math.inf,
    now_w: float = math.nan,
) -> IntervalState:
    """The same interval, `dt` s later: import `imp` and baseline `net` W added if `sample` is good
    (`cap`: the grid connection limit, inf for none: state.IntervalState.capped_ws). `now_w`: the
    baseline read now, which the moving average takes (NaN: `net`; the book's `net` is the load the
    meter saw since the last reading, begin.metered_w, a step behind the reading in a slow replay)."""
    if not sample:
        return iv
    return IntervalState(
        key=iv.key,
        rate=iv.rate,
        grid_ws=iv.grid_ws + imp * dt,
        net_ws=iv.net_ws + net * dt,
        covered_s=iv.covered_s + dt,
        capped_ws=iv.capped_ws + (net if net < cap else cap) * dt,
        month=iv.month,
        peaks=iv.peaks,
        profile=iv.profile,
        shave_floor_w=iv.shave_floor_w,
        targets=iv.targets,
        past=iv.past,
        env=iv.env,
        margin=iv.margin,
        week_day=iv.week_day,
        week_level_w=iv.week_level_w,
        week_cap_w=iv.week_cap_w,
        week_aim_w=iv.week_aim_w,
        net_avg_w=_moved_avg_w(iv, net, now_w, dt),
        top_w=net if not iv.top_w >= net else iv.top_w,  # NaN compares False: the first reading
    )


def window_run(rates: tuple[float, ...], slot: int) -> tuple[int, int]:
    """The running demand window from `slot` (its run of equal rates to the day's end) and its
    shoulder: the slots after it at lower rates above the all-hours one (levels.base_rate), which
    its energy must still hold (levels.within_energy's `tail`). (0, 0) for a slot outside `rates`.

    The shoulder, PG&E's part-peak evening after the peak window: nothing refills the battery before
    the night. Spent to the last kWh in the window (5,023 kW, the optimum's 5,045), inference / PG&E
    billed its month's maximum demand at 18:15 (5,275 kW against 5,093): a kW of window level frees
    its 6 hours above it in kWh for 28.35 USD a month, where the shoulder's 0.75 h freed a kWh at 4
    times the price. A window followed by a higher rate (the morning part-peak before the peak) has
    none: that energy is the next window's own check, with what is left when it opens."""
    if not 0 <= slot < len(rates):
        return 0, 0
    run = 1
    while slot + run < len(rates) and rates[slot + run] == rates[slot]:
        run += 1
    base = base_rate(rates)
    tail = 0
    while slot + run + tail < len(rates) and base < rates[slot + run + tail] < rates[slot]:
        tail += 1
    return run, tail


def _held_alone(iv: IntervalState, spd: int) -> bool:
    """`iv` fell on a day the all-hours charge alone bills, held at the week's level."""
    return iv.key >= 0 and iv.key // spd == iv.week_day and iv.week_level_w == iv.week_level_w


def roll(
    iv: IntervalState,
    *,
    key: int,
    into: float,
    month: int,
    rate: float,
    sample: bool,
    imp: float,
    net: float,
    dt: float,
    length_s: float,
    spd: int,
    budget_wh: float,
    power_w: float,
    rates: tuple[float, ...],
    cost_per_kwh: float,
    fixed_w: float = 0.0,
    refill: bool = False,
    stored_wh: float = math.nan,
    cap: float = math.inf,
    week_day: int = -1,
    week_level_w: float = math.nan,
    week_cap_w: float = math.nan,
    now_w: float = math.nan,
) -> IntervalState:
    """A new interval `key` (`into` s old) in `month` at demand `rate`, after closing `iv`.

    `budget_wh`, `power_w`: what the fleet can give; `rates`, `cost_per_kwh`, `fixed_w`, `refill`: see
    demand.close_interval; `stored_wh`: what it holds now above its floor (AC; NaN: unknown), which the
    running window's levels are raised to be held with (levels.within_energy; not a fixed target);
    `cap`: the grid connection limit (inf: none), which IntervalState.capped_ws holds the readings at.
    `now_w`: the baseline read now, for the moving average (accumulate). `week_level_w`: the all-hours
    level the last week's optimum holds, for day `week_day` (a date
    ordinal; NaN: today is not a day the all-hours charge alone bills; week_level.py), kept with the
    interval and, on that day, the level of every slot (demand.close_interval); `week_cap_w`: the same
    level on a day with demand windows (NaN: not such a day), there the highest any window slot is
    shaved to.
    """
    closing = iv
    new_part = into if sample and dt > into else (dt if sample else 0.0)
    if sample and iv.key >= 0:
        old_part = dt - new_part
        closing = replace(
            iv,
            grid_ws=iv.grid_ws + imp * old_part,
            net_ws=iv.net_ws + net * old_part,
            covered_s=iv.covered_s + old_part,
        )
    past = iv.past
    if closing.key >= 0 and closing.covered_s >= MIN_COVERAGE * length_s:
        past = remember(past, closing.key, spd, closing.net_ws / closing.covered_s)
    slot = key % spd
    today = key // spd == week_day
    peaks, profile, env, targets, aim, days = close_interval(
        closing,
        length_s,
        spd,
        month,
        budget_wh,
        power_w,
        rates,
        cost_per_kwh,
        fixed_w,
        past,
        slot,
        refill,
        week_level_w if today else math.nan,
        week_cap_w if today else math.nan,
    )
    if fixed_w <= 0.0 and 0 <= slot < len(rates):
        # Over the running demand window (its run of equal rates): each later window gets the same
        # check with what is left when it opens. Raised over the rest of the day (the evening after it,
        # the night the valley refills), the raise cost pv / PG&E at 0.021 USD/kWh 7.5 points of the
        # optimum; the shoulder's need (window_run) is kept for it, never raised.
        run, tail = window_run(rates, slot)
        # the days the levels were fitted to (close_interval built them; demand.held_days)
        ratio = rates[slot] / rates[slot + run] if tail else 1.0  # the shoulder's first rate, > 0
        targets = within_energy(targets, env, slot, run, MARGIN, stored_wh, length_s, days, tail, ratio)
    # The level a day of the all-hours charge alone is held at (week_level.py), kept over the weekdays
    # after it: what the month bills over it, that day's error at its aim (begin.week_level). Dropped
    # where another day bills more (its peak is a level, free to reach again) and at a new month (it
    # bills from nothing).
    if today and week_level_w == week_level_w:
        week_aim_w = week_level_w
    elif iv.month != month or (not _held_alone(closing, spd) and top_peak(peaks) > top_peak(iv.peaks)):
        week_aim_w = math.nan
    else:
        week_aim_w = iv.week_aim_w
    return IntervalState(
        key=key,
        rate=rate,
        grid_ws=imp * new_part,
        net_ws=net * new_part if sample else 0.0,
        covered_s=new_part,
        capped_ws=(net if net < cap else cap) * new_part if sample else 0.0,
        month=month,
        peaks=peaks,
        profile=profile,
        shave_floor_w=targets[slot] if slot < len(targets) else math.nan,
        targets=targets,
        past=past,
        env=env,
        margin=aim,
        week_day=week_day,
        week_level_w=week_level_w,
        week_cap_w=week_cap_w,
        week_aim_w=week_aim_w,
        net_avg_w=_moved_avg_w(iv, net, now_w, dt) if sample else iv.net_avg_w,
        top_w=net if sample else math.nan,
    )
