"""The all-hours level the last week's optimum holds: the level of a day the all-hours charge alone bills.

On a day with one demand rate and one energy price all day (PG&E E-20's weekend: no window, no
price spread), the battery has one use, the month's maximum demand, and nothing to keep energy for.
levels.py prices that level on the hours the last days spend above it, one charge at a time, at that
day's cost per kWh, and the days it counts include the weekdays' window hours, which their own lower
levels hold: on inference / PG&E the weekend level sat at ~5,500 kW with the battery 77-95 % full
all weekend, where the month's optimum holds 5,093 at every hour (BENCHMARKS.md, issue 13, the
all-hours level). The month's level is one number for every day of it, and each day holds it at its
own prices and under its own windows: the perfect-foresight programme (agent/economics/battery_lp.py,
the optimum's) over the last days known finds it jointly, with the recharge room the level leaves.
Over the last 7 days it is within 0.5 % of the month's own optimum level on every load and tariff of
the suite from the second week (bench/hindsight_levels.py).

A kW of peak above what the month already bills is billed for the whole month but buys only the days
left of it: each demand charge is priced on the share of the days left those days stand for (days /
days left), over a floor at the peak it already bills (free to reach again). Priced on the share of
a whole month (days / DAYS_PER_MONTH, before), a kW of level on the 27th of July was priced at a sixth
of what it costs (7 / 30.4 against 7 / 5), and nothing already billed was free (BENCHMARKS.md, issue
13, the week's level priced on the days left).

The weekdays hold their own levels, so such a day is held no lower than the all-hours level the day
before it held (begin.week_level): under it, the month bills the weekdays' anyway.

Where windows or a price spread share the battery, the heuristic's own levels stay (a day's optimum
levels need the day's own future to hold: handed the month's optimum levels, the heuristic held the
training loads' windows 5-7 % over them, 25-69 % of the optimum; the week's level on Shanghai's days,
with their price spread, billed the savings bench's month at 1 s 57 kW over its no-battery peak,
BENCHMARKS.md), with one bound from this level on a day with demand windows: no window slot is held
above it (demand.close_interval). levels.py prices the all-hours level on every hour of the day, the
peak window's too, which that window's own lower level holds anyway, and on PG&E's weekdays it sat
~150 kW over this one.

Pure: a function of the last days' loads, their rates and prices, the battery, the days left and
what is billed; no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from agent.control.envelope import ENVELOPE_DAYS
from agent.control.levels import DAYS_PER_MONTH
from agent.control.state import month_peak, top_peak

# A day's row is used if at most this share of it is unknown (its unknown slots then at its highest
# known: a level held on them is held on the day too)
MAX_UNKNOWN: Final = 0.1
TIME_LIMIT_S: Final = 1.0  # once a day such a day starts: bounded, and NaN (the heuristic) past it


@dataclass(frozen=True, slots=True)
class WeekBattery:
    budget_wh: float  # what the fleet gives from full to its floor (AC), as the levels' budget
    power_w: float  # the most it discharges (AC)
    round_trip: float  # charge x discharge efficiency: a Wh given back costs 1 / this Wh bought
    wear_per_kwh: float  # per kWh discharged


def uniform_day(rates: tuple[float, ...], prices: Callable[[], tuple[float, ...]]) -> bool:
    """One demand rate, billed, and one energy price over the whole day: the all-hours charge alone.
    `prices` gives the day's prices, looked up only where the rates pass (most days, the weekdays,
    stop at their windows)."""
    return bool(rates) and rates[0] > 0.0 and len(set(rates)) == 1 and len(set(prices())) == 1


def all_hours_level_w(
    loads: tuple[float, ...],
    rates: tuple[float, ...],
    prices: tuple[float, ...],
    spd: int,
    length_s: float,
    bat: WeekBattery,
    days_left: float = DAYS_PER_MONTH,
    billed_w: tuple[tuple[float, float], ...] = (),
) -> float:
    """The all-hours level (W) the optimum holds over the days `loads` (day after day, oldest first,
    `spd` slots each; NaN: unknown), each slot billed its demand `rates` (the summed rate of the
    charges covering it) and its energy `prices`; NaN with no day known enough, no all-hours charge,
    or no solution within TIME_LIMIT_S. `days_left`: the days of the month from today's on, which the
    days stand for; `billed_w`: (rate key, W) the peaks the month already bills (state.IntervalState
    .peaks), each charge's floor (the all-hours one at the highest of them).

    The charges are laid out as levels.py's layers: the rate every slot is billed at least is the
    all-hours charge, each higher rate a window charge worth the difference, with its own level.
    The battery starts full and ends each day with at least what it had 24 h before (its last day
    repeats: the month goes on), in its AC budget, charging at the round trip's cost.
    """
    # the solver (scipy, highspy) is loaded on the first such day, not when the live agent starts
    # (tests/test_imports.py: `ems-agent run` starts without the offline libraries)
    from agent.economics.battery_lp import DemandLayout, PeakGroup, Storage, solve_battery_lp

    n_days = len(loads) // spd if spd > 0 else 0
    if n_days == 0 or len(loads) != n_days * spd or len(rates) != len(loads) or len(prices) != len(loads):
        return math.nan
    keep = []
    for d in range(n_days):
        row = np.asarray(loads[d * spd : (d + 1) * spd], dtype=np.float64)
        bad = ~np.isfinite(row)
        if np.count_nonzero(bad) <= MAX_UNKNOWN * spd and not np.all(bad):
            keep.append(d)
    if not keep:
        return math.nan
    idx = np.concatenate([np.arange(d * spd, (d + 1) * spd) for d in keep])
    load = np.asarray(loads, dtype=np.float64)[idx]
    for k in range(0, len(load), spd):
        day = load[k : k + spd]
        day[~np.isfinite(day)] = float(np.nanmax(day))
    load = np.maximum(load, 0.0)
    rate = np.asarray(rates, dtype=np.float64)[idx]
    price = np.asarray(prices, dtype=np.float64)[idx]
    if not (np.all(np.isfinite(rate)) and np.all(np.isfinite(price))):
        return math.nan
    base = float(np.min(rate))
    if not base > 0.0:
        return math.nan
    # the days stand for the days left of the month: a kW more of peak is billed for the whole month
    # but buys those days' savings alone
    share = len(keep) / (days_left if days_left > 1.0 else 1.0)
    n = len(load)
    groups = [PeakGroup(base * share, 0, 0, np.arange(n, dtype=np.int64))]
    floors = [top_peak(billed_w)]
    for i, v in enumerate(sorted(set(rate[rate > base].tolist()))):
        groups.append(PeakGroup((v - base) * share, i + 1, 0, np.flatnonzero(rate == v).astype(np.int64)))
        floors.append(month_peak(billed_w, v))
    layout = DemandLayout(np.arange(n, dtype=np.int64), np.ones(n), tuple(groups))
    full = bat.budget_wh
    st = Storage(
        power_w=bat.power_w,
        eta_c=bat.round_trip,
        eta_d=1.0,  # the budget is AC already
        e0_wh=full,
        e_min_wh=0.0,
        e_max_wh=full,
        e_end_wh=None,
        e_end_min_wh=full,
        end_cycle_steps=spd,
        degradation_per_kwh=bat.wear_per_kwh,
    )
    sol = solve_battery_lp(
        load, load, price, length_s / 3600.0, layout, st, np.asarray(floors), time_limit_s=TIME_LIMIT_S
    )
    return float(sol.peaks_w[0]) if sol.status == 0 else math.nan


def ring_days(past: tuple[float, ...], today: int, spd: int) -> tuple[float, ...]:
    """The ring's days (envelope.py) before day `today` (a date ordinal), oldest first: the 7 days
    today-7 .. today-1 (today-7 shares today's row: this morning's slots, once closed, stand in for
    its own)."""
    if len(past) != ENVELOPE_DAYS * spd:
        return ()
    out: list[float] = []
    for o in range(today - ENVELOPE_DAYS, today):
        r = o % ENVELOPE_DAYS * spd
        out.extend(past[r : r + spd])
    return tuple(out)
