"""The start of a cycle: trust the measurements, build the fleet, advance interval and ToU state.

Everything the controllers share is worked out here once and handed to them as a Cycle.
"""

from __future__ import annotations

import calendar
import math
from datetime import datetime, timedelta
from typing import Final

from agent.control.cycle import Cycle
from agent.control.demand import CHARGE_MARGIN, MARGIN, keep_wh, target_w
from agent.control.envelope import ENVELOPE_DAYS
from agent.control.fleet import FleetMemo, build_fleet
from agent.control.interval import accumulate, roll
from agent.control.limit_reserve import advance, import_cap_w, reserve_wh, usable_wh
from agent.control.prices import Prices
from agent.control.ramp_reference import BETWEEN_READINGS_RAMP_FRACTION, tally
from agent.control.reserve import reserve_floor_pct
from agent.control.schedule import DispatchPlan
from agent.control.state import ControllerState, IntervalState, top_peak
from agent.control.tou import plan_interval
from agent.control.week_level import WeekBattery, all_hours_level_w, ring_days, uniform_day
from agent.model.config import ControlConfig
from agent.model.interval import local_slot, slots_per_day
from agent.model.operator import OperatorState
from agent.model.snapshot import SiteSnapshot
from drivers.reading import Quality

NAN: Final = math.nan
_GOOD: Final = Quality.GOOD


def finite(x: float) -> bool:
    """math.isfinite as a native call in the compiled build (inf - inf and NaN - NaN are NaN)."""
    return x - x == 0.0


def month_index(t: datetime) -> int:
    """The billing month of local time `t` as IntervalState.month counts it."""
    return t.year * 12 + t.month - 1


def day_rates(
    prices: Prices | None, start: datetime, slot: int, spd: int, length_s: float, rate: float
) -> tuple[float, ...]:
    """The demand rate of each slot of today (by slot index; the interval that starts at `start`
    is slot `slot`, at `rate`): the windows the shave levels are split across. Today's whole day,
    not the 24 h ahead: from a Friday afternoon those hold only the tail of the peak window, and a
    level sized on that tail counts an hour above it as a whole day's (16.37 USD/kW-month over 45
    minutes a day), deep enough to shave a Friday's last intervals at 1 USD/kWh of wear."""
    if prices is None:
        return (rate,) * spd
    out = [0.0] * spd
    for k in range(spd):
        r = rate if k == slot else prices.demand_rate(start + timedelta(seconds=(k - slot) * length_s))
        out[k] = r if finite(r) and r > 0.0 else 0.0
    return tuple(out)


def day_prices(prices: Prices, start: datetime, spd: int, length_s: float) -> tuple[float, ...]:
    """The energy price of each slot of the day from local midnight `start` (NaN where not finite)."""
    out = [NAN] * spd
    for k in range(spd):
        p = prices.energy_price(start + timedelta(seconds=k * length_s))
        out[k] = p if finite(p) else NAN
    return tuple(out)


def week_level(
    iv: IntervalState, prices: Prices, today: datetime, rates: tuple[float, ...], length_s: float, bat: WeekBattery
) -> tuple[int, float, float]:
    """(today's date ordinal, the all-hours level the last week's optimum holds if today bills the
    all-hours charge alone, else NaN; that level if today has demand windows, the windows' cap, else
    NaN: week_level.py); worked out once a day, kept in the interval state, priced on the days left of
    the month above what it already bills. A day of the all-hours charge alone is held no lower than
    yesterday's targets held the all-hours charge at where it billed alone: the weekdays hold their
    own levels, and a weekend shaved under what they bill buys nothing (the pooled campus,
    BENCHMARKS.md, issue 13: 0.7 % lost so)."""
    day = today.toordinal()
    if iv.week_day == day:
        return day, iv.week_level_w, iv.week_cap_w
    spd = len(rates)
    midnight = today.replace(hour=0, minute=0, second=0, microsecond=0)
    # one demand rate all day: the all-hours charge alone if one price too, else (a price spread and
    # no window: Shanghai) the heuristic's own level
    alone = uniform_day(rates, lambda: day_prices(prices, midnight, spd, length_s))
    if not alone and len(set(rates)) < 2:
        return day, NAN, NAN
    loads = ring_days(iv.past, day, spd)
    if not loads:
        return day, NAN, NAN
    rr: list[float] = []
    pp: list[float] = []
    for back in range(ENVELOPE_DAYS, 0, -1):  # oldest first, as ring_days lays them
        start = midnight - timedelta(days=back)
        rr.extend(day_rates(prices, start, 0, spd, length_s, prices.demand_rate(start)))
        pp.extend(day_prices(prices, start, spd, length_s))
    left = calendar.monthrange(today.year, today.month)[1] - today.day + 1
    billed = iv.peaks if iv.month == month_index(today) else ()
    level = all_hours_level_w(loads, tuple(rr), tuple(pp), spd, length_s, bat, float(left), billed)
    if not alone:
        return day, NAN, level
    # no lower than the all-hours level yesterday's targets held (its slots billed the all-hours
    # charge alone, aimed MARGIN under): the month bills that anyway, and a weekend shaved under it
    # spends energy on nothing
    last = rr[-spd:]
    base = min(last)
    held = [x for x, r in zip(iv.targets, last, strict=False) if r == base and x < math.inf]
    if held and level == level:
        top = max(held) * (1.0 - MARGIN)
        level = top if top > level else level
    # An all-hours peak billed over the level the last such day was held at, by less than the margin
    # the levels are aimed under, is that day's error at its aim (the load moves between a reading and
    # the next setpoint), not a level anything chose; and the week's optimum, priced above what is
    # billed, then holds exactly that peak: aimed at it, today's own error raises it again, day after
    # day (train200 / PG&E E-20, 30 days at 1 s: 5,040 -> 5,066 kW over the month's nine weekend days).
    # Held where the last such day was, the month bills the largest such error once, not their sum.
    # (on a new month's first day nothing is billed yet, and the last month's aim stands for nothing)
    aimed, free = iv.week_aim_w, top_peak(billed)
    if aimed < level <= free and free - aimed <= MARGIN * free:  # NaN compares False
        level = aimed
    return day, level, NAN


def shave_cost(spread: float) -> float:
    """What a kWh discharged for demand shaving costs (NaN: not known yet).

    `spread` (tou.plan_slot) is the best round trip's value per kWh discharged, wear paid. Where it
    pays, energy spent shaving is arbitrage forgone: it costs the spread. Where it does not (PG&E at
    a wear above its price spread), no arbitrage is forgone, but the kWh must be bought back at the
    cheapest price through both efficiencies and paid in wear, less the import it avoids at the
    dearest: minus the spread. Either way |spread|.
    """
    return abs(spread) if spread != 0.0 else NAN


def next_interval(
    iv: IntervalState,
    t: datetime,
    *,
    key: int,
    slot: int,
    into: float,
    length_s: float,
    prices: Prices | None,
    sample: bool,
    imp: float,
    net: float,
    dt: float,
    budget_wh: float,
    power_w: float,
    stored_wh: float,
    spread: float,
    fixed_w: float,
    cap: float = math.inf,
    round_trip: float = NAN,
    wear_per_kwh: float = NAN,
    now_w: float = NAN,
) -> IntervalState:
    """`iv` closed and the interval `key` (slot `slot` of the day, `into` s old at local time `t`)
    opened: its demand rate, today's windows (day_rates) and the levels (interval.roll) on the fleet's
    energy from full (`budget_wh`), power and energy stored now (AC), priced at shave_cost(`spread`).
    A site's begin_cycle, and a campus coordinator on the campus's sums (agent/campus/levels.py).
    `round_trip`, `wear_per_kwh`: the fleet's, with its budget and power the battery the all-hours
    level of a day that bills it alone is worked out for (week_level; NaN: not worked out, a campus
    whose feeders do not all report them). `now_w`: the baseline read now (interval.accumulate)."""
    if prices is not None:
        rate = prices.demand_rate(t)
        rate = rate if finite(rate) and rate > 0.0 else 0.0
    else:
        rate = 1.0 if fixed_w > 0.0 else 0.0
    spd = slots_per_day(length_s)
    rates = day_rates(prices, t - timedelta(seconds=into), slot, spd, length_s, rate)
    wk_day, wk_level, wk_cap = iv.week_day, iv.week_level_w, iv.week_cap_w
    if prices is not None and finite(round_trip) and finite(wear_per_kwh) and fixed_w <= 0.0:
        week = WeekBattery(budget_wh, power_w, round_trip, wear_per_kwh)
        wk_day, wk_level, wk_cap = week_level(iv, prices, t, rates, length_s, week)
    return roll(
        iv,
        key=key,
        into=into,
        month=month_index(t),
        rate=rate,
        sample=sample,
        imp=imp,
        net=net,
        dt=dt,
        length_s=length_s,
        spd=spd,
        budget_wh=budget_wh,
        power_w=power_w,
        rates=rates,
        cost_per_kwh=shave_cost(spread),
        fixed_w=fixed_w,
        refill=prices is not None and spread <= 0.0,  # as tou.plan_interval's recharge for demand
        stored_wh=stored_wh,
        cap=cap,
        week_day=wk_day,
        week_level_w=wk_level,
        week_cap_w=wk_cap,
        now_w=now_w,
    )


def metered_w(grid_w: float, net_w: float, before_w: float) -> tuple[float, float]:
    """(import, net load) the utility meter saw between the previous reading and this one: `grid_w`
    and `net_w` read now, `before_w` the net load read before (NaN: none, then the reading itself).

    A reading at t shows the load of the time from t and the battery of the time before t (it acts
    on the reading): booked whole for the time before, it runs ahead of the meter by the load's
    change, and a jump at an interval's first reading lands in the closing interval, whose billed
    peak the levels then ratchet on (BENCHMARKS.md, issue 16, four feeders: 11 times a month at
    60 s, the metered average 0.9-2.6 MW under what was booked). The meter saw the load read before
    less the battery read now: the reading less the load's change. Over an interval the two differ
    by the load's change across it: nothing at 1 s, the whole step in a replay's 60 s."""
    if before_w == before_w and net_w == net_w:  # neither NaN
        return grid_w - (net_w - before_w), before_w
    return grid_w, net_w


def begin_cycle(
    snap: SiteSnapshot,
    st: ControllerState,
    cfg: ControlConfig,
    op: OperatorState,
    prices: Prices | None,
    allow_export: bool,
    fleet_memo: FleetMemo | None,
    pcc_off: frozenset[str],
    schedule: DispatchPlan | None = None,
) -> Cycle:
    now = snap.t_mono
    dt = now - st.ramp.t_mono if finite(now) else NAN
    # an isolation (live: the load changes between readings) ramps its PCS out at the ramp bound's
    # live rate, grid up (fleet._build)
    ramp_out = 0.0
    if op.maintenance and cfg.ramp_limit_w_per_s > 0.0 and snap.grid_up:
        ramp_out = cfg.ramp_limit_w_per_s * BETWEEN_READINGS_RAMP_FRACTION * (dt if 0.0 < dt <= 1.0 else 1.0)
    f = build_fleet(snap, op.maintenance, fleet_memo, op.derate, ramp_out, st.ramp.pcs_w, st.ramp.cluster_w)

    g, ld, pv = snap.grid_w, snap.load_w, snap.pv_w
    gv, lv, pvv = g.value, ld.value, pv.value
    grid_ok = g.quality is _GOOD and finite(gv)
    net_ok = ld.quality is _GOOD and pv.quality is _GOOD and finite(lv) and finite(pvv)
    net = lv - pvv if net_ok else NAN
    meas_ok = grid_ok and net_ok

    floor = reserve_floor_pct(cfg, op, f.capacity_wh)
    ceil = cfg.soc_max_pct
    usable = usable_wh(floor, ceil, f.capacity_wh)

    # --- the demand interval and the price slot (agent.model.interval aligns both) ---
    length = cfg.demand_interval_s
    t = snap.t_wall
    key, slot, into, iv_len = local_slot(t, length)
    # a reading stands for the time since the previous one, up to one interval (slow replays too),
    # booked as the utility meter billed that time (metered_w)
    sample = meas_ok and snap.grid_up and 0.0 < dt <= length  # False for NaN
    m_imp, m_net = metered_w(gv, net, st.ramp.net_w)
    imp = m_imp if m_imp > 0.0 else 0.0
    iv = st.interval
    tou = st.tou
    limit = cfg.grid_import_limit_w
    cap = import_cap_w(cfg)
    if key == iv.key:
        iv = accumulate(iv, sample, imp, m_net, dt, cap, net)
    else:
        iv = next_interval(
            iv,
            t,
            key=key,
            slot=slot,
            into=into,
            length_s=length,
            prices=prices,
            sample=sample,
            imp=imp,
            net=m_net,
            dt=dt,
            budget_wh=usable * cfg.discharge_efficiency,
            power_w=f.max_dis_w,
            stored_wh=max(0.0, f.energy_wh - floor * 0.01 * f.capacity_wh) * cfg.discharge_efficiency,
            spread=tou.spread,  # from the previous slot's price plan (NaN on the first)
            fixed_w=cfg.demand_target_w,
            cap=cap,
            round_trip=cfg.charge_efficiency * cfg.discharge_efficiency,
            wear_per_kwh=cfg.degradation_cost_per_kwh,
            now_w=net,
        )
        tou = plan_interval(
            tou, iv, t=t, now=now, slot=slot, into=into, length_s=length, prices=prices, cfg=cfg, f=f, ceil=ceil
        )

    ls = st.limit
    if limit > 0.0:
        level = target_w(iv.peaks, iv.shave_floor_w, iv.rate, cfg.demand_target_w) * (1.0 - CHARGE_MARGIN)
        ls = advance(
            ls,
            limit_w=limit,
            sample=sample,
            net_w=net,
            mean_w=iv.net_ws / iv.covered_s if iv.covered_s > 0.0 else NAN,
            dt=dt,
            key=key,
            spd=slots_per_day(length),
            level_w=level if level < limit else limit,
            dis_w=f.max_dis_w,
            chg_w=f.max_chg_w,
            usable_wh=usable,
            eta_c=cfg.charge_efficiency,
            eta_d=cfg.discharge_efficiency,
            ahead_wh=ls.ahead_wh
            if key == ls.key
            else keep_wh(iv.profile, slot, limit, length, cfg.discharge_efficiency),
        )

    pcc: set[str] | None = None
    if snap.grid_up:
        # the reserve floor and SoC ceiling, per cluster (controller 3 reports what it cut)
        f.apply_window(floor, ceil)
        weight_floor = floor
        # Ramp support is delegated to PCS in grid-power (PCC) control when any trusted one is
        # configured for it and the measurements it is checked against are good; otherwise (and in
        # an outage) every PCS follows its setpoint and the ramp controller holds the ramp.
        if meas_ok and cfg.ramp_limit_w_per_s > 0.0 and snap.has_grid_control:
            pcc = {p.id for p in snap.pcs if p.grid_control and p.id not in pcc_off}.intersection(f.pcs_ids)
    else:
        # an outage: the battery is the UPS, the reserve is there to be used
        f.apply_window(-1.0, ceil)
        weight_floor = cfg.soc_min_pct
    return Cycle(
        snap=snap,
        cfg=cfg,
        op=op,
        allow_export=allow_export,
        fleet=f,
        now=now,
        dt=dt,
        grid_w=gv,
        net=net,
        net_ok=net_ok,
        meas_ok=meas_ok,
        floor=floor,
        ceil=ceil,
        weight_floor=weight_floor,
        pcc=pcc,
        pcc_off=pcc_off,
        prev_grid_w=st.ramp.grid_w,
        prev_battery_w=st.ramp.battery_w,
        prev_from_w=st.ramp.from_w,
        iv=iv,
        tou=tou,
        slot=slot,
        into=into,
        iv_len=iv_len,
        length_s=length,
        schedule=schedule,
        plan_slot=schedule.slot_at(t.timestamp()) if schedule is not None else -1,
        limit=ls,
        limit_wh=reserve_wh(ls, usable) if limit > 0.0 else 0.0,
        edge=st.edge,
        meter=tally(st.ramp.meter, t.timestamp(), gv, grid_ok),
    )
