"""Planner: the cheapest battery schedule over the forecast's horizon (a linear programme, HiGHS).

The programme is the perfect-foresight optimum's (agent/economics/battery_lp.py) on the forecast,
with what a plan made mid-month needs on top:
- the demand charge counts only the increase above the peak already billed this month (per
  demand window): each peak variable of the running billing month is bounded below by it, so
  reaching it again costs nothing; the next month's (a horizon across the month boundary)
  starts from nothing billed;
- each demand charge is priced on the share of what is left of its billing month's window that
  the horizon holds (month_shares): a level planned now is held on every day left in the month,
  and the programme sees only the horizon's days of them;
- the forecast's scenarios (the last days' errors laid on it, forecast.py) each get their own
  battery schedule over the first two days (SCENARIO_S) under the one peak level, sharing the power of
  the slots done before the next plan (`shared_slots`: the running interval when every interval
  re-plans, the hour when the plan is kept an hour; only shared slots are decided for every
  scenario, the others are the median's): the plan keeps as ENERGY what it takes to hold its peak level on any of them
  (a late peak after a long high afternoon), instead of a higher level for the spread. The peak
  rows of the median plan may add margin x (p90 - p50) (0 by default, replan.ReplanSettings);
  energy is priced on the mean over the scenarios;
- the SoC window is the reserve floor (or soc_min, whichever is higher) to soc_max; from a state
  of charge outside it the bound opens (see _window), so a plan always exists;
- the plan's last day repeats: a horizon longer than a day ends with at least the energy it had
  24 h before its end (a day or less: with at least the energy it starts with), and so does each
  scenario's (over two days). The month goes on after the horizon and its days need the same, so a
  peak is shaved only as low as the battery can hold it day after day (a 48 h plan free to end empty spent the battery
  shaving a flat load for two days, after which the month's peak came back at the flat level:
  wear and losses for nothing). Held instead to end with the energy it starts with, a plan re-made
  inside the high hours with a nearly full battery (their first interval done) ends 48 h later
  inside them again and may spend there only what a full battery has over its start: on the
  HPL loop with its own future (bench/planner_bench.py --oracle) the PG&E summer-peak level rose
  3,851 -> 3,993 kW with the battery 92 % full, and the month's level with it; the same time of
  day is not the same state of a day that does not repeat exactly. The scenarios had the same
  defect over one day, held to end it with their start's energy: a plan re-made at 95.2 % inside
  the PG&E summer-peak window gave up the level it held from 94 % (4,866 -> 5,042 kW), its scenarios
  having to end full after the next day's first quarter hour in the window (train200, BENCHMARKS 13x);
- charging stays under the level the tracker charges to (charge_room): the month's billed level so
  far, rising with each load row's own intervals, less CHARGE_MARGIN;
- energy left at the end is worth the cheapest price in the horizon divided by the charging
  efficiency (what it would cost to put it back) and HOLD_SHARE more: energy bought at the
  cheapest price is kept rather than left unbought, since it costs nothing to hold and the peaks
  the forecast misses are met from it (on PG&E E-20, where no price spread pays the wear, the
  plan otherwise left the battery at its floor and every unforecast peak was billed);
- of schedules that cost the same, the plan takes the one that charges earliest and discharges
  latest (HOLD_SHARE): the energy is in the battery for as long as the plan allows, against the
  peaks the forecast misses. Only the first slot of a plan is done, and the programme often has
  many schedules of the same cost (the demand charge prices only the peak): without the discharge
  half of the tie-break the first slot was whichever of them the simplex ended at (0 W or 2.5 MW of
  discharge at the same objective in one train100 plan), and the suite's figures moved by up to 6
  points with the solver's interface alone.

Bounded solve time (HiGHS's time limit; its dual simplex without presolve, battery_lp.py). A failed
or timed-out solve gives a PlanFailure: the caller keeps the last plan while schedule.usable says it
still covers the time and is young enough, then falls back to the heuristic controllers, raising the alarm ALARM.

Pure: a function of (forecast, tariff, battery, state of charge, billed peaks); no I/O, no clock
(the solve time is measured and reported, never used to decide).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from datetime import datetime
from datetime import time as day_start
from typing import Final

import numpy as np
import numpy.typing as npt

from agent.control.demand import CHARGE_MARGIN
from agent.control.forecast import Forecast
from agent.control.schedule import DispatchPlan
from agent.economics.battery_lp import DemandLayout, Storage, demand_layout, solve_battery_lp
from agent.economics.tariff import FloatArray, IntArray, Tariff
from agent.model.interval import DAY_S

ALARM: Final = "plan_solve_failed"
TIME_LIMIT_S: Final = 0.25  # the p99 target for a 48 h horizon
# The scenarios cover two days, so that the last of them repeats as the median's does (the module
# doc; over one day they had to end with the energy they started with). Longer, the days after are
# re-planned with the scenarios of then long before they come, and every scenario step costs solve
# time (two days: ~20 ms of CPU a 48 h plan against ~11 over one, 13x).
SCENARIO_S: Final = 2 * 86400.0
# Energy kept to the end is worth this share more than its cheapest price (see the module doc), and
# charging later costs up to this share of the cheapest price more over the horizon, a tie-break:
# an LP indifferent between charging now or in two hours at the same price charges now, so
# re-planning every interval does not put the charge off interval after interval (and a load above
# the forecast then finds the battery fuller, not emptier).
HOLD_SHARE: Final = 0.01


@dataclass(frozen=True, slots=True)
class PlanBattery:
    energy_wh: float  # nameplate of the trusted fleet
    power_w: float
    charge_efficiency: float
    discharge_efficiency: float
    soc_min_pct: float
    soc_max_pct: float
    reserve_pct: float  # backup reserve floor
    degradation_cost_per_kwh: float = 0.0


@dataclass(frozen=True, slots=True)
class PlanFailure:
    status: int  # HiGHS (linprog) status: 1 time or iteration limit, 2 infeasible, 4 numerical ...
    message: str
    solve_s: float


def _window(e0: float, lo: float, hi: float, n: int, step_wh_in: float) -> tuple[FloatArray, FloatArray]:
    """Per-step energy bounds [lo, hi], opened so that a plan exists from any state of charge.

    Below the floor the bound rises from e0 at full charging power (charging is always possible:
    nothing limits import here). Above the ceiling it stays at e0: discharging down to it may be
    impossible (no export with little load), so the plan may hold there but never charge further.
    """
    k = np.arange(1, n + 1, dtype=np.float64)
    e_lo = np.minimum(lo, e0 + k * step_wh_in)
    e_hi = np.full(n, max(hi, e0))
    return e_lo, e_hi


def _so_far(w: tuple[float, ...], j: int) -> float:
    """`w[j]` (a peak this month, W), or 0 where missing, NaN or negative."""
    return w[j] if j < len(w) and w[j] > 0.0 else 0.0


def group_steps(layout: DemandLayout) -> list[npt.NDArray[np.bool_]]:
    """Per demand group of `layout`, which steps its intervals cover: built once a plan, where
    charge_room and the plan's caps both need them."""
    return [np.isin(layout.iv_of, g.intervals) for g in layout.groups]


def charge_room(
    loads: FloatArray, layout: DemandLayout, own: list[float], steps: list[npt.NDArray[np.bool_]] | None = None
) -> FloatArray:
    """Per load row and step, the most a charge may add to the import: what the tracker allows (W).

    The tracker (track.py) charges only under the level the month bills so far in the windows covering
    the interval (the lowest of them, less CHARGE_MARGIN), that level being the higher of the peak
    billed and the site's own load's highest this month: `own[g]` for each demand group now, then
    rising with the row's own load as its intervals come (each row a way the load may go, known to
    the programme); an interval whose own load is at or over it takes no charge. Inf where no demand
    charge covers the step. A plan blind to it counted on charging the tracker refuses: on the month's
    first night (the month's level only as high as the night's load) the plan held its levels on a
    battery it had filled to 89 % by noon and the tracker to 46 %, and the battery ran empty at the
    end of the peak window, the month's level set there (train200 / PG&E E-20, BENCHMARKS 13x).
    `steps`: group_steps(layout), where the caller has them already (None: built here).
    """
    rows = np.atleast_2d(loads)
    lvl = np.full(rows.shape, math.inf)
    for in_g, o in zip(group_steps(layout) if steps is None else steps, own, strict=True):
        cols = np.flatnonzero(in_g)
        if len(cols):
            run = np.maximum(np.maximum.accumulate(rows[:, cols], axis=1), o)
            lvl[:, cols] = np.minimum(lvl[:, cols], run)
    room: FloatArray = np.maximum((1.0 - CHARGE_MARGIN) * lvl - rows, 0.0)
    return room


# Each billing month's demand windows (the programme's layout from the month's first day over two
# months), per (tariff, month start, step): laid out once a month, not at every plan (~4 ms each)
@dataclass(frozen=True, slots=True)
class _Month:
    tariff: Tariff
    iv_of: IntArray  # per step from the month's start: its demand interval
    # per (charge, month index), the intervals where the charge's own level binds (see month_shares)
    binding: dict[tuple[int, int], IntArray]
    every: dict[tuple[int, int], IntArray]  # per (charge, month index), all its window's intervals
    inner: dict[int, tuple[int, ...]]  # per charge, the charges whose windows lie strictly inside its own


_MONTHS: dict[tuple[int, float, float], _Month] = {}
_NONE: Final = np.zeros(0, dtype=np.int64)  # no intervals
_MONTH_SPAN_S: Final = 63 * DAY_S  # two billing months from the first one's start, whatever their length


def _month(tariff: Tariff, start_s: float, step_s: float) -> _Month:
    key = (id(tariff), start_s, step_s)
    hit = _MONTHS.get(key)
    if hit is not None and hit.tariff is tariff:
        return hit
    if len(_MONTHS) > 8:
        _MONTHS.clear()
    lay = demand_layout(np.arange(start_s, start_s + _MONTH_SPAN_S, step_s), tariff)
    ivs = {(g.charge, g.month): g.intervals for g in lay.groups}
    first = {j: iv for (j, m), iv in ivs.items() if m == 0}
    inner = {
        j: tuple(k for k, b in first.items() if k != j and len(b) < len(a) and bool(np.all(np.isin(b, a))))
        for j, a in first.items()
    }
    binding = {(j, m): _outside(iv, [ivs.get((k, m), _NONE) for k in inner.get(j, ())]) for (j, m), iv in ivs.items()}
    hit = _Month(tariff, lay.iv_of, binding, ivs, inner)
    _MONTHS[key] = hit
    return hit


def _outside(iv: IntArray, inside: list[IntArray]) -> IntArray:
    """The intervals of `iv` in none of `inside`."""
    for b in inside:
        iv = iv[~np.isin(iv, b)]
    return iv


def month_shares(ts: FloatArray, step_s: float, layout: DemandLayout, tariff: Tariff) -> FloatArray:
    """Per demand group of the horizon's `layout`, the share of what is left of its billing month's
    window that the horizon holds, counted in the intervals where the charge's own level binds: the
    part of the month's demand charge the plan's days stand for.

    A level planned now is held on every day left in the month, and the programme sees only the
    horizon's. Priced at the whole monthly rate against two days' energy, a kW of level was worth
    ~15 times what a month of holding it is at the month's start: the plan gave up the arbitrage of
    every day for levels (flat / Shanghai with its own future, 30 days: -9.2 % of the optimum, a
    loss; BENCHMARKS.md, issue 13, the month's share). Counted in the window's intervals, not in days,
    so a weekday window seen over a weekend is priced on the weekdays left. And only where the level
    binds: inside a charge whose window lies within another's (PG&E's weekday peak within the
    all-hours maximum demand), the inner one's lower level holds the load, so the outer level is
    held on the other intervals alone (nights and weekends). Counted over every interval, a weekend
    horizon priced the all-hours level as if each weekday left needed it too, and let it rise on a
    Saturday with the battery 93 % full (inference / PG&E with its own future: 5,571 kW against
    5,260 at the whole rate). 1 where the horizon holds all that is left (the month's last two
    days: the whole rate, as before).
    """
    tz = tariff.timezone
    first = tariff.billing_month(datetime.fromtimestamp(float(ts[0]), tz).date())
    start_s = datetime.combine(first, day_start(), tzinfo=tz).timestamp()
    mo = _month(tariff, start_s, step_s)
    iv0 = int(mo.iv_of[min(len(mo.iv_of) - 1, round((float(ts[0]) - start_s) / step_s))])
    here = {(g.charge, g.month): g.intervals for g in layout.groups}
    out = np.ones(len(layout.groups))
    for i, g in enumerate(layout.groups):
        held = len(_outside(g.intervals, [here.get((k, g.month), _NONE) for k in mo.inner.get(g.charge, ())]))
        # a horizon inside the inner windows alone (a few hours): counted over every interval instead
        left = (mo.binding if held else mo.every).get((g.charge, g.month), _NONE)
        held = held or len(g.intervals)
        n = int(np.count_nonzero(left >= iv0)) if g.month == 0 else len(left)
        if n > held:
            out[i] = held / n
    return out


def plan(
    fc: Forecast,
    tariff: Tariff,
    bat: PlanBattery,
    soc_pct: float,
    billed_w: tuple[float, ...],
    made_s: float,
    *,
    margin: float = 1.0,
    time_limit_s: float = TIME_LIMIT_S,
    scenario_s: float = SCENARIO_S,
    shared_slots: int = 1,
    site_w: tuple[float, ...] = (),
) -> DispatchPlan | PlanFailure:
    """Solve the plan from the forecast's first slot at state of charge `soc_pct`.

    `billed_w[j]`: the peak already billed this month for tariff.demand[j] (W; missing or NaN: 0).
    `shared_slots`: the slots whose power every scenario shares (what is done before the next plan).
    `site_w[j]`: the highest interval average the site's own net load (no battery) reached this month
    in tariff.demand[j]'s window (W; missing or NaN: 0): with `billed_w`, the plan's `billed_w` levels.
    """
    if fc.step_s != tariff.demand_interval_s:
        raise ValueError(f"planner: forecast step {fc.step_s:g} s is not the tariff's demand interval")
    ts = fc.timestamps
    n = len(ts)
    h = fc.step_s / 3600.0
    load = np.maximum(fc.p50_w, 0.0)  # surplus PV is the PV controller's, not the plan's
    peak_load = np.maximum(fc.p50_w + margin * (fc.p90_w - fc.p50_w), load)
    loads, peak_loads = load, peak_load
    if len(fc.scenarios_w):  # the plan is the median's; the peak level holds in every scenario too
        scen = np.maximum(fc.scenarios_w, 0.0)
        loads, peak_loads = np.vstack([load, scen]), np.vstack([peak_load, scen])
    price = tariff.energy_prices(ts)
    layout = demand_layout(ts, tariff)
    # the demand charges priced on the share of the month the horizon stands for (month_shares); the
    # floors and the plan's levels are the groups' own, unchanged
    shares = month_shares(ts, fc.step_s, layout, tariff)
    priced = replace(
        layout,
        groups=tuple(replace(g, rate=g.rate * float(w)) for g, w in zip(layout.groups, shares, strict=True)),
    )
    e = bat.energy_wh / 100.0
    e0 = min(max(soc_pct, 0.0), 100.0) * e
    e_floor = max(bat.soc_min_pct, bat.reserve_pct) * e
    e_lo, e_hi = _window(
        e0,
        e_floor,
        bat.soc_max_pct * e,
        n,
        h * bat.power_w * bat.charge_efficiency,
    )
    floors = np.array([_so_far(billed_w, g.charge) if g.month == 0 else 0.0 for g in layout.groups])
    # no bill above the site's own: the higher of what is billed and what the load alone reached
    own = [
        max(float(f), _so_far(site_w, g.charge)) if g.month == 0 else 0.0
        for g, f in zip(layout.groups, floors, strict=True)
    ]
    st = Storage(
        power_w=bat.power_w,
        eta_c=bat.charge_efficiency,
        eta_d=bat.discharge_efficiency,
        e0_wh=e0,
        e_min_wh=e_lo,
        e_max_wh=e_hi,
        e_end_wh=None,
        e_end_min_wh=e0,
        end_cycle_steps=round(DAY_S / fc.step_s),  # a horizon over a day: its last day repeats
        end_value_per_wh=(1.0 + HOLD_SHARE) * float(np.min(price)) / bat.charge_efficiency / 1000.0,
        # at most HOLD_SHARE of the cheapest energy over the whole horizon: never outweighs a price
        charge_delay_per_wh_step=HOLD_SHARE * float(np.min(price)) / 1000.0 / n,
        degradation_per_kwh=bat.degradation_cost_per_kwh,
    )
    steps = group_steps(layout)  # each group's steps: the charge room's and the caps' (below)
    room = charge_room(loads, layout, own, steps)
    # under the SoC window's floor the window climbs at full power (_window): the reserve's own
    # charging, which no demand level stops
    room[:, e0 + np.arange(n) * h * bat.power_w * bat.charge_efficiency < e_floor] = math.inf
    t0 = time.perf_counter()
    m = math.ceil(scenario_s / fc.step_s)
    sol = solve_battery_lp(
        loads,
        peak_loads,
        price,
        h,
        priced,
        st,
        floors,
        time_limit_s,
        m,
        shared_slots,
        presolve=False,
        charge_room_w=room,
    )
    solve_s = time.perf_counter() - t0
    if sol.status != 0:
        return PlanFailure(sol.status, sol.message, solve_s)
    b = sol.discharge_w - sol.charge_w
    # the cap on each interval: the lowest peak level over the demand windows that cover it; and
    # the lowest level among them that the month bills with or without the battery (at or under it,
    # or under its own load, an interval raises no billed peak above the site's own: track.py's
    # guard). Only what has happened: the next month's slots start from nothing. (A level taken from
    # the forecast, the plan's where the median reaches it, let the month's first interval charge up
    # to a level the load had not reached: train200 / Shanghai billed 5.1 kW over no battery.)
    cap = np.full(n, math.inf)
    billed_lvl = np.full(n, math.inf)
    for in_g, p, o in zip(steps, sol.peaks_w, own, strict=True):
        cap[in_g] = np.minimum(cap[in_g], p)
        billed_lvl[in_g] = np.minimum(billed_lvl[in_g], o)
    value = sol.energy_value * bat.charge_efficiency * 1000.0
    return DispatchPlan(
        made_s=made_s,
        start_s=fc.start_s,
        step_s=fc.step_s,
        battery_w=b,
        grid_w=load - b,
        grid_cap_w=cap,
        soc0_pct=e0 / e,
        soc_pct=sol.energy_wh / e,
        price=price,
        objective=sol.objective,
        solve_s=solve_s,
        billed_w=billed_lvl,
        stored_value=value,
        short=value > float(np.max(price)),
    )
